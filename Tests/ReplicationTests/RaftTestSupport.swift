import NIOCore

@testable import Replication

/// A tiny seeded generator (SplitMix64), so every random choice of a test is reproducible.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Virtual time: `time(ms)` is `ms` milliseconds after an arbitrary origin.
func time(_ milliseconds: Int64) -> NIODeadline {
    .uptimeNanoseconds(1_000_000_000) + .milliseconds(milliseconds)
}

func replica(_ name: String) -> ReplicaID { ReplicaID(name) }

func command(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

extension RaftEntry {
    var text: String? {
        guard case .command(let buffer) = content else { return nil }
        return String(buffer: buffer)
    }
}

extension [RaftInstance.Directive] {
    var sent: [(message: RaftMessage, to: ReplicaID)] {
        compactMap {
            guard case .send(let message, let to) = $0 else { return nil }
            return (message, to)
        }
    }

    func messages(to replica: ReplicaID) -> [RaftMessage] {
        sent.filter { $0.to == replica }.map(\.message)
    }

    var persistedEntries: [RaftEntry] {
        flatMap { directive -> [RaftEntry] in
            guard case .persist(let entries, _) = directive else { return [] }
            return entries
        }
    }

    var hardStates: [RaftHardState] {
        compactMap {
            guard case .persistHardState(let state) = $0 else { return nil }
            return state
        }
    }

    var applied: [RaftEntry] {
        flatMap { directive -> [RaftEntry] in
            guard case .apply(let entries) = directive else { return [] }
            return entries
        }
    }
}

/// A group on a perfect, synchronous network, for the unit tests: messages are delivered in
/// order by ``deliverAll()``; persistence completes at once unless `manualPersistence` holds
/// it until ``flushPersistence(of:)``; isolated replicas neither send nor receive.
final class RaftTestGroup {
    var nodes: [ReplicaID: RaftInstance] = [:]
    var now = time(0)
    var queue: [(from: ReplicaID, to: ReplicaID, message: RaftMessage)] = []
    var manualPersistence: Set<ReplicaID> = []
    var heldPersistence: [ReplicaID: [RaftInstance.Directive]] = [:]
    var isolated: Set<ReplicaID> = []
    var applied: [ReplicaID: [RaftEntry]] = [:]
    var installed: [ReplicaID: [RaftSnapshotBase]] = [:]
    /// Durable state per replica, as a restart would find it.
    var durable: [ReplicaID: (hardState: RaftHardState, snapshot: RaftSnapshotBase?, entries: [RaftEntry])] = [:]
    var leadersByTerm: [UInt64: Set<ReplicaID>] = [:]
    var delivered: [(from: ReplicaID, to: ReplicaID, message: RaftMessage)] = []
    /// Every directive each replica returned.
    var history: [ReplicaID: [RaftInstance.Directive]] = [:]

    init(_ names: [String], voters: [String]? = nil, settings: RaftSettings = RaftSettings(), seed: UInt64 = 1) {
        let members = RaftMembers(voters: Set((voters ?? names).map { ReplicaID($0) }))
        for (offset, name) in names.enumerated() {
            let id = ReplicaID(name)
            nodes[id] = RaftInstance(
                id: id,
                initialMembers: members,
                settings: settings,
                now: now,
                random: SplitMix64(seed: seed &+ UInt64(offset) &* 7_919)
            )
            durable[id] = (RaftHardState(), nil, [])
        }
    }

    /// Replaces a replica by one restored from `hardState` and `entries` (as a restart after a
    /// crash would, with exactly what was durable).
    func restore(_ name: String, hardState: RaftHardState, entries: [RaftEntry], seed: UInt64 = 99) {
        let id = ReplicaID(name)
        let members = nodes[id]!.log.base.members
        nodes[id] = RaftInstance(
            id: id,
            hardState: hardState,
            entries: entries,
            initialMembers: members,
            settings: nodes[id]!.settings,
            now: now,
            random: SplitMix64(seed: seed)
        )
        durable[id] = (hardState, nil, entries)
    }

    subscript(_ name: String) -> RaftInstance { nodes[ReplicaID(name)]! }

    @discardableResult
    func run(_ name: String, _ body: (inout RaftInstance) -> [RaftInstance.Directive]) -> [RaftInstance.Directive] {
        let id = ReplicaID(name)
        let directives = body(&nodes[id]!)
        process(id, directives)
        return directives
    }

    func process(_ id: ReplicaID, _ directives: [RaftInstance.Directive]) {
        history[id, default: []].append(contentsOf: directives)
        var followUps: [RaftInstance.Directive] = []
        for directive in directives {
            switch directive {
            case .send(let message, let to):
                if !isolated.contains(id) && !isolated.contains(to) { queue.append((id, to, message)) }
            case .persist, .persistHardState, .persistSnapshot:
                if manualPersistence.contains(id) {
                    heldPersistence[id, default: []].append(directive)
                } else {
                    followUps.append(directive)
                }
            case .apply(let entries):
                applied[id, default: []].append(contentsOf: entries)
            case .installSnapshot(let base):
                installed[id, default: []].append(base)
                applied[id] = []
            case .roleChanged(let role, let term, _):
                if role == .leader { leadersByTerm[term, default: []].insert(id) }
            case .membersChanged:
                break
            }
        }
        for directive in followUps { complete(directive, at: id) }
    }

    /// Makes one persistence directive durable and tells the instance.
    func complete(_ directive: RaftInstance.Directive, at id: ReplicaID) {
        switch directive {
        case .persist(let entries, let truncatingAfter):
            if let truncatingAfter { durable[id]!.entries.removeAll { $0.index > truncatingAfter } }
            durable[id]!.entries.append(contentsOf: entries)
            if let last = entries.last {
                process(id, nodes[id]!.persisted(through: last.index, term: last.term))
            }
        case .persistHardState(let state):
            durable[id]!.hardState = state
            process(id, nodes[id]!.hardStatePersisted(state))
        case .persistSnapshot(let base):
            durable[id]!.snapshot = base
            durable[id]!.entries = []
            process(id, nodes[id]!.persisted(through: base.index, term: base.term))
        default:
            break
        }
    }

    func flushPersistence(of name: String) {
        let id = ReplicaID(name)
        let held = heldPersistence[id] ?? []
        heldPersistence[id] = []
        for directive in held { complete(directive, at: id) }
    }

    /// Delivers queued messages (and those they cause) until none is left.
    func deliverAll(limit: Int = 10_000) {
        var count = 0
        while !queue.isEmpty && count < limit {
            let (from, to, message) = queue.removeFirst()
            count += 1
            guard nodes[to] != nil, !isolated.contains(to), !isolated.contains(from) else { continue }
            delivered.append((from, to, message))
            process(to, nodes[to]!.receive(message, from: from, now: now))
        }
    }

    /// Advances time by `milliseconds` in steps of 10 ms, ticking every replica and
    /// delivering everything at each step.
    func advance(_ milliseconds: Int64) {
        var elapsed: Int64 = 0
        while elapsed < milliseconds {
            elapsed += 10
            now = now + .milliseconds(10)
            for id in nodes.keys.sorted() {
                process(id, nodes[id]!.tick(now: now))
            }
            deliverAll()
        }
    }

    /// Makes `name` time out now and runs its election to the end.
    func elect(_ name: String) {
        let id = ReplicaID(name)
        now = max(now, nodes[id]!.electionDeadline)
        process(id, nodes[id]!.tick(now: now))
        deliverAll()
    }

    var leaders: [ReplicaID] { nodes.values.filter { $0.role == .leader }.map(\.id).sorted() }

    @discardableResult
    func propose(_ text: String, at name: String) -> RaftInstance.ProposeResult {
        let id = ReplicaID(name)
        let (result, directives) = nodes[id]!.propose(command(text), now: now)
        process(id, directives)
        return result
    }

    func texts(_ name: String) -> [String] { (applied[ReplicaID(name)] ?? []).compactMap(\.text) }
}
