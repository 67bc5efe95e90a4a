/// The next step that brings a group's configuration towards the replica set placement wants,
/// one single-server change at a time (as Raft allows), never shrinking the voters below what
/// is wanted before a replacement votes:
///
/// 1. a wanted node missing from the group joins as a learner;
/// 2. a learner that caught up with the leader becomes a voter;
/// 3. a node no longer wanted is removed, once every wanted node votes (a voter), or at once
///    (a learner);
/// 4. a leader that is no longer wanted hands its leadership to a wanted voter first.
///
/// The shell asks on the leader whenever membership or the group's progress changes, and
/// proposes what comes back; `nil` means the group is as wanted, or must wait.
public enum ReplicaSetPlan {
    /// The replica set a group should have: placement's ranking of the live nodes and of its
    /// replicas that are away but not `gone` (away longer than `replication.replace-after-ms`),
    /// so that a restart or a short partition moves nothing, while placement stays where
    /// every node looks for the group. When fewer than `factor` nodes are left to choose from,
    /// the gone voters keep their places: a voter is only ever removed for a replacement.
    public static func wanted(
        of group: String,
        members: RaftMembers,
        live: some Sequence<ReplicaID>,
        gone: Set<ReplicaID>,
        factor: Int
    ) -> [ReplicaID] {
        let candidates = Set(live).union(members.all).subtracting(gone)
        var wanted = ReplicaPlacement.replicas(of: group, among: candidates, factor: factor)
        if wanted.count < factor {
            let kept = ReplicaPlacement.replicas(
                of: group,
                among: members.voters.intersection(gone),
                factor: factor - wanted.count
            )
            wanted += kept
        }
        return wanted
    }

    public enum Step: Sendable, Equatable {
        case change(RaftInstance.MemberChange)
        case transferLeadership(to: ReplicaID)
    }

    /// - Parameters:
    ///   - members: the group's configuration now.
    ///   - wanted: the replica set placement computes from the live members.
    ///   - leader: this replica, the group's leader.
    ///   - matchIndex: how far each replica's log is known to match the leader's, for the
    ///     replicas heard from lately (a learner not among them is not promoted).
    ///   - lastIndex: the leader's last index; a learner within `slack` entries of it has
    ///     caught up.
    ///   - mayAddLearner: `false` while the node has its fill of learners catching up: the
    ///     other steps still go on.
    public static func nextStep(
        members: RaftMembers,
        wanted: [ReplicaID],
        leader: ReplicaID,
        matchIndex: [ReplicaID: UInt64],
        lastIndex: UInt64,
        slack: UInt64 = 64,
        mayAddLearner: Bool = true
    ) -> Step? {
        let wantedSet = Set(wanted)
        if mayAddLearner, let missing = wanted.first(where: { !members.contains($0) }) {
            return .change(.addLearner(missing))
        }
        // Caught up, and it answered (a voter that never does could leave the group without
        // a majority).
        if let ready = members.learners.sorted().first(where: {
            let match = matchIndex[$0] ?? 0
            return wantedSet.contains($0) && match > 0 && match + slack >= lastIndex
        }) {
            return .change(.promote(ready))
        }
        if let unwanted = members.learners.sorted().first(where: { !wantedSet.contains($0) }) {
            return .change(.remove(unwanted))
        }
        guard wantedSet.isSubset(of: members.voters) else { return nil }  // a learner still catching up
        guard let unwanted = members.voters.sorted().first(where: { !wantedSet.contains($0) }) else { return nil }
        // Only while every wanted voter answers: one that went away again is no replacement.
        guard wanted.allSatisfy({ $0 == leader || matchIndex[$0] != nil }) else { return nil }
        if unwanted == leader {
            let successor = wanted.max { (matchIndex[$0] ?? 0) < (matchIndex[$1] ?? 0) }
            return successor.map { .transferLeadership(to: $0) }
        }
        return .change(.remove(unwanted))
    }
}
