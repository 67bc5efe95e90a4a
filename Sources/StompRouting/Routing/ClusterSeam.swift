/// The rest of the cluster, as the router's shell sees it: where the router's cluster
/// outputs (``RouterOutput/interest(_:delta:)``, ``RouterOutput/forward(_:)``,
/// ``RouterOutput/handOff(queue:_:redelivered:hops:)``) go. The cluster's shell implements it.
///
/// Every method is called on the router's event loop, in the order the router produced the
/// outputs, so an interest change always precedes the receipt that waits for it.
public protocol ClusterSeam: AnyObject, Sendable {
    /// Local subscriptions to a topic pattern or a queue changed by `delta`.
    func interestChanged(_ destination: Destination, delta: Int)
    /// A topic message published on this node, for the peers with matching subscriptions.
    func forward(_ message: MessageEnvelope)
    /// A queue message for a peer with consumers, since none here can take it.
    func handOff(queue: String, _ message: MessageEnvelope, redelivered: Bool, hops: UInt8)
    /// Runs `body` once every live peer has acknowledged this node's current interest, or
    /// when the configured wait runs out: a SUBSCRIBE's receipt waits for it.
    func afterInterestPropagated(_ body: @escaping () -> Void)
}

/// The router's end of the seam: work that arrives from other nodes. The router's shell
/// implements it; the cluster calls it on the router's event loop.
public protocol RouterClusterInput: AnyObject, Sendable {
    func apply(_ operation: RouterClusterOperation)
}
