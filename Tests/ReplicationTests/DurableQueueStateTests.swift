import NIOCore
import Testing

@testable import Replication

@Suite struct DurableQueueStateTests {
    static func payload(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    /// Applies `commands` at indexes 1, 2, ... (a `nil` stands for a no-op entry).
    static func state(
        _ commands: [QueueCommand?],
        from start: DurableQueueState = DurableQueueState()
    ) -> DurableQueueState {
        var state = start
        for command in commands {
            let index = state.appliedIndex + 1
            if let command { state.apply(command, at: index) } else { state.skip(to: index) }
        }
        return state
    }

    @Test(arguments: [
        QueueCommand.enqueue(payload("hello")), .enqueue(ByteBuffer()), .settle([]), .settle([1, 2, .max]),
        .requeue([7]), .move(id: 3, payload: payload("moved")), .bind("news.#"), .unbind,
    ])
    func commandsRoundTrip(_ command: QueueCommand) {
        #expect(QueueCommand(decoding: command.encoded) == command)
    }

    @Test func bytesNoReplicaWroteAreRefused() {
        #expect(QueueCommand(decoding: ByteBuffer()) == nil)
        #expect(QueueCommand(decoding: ByteBuffer(bytes: [9])) == nil)
        #expect(QueueCommand(decoding: ByteBuffer(bytes: [2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1])) == nil)
        #expect(QueueCommand(decoding: ByteBuffer(bytes: [2, 0xFF, 0xFF])) == nil)
        #expect(QueueCommand(decoding: ByteBuffer(bytes: [4, 1])) == nil)
        #expect(QueueCommand(decoding: ByteBuffer(bytes: [5])) == nil, "a binding names a pattern")
        #expect(QueueCommand(decoding: ByteBuffer(bytes: [6, 0])) == nil)
    }

    @Test func messagesAreHeldInOrderUntilSettledAndIdsAreEntryIndexes() {
        let state = Self.state([
            .enqueue(Self.payload("a")), nil, .enqueue(Self.payload("b")), .enqueue(Self.payload("c")), .settle([3]),
        ])
        #expect(state.inOrder.map(\.id) == [1, 4])
        #expect(state.count == 2)
        #expect(state.bytes == 2)
        #expect(state.appliedIndex == 5)
        #expect(state.firstNeededIndex == 1)
    }

    @Test func settlesAndRequeuesOfUnknownIdsChangeNothing() {
        let state = Self.state([.enqueue(Self.payload("a")), .settle([1]), .settle([1, 40]), .requeue([1, 40])])
        #expect(state.count == 0)
        #expect(state.bytes == 0)
        #expect(state.firstNeededIndex == 5)
    }

    @Test func aRequeuedMessageIsMarkedRedelivered() {
        var state = Self.state([.enqueue(Self.payload("a")), .enqueue(Self.payload("b"))])
        #expect(state.apply(.requeue([2, 9]), at: 3) == [2])
        #expect(state.inOrder.map(\.redelivered) == [false, true])
        state.markAllRedelivered()
        #expect(state.inOrder.allSatisfy { $0.redelivered })
    }

    @Test func aMoveCarriesTheMessageForwardSoTheLogBeforeItCanGo() {
        var state = Self.state([.enqueue(Self.payload("old")), .enqueue(Self.payload("b")), .settle([2])])
        #expect(state.firstNeededIndex == 1)
        state.apply(.move(id: 1, payload: Self.payload("old")), at: 4)
        #expect(state.firstNeededIndex == 4)
        #expect(state.message(1)?.entryIndex == 4)
        #expect(state.messagesHeld(before: 4).isEmpty)
        #expect(state.inOrder.map(\.id) == [1])
    }

    /// A replica that starts from a snapshot and replays the entries after it holds what one
    /// that applied everything holds, whatever was settled, requeued or moved in between.
    @Test(arguments: 1...40)
    func aSnapshotAndTheEntriesAfterItRebuildTheSameQueue(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var full = DurableQueueState()
        var log: [QueueCommand] = []
        var snapshots: [(index: UInt64, bytes: ByteBuffer)] = []
        for _ in 0..<120 {
            let live = Array(full.inOrder.map(\.id))
            let command: QueueCommand
            switch random.next() % 10 {
            case 0...3: command = .enqueue(Self.payload("m\(full.appliedIndex + 1)"))
            case 4...5 where !live.isEmpty: command = .settle([live.randomElement(using: &random)!])
            case 6 where !live.isEmpty: command = .requeue([live.randomElement(using: &random)!])
            case 7 where !live.isEmpty:
                let id = live.randomElement(using: &random)!
                command = .move(id: id, payload: full.message(id)!.payload)
            case 8: command = .settle([random.next() % (full.appliedIndex + 2)])  // maybe settled before
            default: command = .enqueue(Self.payload("x"))
            }
            log.append(command)
            full.apply(command, at: UInt64(log.count))
            let through = full.firstNeededIndex - 1
            if through > 0 && random.next() % 4 == 0 { snapshots.append((through, full.snapshot(through: through))) }
        }
        for (index, bytes) in snapshots {
            var replica = DurableQueueState(snapshot: bytes, at: index)!
            for (offset, command) in log.enumerated().dropFirst(Int(index)) {
                replica.apply(command, at: UInt64(offset + 1))
            }
            #expect(replica.inOrder.map(\.id) == full.inOrder.map(\.id), "snapshot at \(index)")
            #expect(replica.inOrder.map(\.payload) == full.inOrder.map(\.payload))
            #expect(replica.bytes == full.bytes)
        }
    }

    /// A replica that starts from a snapshot naming messages still to be moved can't compact
    /// until their moves are applied (and must not trap trying).
    @Test func aSnapshotAwaitingMovesHoldsCompactionBack() {
        var full = Self.state([.enqueue(Self.payload("a")), .enqueue(Self.payload("b")), .settle([2])])
        full.apply(.move(id: 1, payload: Self.payload("a")), at: 4)
        let snapshot = full.snapshot(through: 3)
        var restored = DurableQueueState(snapshot: snapshot, at: 3)!
        #expect(restored.firstNeededIndex == 0)
        var group = ReplicaLogRecovery.Group()
        group.snapshot = RaftSnapshotBase(index: 3, term: 1, members: RaftMembers(voters: ["n1"]), state: snapshot)
        var queue = ReplicatedQueue(
            group: "q",
            id: "n1",
            recovered: group,
            members: RaftMembers(voters: ["n1"]),
            now: .uptimeNanoseconds(0)
        )
        #expect(queue.compact(minimumEntries: 0).isEmpty)
        restored.apply(.move(id: 1, payload: Self.payload("a")), at: 4)
        #expect(restored.firstNeededIndex == 4)
        #expect(restored.inOrder.map(\.id) == [1])
    }

    @Test func aBindingIsTheLastOneSetOutlivesCompactionAndAnUnbindEmptiesTheQueue() {
        var state = Self.state([.bind("news.*"), .enqueue(Self.payload("a")), .bind("news.#")])
        #expect(state.binding == "news.#")
        state.apply(.settle([2]), at: 4)
        // Everything settled: the log can go, and the snapshot alone must say what is bound.
        let restored = DurableQueueState(snapshot: state.snapshot(through: 4), at: 4)
        #expect(restored?.binding == "news.#")
        #expect(restored?.count == 0)
        state.apply(.enqueue(Self.payload("b")), at: 5)
        state.apply(.unbind, at: 6)
        #expect(state.binding == nil)
        #expect(state.count == 0 && state.bytes == 0, "a deleted subscription's messages go with it")
        #expect(state.firstNeededIndex == 7)
        #expect(DurableQueueState(snapshot: state.snapshot(through: 6), at: 6)?.binding == nil)
        // An unbind of a queue that was never bound (a client's mistake) empties nothing.
        var plain = Self.state([.enqueue(Self.payload("kept"))])
        plain.apply(.unbind, at: 2)
        #expect(plain.count == 1)
        // A snapshot cut short in its binding is none a replica wrote.
        var torn = Self.state([.bind("news.#")]).snapshot(through: 1)
        torn.moveWriterIndex(to: torn.writerIndex - 1)
        #expect(DurableQueueState(snapshot: torn, at: 1) == nil)
    }

    @Test func theOrderOfIdsStaysProportionalToTheQueue() {
        var state = Self.state([.enqueue(Self.payload("stuck"))])
        for _ in 0..<10_000 {
            let index = state.appliedIndex + 1
            state.apply(.enqueue(Self.payload("x")), at: index)
            state.apply(.settle([index]), at: index + 1)
        }
        #expect(state.count == 1)
        #expect(state.inOrder.map(\.id) == [1])
        #expect(state.trackedIDs <= 2 * state.count + 64)
    }
}
