import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Replication

#if canImport(Glibc)
import Glibc
#endif

/// Three replicas of one durable queue, each on its own write-ahead log in real files, on an
/// in-memory network with a virtual clock: what was committed survives a leader's death, a
/// restart of every replica, and compaction, read back from disk each time.
@Suite(.serialized) final class ReplicatedQueueLogTests {
    final class Replica {
        let id: ReplicaID
        let directory: String
        var log: WriteAheadLog?
        var queue: ReplicatedQueue?
        /// Durability reports from the log's writer thread, with the life they belong to.
        let written = NIOLockedValueBox<[(life: Int, durability: ReplicatedQueue.Durability?)]>([])
        var life = 0

        init(id: ReplicaID, directory: String) {
            self.id = id
            self.directory = directory
        }
    }

    static let group = "/queue/orders"
    static let members = RaftMembers(voters: ["n1", "n2", "n3"])
    let root: String
    var replicas: [ReplicaID: Replica] = [:]
    var network: [(from: ReplicaID, to: ReplicaID, message: RaftMessage)] = []
    var now = NIODeadline.uptimeNanoseconds(0)
    var seed: UInt64 = 1
    /// Accepted proposals by token: index and term; then what became of them.
    var accepted: [UInt64: UInt64] = [:]
    var committed: Set<UInt64> = []
    var lost: Set<UInt64> = []
    var nextToken: UInt64 = 1

    init() throws {
        var template = Array("/tmp/replicated-queue-XXXXXX".utf8CString)
        root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        for name in ["n1", "n2", "n3"] {
            let id = ReplicaID(name)
            replicas[id] = Replica(id: id, directory: root + "/" + name)
            try start(id)
        }
    }

    deinit {
        for replica in replicas.values {
            replica.log?.close()
            for number in (try? SegmentFiles.list(replica.directory)) ?? [] {
                unlink(replica.directory + "/" + SegmentFiles.fileName(of: number))
            }
            rmdir(replica.directory)
        }
        rmdir(root)
    }

    /// Opens the replica's log, reads it back and starts its queue from it.
    func start(_ id: ReplicaID) throws {
        let replica = replicas[id]!
        var recovery = ReplicaLogRecovery()
        replica.log = try WriteAheadLog.open(directory: replica.directory) { try recovery.replay($0) }
        try recovery.finish()
        replica.life += 1
        seed += 1
        replica.queue = ReplicatedQueue(
            group: Self.group,
            id: id,
            recovered: recovery.groups[Self.group],
            members: Self.members,
            now: now,
            random: SplitMix64(seed: seed)
        )
    }

    /// Stops the replica as a crash would, but for appends in flight, which the log finishes.
    func stop(_ id: ReplicaID) {
        let replica = replicas[id]!
        replica.log?.close()
        replica.log = nil
        replica.queue = nil
        network.removeAll { $0.from == id || $0.to == id }
    }

    func carry(_ effects: [ReplicatedQueue.Effect], of id: ReplicaID) {
        let replica = replicas[id]!
        for effect in effects {
            switch effect {
            case .write(let records, let durability):
                let life = replica.life
                replica.log!.append(records.map(\.logRecord), admission: .control) {
                    [written = replica.written] result in
                    precondition((try? result.get()) != nil, "append failed: \(result)")
                    written.withLockedValue { $0.append((life, durability)) }
                }
            case .send(let message, let peer):
                network.append((id, peer, message))
            case .committed(let token):
                committed.insert(token)
            case .lost(let token):
                lost.insert(token)
            case .ready, .roleChanged:
                break
            }
        }
    }

    /// 10 ms of virtual time: ticks, every message in flight, every write completed.
    func step() {
        now = now + .milliseconds(10)
        for id in replicas.keys.sorted() where replicas[id]!.queue != nil {
            carry(replicas[id]!.queue!.tick(now: now), of: id)
        }
        let inFlight = network
        network = []
        for (from, to, message) in inFlight where replicas[to]!.queue != nil {
            carry(replicas[to]!.queue!.receive(message, from: from, now: now), of: to)
        }
        usleep(300)  // the writers' turn
        for id in replicas.keys.sorted() {
            let replica = replicas[id]!
            let reports = replica.written.withLockedValue { reports in
                defer { reports = [] }
                return reports
            }
            for report in reports where report.life == replica.life && replica.queue != nil {
                if let durability = report.durability { carry(replica.queue!.written(durability), of: id) }
            }
        }
    }

    func run(_ what: String, steps: Int = 3_000, until done: () -> Bool) {
        for _ in 0..<steps {
            if done() { return }
            step()
        }
        Issue.record("\(what) did not happen within \(steps) steps")
    }

    var leader: ReplicaID? {
        replicas.values.first { $0.queue?.raft.role == .leader }?.id
    }

    /// Proposes through the leader until accepted; returns the token.
    @discardableResult
    func propose(_ command: QueueCommand) -> UInt64 {
        let token = nextToken
        nextToken += 1
        run("a leader") { leader != nil }
        let id = leader!
        let (result, effects) = replicas[id]!.queue!.propose(command, token: token, now: now)
        guard case .accepted(let index, _) = result else {
            Issue.record("proposal refused: \(result)")
            return token
        }
        accepted[token] = index
        carry(effects, of: id)
        return token
    }

    func ids(_ id: ReplicaID) -> [UInt64] { replicas[id]!.queue!.state.inOrder.map(\.id) }

    func converged() -> Bool {
        let states = replicas.values.compactMap { $0.queue }
        guard states.count == 3, let leader, let raft = replicas[leader]!.queue?.raft else { return false }
        // The leader committed all it holds, its no-op included, and everyone applied it.
        let commit = raft.commitIndex
        guard commit == raft.lastIndex, raft.lastTerm == raft.term else { return false }
        return states.allSatisfy { $0.state.appliedIndex == commit }
            && Set(states.map { $0.state.inOrder.map(\.id) }).count == 1
    }

    @Test func committedMessagesSurviveTheLeadersDeathAndItsReturnFromDisk() throws {
        let first = (0..<60).map { propose(.enqueue(ByteBuffer(string: "m\($0)"))) }
        run("the first messages committed") { first.allSatisfy(committed.contains) }
        let settled = first.prefix(20).map { accepted[$0]! }
        let settle = propose(.settle(settled))
        run("the settle committed") { committed.contains(settle) }

        let dead = leader!
        stop(dead)
        let second = (0..<30).map { propose(.enqueue(ByteBuffer(string: "late\($0)"))) }
        run("messages committed without the old leader") { second.allSatisfy(committed.contains) }
        #expect(leader != dead)

        try start(dead)
        run("the returning replica caught up") { converged() }
        let expected = (first.dropFirst(20) + second).map { accepted[$0]! }.sorted()
        for id in replicas.keys { #expect(ids(id) == expected, "replica \(id)") }
        #expect(lost.isEmpty)
    }

    @Test func aRestartOfEveryReplicaDeliversEveryUnsettledMessageAgainAsRedelivered() throws {
        let tokens = (0..<40).map { propose(.enqueue(ByteBuffer(string: "m\($0)"))) }
        run("committed") { tokens.allSatisfy(committed.contains) }
        let settle = propose(.settle([accepted[tokens[0]]!, accepted[tokens[1]]!]))
        run("the settle committed") { committed.contains(settle) }
        run("converged") { converged() }
        let before = ids("n1")

        for id in replicas.keys { stop(id) }
        for id in replicas.keys.sorted() { try start(id) }
        run("converged after the restart") { converged() }
        #expect(ids("n1") == before)
        #expect(before.count == 38)
        let leaderState = replicas[leader!]!.queue!.state
        #expect(leaderState.inOrder.allSatisfy { $0.redelivered })
        #expect(Array(leaderState.inOrder.map(\.payload)).first == ByteBuffer(string: "m2"))
    }

    @Test func aCompactedLogRestartsFromItsSnapshotAndTheEntriesAfterIt() throws {
        let tokens = (0..<50).map { propose(.enqueue(ByteBuffer(string: "m\($0)"))) }
        run("committed") { tokens.allSatisfy(committed.contains) }
        let settle = propose(.settle(tokens.prefix(30).map { accepted[$0]! }))
        run("the settle committed") { committed.contains(settle) }
        run("converged") { converged() }
        for id in replicas.keys.sorted() {
            let effects = replicas[id]!.queue!.compact(minimumEntries: 1)
            #expect(!effects.isEmpty, "replica \(id) compacted")
            carry(effects, of: id)
        }
        for _ in 0..<5 { step() }
        let before = ids("n2")

        for id in replicas.keys { stop(id) }
        for id in replicas.keys.sorted() { try start(id) }
        #expect(replicas.values.allSatisfy { $0.queue!.raft.snapshotIndex > 0 })
        run("converged after the restart") { converged() }
        #expect(ids("n2") == before)
        #expect(before == tokens.dropFirst(30).map { accepted[$0]! })
    }
}
