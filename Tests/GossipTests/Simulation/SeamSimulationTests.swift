import Foundation
import Testing

@testable import Gossip

/// No silent loss at the seam (issue 15), on the simulated network: node 0 publishes a topic
/// message every simulation step (50 ms) that nodes 1 to 4 subscribe to, while one kind of fault strikes for
/// a few seconds; then the cluster settles. The simulated link breaks a connection rather
/// than lose a frame on it, as TCP does, and a stalled node's connections break too.
///
/// Within `cluster.outage-grace-ms` every message held for a subscriber node reaches it once,
/// in order. Past the grace (a stall of 6 s with a grace of 2 s), what was dropped is
/// reported to the stalled node (which fails its subscribers), and what arrives still comes
/// once and in order.
///
/// `SIM_SEEDS` sets the seeds per scenario (5 by default), as for the other invariants.
@Suite("Seam: no silent loss under faults")
struct SeamSimulationTests {
    enum Scenario: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// Node 2 stalls for 6 s: declared dead, then back within the grace.
        case stall
        /// Node 2 stalls for 6 s with a grace of 2 s.
        case stallPastTheGrace
        /// A random link of node 2's breaks every 700 ms.
        case linkReset
        /// Node 2 is cut off from the others for 7 s, then heals.
        case partition
        /// Node 2 takes up to 400 ms more for every message, each way.
        case slowLink

        var testDescription: String { rawValue }
    }

    static let topic = "seam.t"
    static let faultPhase: Int64 = 8_000

    @Test(arguments: Scenario.allCases, ClusterInvariantSimulationTests.seeds)
    func nothingIsLostSilently(_ scenario: Scenario, seed: UInt64) throws {
        var configuration = SimulatedCluster.Configuration(size: 5)
        configuration.seed = seed
        configuration.tlsClose = seed.isMultiple(of: 2)
        if scenario == .stallPastTheGrace { configuration.outageGrace = 2_000 }
        let cluster = SimulatedCluster(configuration)
        if ProcessInfo.processInfo.environment["SIM_TRACE"] == "\(scenario) \(seed)" {
            cluster.trace = { print("TRACE \($0)") }
        }
        _ = try #require(cluster.run(until: 30_000) { $0.membershipConverged })
        for i in 1..<5 { cluster.subscribe(i, to: .topic("seam.#")) }
        _ = try #require(cluster.run(until: 10_000) { $0.interestConverged })

        var random = SplitMix64(seed: seed &* 0x5EA3)
        let start = cluster.now
        while cluster.now - start < Self.faultPhase {
            let elapsed = cluster.now - start
            strike(scenario, at: elapsed, on: cluster, random: &random)
            cluster.publish(0, toTopic: Self.topic)
            cluster.run(for: cluster.configuration.step)
        }
        cluster.mute(2, false)
        cluster.heal()
        cluster.setExtraDelay(2, nil)

        let quiet = cluster.run(until: 40_000) { cluster in
            cluster.membershipConverged && cluster.linkDisagreements.isEmpty
                && cluster.nodes.allSatisfy { node in
                    node.instance.sessions.peers.allSatisfy { node.instance.sessions.state(of: $0)?.heldMessages == 0 }
                }
        }
        let outcome = cluster.topicOutcome()
        print(
            "SIMULATION seam \(scenario) seed \(seed): \(cluster.topicPublished.count) published, outcome \(outcome), sessions \(cluster.sessionCounts), quiet \(quiet.map { "\($0) ms" } ?? "never")"
        )
        #expect(quiet != nil, "sessions still hold messages, or the cluster did not settle")
        #expect(cluster.violations.isEmpty, "\(cluster.violations.prefix(5))")
        #expect(outcome.duplicated == 0 && outcome.reordered == 0)
        if scenario == .stallPastTheGrace {
            #expect(cluster.sessionCounts.dropped > 0)
            #expect(cluster.sessionCounts.lossesReported > 0, "the stalled node was not told what it missed")
        } else {
            #expect(outcome.lost == 0)
            #expect(cluster.sessionCounts.dropped == 0 && cluster.sessionCounts.lossesReported == 0)
        }
    }

    private func strike(
        _ scenario: Scenario,
        at elapsed: Int64,
        on cluster: SimulatedCluster,
        random: inout SplitMix64
    ) {
        switch scenario {
        case .stall, .stallPastTheGrace:
            if elapsed == 500 { cluster.mute(2, true) }
            if elapsed == 6_500 { cluster.mute(2, false) }
        case .linkReset:
            if elapsed.isMultiple(of: 700) {
                let other = [0, 1, 3, 4][Int(random.next() % 4)]
                cluster.resetLink(2, other)
            }
        case .partition:
            if elapsed == 500 { cluster.partition([[2], [0, 1, 3, 4]]) }
            if elapsed == 7_500 { cluster.heal() }
        case .slowLink:
            if elapsed == 500 { cluster.setExtraDelay(2, 0...400) }
            if elapsed == 6_500 { cluster.setExtraDelay(2, nil) }
        }
    }
}
