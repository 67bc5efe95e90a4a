import Foundation
import Testing

@testable import Replication

/// Raft groups of 3 and 5 replicas under faults, checked for the invariants that matter to a
/// durable queue:
/// - at most one leader per term, ever (election safety);
/// - every replica applies each index once, in order, and what it applies (or installs as a
///   snapshot) is what every other replica applied at that index (state machine safety);
/// - every command acknowledged to its client (applied by the leader that accepted it, with
///   its term) stays committed through any crashes: after the faults stop, all replicas
///   converge within 10 s of virtual time on one log that contains it.
///
/// Crashed replicas restart from what their simulated disk made durable (fsync latency
/// 1-15 ms; writes not yet durable are lost). Every replica compacts its log regularly, so
/// replicas that fall behind catch up by snapshot.
///
/// `SIM_SEEDS` sets the number of seeds per scenario (5 by default).
@Suite("Raft simulation")
struct RaftSimulationTests {
    enum Scenario: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// 5% of messages lost, each delayed 0-300 ms (so reordered).
        case lossyNetwork
        /// The same, and partitions (a random minority cut off for 1-3 s), healing.
        case partitions
        /// 1% loss, and a minority of replicas crashing and restarting.
        case crashes
        /// Everything at once, up to all but one replica down, and leadership transfers.
        case chaos

        var testDescription: String { rawValue }

        func configuration(size: Int, seed: UInt64) -> SimulatedRaftGroup.Configuration {
            var configuration = SimulatedRaftGroup.Configuration()
            configuration.size = size
            configuration.seed = seed
            configuration.maxDelay = 300
            switch self {
            case .lossyNetwork:
                configuration.lossRate = 0.05
            case .partitions:
                configuration.lossRate = 0.05
                configuration.partitions = true
            case .crashes:
                configuration.lossRate = 0.01
                configuration.crashes = true
                configuration.maxDown = (size - 1) / 2
            case .chaos:
                configuration.lossRate = 0.05
                configuration.partitions = true
                configuration.crashes = true
                configuration.maxDown = size - 1
                configuration.transfers = true
            }
            return configuration
        }
    }

    /// A group size and a seed.
    struct Run: Sendable, CustomTestStringConvertible {
        var size: Int
        var seed: UInt64

        var testDescription: String { "n=\(size) seed=\(seed)" }
    }

    static let runs: [Run] = {
        let count = ProcessInfo.processInfo.environment["SIM_SEEDS"].flatMap { Int($0) } ?? 5
        return [3, 5].flatMap { size in (1...UInt64(max(count, 1))).map { Run(size: size, seed: $0) } }
    }()

    static let faultPhase: Int64 = 10_000
    static let convergenceBound: Int64 = 10_000

    @Test(arguments: Scenario.allCases, RaftSimulationTests.runs)
    func invariantsHold(_ scenario: Scenario, run: Run) {
        let (size, seed) = (run.size, run.seed)
        let group = SimulatedRaftGroup(scenario.configuration(size: size, seed: seed))
        group.run(for: Self.faultPhase)
        group.stopFaults()
        var took: Int64?
        let start = group.now
        while group.now - start < Self.convergenceBound {
            group.step()
            if group.converged {
                took = group.now - start
                break
            }
        }
        #expect(group.violations.isEmpty, "\(scenario) seed \(seed): \(group.violations.prefix(5))")
        #expect(took != nil, "\(scenario) seed \(seed): no convergence within \(Self.convergenceBound) ms")
        if scenario != .chaos {
            // (In chaos, all but one replica may be down or cut off for most of the time.)
            #expect(!group.acknowledged.isEmpty, "\(scenario) seed \(seed): nothing committed")
        }
        guard let took, let leader = group.currentLeader, let leading = group.nodes[leader].instance else { return }
        // Nothing acknowledged was lost: it is in the one log everyone converged on.
        let final = leading.commitIndex
        for (index, acknowledged) in group.acknowledged {
            #expect(index <= final)
            #expect(group.reference[index]?.term == acknowledged.term, "acknowledged \(index) lost")
        }
        let hashes = Set(group.nodes.map(\.stateHash))
        #expect(hashes.count == 1)
        #expect(group.reference[final]?.hash == hashes.first)
        // And the group still commits.
        let commitTook = group.commitOne("after the faults", limit: 3_000)
        #expect(commitTook != nil, "\(scenario) seed \(seed): a proposal after convergence did not commit")
        #expect(group.violations.isEmpty, "\(scenario) seed \(seed): \(group.violations.prefix(5))")
        print(
            "SIMULATION raft \(scenario) n=\(size) seed=\(seed): \(group.acknowledged.count) of "
                + "\(group.acceptedCount) accepted proposals acknowledged, \(group.leadersByTerm.count) leaders, "
                + "\(group.crashCount) crashes, \(group.snapshotInstalls) snapshots installed, "
                + "converged in \(took) ms at commit \(final), then committed one in \(commitTook ?? -1) ms"
        )
    }
}
