import NIOCore
import NIOPosix
import Testing

@testable import Replication

#if canImport(Glibc)
import Glibc
#endif

/// One node's store under a queue that keeps receiving and settling messages, one of them
/// left unsettled for ever: the log keeps to a few segments (checkpoints, compaction and moves
/// let the old ones go), and what it holds after all that restarts into the same queue.
@Suite final class DurableStoreTests {
    static let group = "/queue/work"
    let directory: String
    let loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var loop: any EventLoop { loopGroup.next() }

    init() {
        var template = Array("/tmp/durable-store-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit {
        for number in (try? SegmentFiles.list(directory)) ?? [] {
            unlink(directory + "/" + SegmentFiles.fileName(of: number))
        }
        rmdir(directory)
        try? loopGroup.syncShutdownGracefully()
    }

    /// A single-replica queue on the store, driven on the store's loop.
    final class Node {
        let store: DurableStore
        var queue: ReplicatedQueue
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        var committed = 0

        init(store: DurableStore) {
            self.store = store
            queue = ReplicatedQueue(
                group: DurableStoreTests.group,
                id: "n1",
                recovered: store.recovered[DurableStoreTests.group],
                members: RaftMembers(voters: ["n1"]),
                now: now
            )
        }

        func carry(_ effects: [ReplicatedQueue.Effect]) {
            for effect in effects {
                switch effect {
                case .write(let records, let durability):
                    store.write(records, admission: .control) { [self] result in
                        precondition((try? result.get()) != nil, "write failed: \(result)")
                        if let durability { carry(queue.written(durability)) }
                    }
                case .committed: committed += 1
                case .send, .lost, .ready, .roleChanged: break
                }
            }
        }

        func tick() {
            now = now + .milliseconds(50)
            carry(queue.tick(now: now))
        }

        func propose(_ command: QueueCommand) {
            let (result, effects) = queue.propose(command, token: 0, now: now)
            precondition(result != .notLeader(leaderHint: nil), "not leader")
            carry(effects)
        }

        func reclaim() {
            carry(queue.compact(minimumEntries: 1))
            let pinned = store.reclaimSpace { [queue] group in group == DurableStoreTests.group ? queue.checkpoint : nil
            }
            for (_, moveBefore) in pinned {
                carry(queue.moveMessages(before: moveBefore, limit: 1_024, now: now))
            }
        }
    }

    func onLoop<T: Sendable>(_ body: @escaping () throws -> T) throws -> T {
        try loop.submit(body).wait()
    }

    /// Waits (on this thread) until `done` holds on the loop.
    func wait(_ what: String, _ node: NIOLoopBound<Node>, until done: @escaping (Node) -> Bool) throws {
        for _ in 0..<2_000 {
            if try onLoop({ done(node.value) }) { return }
            try onLoop { node.value.tick() }
            usleep(1_000)
        }
        Issue.record("\(what) did not happen")
    }

    func startNode() throws -> NIOLoopBound<Node> {
        try onLoop { [directory, loop] in
            let store = try DurableStore(
                directory: directory,
                settings: WriteAheadLog.Settings(segmentBytes: 8 << 10),
                eventLoop: loop
            )
            return NIOLoopBound(Node(store: store), eventLoop: loop)
        }
    }

    @Test func aBusyQueueWithAStuckMessageKeepsToAFewSegmentsAndRestartsTheSame() throws {
        var node = try startNode()
        try wait("leadership", node) { $0.queue.raft.role == .leader && $0.queue.raft.commitIndex > 0 }
        try onLoop { node.value.propose(.enqueue(ByteBuffer(string: "stuck"))) }
        var maxSegments = 0
        for round in 0..<40 {
            try onLoop {
                let first = node.value.queue.raft.lastIndex + 1
                for offset in 0..<20 {
                    node.value.propose(.enqueue(ByteBuffer(repeating: UInt8(round), count: 100 + offset)))
                }
                node.value.propose(.settle((first..<first + 19).map { $0 }))  // all but the last of the round
            }
            try wait("round \(round)", node) { $0.queue.raft.commitIndex == $0.queue.raft.lastIndex }
            try onLoop { node.value.reclaim() }
            // Once its checkpoint and moves are on disk (later on a loaded machine, which must
            // not change the count).
            try wait("reclaim \(round)", node) {
                !$0.store.reclaiming && $0.queue.raft.commitIndex == $0.queue.raft.lastIndex
            }
            maxSegments = max(maxSegments, try onLoop { node.value.store.statistics.segments })
        }
        let written = try onLoop { node.value.store.statistics.bytesWritten }
        let segments = try onLoop { node.value.store.statistics.segments }
        // About 21 segments' worth written (moves included); 5 held at most when this was written.
        #expect(written > 20 * 8 << 10, "the queue wrote \(written) bytes")
        #expect(maxSegments <= 6, "\(maxSegments) segments held at most, \(segments) at the end")
        let before = try onLoop { Array(node.value.queue.state.inOrder.map { [$0.id: $0.payload] }) }
        #expect(before.count == 41)
        #expect(before.first?.values.first == ByteBuffer(string: "stuck"))

        try onLoop { node.value.store.close() }
        node = try startNode()
        try wait("leadership after the restart", node) {
            $0.queue.raft.role == .leader && $0.queue.raft.commitIndex == $0.queue.raft.lastIndex
                && $0.queue.raft.lastTerm == $0.queue.raft.term
        }
        let after = try onLoop { Array(node.value.queue.state.inOrder.map { [$0.id: $0.payload] }) }
        #expect(after == before)
        try onLoop { node.value.store.close() }
    }
}
