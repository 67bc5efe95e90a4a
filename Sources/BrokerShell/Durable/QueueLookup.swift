import NIOCore
import Replication

/// Writes for a durable queue this node doesn't hold, held back while it asks every other
/// live node whether one of them holds the queue.
///
/// Placement picks a new queue's replicas among the members up now, so a queue made while
/// fewer nodes were up (a cold start, one node first) may live on nodes that placement no
/// longer ranks first. Made again from placement, it would form a second group of the same
/// name, whose election could overrule the first and lose what it committed. So the writes
/// wait (at most ``DurableQueues`` `lookupTimeout`) until every node asked said no, and go to
/// the first that said yes.
///
/// Two nodes making the same queue at once ask each other: the one whose name sorts first
/// answers yes and makes it; the other passes its writes to it.
struct QueueLookup {
    /// A write that waits for the lookup.
    struct Waiting {
        var command: QueueCommand
        var admission: WriteAheadLog.Admission
        var hops: UInt8
        var token: UInt64?
    }

    /// What a node answers.
    enum Answer: UInt8, Equatable {
        case notHeld = 0
        /// It holds the queue (or makes it, as its name sorts first) but knows no leader of it:
        /// a replica cut off from its group, or one removed from it that never heard.
        case heldWithoutLeader = 1
        /// It holds the queue and knows who leads it: the writes go the shortest way.
        case heldWithLeader = 2
    }

    /// Where the waiting writes go.
    enum Outcome: Equatable {
        /// To `node`, which holds the queue, or makes it as its name sorts first.
        case passTo(String)
        /// No node holds it: a new message or durable subscription makes it.
        case heldNowhere
    }

    /// Nodes asked that have not answered yet.
    private(set) var unanswered: Set<String>
    let deadline: NIODeadline
    private(set) var waiting: [Waiting] = []
    /// The bytes of the messages among ``waiting``.
    private(set) var bytes = 0
    /// A node that makes this queue too and whose name sorts before this one's: it makes it.
    private var rankedFirst: String?
    /// The first node that holds the queue but knows no leader of it: the writes go to it
    /// only if no node that does answers.
    private var holderWithoutLeader: String?

    init(asking nodes: Set<String>, deadline: NIODeadline) {
        unanswered = nodes
        self.deadline = deadline
    }

    mutating func add(_ write: Waiting) {
        waiting.append(write)
        if case .enqueue(let payload) = write.command { bytes += payload.readableBytes }
    }

    /// `node`'s answer; the outcome once it decides one.
    mutating func answered(by node: String, _ answer: Answer) -> Outcome? {
        guard unanswered.remove(node) != nil else { return nil }
        switch answer {
        case .heldWithLeader: return .passTo(node)
        case .heldWithoutLeader: holderWithoutLeader = holderWithoutLeader ?? node
        case .notHeld: break
        }
        return unanswered.isEmpty ? timedOut() : nil
    }

    /// The outcome when the nodes that did not answer are taken to hold nothing (down, or of
    /// a build that doesn't know lookups).
    func timedOut() -> Outcome {
        (holderWithoutLeader ?? rankedFirst).map(Outcome.passTo) ?? .heldNowhere
    }

    /// What this node, which doesn't hold the queue either, answers `asker`, which looks it up
    /// too: held when this node's name sorts first (it makes the queue, and the asker passes
    /// its writes to it); otherwise not, and once its lookup ends this node passes its writes
    /// to the asker whose name sorts first. Names order every pair of nodes the same way on
    /// every node, whatever members each sees, so writes only ever pass to a holder or to a
    /// name that sorts first: they can't go round in a circle.
    mutating func answer(_ asker: String, me: ReplicaID) -> Answer {
        if me.name < asker { return .heldWithoutLeader }
        if rankedFirst.map({ asker < $0 }) ?? true { rankedFirst = asker }
        return .notHeld
    }
}
