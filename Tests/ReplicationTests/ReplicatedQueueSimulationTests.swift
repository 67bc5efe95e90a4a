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
/// The `replacement` scenario runs one spare node beside the replica set, and takes one
/// replica away for longer than the replace-after time, then brings it back (with message
/// delay and 1% loss, no other fault: a group short of one voter has no margin left): the leader
/// reshapes the replica set as the node does (``ReplicaSetPlan``), so the spare replaces it and
/// then hands its place back, and each removed replica drops its copy on the leader's
/// ``RaftRemoval``. Checked besides: the final replica set is placement's, and no node outside
/// it still holds a copy.
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
        case replacement

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
        var simulation = QueueSimulation(size: run.size, seed: run.seed, spares: scenario == .replacement ? 1 : 0)
        simulation.lossRate = scenario == .crashes || scenario == .replacement ? 0.01 : 0.05
        simulation.partitions = scenario == .partitions || scenario == .everything
        simulation.crashes = scenario == .crashes || scenario == .everything
        if scenario == .replacement { simulation.scheduleLongOutage() }
        // Long enough for an election, a replacement to catch up and the removal to commit
        // while the replica is away.
        simulation.run(milliseconds: scenario == .replacement ? 10_000 : 6_000, faults: true, clients: true)
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
        if scenario == .replacement {
            let replaced = simulation.replaced
            #expect(replaced, "the replica away was never replaced")
            let members = simulation.finalMembers
            let wanted = RaftMembers(voters: Set(simulation.placement))
            #expect(members == wanted, "final replica set")
            let holders = simulation.replicas.indices.filter { simulation.replicas[$0].queue != nil }
            let held = holders.map { simulation.ids[$0] }.sorted()
            let placement = simulation.placement.sorted()
            #expect(held == placement, "copies held")
        }
    }
}

/// The simulated world: replicas, their disks, the network and the clients.
struct QueueSimulation {
    struct Replica {
        /// The node runs; it may hold no copy of the queue (a spare, or one that dropped it).
        var up = true
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
        /// A leader's word that `to` may drop its copy, instead of a Raft message.
        var removal: RaftRemoval?
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
    /// The first `size` nodes placement ranks for the queue: its replica set at the start.
    var placement: [ReplicaID] = []
    var downSince: [Int: Int64] = [:]
    /// One replica taken away for longer than ``replaceAfter`` (`replacement`).
    var longOutage: (index: Int, from: Int64, until: Int64)?
    static let replaceAfter: Int64 = 1_000
    /// Whether a replica set change ever removed the replica away for long.
    var replaced = false
    /// Replicas removed from the set that were not yet told, by the leader.
    var departed: Set<ReplicaID> = []

    var leadersByTerm: [UInt64: ReplicaID] = [:]
    var violations: [String] = []
    var tokens: [UInt64: (replica: Int, command: QueueCommand, index: UInt64)] = [:]
    var nextToken: UInt64 = 1
    var receipted: Set<UInt64> = []
    var acknowledged: Set<UInt64> = []
    /// Every message a consumer acknowledged, receipted or not.
    var acknowledgedAtAll: Set<UInt64> = []
    var published = 0

    init(size: Int, seed: UInt64, spares: Int = 0) {
        random = SplitMix64(seed: seed)
        ids = (0..<size + spares).map { ReplicaID("r\($0)") }
        placement = ReplicaPlacement.replicas(of: Self.group, among: ids, factor: size)
        replicas = Array(repeating: Replica(), count: ids.count)
        // The group's first configuration, written before anything else of it (as the node
        // does): a replica restarted from its disk reads it back.
        let bootstrap = RaftSnapshotBase(index: 0, term: 0, members: members, state: ByteBuffer())
        for index in ids.indices where placement.contains(ids[index]) {
            replicas[index].durable = [
                ReplicaRecord.snapshot(group: Self.group, bootstrap, keepsLaterEntries: true).logRecord
            ]
        }
        for index in ids.indices { start(index) }
    }

    var deadline: NIODeadline { .uptimeNanoseconds(UInt64(now + 1_000) * 1_000_000) }
    var members: RaftMembers { RaftMembers(voters: Set(placement)) }

    mutating func scheduleLongOutage() {
        // On the simulation's 10 ms steps.
        let from = 500 + Int64(random.next() % 100) * 10
        let index = ids.firstIndex(of: placement[Int(random.next() % UInt64(placement.count))])!
        // Back when the faults stop.
        longOutage = (index, from, .max)
    }

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
        replicas[index].up = true
        downSince[index] = nil
        // A node that never held the queue, or dropped it, holds none until a leader sends it
        // entries.
        guard let recovered = recovery.groups[Self.group] else {
            replicas[index].queue = nil
            return
        }
        replicas[index].queue = ReplicatedQueue(
            group: Self.group,
            id: ids[index],
            recovered: recovered,
            members: members,
            now: deadline,
            random: random.split()
        )
    }

    mutating func crash(_ index: Int) {
        replicas[index].up = false
        replicas[index].queue = nil
        replicas[index].pending = []
        downSince[index] = now
    }

    mutating func run(milliseconds: Int64, faults: Bool, clients active: Bool) {
        let end = now + milliseconds
        while now < end {
            now += 10
            if faults {
                injectFaults()
            } else if !isolated.isEmpty || replicas.contains(where: { !$0.up }) {
                isolated = []
                for index in replicas.indices where !replicas[index].up { start(index) }
            }
            if now % 100 == 0 { reshapeReplicaSet() }
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
        if let outage = longOutage {
            if now == outage.from {
                crash(outage.index)
            } else if now == outage.until {
                start(outage.index)
            }
        }
        if crashes {
            let down = replicas.filter { !$0.up }.count
            if down < (replicas.count - 1) / 2, random.chance(0.006) {
                let victim = Int(random.next() % UInt64(replicas.count))
                if replicas[victim].up { crash(victim) }
            }
            for index in replicas.indices where !replicas[index].up && random.chance(0.008) {
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
            guard replicas[envelope.to].up, replicas[envelope.from].up,
                isolated.contains(envelope.from) == isolated.contains(envelope.to)
            else { continue }
            if let removal = envelope.removal {
                guard let queue = replicas[envelope.to].queue, queue.raft.mayForget(after: removal) else { continue }
                drop(envelope.to)
                continue
            }
            guard let decoded = RaftEnvelope(decoding: envelope.bytes), decoded.group == Self.group else {
                violations.append("a message did not decode")
                continue
            }
            if replicas[envelope.to].queue == nil {
                switch decoded.message {
                case .appendEntries, .installSnapshot:
                    makeReplica(envelope.to, catchingUp: true)
                case .preVote, .vote:
                    // The group's first election, as far as a node without it can tell: made
                    // from placement (a node that dropped its copy included), empty.
                    guard placement.contains(ids[envelope.to]) else { continue }
                    makeReplica(envelope.to, catchingUp: false)
                default:
                    continue
                }
            }
            let sender = ids[envelope.from]
            carry(replicas[envelope.to].queue!.receive(decoded.message, from: sender, now: deadline), of: envelope.to)
            if let removal = replicas[envelope.to].queue?.raft.removal(of: sender) {
                tell(envelope.from, removal, from: envelope.to)
            }
        }
    }

    mutating func completeWrites() {
        for index in replicas.indices where replicas[index].up {
            while let write = replicas[index].pending.first, write.due <= now {
                replicas[index].pending.removeFirst()
                // Through the log's encoding, as the node's disk holds it.
                replicas[index].durable.append(contentsOf: write.records.map(\.logRecord))
                if let durability = write.then, replicas[index].queue != nil {
                    carry(replicas[index].queue!.written(durability), of: index)
                }
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
        guard let leader = replicas.compactMap(\.queue).first(where: { $0.raft.role == .leader }) else { return false }
        let memberIndices = ids.indices.filter { leader.raft.members.contains(ids[$0]) }
        let queues = memberIndices.compactMap { replicas[$0].queue }
        guard queues.count == memberIndices.count else { return false }
        return queues.allSatisfy { $0.state.appliedIndex == leader.raft.commitIndex }
            && Set(queues.map { Array($0.state.inOrder.map(\.id)) }).count == 1
    }

    /// The replica set the leader knows at the end.
    var finalMembers: RaftMembers? {
        replicas.compactMap(\.queue).first { $0.raft.role == .leader }?.raft.members
    }

    /// A replica for a node that was sent a message of the group and holds none, as the
    /// node's shell makes it: from the group's first configuration when it is in it (the
    /// configuration is no entry of the log), else from none; for a leader's entries, catching
    /// up (it neither votes nor stands until it holds what the leader committed).
    mutating func makeReplica(_ index: Int, catchingUp: Bool) {
        let configuration = placement.contains(ids[index]) ? members : RaftMembers(voters: [])
        let bootstrap = RaftSnapshotBase(index: 0, term: 0, members: configuration, state: ByteBuffer())
        let last = replicas[index].pending.last?.due ?? now
        replicas[index].pending.append(
            (max(last, now + 1), [.snapshot(group: Self.group, bootstrap, keepsLaterEntries: true)], nil)
        )
        replicas[index].queue = ReplicatedQueue(
            group: Self.group,
            id: ids[index],
            recovered: nil,
            members: configuration,
            catchingUp: catchingUp,
            now: deadline,
            random: random.split()
        )
    }

    /// The node drops its copy: from memory, and from its disk with a `forget` record.
    mutating func drop(_ index: Int) {
        replicas[index].queue = nil
        // Writes still on their way complete, but report to no one (the node's shell checks
        // the queue is still the one that wrote).
        replicas[index].pending = replicas[index].pending.map { ($0.due, $0.records, nil) }
        let last = replicas[index].pending.last?.due ?? now
        replicas[index].pending.append((max(last, now + 1), [.forget(group: Self.group)], nil))
    }

    mutating func tell(_ index: Int, _ removal: RaftRemoval, from sender: Int) {
        guard !random.chance(lossRate) else { return }
        network.append(
            Envelope(
                due: now + Int64(random.next() % 300),
                from: sender,
                to: index,
                bytes: ByteBuffer(),
                removal: removal
            )
        )
    }

    /// On the leader, as the node's shell does once a second: one step towards placement's
    /// replica set among the nodes up and those down for less than ``replaceAfter``; then the
    /// replicas it removed are told they may drop their copies.
    mutating func reshapeReplicaSet() {
        guard let leader = replicas.indices.first(where: { replicas[$0].queue?.raft.role == .leader }),
            replicas[leader].queue!.mayDispatch
        else { return }
        let raft = replicas[leader].queue!.raft
        let live = ids.indices.filter { replicas[$0].up }.map { ids[$0] }
        let gone = Set(downSince.filter { now - $0.value >= Self.replaceAfter }.keys.map { ids[$0] })
        let wanted = ReplicaSetPlan.wanted(
            of: Self.group,
            members: raft.members,
            live: live,
            gone: gone,
            factor: placement.count
        )
        let heardSince = deadline - .milliseconds(raft.settings.electionTimeout.lowerBound)
        switch ReplicaSetPlan.nextStep(
            members: raft.members,
            wanted: wanted,
            leader: raft.id,
            matchIndex: raft.progress.filter { $0.value.lastHeard >= heardSince }.mapValues(\.matchIndex),
            lastIndex: raft.lastIndex
        ) {
        case .change(let change):
            let (result, effects) = replicas[leader].queue!.proposeMembers(change, now: deadline)
            carry(effects, of: leader)
            if case .accepted = result, case .remove(let removed) = change {
                departed.insert(removed)
                if let outage = longOutage, removed == ids[outage.index] { replaced = true }
            }
        case .transferLeadership(let target):
            carry(replicas[leader].queue!.transferLeadership(to: target, now: deadline).effects, of: leader)
        case nil:
            break
        }
        for removed in departed {
            guard let removal = replicas[leader].queue!.raft.removal(of: removed) else { continue }
            tell(ids.firstIndex(of: removed)!, removal, from: leader)
            departed.remove(removed)
        }
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
