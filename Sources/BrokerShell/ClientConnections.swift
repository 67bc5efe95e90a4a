import StompRouting

/// The clients' end of the broker: the transports' registry of connections, which carries
/// the router's outputs for a connection to it on its own event loop.
///
/// The broker hands over a whole batch at once, so the registry can group a publish's
/// deliveries per event loop and cross to each loop once.
public protocol ClientConnections: AnyObject, Sendable {
    /// Carries every client output in `outputs` (deliver, receipt, fail, close) to its
    /// connection, in order. Skips the cluster's outputs and the receipts at `held`, which
    /// wait for the cluster. Called on the broker's loop, once per batch.
    ///
    /// - Returns: the MESSAGE frames handed over, for the delivery counters.
    func send(_ outputs: [RouterOutput], holding held: Set<Int>) -> Int

    /// The connections registered now, for shutdown. Read on the broker's loop.
    var connectionIDs: [ConnectionID] { get }

    /// Whether `connection` is still registered (it is not once it closed or failed).
    func contains(_ connection: ConnectionID) -> Bool
}
