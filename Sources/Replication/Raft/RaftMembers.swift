/// A replica of a Raft group: the cluster node that hosts it, by its node id.
///
/// A group has at most one replica per node, so the node id is enough to address it; the link
/// between nodes carries the group's id alongside.
public struct ReplicaID: Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let name: String

    public init(_ name: String) {
        self.name = name
    }

    public init(stringLiteral name: String) {
        self.name = name
    }

    public var description: String { name }

    public static func < (lhs: ReplicaID, rhs: ReplicaID) -> Bool { lhs.name < rhs.name }
}

/// A group's configuration: the voters, whose majority commits entries and elects leaders,
/// and the learners, which receive the log without counting (new replicas catch up as
/// learners before they are promoted, so that adding one never stalls commitment).
public struct RaftMembers: Sendable, Hashable {
    public var voters: Set<ReplicaID>
    public var learners: Set<ReplicaID>

    public init(voters: Set<ReplicaID>, learners: Set<ReplicaID> = []) {
        self.voters = voters
        self.learners = learners.subtracting(voters)
    }

    /// Votes (or acknowledgements) needed among the voters: a majority of them.
    public var quorum: Int { voters.count / 2 + 1 }

    public func contains(_ replica: ReplicaID) -> Bool {
        voters.contains(replica) || learners.contains(replica)
    }

    /// Voters and learners, in id order (for deterministic iteration).
    public var all: [ReplicaID] { voters.union(learners).sorted() }

    /// Whether the replicas in `acknowledged` form a majority of the voters.
    public func isQuorum(_ acknowledged: Set<ReplicaID>) -> Bool {
        acknowledged.intersection(voters).count >= quorum
    }
}
