import DequeModule
import NIOCore

/// A durable queue as every replica holds it: the messages not yet settled, in order, built by
/// applying committed ``QueueCommand``s. Pure and deterministic, so that replicas that applied
/// the same entries hold the same queue.
///
/// Which consumer holds which message is the leader's own business, not replicated: a new
/// leader (after a failover or a restart) hands out every message again, and marks those it
/// held before it led as possibly delivered (`redelivered:true`), as JMS's and AMQP's flags
/// mean.
public struct DurableQueueState: Sendable {
    public struct Message: Sendable, Equatable {
        public var id: UInt64
        public var payload: ByteBuffer
        /// It may have been delivered before (requeued, or held when the leader changed).
        public var redelivered: Bool
        /// The index of the entry that holds its payload now (its enqueue, or its last move).
        public var entryIndex: UInt64
    }

    /// Unsettled messages by id; ``order`` keeps their order (ids only grow, so it is sorted).
    private var messages: [UInt64: Message] = [:]
    private var order: Deque<UInt64> = []
    /// Messages enqueued before the snapshot this replica started from and still unsettled
    /// then: their payload is in a later ``QueueCommand/move(id:payload:)``, which brings them
    /// back. (Without this a move could not tell a message settled since from one it never saw.)
    private var awaitingMove: Set<UInt64> = []
    public private(set) var appliedIndex: UInt64
    public private(set) var bytes = 0
    /// The topic pattern the queue takes messages from (a durable topic subscription's queue),
    /// as the last ``QueueCommand/bind(_:)`` set it, until an ``QueueCommand/unbind``.
    public private(set) var binding: String?

    public init() {
        appliedIndex = 0
    }

    /// The state at a snapshot's index, from ``snapshot(through:)``; `nil` for bytes that are
    /// not one.
    public init?(snapshot: ByteBuffer, at index: UInt64) {
        var buffer = snapshot
        guard let count = buffer.readInteger(as: UInt32.self), buffer.readableBytes >= Int(count) * 8 else {
            return nil
        }
        appliedIndex = index
        for _ in 0..<count { awaitingMove.insert(buffer.readInteger(as: UInt64.self)!) }
        // Then the binding, if any (a snapshot of a queue that never had one ends here).
        if buffer.readableBytes > 0 {
            guard let length = buffer.readInteger(as: UInt32.self), length > 0, buffer.readableBytes == Int(length)
            else { return nil }
            binding = buffer.readString(length: Int(length))
        }
    }

    /// The queue as it stood at `index` (at least ``firstNeededIndex`` - 1, at most applied),
    /// for Raft to compact the log through it: no message, since all that were enqueued by
    /// then are settled or moved past it, but the ids of the moved ones still unsettled.
    public func snapshot(through index: UInt64) -> ByteBuffer {
        precondition(index < firstNeededIndex, "the log through \(index) is still needed")
        let moved = order.filter { $0 <= index && messages[$0] != nil } + awaitingMove.filter { $0 <= index }.sorted()
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(moved.count))
        for id in moved { buffer.writeInteger(id) }
        // The binding as it is now, which may be a later entry's: replaying the entries after
        // `index` sets it again, the last one winning.
        if let binding {
            buffer.writeInteger(UInt32(binding.utf8.count))
            buffer.writeString(binding)
        }
        return buffer
    }

    public var count: Int { messages.count }

    /// The messages in queue order. (The leader's dispatcher keeps its own cursor over them.)
    public var inOrder: some Sequence<Message> { order.lazy.compactMap { messages[$0] } }

    public func message(_ id: UInt64) -> Message? { messages[id] }

    /// Ids the order keeps, settled ones included (for the test of its bound).
    var trackedIDs: Int { order.count }

    /// Applies the command committed at `index`. Settles and requeues of ids it does not hold
    /// are ignored: they were settled already, or enqueued before a snapshot this replica
    /// started from, which only ever leaves settled messages out.
    /// - Returns: the message an enqueue or a requeue made ready, for the leader to dispatch.
    @discardableResult
    public mutating func apply(_ command: QueueCommand, at index: UInt64) -> [UInt64] {
        precondition(index > appliedIndex, "entry \(index) applied after \(appliedIndex)")
        appliedIndex = index
        switch command {
        case .enqueue(let payload):
            messages[index] = Message(id: index, payload: payload, redelivered: false, entryIndex: index)
            order.append(index)
            bytes += payload.readableBytes
            return [index]
        case .settle(let ids):
            for id in ids {
                awaitingMove.remove(id)
                guard let message = messages.removeValue(forKey: id) else { continue }
                bytes -= message.payload.readableBytes
            }
            while let first = order.first, messages[first] == nil { order.removeFirst() }
            if order.count > 2 * messages.count + 64 {
                // Settled ids behind an old unsettled one: drop them so ``order`` stays
                // proportional to the queue, not to everything it ever held.
                order = Deque(order.filter { messages[$0] != nil })
            }
            return []
        case .requeue(let ids):
            return ids.filter { id in
                if awaitingMove.contains(id) { return false }  // ready once its move brings it back
                guard messages[id] != nil else { return false }
                messages[id]!.redelivered = true
                return true
            }
        case .move(let id, let payload):
            if awaitingMove.remove(id) != nil {
                // Back from before the snapshot; it was live then, so it may have gone out.
                messages[id] = Message(id: id, payload: payload, redelivered: true, entryIndex: index)
                let position = order.firstIndex { $0 > id } ?? order.endIndex
                order.insert(id, at: position)
                bytes += payload.readableBytes
                return [id]
            }
            guard let held = messages[id] else { return [] }
            bytes += payload.readableBytes - held.payload.readableBytes
            messages[id]!.entryIndex = index
            messages[id]!.payload = payload
            return []
        case .bind(let pattern):
            binding = pattern
            return []
        case .unbind:
            // Only a subscription's queue: a queue that was never bound keeps its messages.
            guard binding != nil else { return [] }
            binding = nil
            messages.removeAll()
            order.removeAll()
            awaitingMove.removeAll()
            bytes = 0
            return []
        }
    }

    /// Raft may apply an entry that is not a command (a no-op, a configuration).
    public mutating func skip(to index: UInt64) {
        precondition(index > appliedIndex, "entry \(index) applied after \(appliedIndex)")
        appliedIndex = index
    }

    /// A new leader marks what the old one may have handed out.
    public mutating func markAllRedelivered() {
        for id in order where messages[id] != nil { messages[id]!.redelivered = true }
    }

    /// Every entry below this index may be dropped from the log: the messages they enqueued are
    /// all settled, so the state at the index before it is an empty queue, and replaying the
    /// entries from it rebuilds this state (settles of the ids before it are ignored).
    /// Linear in the queue's length: for compaction now and then, not per message.
    public var firstNeededIndex: UInt64 {
        if !awaitingMove.isEmpty { return 0 }  // their payloads are in entries not applied yet
        return messages.values.lazy.map(\.entryIndex).min() ?? appliedIndex + 1
    }

    /// Messages whose payload sits in an entry before `index`: the ones a leader moves forward
    /// so that the log before `index` can go.
    public func messagesHeld(before index: UInt64) -> [Message] {
        inOrder.filter { $0.entryIndex < index }
    }
}
