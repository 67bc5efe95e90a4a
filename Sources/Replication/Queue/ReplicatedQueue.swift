import NIOCore

/// One durable queue on one replica: its Raft instance, the queue state it applies committed
/// entries to, and the bookkeeping between them and the log. Sans-IO: the node's shell writes
/// what it is told to the write-ahead log, reports back when that is durable, and carries the
/// messages over the cluster link.
public struct ReplicatedQueue: Sendable {
    public enum Effect: Sendable, Equatable {
        /// Append these records to the write-ahead log, in order with every earlier `write`;
        /// once durable, report `durability` (if any) through ``written(_:now:)``.
        case write([ReplicaRecord], then: Durability?)
        case send(RaftMessage, to: ReplicaID)
        /// A proposal made here is committed: on disk on a majority, applied here.
        case committed(token: UInt64)
        /// A proposal made here will never commit (another leader's entry took its place).
        case lost(token: UInt64)
        /// Messages newly ready, in order, for the leader to hand out.
        case ready([UInt64])
        case roleChanged(RaftInstance.Role, term: UInt64, leader: ReplicaID?)
    }

    /// What a `write` makes durable, for Raft to hear.
    public enum Durability: Sendable, Equatable {
        case entries(through: UInt64, term: UInt64)
        case hardState(RaftHardState)
    }

    public let group: String
    public private(set) var raft: RaftInstance
    public private(set) var state: DurableQueueState
    /// Proposals made here, by index, until their entry is applied (or replaced).
    private var proposals: [UInt64: (term: UInt64, token: UInt64)] = [:]
    /// The term whose leadership already marked the messages held before it as redelivered.
    private var markedTerm: UInt64 = 0
    /// Committed entries whose command this build could not read (a newer node's), skipped.
    public private(set) var unreadableCommands = 0

    /// - Parameters:
    ///   - recovered: what the log held for the group, if anything.
    ///   - members: the configuration of a new group (ignored once the log holds one).
    ///   - catchingUp: made for a leader's entries (``RaftInstance/catchingUp``).
    public init(
        group: String,
        id: ReplicaID,
        recovered: ReplicaLogRecovery.Group?,
        members: RaftMembers,
        catchingUp: Bool = false,
        settings: RaftSettings = RaftSettings(),
        now: NIODeadline,
        random: any RandomNumberGenerator & Sendable = SystemRandomNumberGenerator()
    ) {
        self.group = group
        let snapshot = recovered?.snapshot
        self.raft = RaftInstance(
            id: id,
            hardState: recovered?.hardState ?? RaftHardState(),
            snapshot: snapshot,
            entries: recovered?.entries ?? [],
            initialMembers: members,
            catchingUp: catchingUp,
            settings: settings,
            now: now,
            random: random
        )
        self.state = snapshot.flatMap { DurableQueueState(snapshot: $0.state, at: $0.index) } ?? DurableQueueState()
    }

    public mutating func tick(now: NIODeadline) -> [Effect] {
        carryOut(raft.tick(now: now))
    }

    /// A new queue's first replica: elects a leader now (``RaftInstance/electNow(now:)``).
    public mutating func electNow(now: NIODeadline) -> [Effect] {
        carryOut(raft.electNow(now: now))
    }

    public mutating func receive(_ message: RaftMessage, from sender: ReplicaID, now: NIODeadline) -> [Effect] {
        carryOut(raft.receive(message, from: sender, now: now))
    }

    /// Whether this replica may hand messages out: it leads, and it applied the first entry of
    /// its term, so everything committed before (settles included) is applied here. A new
    /// leader's state may lag what earlier leaders committed until then.
    public var mayDispatch: Bool { raft.role == .leader && markedTerm == raft.term }

    /// Proposes `command`; `token` (if any) comes back in `.committed` or `.lost`.
    public mutating func propose(
        _ command: QueueCommand,
        token: UInt64?,
        now: NIODeadline
    ) -> (result: RaftInstance.ProposeResult, effects: [Effect]) {
        let (result, directives) = raft.propose(command.encoded, now: now)
        if case .accepted(let index, let term) = result, let token { proposals[index] = (term, token) }
        return (result, carryOut(directives))
    }

    /// On the leader: hands leadership to `target` (a node that drains). Proposals are refused
    /// until it took over, or the transfer gave up.
    public mutating func transferLeadership(
        to target: ReplicaID,
        now: NIODeadline
    ) -> (result: RaftInstance.TransferResult, effects: [Effect]) {
        let (result, directives) = raft.transferLeadership(to: target, now: now)
        return (result, carryOut(directives))
    }

    /// On the leader: one single-server change of the replica set (see ``ReplicaSetPlan``).
    public mutating func proposeMembers(
        _ change: RaftInstance.MemberChange,
        now: NIODeadline
    ) -> (result: RaftInstance.ProposeResult, effects: [Effect]) {
        let (result, directives) = raft.proposeMembers(change, now: now)
        return (result, carryOut(directives))
    }

    /// On the leader: copies forward up to `limit` of the messages whose payload sits in an
    /// entry before `index`, so that the log segments holding those entries can be removed.
    public mutating func moveMessages(before index: UInt64, limit: Int, now: NIODeadline) -> [Effect] {
        guard raft.role == .leader else { return [] }
        var effects: [Effect] = []
        for message in state.messagesHeld(before: index).prefix(limit) {
            effects += propose(.move(id: message.id, payload: message.payload), token: nil, now: now).effects
        }
        return effects
    }

    /// What the log needs written again for the segment holding the group's hard state and
    /// snapshot base to go: the two, as they stand.
    public var checkpoint: [ReplicaRecord] {
        [.hardState(group: group, raft.hardState), .snapshot(group: group, raft.snapshotBase, keepsLaterEntries: true)]
    }

    /// A `write` is durable.
    public mutating func written(_ durability: Durability) -> [Effect] {
        switch durability {
        case .entries(let index, let term): carryOut(raft.persisted(through: index, term: term))
        case .hardState(let state): carryOut(raft.hardStatePersisted(state))
        }
    }

    /// Compacts the log through the last entry the queue no longer needs, when that moved at
    /// least `minimumEntries` past the last compaction. The snapshot is a handful of ids.
    public mutating func compact(minimumEntries: UInt64 = 1_024) -> [Effect] {
        // 0 while messages from before this replica's snapshot await their moves.
        let firstNeeded = min(state.firstNeededIndex, state.appliedIndex + 1)
        guard firstNeeded > 0 else { return [] }
        let through = firstNeeded - 1
        guard through >= raft.snapshotIndex + minimumEntries,
            let base = raft.compact(through: through, state: state.snapshot(through: through))
        else { return [] }
        return [.write([.snapshot(group: group, base, keepsLaterEntries: true)], then: nil)]
    }

    private mutating func carryOut(_ directives: [RaftInstance.Directive]) -> [Effect] {
        var effects: [Effect] = []
        for directive in directives {
            switch directive {
            case .persist(let entries, let truncatingAfter):
                var records: [ReplicaRecord] = []
                if let truncatingAfter { records.append(.truncate(group: group, after: truncatingAfter)) }
                if !entries.isEmpty { records.append(.entries(group: group, entries)) }
                let last = entries.last.map { Durability.entries(through: $0.index, term: $0.term) }
                effects.append(.write(records, then: last))
            case .persistHardState(let hardState):
                effects.append(.write([.hardState(group: group, hardState)], then: .hardState(hardState)))
            case .persistSnapshot(let base):
                effects.append(
                    .write(
                        [.snapshot(group: group, base, keepsLaterEntries: false)],
                        then: .entries(through: base.index, term: base.term)
                    )
                )
            case .send(let message, let peer):
                effects.append(.send(message, to: peer))
            case .apply(let entries):
                apply(entries, into: &effects)
            case .installSnapshot(let base):
                state = DurableQueueState(snapshot: base.state, at: base.index) ?? DurableQueueState()
                for index in proposals.keys where index <= base.index {
                    // Committed or replaced: the snapshot cannot tell which; the shell's
                    // timeout answers the client.
                    proposals[index] = nil
                }
            case .roleChanged(let role, let term, let leader):
                effects.append(.roleChanged(role, term: term, leader: leader))
            case .membersChanged:
                break
            }
        }
        return effects
    }

    private mutating func apply(_ entries: [RaftEntry], into effects: inout [Effect]) {
        var ready: [UInt64] = []
        for entry in entries {
            if raft.role == .leader && entry.term == raft.term && markedTerm < raft.term {
                // The first entry of this leader's term: whatever the queue held before may
                // have gone out under an earlier leader.
                markedTerm = raft.term
                state.markAllRedelivered()
                ready = []
                ready.append(contentsOf: state.inOrder.map(\.id))
            }
            guard entry.index > state.appliedIndex else { continue }
            if case .command(let bytes) = entry.content, let command = QueueCommand(decoding: bytes) {
                ready.append(contentsOf: state.apply(command, at: entry.index))
            } else {
                if case .command = entry.content { unreadableCommands += 1 }
                state.skip(to: entry.index)
            }
            if let proposal = proposals.removeValue(forKey: entry.index) {
                effects.append(
                    proposal.term == entry.term ? .committed(token: proposal.token) : .lost(token: proposal.token)
                )
            }
        }
        if !ready.isEmpty { effects.append(.ready(ready)) }
    }
}
