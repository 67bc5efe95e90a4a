import Synchronization

/// Bytes that all connections of the node hold together, against one bound.
///
/// Each connection bounds what it holds itself, but many connections, each under its own
/// bound, could still hold more memory than the node has. Two budgets of this kind exist:
/// bytes handed to client sockets and not yet written (`limits.node-outbound-bytes`), and
/// bytes of frames still arriving (`limits.node-inbound-bytes`). What a connection does when
/// its node is over one is its own business; see ``StompConnectionHandler``.
final class NodeByteBudget: Sendable {
    /// The bound, in bytes.
    let limit: Int
    private let used = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Bytes held now.
    var current: Int { used.load(ordering: .relaxed) }

    /// Whether the node holds more than its budget.
    var isExceeded: Bool { current > limit }

    /// A connection holds `bytes` more (fewer, when negative). (The gauges read ``current``
    /// when metrics are scraped; nothing is written here per change.)
    func add(_ bytes: Int) {
        used.add(bytes, ordering: .relaxed)
    }

    /// A connection gave `bytes` back: written, consumed, or dropped with it.
    func remove(_ bytes: Int) {
        used.subtract(bytes, ordering: .relaxed)
    }
}
