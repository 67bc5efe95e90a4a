import NIOCore

extension RaftInstance {
    /// Sorts a message by its term before handing it to its handler: a higher term makes
    /// this replica a follower (but for pre-votes, which change nothing, and vote requests
    /// within a leader lease, which are ignored), a lower term gets an answer that tells the
    /// sender it is stale, or nothing.
    mutating func dispatch(
        _ message: RaftMessage,
        from sender: ReplicaID,
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        guard sender != id else { return }
        switch message {
        case .appendEntries, .installSnapshot, .timeoutNow:
            break
        case .preVote, .vote, .preVoteResponse, .voteResponse, .appendResponse, .appendRejected:
            // Strangers get no say (nor any state kept for them).
            guard members.contains(sender) else { return }
        }
        if let lastIndex = message.candidateLastIndex, lastIndex > 0, term == 0, log.lastIndex == 0 {
            // A replica that never took part in the group (no term, no entry: made for its first
            // election, by a client's write, or again after its node dropped its copy) helps only
            // a candidate that holds no entry either, in the group's first election. A candidate
            // with entries was elected by replicas that took part; this one may have been a
            // member of an older configuration, whose removed replicas must not win with it.
            let refusal: RaftMessage =
                if case .preVote = message {
                    .preVoteResponse(term: term, granted: false)
                } else {
                    .voteResponse(term: term, granted: false)
                }
            directives.append(.send(refusal, to: sender))
            return
        }

        let messageTerm = message.term
        if messageTerm > term {
            switch message {
            case .preVote:
                break
            case .preVoteResponse(_, let granted) where granted:
                break
            case .vote(_, _, _, let transfer) where !transfer && inLeaderLease(now: now):
                // Dissertation §4.2.3: a replica that hears from a leader ignores disruptive
                // candidates (a removed server, or one back from a partition).
                return
            case .appendEntries, .installSnapshot, .timeoutNow:
                becomeFollower(term: messageTerm, leader: sender, now: now)
            default:
                becomeFollower(term: messageTerm, leader: nil, now: now)
            }
        } else if messageTerm < term {
            switch message {
            case .appendEntries, .installSnapshot:
                // Tells a deposed leader that it is.
                directives.append(
                    .send(.appendRejected(term: term, hintIndex: log.lastIndex, hintTerm: log.lastTerm), to: sender)
                )
            case .preVote:
                directives.append(.send(.preVoteResponse(term: term, granted: false), to: sender))
            case .vote:
                directives.append(.send(.voteResponse(term: term, granted: false), to: sender))
            default:
                break
            }
            return
        }

        switch message {
        case .preVote(let candidateTerm, let lastIndex, let lastTerm):
            receivePreVote(
                term: candidateTerm,
                lastIndex: lastIndex,
                lastTerm: lastTerm,
                from: sender,
                now: now,
                into: &directives
            )
        case .preVoteResponse(let responseTerm, let granted):
            guard role == .preCandidate, granted, responseTerm == term + 1 else { return }
            votes.insert(sender)
            countVotes(into: &directives)
        case .vote(_, let lastIndex, let lastTerm, _):
            receiveVote(lastIndex: lastIndex, lastTerm: lastTerm, from: sender, now: now, into: &directives)
        case .voteResponse(_, let granted):
            guard role == .candidate, granted else { return }
            votes.insert(sender)
            countVotes(into: &directives)
        case .appendEntries(_, let prevIndex, let prevTerm, let entries, let leaderCommit):
            receiveAppend(
                prevIndex: prevIndex,
                prevTerm: prevTerm,
                entries: entries,
                leaderCommit: leaderCommit,
                from: sender,
                now: now,
                into: &directives
            )
        case .appendResponse(_, let matchIndex):
            guard role == .leader else { return }
            receiveAppendSuccess(matchIndex: matchIndex, from: sender, now: now, into: &directives)
        case .appendRejected(_, let hintIndex, let hintTerm):
            guard role == .leader else { return }
            receiveAppendRejection(hintIndex: hintIndex, hintTerm: hintTerm, from: sender, now: now, into: &directives)
        case .installSnapshot(_, let base):
            receiveSnapshot(base, from: sender, now: now, into: &directives)
        case .timeoutNow:
            guard role != .leader, members.voters.contains(id), !catchingUp else { return }
            campaign(transfer: true, now: now, into: &directives)
        }
    }

    /// Whether this replica heard from a leader recently enough to trust it is still there (a
    /// leader trusts itself: check-quorum deposes it when that stops being true).
    func inLeaderLease(now: NIODeadline) -> Bool {
        if role == .leader { return true }
        guard leader != nil, let contact = lastLeaderContact else { return false }
        return now < contact + settings.minElectionTimeout
    }
}
