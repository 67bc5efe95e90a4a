import Synchronization

/// Counts open client connections against the node's limit, from any event loop.
final class ConnectionLimiter: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Takes a slot if one is free.
    func acquire() -> Bool {
        let now = open.add(1, ordering: .relaxed).newValue
        if now <= limit { return true }
        open.subtract(1, ordering: .relaxed)
        return false
    }

    func release() {
        open.subtract(1, ordering: .relaxed)
    }

    var current: Int { open.load(ordering: .relaxed) }
}
