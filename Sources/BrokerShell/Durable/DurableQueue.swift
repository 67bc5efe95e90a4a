import DequeModule
import Replication

/// One durable queue on this node: its replica, and what the node's dispatch keeps beside it.
/// Which committed messages the router holds is this node's business (the replica's state
/// says which are unsettled, not who has them), so it lives here, not in the replicated state.
final class DurableQueue {
    /// A proposal made before this replica led, made once it does (or dropped at its deadline).
    struct Parked {
        var command: QueueCommand
        var token: UInt64?
        var admission: WriteAheadLog.Admission

        var bytes: Int {
            if case .enqueue(let payload) = command { return payload.readableBytes }
            return 0
        }
    }

    let name: String
    var replica: ReplicatedQueue
    /// Committed messages not yet handed to the router, in the order they go.
    private(set) var ready = Deque<UInt64>()
    private var readySet = Set<UInt64>()
    /// Handed to this node's router and neither settled nor given back yet.
    var out = Set<UInt64>()
    /// On the leader: sent to another node's consumers, by node, until that node settles or
    /// gives them back (or the link they went over goes).
    var outAt: [String: Set<UInt64>] = [:]
    /// The link each node's `outAt` went over (``ReplicationLink/linkNumber(to:)``).
    var outAtLink: [String: UInt64] = [:]
    /// Where the next message goes among the nodes with consumers, round robin.
    var nextNode = 0
    private(set) var parked: [Parked] = []
    /// Bytes of the messages among `parked`, for the node's bound on them.
    private(set) var parkedBytes = 0
    /// Proposals of this queue awaiting their outcome, for failing them together.
    var tokens = Set<UInt64>()
    /// Why the queue takes no more writes: a write of its log failed, so its replica's view of
    /// what is durable can't be trusted until the node restarts and reads the log back.
    var broken: String?
    /// On the leader: replicas it removed from the replica set, and how many more times to
    /// tell each it may drop its copy.
    var departed: [ReplicaID: Int] = [:]
    /// The topic pattern this node's router was last told to enqueue messages of in this queue.
    var announcedBinding: String?

    init(name: String, replica: ReplicatedQueue) {
        self.name = name
        self.replica = replica
    }

    /// Messages committed (or requeued) and ready: queued behind the others, once each.
    func makeReady(_ ids: [UInt64]) {
        for id in ids where !out.contains(id) && readySet.insert(id).inserted { ready.append(id) }
    }

    /// Messages the router gave back without delivering them: first in line again.
    func returnToFront(_ ids: [UInt64]) {
        for id in ids.reversed() where readySet.insert(id).inserted { ready.prepend(id) }
    }

    func park(_ entry: Parked) {
        parked.append(entry)
        parkedBytes += entry.bytes
    }

    /// Everything parked, to be made (or parked again).
    func takeParked() -> [Parked] {
        defer {
            parked.removeAll()
            parkedBytes = 0
        }
        return parked
    }

    /// Drops the parked entries `isStale` says no one waits for any more.
    func dropParked(where isStale: (Parked) -> Bool) {
        parked.removeAll(where: isStale)
        parkedBytes = parked.reduce(0) { $0 + $1.bytes }
    }

    /// No longer the leader: the next one hands the messages out.
    func forgetReady() {
        ready.removeAll()
        readySet.removeAll()
    }

    func nextReady() -> UInt64? {
        guard let id = ready.popFirst() else { return nil }
        readySet.remove(id)
        return id
    }
}
