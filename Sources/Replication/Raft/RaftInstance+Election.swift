import NIOCore

extension RaftInstance {
    /// Starts an election (its pre-vote) now rather than at the election timeout: for a new
    /// group's first replica, which knows that no leader can exist yet, so that the group's
    /// first write doesn't wait a timeout for one. Nothing on a leader, on a replica that
    /// knows a leader, or on one that doesn't vote.
    public mutating func electNow(now: NIODeadline) -> [Directive] {
        event(now: now) { instance, directives in
            guard instance.role == .follower, instance.leader == nil, instance.members.voters.contains(instance.id),
                !instance.catchingUp
            else { return }
            instance.startPreVote(now: now, into: &directives)
        }
    }

    /// Asks the voters whether they would vote for this replica, without touching the term:
    /// a replica that can't win (cut off, or with a stale log) then never bumps the group's
    /// term (dissertation §9.6).
    mutating func startPreVote(now: NIODeadline, into directives: inout [Directive]) {
        role = .preCandidate
        leader = nil
        votes = [id]
        transfer = nil
        peers = [:]
        resetElectionDeadline(now: now)
        for voter in members.voters.sorted() where voter != id {
            directives.append(
                .send(.preVote(term: term + 1, lastIndex: log.lastIndex, lastTerm: log.lastTerm), to: voter)
            )
        }
        countVotes(into: &directives)
    }

    /// A real election in the next term. This replica's own vote counts once the hard state
    /// recording it is durable (see ``hardStatePersisted(_:)``).
    mutating func campaign(transfer: Bool, now: NIODeadline, into directives: inout [Directive]) {
        term += 1
        votedFor = id
        role = .candidate
        leader = nil
        votes = []
        heldVote = nil
        peers = [:]
        self.transfer = nil
        resetElectionDeadline(now: now)
        for voter in members.voters.sorted() where voter != id {
            directives.append(
                .send(
                    .vote(term: term, lastIndex: log.lastIndex, lastTerm: log.lastTerm, transfer: transfer),
                    to: voter
                )
            )
        }
    }

    /// Moves on when a majority of voters said yes.
    mutating func countVotes(into directives: inout [Directive]) {
        guard members.isQuorum(votes) else { return }
        switch role {
        case .preCandidate:
            campaign(transfer: false, now: clock, into: &directives)
        case .candidate:
            becomeLeader(now: clock, into: &directives)
        case .follower, .leader:
            break
        }
    }

    /// Whether this replica may help elect a candidate whose log ends at `lastIndex` in
    /// `lastTerm`: not while it catches up (``catchingUp``); then the candidate's log must be
    /// at least as up to date as this one's (§5.4.1). (A replica that never took part in the
    /// group is turned away earlier, in ``dispatch(_:from:now:into:)``.)
    func mayVote(forLastIndex lastIndex: UInt64, lastTerm: UInt64) -> Bool {
        guard !catchingUp else { return false }
        return lastTerm > log.lastTerm || (lastTerm == log.lastTerm && lastIndex >= log.lastIndex)
    }

    mutating func receivePreVote(
        term candidateTerm: UInt64,
        lastIndex: UInt64,
        lastTerm: UInt64,
        from candidate: ReplicaID,
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        let granted =
            candidateTerm > term && !inLeaderLease(now: now) && mayVote(forLastIndex: lastIndex, lastTerm: lastTerm)
        directives.append(
            .send(.preVoteResponse(term: granted ? candidateTerm : term, granted: granted), to: candidate)
        )
    }

    /// A vote request in the current term. A granted vote goes out only once durable.
    mutating func receiveVote(
        lastIndex: UInt64,
        lastTerm: UInt64,
        from candidate: ReplicaID,
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        guard role != .leader, votedFor == nil || votedFor == candidate,
            mayVote(forLastIndex: lastIndex, lastTerm: lastTerm)
        else {
            directives.append(.send(.voteResponse(term: term, granted: false), to: candidate))
            return
        }
        votedFor = candidate
        resetElectionDeadline(now: now)
        if durableHardState == hardState {
            // A repeated request for a vote already durable.
            directives.append(.send(.voteResponse(term: term, granted: true), to: candidate))
        } else {
            heldVote = (candidate, term)
        }
    }

    mutating func becomeLeader(now: NIODeadline, into directives: inout [Directive]) {
        role = .leader
        leader = id
        votes = []
        transfer = nil
        peers = [:]
        for member in members.all where member != id {
            peers[member] = newPeer(now: now)
        }
        nextHeartbeat = now + settings.heartbeatInterval
        // Commits the entries of earlier terms, by committing one of this term (§5.4.2).
        appendAsLeader(.noop, into: &directives)
        for peer in peers.keys.sorted() {
            sendAppends(to: peer, now: now, into: &directives)
        }
    }

    func newPeer(now: NIODeadline) -> Peer {
        Peer(next: log.lastIndex + 1, inFlightSince: now, lastHeard: now, snapshotSentAt: now)
    }
}
