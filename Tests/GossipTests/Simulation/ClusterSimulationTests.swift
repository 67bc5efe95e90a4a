import Gossip
import NIOCore
import Testing

/// Small clusters on the simulated network, with default settings unless a test says otherwise.
@Suite("Cluster simulation")
struct ClusterSimulationTests {
    /// A cluster whose nodes only know node 0, run until every node knows every other as alive.
    static func convergedCluster(
        size: Int = 5,
        seed: UInt64 = 1,
        configure: (inout SimulatedCluster.Configuration) -> Void = { _ in }
    ) throws -> SimulatedCluster {
        var configuration = SimulatedCluster.Configuration(size: size)
        configuration.seed = seed
        configure(&configuration)
        let cluster = SimulatedCluster(configuration)
        _ = try #require(cluster.run(until: 30_000) { $0.membershipConverged })
        return cluster
    }

    static func everyoneElse(_ cluster: SimulatedCluster, but excluded: Set<Int>) -> [Int] {
        cluster.nodes.map(\.index).filter { !excluded.contains($0) && cluster.nodes[$0].up }
    }

    /// Whether every live node other than `subject` holds it with `status`.
    static func allSee(_ cluster: SimulatedCluster, _ subject: Int, as status: MemberUpdate.Status) -> Bool {
        everyoneElse(cluster, but: [subject]).allSatisfy { cluster.view(of: subject, by: $0)?.status == status }
    }

    static func deaths(_ cluster: SimulatedCluster, since: Int64) -> [SimulatedCluster.StatusEvent] {
        cluster.history.filter { $0.time >= since && $0.update.status == .dead }
    }

    @Test func fiveNodesKnowingOnlyASeedConverge() throws {
        let cluster = SimulatedCluster(SimulatedCluster.Configuration(size: 5))
        // Gossip names the members before their links are up (each a connection and a
        // handshake, and a tie-break where both ends dialled): wait for both.
        let meshed = { (cluster: SimulatedCluster) in
            (0..<5).allSatisfy { a in (0..<5).allSatisfy { b in a == b || cluster.isLinked(a, b) } }
        }
        let took = try #require(cluster.run(until: 30_000) { $0.membershipConverged && meshed($0) })
        print("SIMULATION membership 5 nodes converged, full mesh of links, in \(took) ms")
        #expect(took <= 5_000)
        // A full mesh of links, and nobody was ever suspected on the way.
        for a in 0..<5 {
            for b in 0..<5 where a != b { #expect(cluster.isLinked(a, b)) }
        }
        #expect(cluster.history.allSatisfy { $0.update.status == .alive })
        // It stays that way.
        cluster.run(for: 30_000)
        #expect(cluster.membershipConverged)
        #expect(cluster.history.allSatisfy { $0.update.status == .alive })
    }

    @Test func aKilledNodeIsDeclaredDeadByAllWithinFiveSeconds() throws {
        let cluster = try Self.convergedCluster()
        cluster.run(for: 3_000)
        let killedAt = cluster.now
        cluster.kill(3)
        let took = try #require(cluster.run(until: 10_000) { Self.allSee($0, 3, as: .dead) })
        print("SIMULATION failure detection 5 nodes: all declared the killed node dead in \(took) ms")
        #expect(took <= 5_000)
        // Nobody else was declared dead, and the rest still agree.
        #expect(Self.deaths(cluster, since: killedAt).allSatisfy { $0.update.node == NodeID("n3") })
        cluster.run(for: 10_000)
        #expect(Self.deaths(cluster, since: killedAt).allSatisfy { $0.update.node == NodeID("n3") })
        for observer in Self.everyoneElse(cluster, but: [3]) {
            #expect(
                Set(cluster.nodes[observer].membership.liveMembers)
                    == Set([0, 1, 2, 4].filter { $0 != observer }.map { NodeID("n\($0)") })
            )
        }
    }

    /// Every message to or from node 2 takes up to `delay` ms more (a round trip up to twice
    /// that), for 10 s. With 300 ms the indirect probes nearly always get through; with 600 ms
    /// suspicions happen and must be refuted in time.
    @Test(arguments: [300, 600] as [Int64], [1, 2, 3, 4, 5] as [UInt64])
    func aBusyNodeIsNotDeclaredDead(delay: Int64, seed: UInt64) throws {
        let cluster = try Self.convergedCluster(seed: seed)
        let start = cluster.now
        cluster.setExtraDelay(2, 0...delay)
        cluster.run(for: 10_000)
        #expect(Self.deaths(cluster, since: start).isEmpty)
        // Back to normal: everyone agrees it is alive.
        cluster.setExtraDelay(2, nil)
        _ = try #require(cluster.run(until: 5_000) { $0.membershipConverged })
        let suspicions = cluster.history.filter { $0.time >= start && $0.update.status == .suspect }
        print(
            "SIMULATION busy node (+0...\(delay) ms each way, 10 s, seed \(seed)): \(suspicions.filter { $0.update.node == NodeID("n2") }.count) suspicions of it, \(suspicions.filter { $0.update.node != NodeID("n2") }.count) of others, incarnations \(cluster.nodes.map(\.membership.incarnation))"
        )
        #expect(Self.deaths(cluster, since: start).isEmpty)
        Self.expectRefuted(suspicions, in: cluster)
    }

    /// Every suspicion was refuted with a higher incarnation, which every other node holds.
    static func expectRefuted(
        _ suspicions: [SimulatedCluster.StatusEvent],
        in cluster: SimulatedCluster,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for node in cluster.nodes where node.up {
            let suspected = suspicions.filter { $0.update.node == node.id }.map(\.update.incarnation).max()
            guard let suspected else { continue }
            #expect(node.membership.incarnation > suspected, "\(node.id)", sourceLocation: sourceLocation)
            for observer in everyoneElse(cluster, but: [node.index]) {
                #expect(
                    cluster.view(of: node.index, by: observer)?.incarnation == node.membership.incarnation,
                    "\(node.id) seen by n\(observer)",
                    sourceLocation: sourceLocation
                )
            }
        }
    }

    @Test func aFalselySuspectedNodeRefutesWithAHigherIncarnation() throws {
        let cluster = try Self.convergedCluster()
        let start = cluster.now
        var suspect = try #require(cluster.view(of: 3, by: 1))
        #expect(suspect.incarnation == 0)
        suspect.status = .suspect
        // Node 1 hears (wrongly) that node 3 is suspect.
        cluster.inject(.members([suspect]), to: 1, from: 2)
        #expect(cluster.view(of: 3, by: 1)?.status == .suspect)
        cluster.run(for: 3_000)
        #expect(cluster.nodes[3].membership.incarnation == 1)
        for observer in Self.everyoneElse(cluster, but: [3]) {
            #expect(
                cluster.view(of: 3, by: observer)
                    == MemberUpdate(node: NodeID("n3"), epoch: 1, address: "n3:7946", incarnation: 1, status: .alive)
            )
        }
        #expect(Self.deaths(cluster, since: start).isEmpty)
    }

    @Test func stalledNodesAreSuspectedThenRefute() throws {
        let cluster = try Self.convergedCluster()
        let start = cluster.now
        // Each node in turn stalls for 1.5 s (its links stay up, but nothing gets through).
        for stalled in 0..<5 {
            cluster.mute(stalled, true)
            cluster.run(for: 1_500)
            cluster.mute(stalled, false)
            cluster.run(for: 6_000)
        }
        let suspicions = cluster.history.filter { $0.time >= start && $0.update.status == .suspect }
        let deaths = Self.deaths(cluster, since: start)
        print(
            "SIMULATION 5 stalls of 1.5 s: \(suspicions.count) suspicions, \(deaths.count) false deaths, incarnations \(cluster.nodes.map(\.membership.incarnation))"
        )
        #expect(!suspicions.isEmpty)
        #expect(deaths.isEmpty)
        #expect(cluster.membershipConverged)
        // Every node suspected refuted with a higher incarnation, which everyone holds now.
        Self.expectRefuted(suspicions, in: cluster)
    }

    @Test func aHealedPartitionRejoins() throws {
        let cluster = try Self.convergedCluster()
        for i in 0..<5 { cluster.subscribe(i, to: .topic("node\(i).*")) }
        _ = try #require(cluster.run(until: 5_000) { $0.interestConverged })

        cluster.partition([[0, 1], [2, 3, 4]])
        cluster.run(for: 10_000)
        // Each side serves on alone and has declared the other side dead, but keeps its
        // interest for the outage grace, so that what is published for it waits.
        for a in [0, 1] {
            for b in [2, 3, 4] {
                #expect(cluster.view(of: b, by: a)?.status == .dead)
                #expect(cluster.view(of: a, by: b)?.status == .dead)
                #expect(cluster.nodes[a].table.version(of: NodeID("n\(b)")) != nil)
            }
        }
        // Past the grace, the interest goes.
        cluster.run(for: 30_000)
        for a in [0, 1] {
            for b in [2, 3, 4] {
                #expect(cluster.nodes[a].table.version(of: NodeID("n\(b)")) == nil)
                #expect(cluster.nodes[b].table.version(of: NodeID("n\(a)")) == nil)
            }
        }
        #expect(cluster.view(of: 1, by: 0)?.status == .alive)
        #expect(cluster.view(of: 4, by: 2)?.status == .alive)
        // Interest changes on one side while partitioned.
        cluster.subscribe(3, to: .queue("jobs"), by: 2)

        cluster.heal()
        let took = try #require(cluster.run(until: 30_000) { $0.membershipConverged })
        print("SIMULATION partition {0,1}|{2,3,4} healed: membership converged \(took) ms after healing")
        #expect(cluster.nodes.allSatisfy { $0.membership.incarnation > 0 })
        _ = try #require(cluster.run(until: 10_000) { $0.interestConverged })
        for observer in [0, 1, 2, 4] {
            #expect(cluster.nodes[observer].table.consumers(ofQueue: "jobs") == [NodeID("n3"): 2])
        }
    }

    @Test func aGracefulLeaveIsSeenAtOnceAndIsFinal() throws {
        let cluster = try Self.convergedCluster()
        cluster.subscribe(4, to: .topic("leaving.#"))
        _ = try #require(cluster.run(until: 5_000) { $0.interestConverged })
        let leftAt = cluster.now
        cluster.leave(4)
        let took = try #require(cluster.run(until: 1_000) { Self.allSee($0, 4, as: .left) })
        print("SIMULATION graceful leave seen by all in \(took) ms")
        #expect(took <= 50)
        for observer in 0..<4 {
            #expect(cluster.view(of: 4, by: observer)?.incarnation == 1)
            #expect(cluster.nodes[observer].table.version(of: NodeID("n4")) == nil)
        }
        // Well past the tombstone retention: never re-added, never declared anything else.
        cluster.run(for: 70_000)
        let later = cluster.events(about: 4, since: leftAt)
        #expect(later.allSatisfy { $0.update.status == .left })
        #expect(later.count == 4)
        for observer in 0..<4 {
            #expect(cluster.view(of: 4, by: observer) == nil)
            #expect(!cluster.nodes[observer].membership.liveMembers.contains(NodeID("n4")))
        }
        #expect(cluster.membershipConverged)
    }

    @Test func aRestartedNodeRejoinsAtItsNewEpoch() throws {
        let cluster = try Self.convergedCluster()
        cluster.subscribe(4, to: .topic("old.boot"))
        _ = try #require(cluster.run(until: 5_000) { $0.interestConverged })
        cluster.kill(4)
        _ = try #require(cluster.run(until: 10_000) { Self.allSee($0, 4, as: .dead) })
        cluster.run(for: 1_000)

        cluster.restart(4, epoch: 2)
        cluster.subscribe(4, to: .topic("new.boot"))
        let took = try #require(cluster.run(until: 10_000) { $0.membershipConverged })
        print("SIMULATION restarted node (epoch 2) known alive by all in \(took) ms")
        for observer in 0..<4 {
            #expect(
                cluster.view(of: 4, by: observer)
                    == MemberUpdate(node: NodeID("n4"), epoch: 2, address: "n4:7946", incarnation: 0, status: .alive)
            )
        }
        _ = try #require(cluster.run(until: 5_000) { $0.interestConverged })
        for observer in 0..<4 {
            var peers = Set<NodeID>()
            cluster.nodes[observer].table.peers(forTopic: "new.boot", into: &peers)
            cluster.nodes[observer].table.peers(forTopic: "old.boot", into: &peers)
            #expect(peers == [NodeID("n4")])
            #expect(cluster.nodes[observer].table.entriesByOrigin[NodeID("n4")]?.entries == [.topic("new.boot"): 1])
        }
    }

    @Test func aNodeRestartedBeforeItsDeathWasNoticedRejoins() throws {
        let cluster = try Self.convergedCluster()
        let start = cluster.now
        cluster.kill(4)
        cluster.run(for: 100)
        cluster.restart(4, epoch: 2)
        _ = try #require(cluster.run(until: 10_000) { $0.membershipConverged })
        cluster.run(for: 10_000)
        #expect(cluster.membershipConverged)
        for observer in 0..<4 {
            #expect(cluster.view(of: 4, by: observer)?.epoch == 2)
        }
        // The new boot was never declared dead.
        #expect(!Self.deaths(cluster, since: start).contains { $0.update.epoch == 2 })
    }

    @Test func interestDeltasReachEveryPeer() throws {
        let cluster = try Self.convergedCluster()
        for _ in 0..<1_000 { cluster.subscribe(0, to: .topic("prices.*")) }
        cluster.subscribe(1, to: .queue("jobs"), by: 3)
        cluster.subscribe(2, to: .queue("jobs"), by: 1)
        _ = try #require(cluster.run(until: 2_000) { $0.interestConverged })
        #expect(cluster.nodes[0].interest.version == 1)
        for observer in [3, 4] {
            var peers = Set<NodeID>()
            cluster.nodes[observer].table.peers(forTopic: "prices.eur", into: &peers)
            #expect(peers == [NodeID("n0")])
            #expect(cluster.nodes[observer].table.consumers(ofQueue: "jobs") == [NodeID("n1"): 3, NodeID("n2"): 1])
        }
        for _ in 0..<1_000 { cluster.subscribe(0, to: .topic("prices.*"), by: -1) }
        cluster.subscribe(1, to: .queue("jobs"), by: -3)
        _ = try #require(cluster.run(until: 2_000) { $0.interestConverged })
        for observer in [3, 4] {
            var peers = Set<NodeID>()
            cluster.nodes[observer].table.peers(forTopic: "prices.eur", into: &peers)
            #expect(peers.isEmpty)
            #expect(cluster.nodes[observer].table.consumers(ofQueue: "jobs") == [NodeID("n2"): 1])
        }
    }

    @Test func aLossyNetworkStillConvergesWithoutFalseDeaths() throws {
        let cluster = try Self.convergedCluster { configuration in
            configuration.dropProbability = 0.02
            configuration.digestInterval = 2_000
        }
        let start = cluster.now
        for i in 0..<5 {
            for topic in 0..<10 { cluster.subscribe(i, to: .topic("n\(i).t\(topic)")) }
        }
        cluster.run(for: 60_000)
        _ = try #require(cluster.run(until: 10_000) { $0.interestConverged && $0.membershipConverged })
        let deaths = Self.deaths(cluster, since: start)
        let suspicions = cluster.history.filter { $0.time >= start && $0.update.status == .suspect }
        print(
            "SIMULATION 2% loss, 60 s: \(cluster.messagesDropped) of \(cluster.messagesSent) messages dropped, \(suspicions.count) suspicions, \(deaths.count) deaths"
        )
        #expect(deaths.isEmpty)
    }
}
