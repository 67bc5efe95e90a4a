import NIOCore

extension RaftInstance {
    /// What became of a leadership transfer request.
    public enum TransferResult: Sendable, Equatable {
        /// Proposals are refused until the target takes over or the transfer times out.
        case started
        case notLeader(leaderHint: ReplicaID?)
        case rejected(Rejection)
    }

    /// Proposes a single-server configuration change. The new configuration is in force as
    /// soon as it is appended (dissertation §4.1), so only one may be uncommitted at a time;
    /// and only once this leader committed an entry of its own term (the fix of §4.1's bug).
    /// A leader that removes itself manages the group until the change commits, then steps
    /// down and asks the most up-to-date voter to take over.
    public mutating func proposeMembers(
        _ change: MemberChange,
        now: NIODeadline
    ) -> (
        result: ProposeResult, directives: [Directive]
    ) {
        var result = ProposeResult.notLeader(leaderHint: leader)
        let directives = event(now: now) { instance, directives in
            guard instance.role == .leader else { return }
            guard instance.transfer == nil else {
                result = .rejected(.transferring)
                return
            }
            guard instance.membersIndex <= instance.commitIndex,
                instance.log.term(at: instance.commitIndex) == instance.term
            else {
                result = .rejected(.changeInProgress)
                return
            }
            var next = instance.members
            switch change {
            case .addLearner(let replica):
                guard !next.contains(replica) else {
                    result = .rejected(.invalidChange)
                    return
                }
                next.learners.insert(replica)
            case .promote(let replica):
                guard next.learners.contains(replica), let peer = instance.peers[replica] else {
                    result = .rejected(.invalidChange)
                    return
                }
                guard peer.match + UInt64(instance.settings.maxEntriesPerAppend) >= instance.log.lastIndex else {
                    result = .rejected(.notCaughtUp)
                    return
                }
                next.learners.remove(replica)
                next.voters.insert(replica)
            case .remove(let replica):
                guard next.contains(replica), next.voters != [replica] else {
                    result = .rejected(.invalidChange)
                    return
                }
                next.voters.remove(replica)
                next.learners.remove(replica)
            }
            for added in next.all where added != instance.id && instance.peers[added] == nil {
                instance.peers[added] = instance.newPeer(now: now)
            }
            for removed in instance.peers.keys where !next.contains(removed) {
                instance.peers[removed] = nil
            }
            let entry = instance.appendAsLeader(.members(next), into: &directives)
            instance.members = next
            instance.membersIndex = entry.index
            result = .accepted(index: entry.index, term: entry.term)
            instance.replicate(now: now, into: &directives)
        }
        return (result, directives)
    }

    /// Hands leadership to `target` (to drain this node): proposals are refused while the
    /// target catches up; once its log matches, it is told to campaign at once. Gives up
    /// after the longest election timeout.
    public mutating func transferLeadership(
        to target: ReplicaID,
        now: NIODeadline
    ) -> (
        result: TransferResult, directives: [Directive]
    ) {
        var result = TransferResult.notLeader(leaderHint: leader)
        let directives = event(now: now) { instance, directives in
            guard instance.role == .leader else { return }
            guard target != instance.id, instance.members.voters.contains(target), let peer = instance.peers[target]
            else {
                result = .rejected(.invalidChange)
                return
            }
            guard instance.transfer == nil else {
                result = .rejected(.transferring)
                return
            }
            instance.transfer = (target, now + .milliseconds(instance.settings.electionTimeout.upperBound))
            result = .started
            if peer.match == instance.log.lastIndex {
                directives.append(.send(.timeoutNow(term: instance.term), to: target))
            } else {
                // Catch the target up now rather than at the pace of a stalled pipeline.
                instance.peers[target]?.inFlight = []
                instance.peers[target]?.probing = true
                instance.peers[target]?.next = peer.match + 1
                instance.sendAppends(to: target, now: now, into: &directives)
            }
        }
        return (result, directives)
    }

    /// This leader's removal committed: it leaves, naming the most up-to-date voter.
    mutating func stepDownAfterRemoval(into directives: inout [Directive]) {
        let successor = peers.filter { members.voters.contains($0.key) }
            .max { ($0.value.match, $1.key) < ($1.value.match, $0.key) }
        if let successor, successor.value.match == log.lastIndex {
            directives.append(.send(.timeoutNow(term: term), to: successor.key))
        }
        becomeFollower(term: term, leader: nil, now: clock)
    }
}
