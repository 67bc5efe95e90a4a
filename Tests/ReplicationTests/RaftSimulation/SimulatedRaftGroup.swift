import NIOCore

@testable import Replication

/// One Raft group on a simulated network with a virtual clock (milliseconds), simulated
/// disks with fsync latency, and faults: message loss, delay and reordering, partitions,
/// crashes with restarts from exactly what was durable, and leadership transfers.
///
/// The state machine of every replica is a running hash over the entries it applied; a
/// global reference records the first (term, hash) seen at each index, against which every
/// later apply and every installed snapshot is checked (state machine safety). Whatever
/// breaks an invariant is recorded in ``violations``.
final class SimulatedRaftGroup {
    struct Configuration {
        var size = 3
        var seed: UInt64 = 1
        var lossRate = 0.0
        var maxDelay: Int64 = 0
        var fsyncLatency: ClosedRange<Int64> = 1...15
        var partitions = false
        var crashes = false
        /// At most this many replicas down at once.
        var maxDown = 1
        var transfers = false
        /// Compact a replica's log when it applied this many entries past its snapshot.
        var compactionThreshold: UInt64 = 30
        var settings = RaftSettings()
    }

    struct Disk {
        var hardState = RaftHardState()
        var snapshot: RaftSnapshotBase?
        var entries: [RaftEntry] = []
    }

    struct Node {
        let id: ReplicaID
        var instance: RaftInstance?
        var disk = Disk()
        /// Writes in the order asked, each with the time its fsync completes.
        var writes: [(done: Int64, directive: RaftInstance.Directive)] = []
        var appliedIndex: UInt64 = 0
        var stateHash: UInt64 = 0
        var downUntil: Int64 = 0
        var restarts: UInt64 = 0
        /// Proposals accepted by this replica as leader: index -> (term, payload).
        var proposals: [UInt64: (term: UInt64, payload: String)] = [:]

        var up: Bool { instance != nil }
    }

    struct Message {
        var at: Int64
        var sequence: Int
        var from: Int
        var to: Int
        var message: RaftMessage
    }

    let configuration: Configuration
    let initialMembers: RaftMembers
    var nodes: [Node]
    var now: Int64 = 0
    var random: SplitMix64
    var inFlight: [Message] = []
    var sequence = 0
    /// Side of the partition each replica is on; all zeros when healed.
    var side: [Int]
    var partitionHealsAt: Int64 = 0
    var faultsActive = true
    var lossRate: Double

    var reference: [UInt64: (term: UInt64, hash: UInt64)] = [:]
    var acknowledged: [UInt64: (term: UInt64, payload: String)] = [:]
    var leadersByTerm: [UInt64: ReplicaID] = [:]
    var violations: [String] = []
    var proposalCount = 0
    var acceptedCount = 0
    var crashCount = 0
    var snapshotInstalls = 0

    init(_ configuration: Configuration) {
        self.configuration = configuration
        self.random = SplitMix64(seed: configuration.seed)
        self.lossRate = configuration.lossRate
        let ids = (0..<configuration.size).map { ReplicaID("r\($0)") }
        initialMembers = RaftMembers(voters: Set(ids))
        nodes = ids.map { Node(id: $0) }
        side = Array(repeating: 0, count: configuration.size)
        for index in nodes.indices { start(index) }
    }

    static func deadline(_ milliseconds: Int64) -> NIODeadline {
        .uptimeNanoseconds(1_000_000_000) + .milliseconds(milliseconds)
    }

    var deadline: NIODeadline { Self.deadline(now) }

    // MARK: - Replicas

    func start(_ index: Int) {
        var node = nodes[index]
        node.restarts += 1
        node.instance = RaftInstance(
            id: node.id,
            hardState: node.disk.hardState,
            snapshot: node.disk.snapshot,
            entries: node.disk.entries,
            initialMembers: initialMembers,
            settings: configuration.settings,
            now: deadline,
            random: SplitMix64(seed: configuration.seed &* 31 &+ UInt64(index) &* 1_000_003 &+ node.restarts)
        )
        // The state machine restarts from the snapshot.
        if let snapshot = node.disk.snapshot {
            node.appliedIndex = snapshot.index
            node.stateHash = Self.decode(snapshot.state)
        } else {
            node.appliedIndex = 0
            node.stateHash = 0
        }
        nodes[index] = node
    }

    func crash(_ index: Int, for milliseconds: Int64) {
        crashCount += 1
        nodes[index].instance = nil
        nodes[index].writes = []
        nodes[index].proposals = [:]
        nodes[index].downUntil = now + milliseconds
    }

    /// Runs an event on a live replica and carries out its directives.
    func run(_ index: Int, _ body: (inout RaftInstance) -> [RaftInstance.Directive]) {
        guard nodes[index].instance != nil else { return }
        let directives = body(&nodes[index].instance!)
        handle(directives, of: index)
    }

    func handle(_ directives: [RaftInstance.Directive], of index: Int) {
        for directive in directives {
            switch directive {
            case .send(let message, let to):
                guard let target = nodes.firstIndex(where: { $0.id == to }) else { continue }
                send(message, from: index, to: target)
            case .persist, .persistHardState, .persistSnapshot:
                let latency = Int64.random(in: configuration.fsyncLatency, using: &random)
                let done = max(nodes[index].writes.last?.done ?? 0, now + latency)
                nodes[index].writes.append((done, directive))
            case .apply(let entries):
                for entry in entries { apply(entry, at: index) }
            case .installSnapshot(let base):
                let hash = Self.decode(base.state)
                if let expected = reference[base.index], expected.hash != hash || expected.term != base.term {
                    violations.append("\(nodes[index].id) installed a snapshot at \(base.index) unlike the reference")
                }
                snapshotInstalls += 1
                nodes[index].appliedIndex = base.index
                nodes[index].stateHash = hash
                nodes[index].proposals = [:]
            case .roleChanged(let role, let term, _):
                guard role == .leader else { continue }
                if let other = leadersByTerm[term], other != nodes[index].id {
                    violations.append("two leaders in term \(term): \(other) and \(nodes[index].id)")
                }
                leadersByTerm[term] = nodes[index].id
            case .membersChanged:
                break
            }
        }
    }

    func apply(_ entry: RaftEntry, at index: Int) {
        var node = nodes[index]
        guard entry.index == node.appliedIndex + 1 else {
            violations.append("\(node.id) applied \(entry.index) after \(node.appliedIndex)")
            return
        }
        node.stateHash = Self.mix(node.stateHash, entry)
        node.appliedIndex = entry.index
        if let expected = reference[entry.index] {
            if expected.term != entry.term || expected.hash != node.stateHash {
                violations.append("\(node.id) applied \(entry.index) (term \(entry.term)) unlike the reference")
            }
        } else {
            reference[entry.index] = (entry.term, node.stateHash)
        }
        if let proposal = node.proposals.removeValue(forKey: entry.index), proposal.term == entry.term {
            if entry.text != proposal.payload {
                violations.append("\(node.id) committed \(entry.index) with another payload")
            }
            acknowledged[entry.index] = proposal
        }
        nodes[index] = node
    }

    // MARK: - Network and disks

    func send(_ message: RaftMessage, from: Int, to: Int) {
        guard side[from] == side[to] else { return }
        if lossRate > 0, Double.random(in: 0..<1, using: &random) < lossRate { return }
        let delay = configuration.maxDelay > 0 ? Int64.random(in: 0...configuration.maxDelay, using: &random) : 0
        sequence += 1
        inFlight.append(Message(at: now + 1 + delay, sequence: sequence, from: from, to: to, message: message))
    }

    func deliverDue() {
        guard inFlight.contains(where: { $0.at <= now }) else { return }
        let due = inFlight.filter { $0.at <= now }.sorted { ($0.at, $0.sequence) < ($1.at, $1.sequence) }
        inFlight.removeAll { $0.at <= now }
        for message in due where side[message.from] == side[message.to] {
            let sender = nodes[message.from].id
            run(message.to) { $0.receive(message.message, from: sender, now: Self.deadline(now)) }
        }
    }

    func completeWrites(of index: Int) {
        while let write = nodes[index].writes.first, write.done <= now, nodes[index].up {
            nodes[index].writes.removeFirst()
            switch write.directive {
            case .persist(let entries, let truncatingAfter):
                if let truncatingAfter { nodes[index].disk.entries.removeAll { $0.index > truncatingAfter } }
                nodes[index].disk.entries.append(contentsOf: entries)
                if let last = entries.last { run(index) { $0.persisted(through: last.index, term: last.term) } }
            case .persistHardState(let state):
                nodes[index].disk.hardState = state
                run(index) { $0.hardStatePersisted(state) }
            case .persistSnapshot(let base):
                nodes[index].disk.snapshot = base
                nodes[index].disk.entries = []
                run(index) { $0.persisted(through: base.index, term: base.term) }
            default:
                break
            }
        }
    }

    func compact(_ index: Int) {
        guard let instance = nodes[index].instance else { return }
        let through = min(instance.appliedIndex, instance.persistedIndex)
        guard through >= instance.snapshotIndex + configuration.compactionThreshold,
            let reference = reference[through]
        else { return }
        guard let base = nodes[index].instance!.compact(through: through, state: Self.encode(reference.hash)) else {
            violations.append("\(nodes[index].id) refused to compact through \(through)")
            return
        }
        nodes[index].disk.snapshot = base
        nodes[index].disk.entries.removeAll { $0.index <= base.index }
    }

    // MARK: - Time

    var currentLeader: Int? {
        nodes.indices.filter { nodes[$0].instance?.role == .leader }
            .max { nodes[$0].instance!.term < nodes[$1].instance!.term }
    }

    /// Advances the clock by 5 ms: deliveries, fsyncs, ticks (every 10 ms), clients (every
    /// 50 ms while faults run), compaction and faults.
    func step() {
        now += 5
        deliverDue()
        for index in nodes.indices { completeWrites(of: index) }
        if now % 10 == 0 {
            for index in nodes.indices { run(index) { $0.tick(now: Self.deadline(now)) } }
        }
        if faultsActive && now % 50 == 0, let leader = currentLeader {
            proposalCount += 1
            let payload = "p\(proposalCount)"
            var result: RaftInstance.ProposeResult = .notLeader(leaderHint: nil)
            run(leader) {
                let outcome = $0.propose(ByteBuffer(string: payload), now: Self.deadline(now))
                result = outcome.result
                return outcome.directives
            }
            if case .accepted(let index, let term) = result {
                acceptedCount += 1
                nodes[leader].proposals[index] = (term, payload)
            }
        }
        if now % 500 == 0 {
            for index in nodes.indices { compact(index) }
        }
        if faultsActive { injectFaults() }
        for index in nodes.indices where !nodes[index].up && now >= nodes[index].downUntil {
            start(index)
        }
    }

    func injectFaults() {
        let size = configuration.size
        if configuration.partitions {
            if partitionHealsAt > 0 && now >= partitionHealsAt {
                side = Array(repeating: 0, count: size)
                partitionHealsAt = 0
            } else if partitionHealsAt == 0 && now % 1_000 == 0 && Int.random(in: 0..<3, using: &random) == 0 {
                let minority = Int.random(in: 1...(size / 2), using: &random)
                let cut = Array(0..<size).shuffled(using: &random).prefix(minority)
                side = (0..<size).map { cut.contains($0) ? 1 : 0 }
                partitionHealsAt = now + Int64.random(in: 1_000...3_000, using: &random)
            }
        }
        if configuration.crashes && now % 500 == 0 && Int.random(in: 0..<3, using: &random) == 0 {
            let down = nodes.filter { !$0.up }.count
            let live = nodes.indices.filter { nodes[$0].up }
            if down < configuration.maxDown, let victim = live.randomElement(using: &random) {
                crash(victim, for: Int64.random(in: 300...3_000, using: &random))
            }
        }
        if configuration.transfers && now % 3_000 == 0, let leader = currentLeader {
            // As a shell draining the node would: to a live replica.
            let others = nodes.indices.filter { $0 != leader && nodes[$0].up }
            if let target = others.randomElement(using: &random) {
                let id = nodes[target].id
                run(leader) { $0.transferLeadership(to: id, now: Self.deadline(now)).directives }
            }
        }
    }

    func run(for milliseconds: Int64) {
        let end = now + milliseconds
        while now < end { step() }
    }

    /// Stops the faults: heals the network, restarts every replica, stops the loss.
    func stopFaults() {
        faultsActive = false
        lossRate = 0
        side = Array(repeating: 0, count: configuration.size)
        partitionHealsAt = 0
        for index in nodes.indices where !nodes[index].up { start(index) }
    }

    /// All replicas up, one leader, and everyone committed and applied all of its log.
    var converged: Bool {
        guard let leader = currentLeader, let leading = nodes[leader].instance else { return false }
        return nodes.allSatisfy { node in
            guard let instance = node.instance else { return false }
            return instance.commitIndex == leading.lastIndex && node.appliedIndex == leading.lastIndex
                && instance.lastIndex == leading.lastIndex
        }
    }

    /// Proposes `payload` at the leader and runs until the leader applied it; returns how
    /// long that took, or nil if it wasn't within `limit` ms.
    func commitOne(_ payload: String, limit: Int64) -> Int64? {
        let start = now
        while now - start < limit {
            if let leader = currentLeader {
                var result: RaftInstance.ProposeResult = .notLeader(leaderHint: nil)
                run(leader) {
                    let outcome = $0.propose(ByteBuffer(string: payload), now: Self.deadline(now))
                    result = outcome.result
                    return outcome.directives
                }
                if case .accepted(let index, let term) = result {
                    nodes[leader].proposals[index] = (term, payload)
                    while now - start < limit {
                        step()
                        if let done = acknowledged[index] { return done.term == term ? now - start : nil }
                    }
                    return nil
                }
            }
            step()
        }
        return nil
    }

    // MARK: - State machine

    static func mix(_ hash: UInt64, _ value: UInt64) -> UInt64 {
        var x = (hash ^ value) &* 0x100_0000_01B3
        x ^= x >> 29
        return x &* 0xBF58_476D_1CE4_E5B9
    }

    static func mix(_ hash: UInt64, _ entry: RaftEntry) -> UInt64 {
        var hash = mix(mix(hash, entry.index), entry.term)
        switch entry.content {
        case .noop:
            hash = mix(hash, 1)
        case .command(let buffer):
            for byte in buffer.readableBytesView { hash = mix(hash, UInt64(byte)) }
        case .members(let members):
            hash = mix(hash, 2 &+ UInt64(members.voters.count))
        }
        return hash
    }

    static func encode(_ hash: UInt64) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(hash)
        return buffer
    }

    static func decode(_ buffer: ByteBuffer) -> UInt64 {
        buffer.getInteger(at: buffer.readerIndex, as: UInt64.self) ?? 0
    }
}
