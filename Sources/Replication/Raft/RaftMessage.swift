/// What replicas of one group say to each other. Every message carries its sender's term
/// (for `preVote`, the term the sender would campaign in), which is how stale leaders and
/// candidates find out they are stale. The sender's id comes with the message from the link.
public enum RaftMessage: Sendable, Equatable {
    /// "Would you vote for me in `term`?", asked before incrementing any term (dissertation
    /// §9.6), so that a replica cut off from the others can't disrupt the group on its return.
    case preVote(term: UInt64, lastIndex: UInt64, lastTerm: UInt64)
    /// `term` is the pre-vote's term when granted, the responder's term when not.
    case preVoteResponse(term: UInt64, granted: Bool)
    /// A real vote request. `transfer` is set when the current leader asked for this election
    /// (``timeoutNow(term:)``): voters then ignore their leader lease.
    case vote(term: UInt64, lastIndex: UInt64, lastTerm: UInt64, transfer: Bool)
    case voteResponse(term: UInt64, granted: Bool)
    /// From the leader (the sender): entries after `prevIndex`, which must hold `prevTerm`.
    /// With no entries it is a heartbeat, and also carries the commit index.
    case appendEntries(term: UInt64, prevIndex: UInt64, prevTerm: UInt64, entries: [RaftEntry], leaderCommit: UInt64)
    /// The follower's log matches the leader's through `matchIndex`, and that much is durable
    /// there. Also the answer to ``installSnapshot(term:base:)`` once the snapshot is durable.
    case appendResponse(term: UInt64, matchIndex: UInt64)
    /// The entry at `prevIndex` didn't match. The follower's log may match the leader's at
    /// most through `hintIndex`, whose term there is `hintTerm`: the leader backs up to the
    /// last of its own entries at or before `hintIndex` with a term at most `hintTerm`, which
    /// skips a whole conflicting term per round trip.
    case appendRejected(term: UInt64, hintIndex: UInt64, hintTerm: UInt64)
    /// The follower needs entries the leader compacted away: it replaces its log with this.
    case installSnapshot(term: UInt64, base: RaftSnapshotBase)
    /// From the leader during a leadership transfer: campaign now, without pre-vote.
    case timeoutNow(term: UInt64)

    /// The last index of a candidate's log, for a vote or pre-vote request.
    var candidateLastIndex: UInt64? {
        switch self {
        case .preVote(_, let lastIndex, _), .vote(_, let lastIndex, _, _): lastIndex
        default: nil
        }
    }

    public var term: UInt64 {
        switch self {
        case .preVote(let term, _, _), .preVoteResponse(let term, _), .vote(let term, _, _, _),
            .voteResponse(let term, _), .appendEntries(let term, _, _, _, _), .appendResponse(let term, _),
            .appendRejected(let term, _, _), .installSnapshot(let term, _), .timeoutNow(let term):
            term
        }
    }
}
