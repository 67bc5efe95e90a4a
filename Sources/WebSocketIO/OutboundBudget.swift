import Synchronization

/// Bytes handed to client sockets and not yet written, over the whole node.
///
/// Each connection bounds its own unsent bytes (`limits.outbound-bytes`), but many clients
/// that read slowly, each under its own bound, could still hold more memory than the node
/// has. While the node is over this budget, connections that already hold a good share of
/// their own bound are cut off as slow consumers: they are the ones filling it.
final class OutboundBudget: Sendable {
    /// `limits.node-outbound-bytes`.
    let limit: Int
    private let used = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Bytes waiting now.
    var current: Int { used.load(ordering: .relaxed) }

    /// Whether the node holds more than its budget.
    var isExceeded: Bool { current > limit }

    /// `bytes` were handed to a socket. (The gauge `stomp_outbound_bytes` is read off
    /// ``current`` when metrics are scraped, not written here on every flush.)
    func add(_ bytes: Int) {
        used.add(bytes, ordering: .relaxed)
    }

    /// `bytes` handed over earlier were written, or dropped with their connection.
    func remove(_ bytes: Int) {
        used.subtract(bytes, ordering: .relaxed)
    }
}
