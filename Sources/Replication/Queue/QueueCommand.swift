import NIOCore

/// What a durable queue's replicas agree on, one command per Raft entry. A message's id is the
/// index of the entry that enqueued it: unique in its queue and the same on every replica.
public enum QueueCommand: Sendable, Equatable {
    /// A persistent message: its STOMP headers and body as the broker encodes them (opaque here).
    case enqueue(ByteBuffer)
    /// Acknowledged: never delivered again.
    case settle([UInt64])
    /// Given back (NACK, or its consumer went): ready again, delivered before.
    case requeue([UInt64])
    /// The same message again at this entry's index, so that the segment holding its first
    /// entry can be compacted while it waits; the message keeps its id.
    case move(id: UInt64, payload: ByteBuffer)
    /// The topic pattern whose messages the queue takes from now on: the queue backs a durable
    /// topic subscription. Never empty.
    case bind(String)
    /// Its durable subscription was deleted: the queue takes no more topic messages and drops
    /// what it holds, as RabbitMQ deletes a deleted subscription's queue.
    case unbind

    private enum Tag: UInt8 {
        case enqueue = 1
        case settle = 2
        case requeue = 3
        case move = 4
        case bind = 5
        case unbind = 6
    }

    /// Whether the command may be a new queue's first: a message, or a durable subscription.
    /// (Anything else names a queue that exists.)
    public var makesQueue: Bool {
        switch self {
        case .enqueue, .bind: true
        case .settle, .requeue, .move, .unbind: false
        }
    }

    /// The most ids one settle or requeue carries: a bound on a command's size and on the work
    /// of applying it (an ACK of a whole `client`-mode window is split into several).
    public static let maxIDs = 4_096

    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .enqueue(let payload):
            buffer.writeInteger(Tag.enqueue.rawValue)
            buffer.writeImmutableBuffer(payload)
        case .settle(let ids):
            buffer.writeInteger(Tag.settle.rawValue)
            Self.write(ids, into: &buffer)
        case .requeue(let ids):
            buffer.writeInteger(Tag.requeue.rawValue)
            Self.write(ids, into: &buffer)
        case .move(let id, let payload):
            buffer.writeInteger(Tag.move.rawValue)
            buffer.writeInteger(id)
            buffer.writeImmutableBuffer(payload)
        case .bind(let pattern):
            buffer.writeInteger(Tag.bind.rawValue)
            buffer.writeString(pattern)
        case .unbind:
            buffer.writeInteger(Tag.unbind.rawValue)
        }
    }

    public var encoded: ByteBuffer {
        var buffer = ByteBuffer()
        encode(into: &buffer)
        return buffer
    }

    /// `nil` for bytes no replica of this version wrote.
    public init?(decoding bytes: ByteBuffer) {
        var buffer = bytes
        guard let raw = buffer.readInteger(as: UInt8.self), let tag = Tag(rawValue: raw) else { return nil }
        switch tag {
        case .enqueue:
            self = .enqueue(buffer)
        case .settle:
            guard let ids = Self.readIDs(&buffer) else { return nil }
            self = .settle(ids)
        case .requeue:
            guard let ids = Self.readIDs(&buffer) else { return nil }
            self = .requeue(ids)
        case .move:
            guard let id = buffer.readInteger(as: UInt64.self) else { return nil }
            self = .move(id: id, payload: buffer)
        case .bind:
            guard buffer.readableBytes > 0, let pattern = buffer.readString(length: buffer.readableBytes) else {
                return nil
            }
            self = .bind(pattern)
        case .unbind:
            guard buffer.readableBytes == 0 else { return nil }
            self = .unbind
        }
    }

    private static func write(_ ids: [UInt64], into buffer: inout ByteBuffer) {
        precondition(ids.count <= maxIDs, "a queue command carries at most \(maxIDs) ids")
        buffer.writeInteger(UInt16(ids.count))
        for id in ids { buffer.writeInteger(id) }
    }

    private static func readIDs(_ buffer: inout ByteBuffer) -> [UInt64]? {
        guard let count = buffer.readInteger(as: UInt16.self), Int(count) <= maxIDs,
            buffer.readableBytes == Int(count) * 8
        else { return nil }
        return (0..<Int(count)).map { _ in buffer.readInteger(as: UInt64.self)! }
    }
}
