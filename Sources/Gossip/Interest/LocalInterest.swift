import StompRouting

/// This node's own interest, aggregated from its clients' subscriptions, and the versioned
/// changes peers must hear of.
///
/// Peers need to know *whether* a node wants a topic, not how many subscribers it has: a
/// thousand local subscribers to one pattern are one entry, announced when the count goes
/// 0 -> 1 and withdrawn at 1 -> 0. Queues carry their consumer count, which weighs how
/// queue messages are spread. Every announced change bumps ``version``; ``epoch`` tells
/// this boot from earlier ones of the same node.
public struct LocalInterest: Sendable {
    public let epoch: UInt64
    public private(set) var version: UInt64 = 0
    private var counts: [Destination: Int] = [:]

    public init(epoch: UInt64) {
        self.epoch = epoch
    }

    /// Records that local subscriptions to `key` changed by `delta`.
    ///
    /// - Returns: the change to announce and the version it makes, or `nil` when peers need
    ///   not hear of it.
    public mutating func adjust(_ key: Destination, by delta: Int) -> (version: UInt64, change: (Destination, Int))? {
        let before = counts[key] ?? 0
        let after = max(before + delta, 0)
        counts[key] = after == 0 ? nil : after
        let announced: Int
        switch key {
        case .topic:
            guard (before == 0) != (after == 0) else { return nil }
            announced = after == 0 ? 0 : 1
        case .queue:
            guard before != after else { return nil }
            announced = after
        }
        version += 1
        return (version, (key, announced))
    }

    /// Every entry as peers should hold it: presence for topics, counts for queues.
    public var snapshot: [(Destination, Int)] {
        counts.map { key, count in
            if case .topic = key { return (key, 1) }
            return (key, count)
        }
    }

    /// Every entry with its count of local subscriptions (peers hold presence, 1, for a
    /// topic). The dictionary itself, not a copy: for paging through in the admin API.
    public var entries: [Destination: Int] { counts }

    /// Local subscriptions to `key`.
    public func count(of key: Destination) -> Int { counts[key] ?? 0 }
}
