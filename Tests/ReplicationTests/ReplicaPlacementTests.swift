import Testing

@testable import Replication

@Suite struct ReplicaPlacementTests {
    static let nodes: [ReplicaID] = (1...7).map { ReplicaID("node-\($0)") }

    @Test func everyNodeComputesTheSameSetWhateverOrderItKnowsTheMembersIn() {
        let set = ReplicaPlacement.replicas(of: "/queue/orders", among: Self.nodes, factor: 3)
        #expect(set.count == 3)
        #expect(Set(set).isSubset(of: Set(Self.nodes)))
        #expect(ReplicaPlacement.replicas(of: "/queue/orders", among: Self.nodes.reversed(), factor: 3) == set)
        #expect(ReplicaPlacement.replicas(of: "/queue/orders", among: Self.nodes.prefix(2), factor: 3).count == 2)
        #expect(ReplicaPlacement.replicas(of: "/queue/orders", among: Self.nodes, factor: 0).isEmpty)
    }

    /// The placement is a pure function of the names: these values hold on every node, every
    /// build (a `Hasher`-based ranking would differ per process).
    @Test func thePlacementIsStableAcrossProcesses() {
        #expect(
            ReplicaPlacement.replicas(of: "/queue/orders", among: Self.nodes, factor: 3)
                == ReplicaPlacement.replicas(of: "/queue/orders", among: Self.nodes, factor: 7).prefix(3).map { $0 }
        )
        let pinned = ReplicaPlacement.replicas(of: "q", among: ["a", "b", "c"], factor: 3)
        #expect(pinned == ReplicaPlacement.replicas(of: "q", among: ["c", "b", "a"], factor: 3))
    }

    @Test func aNodeLeavingMovesOnlyTheQueuesItHeld() {
        let queues = (0..<500).map { "/queue/q\($0)" }
        let before = queues.map { ReplicaPlacement.replicas(of: $0, among: Self.nodes, factor: 3) }
        let gone = Self.nodes[2]
        let after = queues.map { ReplicaPlacement.replicas(of: $0, among: Self.nodes.filter { $0 != gone }, factor: 3) }
        for (old, new) in zip(before, after) {
            if old.contains(gone) {
                #expect(Set(old).subtracting([gone]).isSubset(of: Set(new)))
            } else {
                #expect(old == new)
            }
        }
        // Spread: each node holds about 3/7 of the queues.
        for node in Self.nodes {
            let held = before.filter { $0.contains(node) }.count
            #expect((140...290).contains(held), "\(node) holds \(held) of 500")
        }
    }

    static let members = RaftMembers(voters: ["a", "b", "c"])

    @Test func aGroupAsWantedNeedsNoStep() {
        #expect(
            ReplicaSetPlan.nextStep(
                members: Self.members,
                wanted: ["a", "b", "c"],
                leader: "a",
                matchIndex: [:],
                lastIndex: 10
            )
                == nil
        )
    }

    @Test func aReplacementJoinsAsALearnerVotesOnceCaughtUpThenTheOldOneGoes() {
        let wanted: [ReplicaID] = ["a", "b", "d"]
        #expect(
            ReplicaSetPlan.nextStep(members: Self.members, wanted: wanted, leader: "a", matchIndex: [:], lastIndex: 500)
                == .change(.addLearner("d"))
        )
        let learning = RaftMembers(voters: ["a", "b", "c"], learners: ["d"])
        #expect(
            ReplicaSetPlan.nextStep(
                members: learning,
                wanted: wanted,
                leader: "a",
                matchIndex: ["d": 100],
                lastIndex: 500
            )
                == nil
        )
        #expect(
            ReplicaSetPlan.nextStep(
                members: learning,
                wanted: wanted,
                leader: "a",
                matchIndex: ["d": 490],
                lastIndex: 500
            )
                == .change(.promote("d"))
        )
        let four = RaftMembers(voters: ["a", "b", "c", "d"])
        #expect(
            ReplicaSetPlan.nextStep(members: four, wanted: wanted, leader: "a", matchIndex: [:], lastIndex: 500)
                == .change(.remove("c"))
        )
    }

    @Test func anUnwantedLeaderHandsOverToTheMostCaughtUpWantedVoterFirst() {
        let four = RaftMembers(voters: ["a", "b", "c", "d"])
        #expect(
            ReplicaSetPlan.nextStep(
                members: four,
                wanted: ["b", "c", "d"],
                leader: "a",
                matchIndex: ["b": 90, "c": 100, "d": 80],
                lastIndex: 100
            ) == .transferLeadership(to: "c")
        )
    }

    @Test func anUnwantedLearnerIsRemovedAtOnce() {
        let members = RaftMembers(voters: ["a", "b", "c"], learners: ["x"])
        #expect(
            ReplicaSetPlan.nextStep(
                members: members,
                wanted: ["a", "b", "c"],
                leader: "a",
                matchIndex: [:],
                lastIndex: 1
            )
                == .change(.remove("x"))
        )
    }
}
