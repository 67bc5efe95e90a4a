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
/// Two nodes that would both make the queue (each is in its placement, as it sees the members)
/// ask each other: the one whose name sorts first answers yes and makes it; the other passes
/// its writes to it. A node that wouldn't make it never says yes: its writes go by placement.
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
        /// It holds the queue (or will make it) but knows no leader of it: a replica cut off
        /// from its group, one removed from it that never heard, or a node about to make it.
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

    /// Tells this lookup's answers from a late one to an earlier lookup of the same queue.
    let id: UInt64
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

    init(id: UInt64, asking nodes: Set<String>, deadline: NIODeadline) {
        self.id = id
        unanswered = nodes
        self.deadline = deadline
    }

    mutating func add(_ write: Waiting) {
        waiting.append(write)
        if case .enqueue(let payload) = write.command { bytes += payload.readableBytes }
    }

    /// `node`'s answer; the outcome once it decides one.
    mutating func answered(by node: String, to id: UInt64, _ answer: Answer) -> Outcome? {
        guard id == self.id, unanswered.remove(node) != nil else { return nil }
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
    /// too. `makes`, `askerMakes`: whether each would make the queue if no node holds it (it
    /// is in the queue's placement, as it sees the members). Held when this node would and the
    /// asker wouldn't, or both would and this node's name sorts first: the asker passes its
    /// writes to it. Otherwise not, and when both would, this node passes its writes to the
    /// asker whose name sorts first once its lookup ends. Names order two nodes the same way on
    /// every node; where two nodes see different members, the hop count bounds what passes.
    mutating func answer(_ asker: String, askerMakes: Bool, me: ReplicaID, makes: Bool) -> Answer {
        guard makes else { return .notHeld }
        if !askerMakes || me.name < asker { return .heldWithoutLeader }
        if rankedFirst.map({ asker < $0 }) ?? true { rankedFirst = asker }
        return .notHeld
    }
}
