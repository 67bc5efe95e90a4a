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
            ReplicaSetPlan.nextStep(
                members: four,
                wanted: wanted,
                leader: "a",
                matchIndex: ["b": 500, "d": 500],
                lastIndex: 500
            ) == .change(.remove("c"))
        )
        // Not while a wanted voter has stopped answering (it went away again): it is no
        // replacement yet.
        #expect(
            ReplicaSetPlan.nextStep(members: four, wanted: wanted, leader: "a", matchIndex: ["b": 500], lastIndex: 500)
                == nil
        )
    }

    @Test func withItsFillOfLearnersAGroupStillPromotesAndRemoves() {
        let learning = RaftMembers(voters: ["a", "b", "c"], learners: ["d"])
        #expect(
            ReplicaSetPlan.nextStep(
                members: learning,
                wanted: ["a", "d", "e"],
                leader: "a",
                matchIndex: ["d": 500],
                lastIndex: 500,
                mayAddLearner: false
            ) == .change(.promote("d"))
        )
        #expect(
            ReplicaSetPlan.nextStep(
                members: learning,
                wanted: ["a", "d", "e"],
                leader: "a",
                matchIndex: ["d": 500],
                lastIndex: 500
            ) == .change(.addLearner("e"))
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

/// Which replica set a group should have, as replicas come, go away and come back.
@Suite struct ReplicaSetWantedTests {
    static let nodes: [ReplicaID] = ["n1", "n2", "n3", "n4"]
    static let group = "/queue/orders"

    /// Placement's first three of the four nodes, and the fourth.
    static let ranked = ReplicaPlacement.replicas(of: group, among: nodes, factor: 4)
    static let first = Array(ranked.prefix(3))
    static let spare = ranked[3]

    static func wanted(members: [ReplicaID], live: [ReplicaID], gone: Set<ReplicaID> = []) -> [ReplicaID] {
        ReplicaSetPlan.wanted(
            of: group,
            members: RaftMembers(voters: Set(members)),
            live: live,
            gone: gone,
            factor: 3
        )
    }

    @Test func aReplicaAwayButNotGoneKeepsItsPlace() {
        let away = Self.first[2]
        let live = Self.nodes.filter { $0 != away }
        #expect(Set(Self.wanted(members: Self.first, live: live)) == Set(Self.first))
    }

    @Test func aReplicaGoneForGoodIsReplacedByTheNextNodePlacementRanks() {
        let gone = Self.first[2]
        let live = Self.nodes.filter { $0 != gone }
        let wanted = Self.wanted(members: Self.first, live: live, gone: [gone])
        #expect(Set(wanted) == Set(Self.first.prefix(2) + [Self.spare]))
        // What placement says among the nodes left: where every node looks for the queue.
        #expect(Set(wanted) == Set(ReplicaPlacement.replicas(of: Self.group, among: live, factor: 3)))
    }

    @Test func aGoneVoterStaysWhenNoNodeCanReplaceIt() {
        let gone = Self.first[2]
        let live = Self.first.prefix(2)
        #expect(Set(Self.wanted(members: Self.first, live: Array(live), gone: [gone])) == Set(Self.first))
        let plan = ReplicaSetPlan.nextStep(
            members: RaftMembers(voters: Set(Self.first)),
            wanted: Self.wanted(members: Self.first, live: Array(live), gone: [gone]),
            leader: Self.first[0],
            matchIndex: [:],
            lastIndex: 10
        )
        #expect(plan == nil)
    }

    @Test func aReplicaBackAfterItWasReplacedTakesItsPlaceBack() {
        let replaced = Self.first.prefix(2) + [Self.spare]
        #expect(Set(Self.wanted(members: Array(replaced), live: Self.nodes)) == Set(Self.first))
    }

    @Test func aGroupMadeOnFewerNodesTakesOnThoseThatJoin() {
        let made = [Self.first[0]]
        #expect(Set(Self.wanted(members: made, live: Self.nodes)) == Set(Self.first))
    }
}
