import Foundation
import NIOCore
import Testing

@testable import Replication

/// A durable queue replicated on 3 and 5 replicas, end to end through the sans-IO stack
/// (``ReplicatedQueue``, its records read back from a simulated disk, its messages through
/// the wire encoding), under message loss, delay, partitions, crashes and restarts. Publishers
/// send to whichever replica leads; a consumer takes messages from it and acknowledges them.
///
/// Checked, for every scenario and seed:
/// - at most one leader per term;
/// - no receipted message is lost: once the faults stop and the replicas converge, every
///   message whose enqueue was receipted is still queued on every replica unless a consumer
///   acknowledged it;
/// - no acknowledged message is delivered again: once a settle committed, no leader hands the
///   message out;
/// - the replicas converge on the same queue.
///
/// `SIM_SEEDS` sets the number of seeds per scenario and size (3 by default: the suite also
/// runs under ThreadSanitizer; `SIM_SEEDS=50`, 400 cases, passed in 90 s in a debug build).
@Suite("Replicated queue simulation")
struct ReplicatedQueueSimulationTests {
    enum Scenario: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case lossAndDelay
        case partitions
        case crashes
        case everything

        var testDescription: String { rawValue }
    }

    struct Run: Sendable, CustomTestStringConvertible {
        var size: Int
        var seed: UInt64
        var testDescription: String { "n=\(size) seed=\(seed)" }
    }

    static let runs: [Run] = {
        let count = ProcessInfo.processInfo.environment["SIM_SEEDS"].flatMap { Int($0) } ?? 3
        return [3, 5].flatMap { size in (1...UInt64(max(count, 1))).map { Run(size: size, seed: $0) } }
    }()

    @Test(arguments: Scenario.allCases, ReplicatedQueueSimulationTests.runs)
    func receiptedMessagesAreNeverLostAndAcknowledgedOnesNeverComeBack(_ scenario: Scenario, run: Run) {
        var simulation = QueueSimulation(size: run.size, seed: run.seed)
        simulation.lossRate = scenario == .crashes ? 0.01 : 0.05
        simulation.partitions = scenario == .partitions || scenario == .everything
        simulation.crashes = scenario == .crashes || scenario == .everything
        simulation.run(milliseconds: 6_000, faults: true, clients: true)
        simulation.run(milliseconds: 4_000, faults: false, clients: true)
        simulation.run(milliseconds: 4_000, faults: false, clients: false)

        #expect(simulation.violations.isEmpty, "\(simulation.violations.prefix(5))")
        let converged = simulation.converged
        #expect(converged, "replicas did not converge")
        #expect(simulation.receipted.count > 20, "only \(simulation.receipted.count) messages receipted")
        #expect(simulation.acknowledged.count > 5, "only \(simulation.acknowledged.count) acknowledgements receipted")
        let final = simulation.finalQueue
        // A message leaves the queue only when a consumer acknowledged it (an acknowledgement
        // may commit without its receipt, when the leader that took it fell).
        for id in simulation.receipted where !final.contains(id) {
            #expect(simulation.acknowledgedAtAll.contains(id), "receipted message \(id) lost")
        }
        for id in simulation.acknowledged { #expect(!final.contains(id), "acknowledged message \(id) still queued") }
    }
}

/// The simulated world: replicas, their disks, the network and the clients.
struct QueueSimulation {
    struct Replica {
        var queue: ReplicatedQueue?
        /// What the disk holds for sure, and writes still on their way (lost by a crash).
        var durable: [LogRecord] = []
        var pending: [(due: Int64, records: [ReplicaRecord], then: ReplicatedQueue.Durability?)] = []
    }

    struct Envelope {
        var due: Int64
        var from: Int
        var to: Int
        var bytes: ByteBuffer
    }

    static let group = "/queue/sim"
    var replicas: [Replica]
    var ids: [ReplicaID]
    var network: [Envelope] = []
    var random: SplitMix64
    var now: Int64 = 0
    var lossRate = 0.0
    var partitions = false
    var crashes = false
    var isolated: Set<Int> = []
    var partitionEnds: Int64 = 0

    var leadersByTerm: [UInt64: ReplicaID] = [:]
    var violations: [String] = []
    var tokens: [UInt64: (replica: Int, command: QueueCommand, index: UInt64)] = [:]
    var nextToken: UInt64 = 1
    var receipted: Set<UInt64> = []
    var acknowledged: Set<UInt64> = []
    /// Every message a consumer acknowledged, receipted or not.
    var acknowledgedAtAll: Set<UInt64> = []
    var published = 0

    init(size: Int, seed: UInt64) {
        random = SplitMix64(seed: seed)
        ids = (0..<size).map { ReplicaID("r\($0)") }
        replicas = Array(repeating: Replica(), count: size)
        for index in 0..<size { start(index) }
    }

    var deadline: NIODeadline { .uptimeNanoseconds(UInt64(now + 1_000) * 1_000_000) }
    var members: RaftMembers { RaftMembers(voters: Set(ids)) }

    /// Starts (or restarts) a replica from what its disk holds, read back as the node would.
    mutating func start(_ index: Int) {
        var recovery = ReplicaLogRecovery()
        for (offset, record) in replicas[index].durable.enumerated() {
            do {
                try recovery.replay(
                    RecoveredRecord(position: LogPosition(segment: 1, offset: UInt64(offset)), record: record)
                )
            } catch {
                violations.append("replica \(index) cannot read its log back: \(error)")
            }
        }
        replicas[index].pending = []
        replicas[index].queue = ReplicatedQueue(
            group: Self.group,
            id: ids[index],
            recovered: recovery.groups[Self.group],
            members: members,
            now: deadline,
            random: random.split()
        )
    }

    mutating func run(milliseconds: Int64, faults: Bool, clients active: Bool) {
        let end = now + milliseconds
        while now < end {
            now += 10
            if faults {
                injectFaults()
            } else if !isolated.isEmpty || replicas.contains(where: { $0.queue == nil }) {
                isolated = []
                for index in replicas.indices where replicas[index].queue == nil { start(index) }
            }
            for index in replicas.indices where replicas[index].queue != nil {
                carry(replicas[index].queue!.tick(now: deadline), of: index)
            }
            deliverMessages()
            completeWrites()
            checkLeaders()
            if active { clients() }
            if now % 500 == 0 {
                // Compaction as the node runs it now and then: lagging and restarted replicas
                // then catch up by snapshot.
                for index in replicas.indices where replicas[index].queue != nil {
                    carry(replicas[index].queue!.compact(minimumEntries: 64), of: index)
                }
            }
        }
    }

    mutating func injectFaults() {
        if partitions {
            if isolated.isEmpty, random.chance(0.008) {
                let count = Int(random.next() % UInt64((replicas.count - 1) / 2)) + 1
                isolated = Set((0..<count).map { _ in Int(random.next() % UInt64(replicas.count)) })
                partitionEnds = now + 500 + Int64(random.next() % 2_000)
            } else if !isolated.isEmpty, now >= partitionEnds {
                isolated = []
            }
        }
        if crashes {
            let down = replicas.filter { $0.queue == nil }.count
            if down < (replicas.count - 1) / 2, random.chance(0.006) {
                let victim = Int(random.next() % UInt64(replicas.count))
                if replicas[victim].queue != nil {
                    replicas[victim].queue = nil
                    replicas[victim].pending = []
                }
            }
            for index in replicas.indices where replicas[index].queue == nil && random.chance(0.008) {
                start(index)
            }
        }
    }

    mutating func carry(_ effects: [ReplicatedQueue.Effect], of index: Int) {
        for effect in effects {
            switch effect {
            case .write(let records, let durability):
                let last = replicas[index].pending.last?.due ?? now
                replicas[index].pending.append((max(last, now + 1 + Int64(random.next() % 10)), records, durability))
            case .send(let message, let peer):
                guard !random.chance(lossRate) else { continue }
                var bytes = ByteBuffer()
                RaftEnvelope(group: Self.group, message: message).encode(into: &bytes)
                let to = ids.firstIndex(of: peer)!
                network.append(Envelope(due: now + Int64(random.next() % 300), from: index, to: to, bytes: bytes))
            case .committed(let token):
                guard let proposal = tokens.removeValue(forKey: token) else { continue }
                switch proposal.command {
                case .enqueue: receipted.insert(proposal.index)
                case .settle(let ids): acknowledged.formUnion(ids)
                case .requeue, .move, .bind, .unbind: break
                }
            case .lost(let token):
                tokens[token] = nil
            case .ready, .roleChanged:
                break
            }
        }
    }

    mutating func deliverMessages() {
        var later: [Envelope] = []
        let due = network.filter { $0.due <= now }
        later = network.filter { $0.due > now }
        network = later
        for envelope in due {
            guard replicas[envelope.to].queue != nil, replicas[envelope.from].queue != nil,
                isolated.contains(envelope.from) == isolated.contains(envelope.to)
            else { continue }
            guard let decoded = RaftEnvelope(decoding: envelope.bytes), decoded.group == Self.group else {
                violations.append("a message did not decode")
                continue
            }
            carry(
                replicas[envelope.to].queue!.receive(decoded.message, from: ids[envelope.from], now: deadline),
                of: envelope.to
            )
        }
    }

    mutating func completeWrites() {
        for index in replicas.indices where replicas[index].queue != nil {
            while let write = replicas[index].pending.first, write.due <= now {
                replicas[index].pending.removeFirst()
                // Through the log's encoding, as the node's disk holds it.
                replicas[index].durable.append(contentsOf: write.records.map(\.logRecord))
                if let durability = write.then {
                    carry(replicas[index].queue!.written(durability), of: index)
                }
                guard replicas[index].queue != nil else { break }
            }
        }
    }

    mutating func checkLeaders() {
        for (index, replica) in replicas.enumerated() {
            guard let raft = replica.queue?.raft, raft.role == .leader else { continue }
            if let other = leadersByTerm[raft.term], other != ids[index] {
                violations.append("two leaders in term \(raft.term): \(other) and \(ids[index])")
            }
            leadersByTerm[raft.term] = ids[index]
        }
    }

    /// A publisher sends to the leader; a consumer takes one message from it and acknowledges.
    mutating func clients() {
        guard let leader = replicas.indices.first(where: { replicas[$0].queue?.raft.role == .leader }) else { return }
        if random.chance(0.3) {
            published += 1
            propose(.enqueue(ByteBuffer(string: "m\(published)")), at: leader)
        }
        guard replicas[leader].queue!.mayDispatch, random.chance(0.2),
            let message = replicas[leader].queue!.state.inOrder.first(where: { _ in random.chance(0.5) })
        else { return }
        if acknowledged.contains(message.id) {
            violations.append("message \(message.id) delivered again after its acknowledgement committed")
        }
        acknowledgedAtAll.insert(message.id)
        propose(.settle([message.id]), at: leader)
    }

    mutating func propose(_ command: QueueCommand, at index: Int) {
        let token = nextToken
        nextToken += 1
        let (result, effects) = replicas[index].queue!.propose(command, token: token, now: deadline)
        if case .accepted(let entry, _) = result { tokens[token] = (index, command, entry) }
        carry(effects, of: index)
    }

    var converged: Bool {
        let queues = replicas.compactMap(\.queue)
        guard queues.count == replicas.count, let leader = queues.first(where: { $0.raft.role == .leader }) else {
            return false
        }
        return queues.allSatisfy { $0.state.appliedIndex == leader.raft.commitIndex }
            && Set(queues.map { Array($0.state.inOrder.map(\.id)) }).count == 1
    }

    /// The queue on the leader (the same on every replica once converged).
    var finalQueue: Set<UInt64> {
        let leader = replicas.compactMap(\.queue).first { $0.raft.role == .leader }
        return Set(leader?.state.inOrder.map(\.id) ?? [])
    }
}

extension SplitMix64 {
    mutating func chance(_ probability: Double) -> Bool {
        Double(next() % 1_000_000) < probability * 1_000_000
    }

    /// A generator of its own for each replica's election timer.
    mutating func split() -> SplitMix64 { SplitMix64(seed: next()) }
}
