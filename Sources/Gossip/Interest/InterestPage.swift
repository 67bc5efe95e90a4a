import StompRouting

/// One page of the interest a node holds, for the admin API: its own entries first, then each
/// peer's in node id order, each origin's by destination (queues, then topics, by name).
///
/// At 100 nodes with thousands of entries each, the listing is too long to build whole for
/// every request. A page costs a pass over the origins' entry counts and, for each origin the
/// page cuts through, a selection over that origin's keys (``PageSelection``); only the
/// page's entries are copied out.
public struct InterestPage: Sendable {
    /// What one origin holds, as handed in: its whole table, not copied.
    public struct Held {
        public var node: NodeID
        public var epoch: UInt64
        public var version: UInt64
        public var entries: [Destination: Int]

        public init(node: NodeID, epoch: UInt64, version: UInt64, entries: [Destination: Int]) {
            self.node = node
            self.epoch = epoch
            self.version = version
            self.entries = entries
        }
    }

    /// One origin's part of the page.
    public struct Origin: Sendable {
        public var origin: NodeID
        public var epoch: UInt64
        public var version: UInt64
        /// Entries of this origin in all, on the page or not.
        public var total: Int
        /// The origin's entries on the page, in order.
        public var entries: [(destination: Destination, count: Int)]
    }

    /// Entries over all origins.
    public var total: Int
    /// This node's own interest: always here, with only its entries on the page.
    public var local: Origin
    /// The peers with entries on the page, in node id order.
    public var peers: [Origin]

    /// - Parameters:
    ///   - local: this node's own interest, with its local subscription counts; a topic is
    ///     shown as peers hold it, present (1).
    ///   - peers: what each peer told; in any order.
    ///   - offset: how many entries, over all origins in listing order, come before the page.
    ///   - limit: the most entries the page holds.
    public init(local: Held, peers: [Held], offset: Int, limit: Int) {
        let end = offset.addingReportingOverflow(limit)
        let pageEnd = end.overflow ? Int.max : end.partialValue
        var start = 0
        func part(of held: Held, presenceForTopics: Bool) -> Origin {
            let count = held.entries.count
            defer { start += count }
            let from = max(offset, start)
            let to = min(pageEnd, start + count)
            var entries: [(destination: Destination, count: Int)] = []
            if from < to {
                let keys = PageSelection.page(of: Array(held.entries.keys), offset: from - start, limit: to - from)
                entries = keys.map { key in
                    if presenceForTopics, case .topic = key { return (key, 1) }
                    return (key, held.entries[key] ?? 0)
                }
            }
            return Origin(origin: held.node, epoch: held.epoch, version: held.version, total: count, entries: entries)
        }
        self.local = part(of: local, presenceForTopics: true)
        // Sorting the peers costs O(m log m) for m members, a hundred or so: no entry is touched.
        self.peers = peers.sorted { $0.node < $1.node }.map { part(of: $0, presenceForTopics: false) }.filter {
            !$0.entries.isEmpty
        }
        self.total = start
    }
}
