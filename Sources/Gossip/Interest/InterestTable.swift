import StompRouting

/// What every peer has announced of its interest, and the answer to "which peers want a
/// message for this destination".
///
/// Each origin's entries are versioned by (epoch, version). Deltas arrive in order over the
/// origin's link and apply only on top of the version they follow; anything else is either
/// a duplicate (ignored) or a gap, which asks for a snapshot. Snapshots replace an origin's
/// entries wholesale. All of it is idempotent, so repairs can be sent without care.
///
/// Not `Sendable`: its owner (the cluster shell) confines it to one event loop.
public final class InterestTable {
    private struct Origin: Sendable {
        var epoch: UInt64
        var version: UInt64
        var entries: [Destination: Int] = [:]
    }

    /// The outcome of applying an update.
    public enum Outcome: Sendable, Equatable {
        /// Applied; acknowledge this version. `queues` lists queues whose consumer counts changed.
        case applied(version: UInt64, queues: Set<String>)
        /// Already held; acknowledge again, nothing changed.
        case duplicate(version: UInt64)
        /// A delta that doesn't follow what is held: ask the origin for a snapshot.
        case gap
        /// From an earlier boot of the origin than the one held: ignore.
        case stale
    }

    private var origins: [NodeID: Origin] = [:]
    private let topics = TopicTrie<NodeID>()
    /// The peers each recently forwarded routing key matched: every publish consults this
    /// table, and most traffic repeats a few keys. Bounded, so a stream of one-off keys
    /// can't grow it without limit.
    private var topicMatches: [String: Set<NodeID>] = [:]
    private static let topicMatchLimit = 10_000
    private var queues: [String: [NodeID: Int]] = [:]

    public init() {}

    // MARK: - Updates

    public func applyDelta(from node: NodeID, epoch: UInt64, version: UInt64, changes: [(Destination, Int)]) -> Outcome
    {
        var changedQueues = Set<String>()
        if let origin = origins[node] {
            if epoch < origin.epoch { return .stale }
            if epoch == origin.epoch {
                if version <= origin.version { return .duplicate(version: origin.version) }
                if version != origin.version + 1 { return .gap }
            } else if version != 1 {
                return .gap
            } else {
                // A new boot whose very first change this is: start it afresh.
                changedQueues = remove(node)
            }
        } else if version != 1 {
            return .gap
        }
        var origin = origins[node] ?? Origin(epoch: epoch, version: 0)
        for (key, count) in changes {
            set(key, count: count, of: node, in: &origin, changedQueues: &changedQueues)
        }
        origin.epoch = epoch
        origin.version = version
        origins[node] = origin
        return .applied(version: version, queues: changedQueues)
    }

    public func applySnapshot(
        from node: NodeID,
        epoch: UInt64,
        version: UInt64,
        entries: [(Destination, Int)]
    ) -> Outcome {
        if let origin = origins[node] {
            if epoch < origin.epoch || (epoch == origin.epoch && version < origin.version) { return .stale }
            if epoch == origin.epoch && version == origin.version { return .duplicate(version: version) }
        }
        var changedQueues = remove(node)
        var origin = Origin(epoch: epoch, version: version)
        for (key, count) in entries {
            set(key, count: count, of: node, in: &origin, changedQueues: &changedQueues)
        }
        origins[node] = origin
        return .applied(version: version, queues: changedQueues)
    }

    /// Forgets everything `node` announced, when it is declared dead or leaves.
    ///
    /// - Returns: the queues whose consumer counts changed.
    @discardableResult
    public func remove(_ node: NodeID) -> Set<String> {
        guard let origin = origins.removeValue(forKey: node) else { return [] }
        var changed = Set<String>()
        for key in origin.entries.keys {
            switch key {
            case .topic(let pattern):
                topics.remove(node, pattern: pattern)
                topicMatches.removeAll(keepingCapacity: true)
            case .queue(let name):
                queues[name]?[node] = nil
                if queues[name]?.isEmpty == true { queues[name] = nil }
                changed.insert(name)
            }
        }
        return changed
    }

    private func set(
        _ key: Destination,
        count: Int,
        of node: NodeID,
        in origin: inout Origin,
        changedQueues: inout Set<String>
    ) {
        let had = origin.entries[key] != nil
        origin.entries[key] = count > 0 ? count : nil
        switch key {
        case .topic(let pattern):
            if count > 0, !had { topics.insert(node, pattern: pattern) }
            if count == 0, had { topics.remove(node, pattern: pattern) }
            // Any change to the patterns may change any cached answer.
            if (count > 0) != had { topicMatches.removeAll(keepingCapacity: true) }
        case .queue(let name):
            queues[name, default: [:]][node] = count > 0 ? count : nil
            if queues[name]?.isEmpty == true { queues[name] = nil }
            changedQueues.insert(name)
        }
    }

    // MARK: - Queries

    /// Peers with a subscription pattern matching the topic `routingKey`, each once however
    /// many of its patterns match.
    public func peers(forTopic routingKey: String, into result: inout Set<NodeID>) {
        if let cached = topicMatches[routingKey] {
            result.formUnion(cached)
            return
        }
        var matched = Set<NodeID>()
        topics.matches(routingKey, into: &matched)
        if topicMatches.count >= Self.topicMatchLimit { topicMatches.removeAll(keepingCapacity: true) }
        topicMatches[routingKey] = matched
        result.formUnion(matched)
    }

    /// Consumer counts per peer for a queue.
    public func consumers(ofQueue name: String) -> [NodeID: Int] {
        queues[name] ?? [:]
    }

    /// The (epoch, version) held for `node`, if any.
    public func version(of node: NodeID) -> (epoch: UInt64, version: UInt64)? {
        origins[node].map { ($0.epoch, $0.version) }
    }

    /// The entries held for `node`, if any.
    public func entries(of node: NodeID) -> [Destination: Int]? { origins[node]?.entries }

    /// Every origin with its version and entries, for the admin API and tests.
    public var entriesByOrigin: [NodeID: (epoch: UInt64, version: UInt64, entries: [Destination: Int])] {
        origins.mapValues { ($0.epoch, $0.version, $0.entries) }
    }

    /// Total entries held over all origins.
    public var entryCount: Int { origins.values.reduce(0) { $0 + $1.entries.count } }
}
