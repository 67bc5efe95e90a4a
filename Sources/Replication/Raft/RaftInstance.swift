import NIOCore

/// One replica of a Raft group, without I/O: leader election with pre-vote and
/// check-quorum, log replication with pipelining, asynchronous persistence, snapshots,
/// single-server membership changes and leadership transfer.
///
/// The shell feeds events (``tick(now:)``, ``receive(_:from:now:)``, ``propose(_:now:)``,
/// ``persisted(through:term:)``, ``hardStatePersisted(_:)``, ...) on one thread, with the
/// current time, and carries out the returned ``Directive``s in order.
///
/// Persistence is asynchronous: the instance asks for entries and hard state to be written
/// and learns later, from the shell, what became durable. It never sends anything that relies
/// on unwritten state: a vote is held back until the hard state recording it is durable, a
/// follower acknowledges entries only once they are durable, and a leader counts itself
/// toward a commit only for what it has persisted (while sending entries to its followers
/// before its own write finishes, so the writes run in parallel). So **no directive ever has
/// to wait for another**: every `.send` may leave at once, and the shell may batch its writes
/// (group commit) as long as it performs them in the order asked and reports them in order.
///
/// Memory: the log holds the entries after the last snapshot base; per-peer state exists only
/// for members of the configuration (and only on a leader). Vote requests and responses from
/// replicas outside the configuration are dropped; a leader's messages (appendEntries,
/// installSnapshot, timeoutNow) are taken from anyone whose term is current, because a new
/// replica learns its configuration from them.
public struct RaftInstance: Sendable {
    public enum Role: String, Sendable, Equatable {
        case follower
        /// Asking for pre-votes, at the same term as before.
        case preCandidate
        case candidate
        case leader
    }

    /// What the shell must do. Every case may be carried out at once, in the order given.
    public enum Directive: Sendable, Equatable {
        /// Append `entries` to the durable log, after first dropping the entries after
        /// `truncatingAfter` when set (a conflicting suffix). Report durability with
        /// ``persisted(through:term:)`` giving the last entry's index and term.
        case persist(entries: [RaftEntry], truncatingAfter: UInt64?)
        /// Make this the durable hard state, then report it with ``hardStatePersisted(_:)``.
        case persistHardState(RaftHardState)
        /// Replace the whole durable log by this snapshot base (a follower installing the
        /// leader's snapshot), then report ``persisted(through:term:)`` with its index and term.
        case persistSnapshot(RaftSnapshotBase)
        /// Send to a replica over the inter-node link; losing it is fine.
        case send(RaftMessage, to: ReplicaID)
        /// These entries are committed: apply them, in order. Each index is given once per
        /// instance; a restarted instance starts after its snapshot base.
        case apply([RaftEntry])
        /// The state machine must reset to this snapshot (entries after it follow in `.apply`).
        case installSnapshot(RaftSnapshotBase)
        /// Role, term or known leader changed (for routing proposals and for the operator).
        case roleChanged(Role, term: UInt64, leader: ReplicaID?)
        /// The configuration in force changed (it is the latest appended, committed or not).
        case membersChanged(RaftMembers)
    }

    /// What became of a proposal.
    public enum ProposeResult: Sendable, Equatable {
        /// Appended at `index` in `term`: it is committed when an `.apply` hands over an entry
        /// at `index` with this `term`; if that index comes with another term, it was lost.
        case accepted(index: UInt64, term: UInt64)
        case notLeader(leaderHint: ReplicaID?)
        case rejected(Rejection)
    }

    public enum Rejection: Sendable, Equatable {
        /// A leadership transfer is under way.
        case transferring
        /// A configuration change is not committed yet, or the leader has not committed an
        /// entry of its term yet; retry later.
        case changeInProgress
        /// The change doesn't apply to the current configuration.
        case invalidChange
        /// The learner to promote (or transfer target) is too far behind the leader.
        case notCaughtUp
    }

    /// The single-server changes a leader accepts, one at a time (dissertation §4.1).
    public enum MemberChange: Sendable, Equatable {
        case addLearner(ReplicaID)
        case promote(ReplicaID)
        case remove(ReplicaID)
    }

    /// A leader's view of one follower, for the operator's "replica lag".
    public struct Progress: Sendable, Equatable {
        /// The follower's log matches the leader's through here, durably.
        public var matchIndex: UInt64
        /// The next entry to send.
        public var nextIndex: UInt64
        /// When the follower last answered.
        public var lastHeard: NIODeadline
        public var isLearner: Bool
    }

    /// A leader's bookkeeping per follower.
    struct Peer: Sendable {
        var match: UInt64 = 0
        var next: UInt64
        /// Probing: one message at a time until a success tells where the logs agree;
        /// otherwise replicating, with `next` advanced optimistically.
        var probing = true
        /// Last index of each appendEntries in flight.
        var inFlight: [UInt64] = []
        var inFlightSince: NIODeadline
        var lastHeard: NIODeadline
        /// The snapshot base index sent, until acknowledged or timed out.
        var snapshotIndex: UInt64?
        var snapshotSentAt: NIODeadline
    }

    public let id: ReplicaID
    public let settings: RaftSettings
    public internal(set) var role: Role = .follower
    public internal(set) var term: UInt64
    public internal(set) var votedFor: ReplicaID?
    /// The current leader as far as this replica knows (itself when leader).
    public internal(set) var leader: ReplicaID?
    public internal(set) var commitIndex: UInt64
    /// Entries handed to the state machine so far (through `.apply` or a snapshot).
    public internal(set) var appliedIndex: UInt64
    /// The local log is durable (and as in memory) through here.
    public internal(set) var persistedIndex: UInt64
    /// The configuration in force: the latest appended.
    public internal(set) var members: RaftMembers

    var log: RaftLog
    var random: any RandomNumberGenerator & Sendable
    var electionDeadline: NIODeadline
    /// When a leader of the current term was last heard from (followers).
    var lastLeaderContact: NIODeadline?
    var votes: Set<ReplicaID> = []
    /// The hard state last asked to be persisted.
    var requestedHardState: RaftHardState
    /// The hard state last reported durable.
    var durableHardState: RaftHardState
    /// The latest time an event brought, for the events that come without one (durability
    /// reports).
    var clock: NIODeadline
    /// A granted vote waiting for its hard state to be durable.
    var heldVote: (candidate: ReplicaID, term: UInt64)?
    /// Follower: the log matches the current leader's through here (learned this term).
    var verifiedIndex: UInt64 = 0
    /// Follower: the match index last reported to the leader.
    var reportedIndex: UInt64 = 0
    var peers: [ReplicaID: Peer] = [:]
    var nextHeartbeat: NIODeadline
    var transfer: (target: ReplicaID, deadline: NIODeadline)?
    /// Index of the entry holding ``members`` (the base's index when from the snapshot).
    public internal(set) var membersIndex: UInt64
    /// A replica made for a leader's entries (a newcomer, or one taken back after it dropped
    /// its copy) holds only the start of the log until it caught up with the leader's commit
    /// index: meanwhile it neither votes nor stands, so that a configuration of the log's past
    /// naming it can't make its vote count for a candidate lacking what came after.
    public internal(set) var catchingUp: Bool

    /// - Parameters:
    ///   - hardState: as last reported durable.
    ///   - snapshot: the durable snapshot base, if the log was ever compacted.
    ///   - entries: the durable entries after it, in order.
    ///   - initialMembers: the configuration of a new group (used when there is no snapshot).
    ///   - catchingUp: made for a leader's entries (``catchingUp``).
    public init(
        id: ReplicaID,
        hardState: RaftHardState = RaftHardState(),
        snapshot: RaftSnapshotBase? = nil,
        entries: [RaftEntry] = [],
        initialMembers: RaftMembers,
        catchingUp: Bool = false,
        settings: RaftSettings = RaftSettings(),
        now: NIODeadline,
        random: any RandomNumberGenerator & Sendable = SystemRandomNumberGenerator()
    ) {
        self.id = id
        self.settings = settings
        let base = snapshot ?? RaftSnapshotBase(index: 0, term: 0, members: initialMembers, state: ByteBuffer())
        self.log = RaftLog(base: base, entries: entries)
        self.term = hardState.term
        self.votedFor = hardState.votedFor
        self.requestedHardState = hardState
        self.durableHardState = hardState
        self.clock = now
        self.commitIndex = base.index
        self.appliedIndex = base.index
        self.persistedIndex = log.lastIndex
        (self.members, self.membersIndex) = log.latestMembers
        self.catchingUp = catchingUp
        self.random = random
        self.electionDeadline = now
        self.nextHeartbeat = now
        resetElectionDeadline(now: now)
    }

    // MARK: - Views

    public var lastIndex: UInt64 { log.lastIndex }
    public var lastTerm: UInt64 { log.lastTerm }
    /// The index and term the log was last compacted to.
    public var snapshotIndex: UInt64 { log.base.index }
    /// The base the log was last compacted to (index 0 and the first members when never).
    public var snapshotBase: RaftSnapshotBase { log.base }
    public var hardState: RaftHardState { RaftHardState(term: term, votedFor: votedFor) }
    public var isTransferringLeadership: Bool { transfer != nil }

    /// The entry at `index`, while it is in memory (after the snapshot base).
    public func entry(at index: UInt64) -> RaftEntry? { log.entry(at: index) }

    /// Per follower, on a leader (empty otherwise).
    public var progress: [ReplicaID: Progress] {
        peers.reduce(into: [:]) { result, element in
            result[element.key] = Progress(
                matchIndex: element.value.match,
                nextIndex: element.value.next,
                lastHeard: element.value.lastHeard,
                isLearner: !members.voters.contains(element.key)
            )
        }
    }

    // MARK: - Events

    /// Time passed: election timeouts, heartbeats, check-quorum, retries.
    public mutating func tick(now: NIODeadline) -> [Directive] {
        event(now: now) { instance, directives in
            switch instance.role {
            case .leader:
                instance.leaderTick(now: now, into: &directives)
            case .follower, .preCandidate, .candidate:
                guard now >= instance.electionDeadline else { return }
                if instance.members.voters.contains(instance.id), !instance.catchingUp {
                    instance.startPreVote(now: now, into: &directives)
                } else {
                    instance.resetElectionDeadline(now: now)
                }
            }
        }
    }

    /// A message from another replica of the group.
    public mutating func receive(_ message: RaftMessage, from sender: ReplicaID, now: NIODeadline) -> [Directive] {
        event(now: now) { instance, directives in
            instance.dispatch(message, from: sender, now: now, into: &directives)
        }
    }

    /// The log is durable through the entry at `index`, whose term is `term` (a report about
    /// entries since replaced is recognised by the term and ignored).
    public mutating func persisted(through index: UInt64, term entryTerm: UInt64) -> [Directive] {
        event { instance, directives in
            guard index > instance.persistedIndex, instance.log.term(at: index) == entryTerm else { return }
            instance.persistedIndex = index
            if instance.role == .leader {
                instance.advanceCommit(into: &directives)
            } else {
                instance.reportMatch(into: &directives)
            }
        }
    }

    /// `state` is durable: votes recorded in it (or made obsolete by a later term) may go out.
    public mutating func hardStatePersisted(_ state: RaftHardState) -> [Directive] {
        event { instance, directives in
            if state.term >= instance.durableHardState.term {
                instance.durableHardState = state
            }
            if let held = instance.heldVote,
                state.term > held.term || (state.term == held.term && state.votedFor == held.candidate)
            {
                instance.heldVote = nil
                directives.append(.send(.voteResponse(term: held.term, granted: true), to: held.candidate))
            }
            if instance.role == .candidate, state.term == instance.term, state.votedFor == instance.id {
                instance.votes.insert(instance.id)
                instance.countVotes(into: &directives)
            }
        }
    }

    // MARK: - Shared transitions

    /// Runs an event and reports what it changed of the hard state, the role and the
    /// configuration first, so the shell sees them before the consequences.
    mutating func event(
        now: NIODeadline? = nil,
        _ body: (inout RaftInstance, inout [Directive]) -> Void
    ) -> [Directive] {
        if let now, now > clock { clock = now }
        let before = (role: role, term: term, leader: leader, members: members)
        var directives: [Directive] = []
        body(&self, &directives)
        var changes: [Directive] = []
        if hardState != requestedHardState {
            requestedHardState = hardState
            changes.append(.persistHardState(hardState))
        }
        if role != before.role || term != before.term || leader != before.leader {
            changes.append(.roleChanged(role, term: term, leader: leader))
        }
        if members != before.members {
            changes.append(.membersChanged(members))
        }
        return changes + directives
    }

    mutating func resetElectionDeadline(now: NIODeadline) {
        let timeout = Int64.random(in: settings.electionTimeout, using: &random)
        electionDeadline = now + .milliseconds(timeout)
    }

    /// Follows `leader` (or nobody yet) in `newTerm`, which is at least the current term.
    mutating func becomeFollower(term newTerm: UInt64, leader newLeader: ReplicaID?, now: NIODeadline) {
        // What was verified against a leader holds only for that leader in that term.
        if newTerm > term || newLeader != leader || role != .follower {
            verifiedIndex = 0
            reportedIndex = 0
        }
        if newTerm > term {
            term = newTerm
            votedFor = nil
        }
        role = .follower
        leader = newLeader
        votes = []
        peers = [:]
        transfer = nil
        resetElectionDeadline(now: now)
    }

    /// Hands newly committed entries to the state machine.
    mutating func applyCommitted(into directives: inout [Directive]) {
        guard commitIndex > appliedIndex else { return }
        directives.append(.apply(log.entries(from: appliedIndex + 1, through: commitIndex)))
        appliedIndex = commitIndex
    }

    /// Takes the configuration from the log after it changed (appended or truncated).
    mutating func refreshMembers() {
        (members, membersIndex) = log.latestMembers
    }
}
