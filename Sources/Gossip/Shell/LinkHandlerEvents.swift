/// What a ``LinkChannelHandler`` tells whoever runs its links: the cluster shell, or a test
/// that drives handlers without one.
///
/// Called on the handler's event loop, which the receiver shares (the shell confines itself
/// to that loop), so no call hops or locks.
protocol LinkHandlerEvents: AnyObject {
    /// The connection is up and the handshake started; nothing is known of the peer yet.
    func linkOpened(_ link: LinkChannelHandler)
    /// The handshake completed: `peer` proved the cluster secret, and the link speaks
    /// `version` from now on.
    func linkEstablished(_ link: LinkChannelHandler, peer: LinkHello, version: UInt16)
    /// A message from an established link's peer.
    func received(_ message: LinkMessage, on link: LinkChannelHandler)
    /// The connection closed, whatever closed it.
    func linkClosed(_ link: LinkChannelHandler)
    /// The link ended in error (a refused handshake, malformed input, an I/O or TLS error).
    /// `reason` quotes every part that came from the peer (``LinkHandshake/quoted(_:)``).
    /// The handler closes the link itself.
    func linkFailed(_ link: LinkChannelHandler, reason: String)
    /// The handshake found this node at both ends; the link closes quietly.
    func linkReachedItself(_ link: LinkChannelHandler)
    /// The link's unsent bytes passed its high-water mark (`false`) or fell under its low one.
    func linkWritabilityChanged(_ link: LinkChannelHandler, writable: Bool)
    /// A pump stopped at the link's budget for one tick, and the tick's writes are out.
    func linkReadyForMore(_ link: LinkChannelHandler)
}
