import Replication
import StompRouting

extension DurableQueues {
    /// One durable queue as this node sees it: the admin API's `/v1/durable-queues` row.
    public struct QueueView: Sendable, Equatable {
        public var name: String
        /// This replica's Raft role: `leader`, `follower`, `preCandidate` or `candidate`.
        public var role: String
        public var leader: String?
        public var term: UInt64
        /// The voters of the queue's configuration, by node id.
        public var replicas: [String]
        /// Replicas catching up before they vote (a newcomer, or a replacement).
        public var learners: [String]
        public var commitIndex: UInt64
        public var lastIndex: UInt64
        /// On the leader: the entries each other replica does not hold yet.
        public var lag: [String: UInt64]
        /// Messages not yet acknowledged (ready and out together).
        public var messages: Int
        /// Messages waiting for a consumer.
        public var ready: Int
        /// Messages handed to consumers (here or, on the leader, on other nodes) and not yet
        /// acknowledged.
        public var unacked: Int
        /// Bytes of the messages not yet acknowledged.
        public var bytes: Int
        /// Why the queue takes no writes, if it doesn't (until the node restarts).
        public var problem: String?
    }

    /// One page of the durable queues held here, by name.
    public func queuePage(offset: Int, limit: Int) -> RouterSnapshot.Page<QueueView> {
        let names = PageSelection.page(of: Array(queues.keys), offset: offset, limit: limit)
        return RouterSnapshot.Page(total: queues.count, items: names.compactMap { queues[$0].map(view) })
    }

    /// The queues this node leads, for their per-queue gauges.
    var ledQueueViews: [QueueView] {
        queues.values.filter { $0.replica.raft.role == .leader }.map(view)
    }

    private func view(_ queue: DurableQueue) -> QueueView {
        let raft = queue.replica.raft
        var lag: [String: UInt64] = [:]
        if raft.role == .leader {
            for (replica, progress) in raft.progress where replica != raft.id {
                lag[replica.name] = raft.lastIndex - min(progress.matchIndex, raft.lastIndex)
            }
        }
        // Settles made on other nodes are dropped from `outAt` lazily (``pump``): only the
        // messages the queue still holds are out there.
        let state = queue.replica.state
        let outThere = queue.outAt.values.reduce(0) { sum, ids in sum + ids.count { state.message($0) != nil } }
        return QueueView(
            name: queue.name,
            role: raft.role.rawValue,
            leader: raft.leader?.name,
            term: raft.term,
            replicas: raft.members.voters.map(\.name).sorted(),
            learners: raft.members.learners.map(\.name).sorted(),
            commitIndex: raft.commitIndex,
            lastIndex: raft.lastIndex,
            lag: lag,
            messages: queue.replica.state.count,
            ready: queue.ready.count,
            unacked: queue.out.count + outThere,
            bytes: queue.replica.state.bytes,
            problem: queue.broken
        )
    }
}
