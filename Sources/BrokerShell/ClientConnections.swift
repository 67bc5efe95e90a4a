import StompRouting

/// The clients' end of the broker: the transports' registry of connections, which carries
/// the router's outputs for a connection to it on its own event loop.
///
/// The broker hands over a whole batch at once, so the registry can group a publish's
/// deliveries per event loop and cross to each loop once.
public protocol ClientConnections: AnyObject, Sendable {
    /// Carries every client output in `outputs` (deliver, receipt, fail, close) to its
    /// connection, in order, and skips the cluster's. Called on the broker's loop, once per
    /// batch.
    ///
    /// - Parameter receiptsWait: whether a receipt marked `waitsForCluster` is held, with
    ///   everything after it for its connection, until ``releaseReceipt(of:)``.
    /// - Returns: the MESSAGE frames handed over, for the delivery counters.
    func send(_ outputs: [RouterOutput], receiptsWait: Bool) -> Int

    /// The earliest receipt of `connection` held for the cluster may go, with what waited
    /// behind it. Called on the broker's loop, after the batch that held it.
    func releaseReceipt(of connection: ConnectionID)

    /// The connections registered now, for shutdown. Read on the broker's loop.
    var connectionIDs: [ConnectionID] { get }

    /// Whether `connection` is still registered (it is not once it closed or failed).
    func contains(_ connection: ConnectionID) -> Bool
}
