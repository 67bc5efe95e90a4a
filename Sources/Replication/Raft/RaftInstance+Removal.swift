/// A leader's word to a replica its group no longer has: the configuration at `membersIndex`,
/// committed in `term`, leaves it out, and every voter of that configuration holds it.
///
/// Only then may the replica drop its copy of the group (log, votes and all). A replica that
/// forgot votes as a new one would, with an empty log; that is harmless only while no
/// candidate that lacks the removal can count its vote. Every voter holding the removal (not
/// only a majority) rules such candidates out among the voters, and replicas ignore vote
/// requests from strangers (``RaftInstance/receive(_:from:now:)``).
public struct RaftRemoval: Sendable, Hashable {
    public var term: UInt64
    public var membersIndex: UInt64

    public init(term: UInt64, membersIndex: UInt64) {
        self.term = term
        self.membersIndex = membersIndex
    }
}

extension RaftInstance {
    /// On a leader: the notice that lets `replica`, which is no member of the group, drop its
    /// copy of it; `nil` while that is not safe yet (the configuration that left it out is
    /// not committed, or some voter doesn't hold it yet) or this replica doesn't lead.
    public func removal(of replica: ReplicaID) -> RaftRemoval? {
        guard role == .leader, replica != id, !members.contains(replica), membersIndex <= commitIndex,
            members.voters.allSatisfy({ ($0 == id ? persistedIndex : (peers[$0]?.match ?? 0)) >= membersIndex })
        else { return nil }
        return RaftRemoval(term: term, membersIndex: membersIndex)
    }

    /// Whether this replica may drop its copy of the group on `removal`: the leader that sent
    /// it is no older than any term this replica knows, and its configuration is newer than
    /// this replica's (which, if it named this replica again, would be newer than the removal).
    public func mayForget(after removal: RaftRemoval) -> Bool {
        guard removal.term >= term else { return false }
        return membersIndex < removal.membersIndex
            || (membersIndex == removal.membersIndex && !members.contains(id))
    }
}
