import NIOCore
import Replication

/// What the durable queues of two nodes say to each other, carried opaquely by the cluster
/// link (its `replication` message, wire version 4).
///
/// `kind u8` then: `raft`: a ``Replication/RaftEnvelope``; `command`: `token u64 | hops u8 |
/// queue (u32 length, UTF-8) | the command` (a ``Replication/QueueCommand``, for the queue's
/// leader to propose); `outcome`: `token u64 | 0, or 1 and the error's kind, summary and
/// detail (each u32 length, UTF-8)`; `deliver`: `id u64 | redelivered u8 | queue | the
/// message as its log holds it` (``DurableMessageCodec``); `removed`: `term u64 | members
/// index u64 | queue`; `lookup`: `id u64 | makes u8 | queue`;
/// `lookupAnswer`: `id u64 | answer u8 | queue` (``QueueLookup/Answer``).
enum ReplicationMessage: Equatable {
    /// Raft's own traffic for one queue.
    case raft(RaftEnvelope)
    /// A command for the queue's leader, from a node that isn't it; `hops` counts the nodes
    /// it was passed through, so that a stale idea of who leads can't pass it around for ever.
    case command(token: UInt64, hops: UInt8, queue: String, QueueCommand)
    /// The outcome of a forwarded command: `nil` once it is committed.
    case outcome(token: UInt64, error: Failure?)
    /// From a queue's leader to a node with consumers of it: a committed message, which the
    /// leader keeps until that node settles it or gives it back (both as commands).
    case deliver(queue: String, id: UInt64, redelivered: Bool, payload: ByteBuffer)
    /// From a queue's leader to a node its replica set no longer has: it may drop its copy.
    case removed(queue: String, RaftRemoval)
    /// From a node with writes for a queue it doesn't hold, to every other live node: does one
    /// of them hold it (``QueueLookup``)? `makes`: the asker would make it if none does.
    case lookup(queue: String, id: UInt64, makes: Bool)
    /// The answer to lookup `id`: whether the asker should pass its writes to this node (it
    /// holds the queue, or will make it).
    case lookupAnswer(queue: String, id: UInt64, QueueLookup.Answer)

    struct Failure: Equatable {
        var kind: String
        var summary: String
        var detail: String
    }

    private enum Kind: UInt8 {
        case raft = 1
        case command = 2
        case outcome = 3
        case deliver = 4
        case removed = 5
        case lookup = 6
        case lookupAnswer = 7
    }

    var encoded: ByteBuffer {
        var buffer = ByteBuffer()
        switch self {
        case .raft(let envelope):
            buffer.writeInteger(Kind.raft.rawValue)
            envelope.encode(into: &buffer)
        case .command(let token, let hops, let queue, let command):
            buffer.writeInteger(Kind.command.rawValue)
            buffer.writeInteger(token)
            buffer.writeInteger(hops)
            Self.write(queue, into: &buffer)
            command.encode(into: &buffer)
        case .outcome(let token, let error):
            buffer.writeInteger(Kind.outcome.rawValue)
            buffer.writeInteger(token)
            if let error {
                buffer.writeInteger(UInt8(1))
                Self.write(error.kind, into: &buffer)
                Self.write(error.summary, into: &buffer)
                Self.write(error.detail, into: &buffer)
            } else {
                buffer.writeInteger(UInt8(0))
            }
        case .deliver(let queue, let id, let redelivered, let payload):
            buffer.writeInteger(Kind.deliver.rawValue)
            buffer.writeInteger(id)
            buffer.writeInteger(UInt8(redelivered ? 1 : 0))
            Self.write(queue, into: &buffer)
            buffer.writeImmutableBuffer(payload)
        case .removed(let queue, let removal):
            buffer.writeInteger(Kind.removed.rawValue)
            buffer.writeInteger(removal.term)
            buffer.writeInteger(removal.membersIndex)
            Self.write(queue, into: &buffer)
        case .lookup(let queue, let id, let makes):
            buffer.writeInteger(Kind.lookup.rawValue)
            buffer.writeInteger(id)
            buffer.writeInteger(UInt8(makes ? 1 : 0))
            Self.write(queue, into: &buffer)
        case .lookupAnswer(let queue, let id, let answer):
            buffer.writeInteger(Kind.lookupAnswer.rawValue)
            buffer.writeInteger(id)
            buffer.writeInteger(answer.rawValue)
            Self.write(queue, into: &buffer)
        }
        return buffer
    }

    /// `nil` for bytes that are not one (a newer node's kind, or a malformed message).
    init?(decoding bytes: ByteBuffer) {
        var buffer = bytes
        guard let raw = buffer.readInteger(as: UInt8.self), let kind = Kind(rawValue: raw) else { return nil }
        switch kind {
        case .raft:
            guard let envelope = RaftEnvelope(decoding: buffer) else { return nil }
            self = .raft(envelope)
        case .command:
            guard let token = buffer.readInteger(as: UInt64.self), let hops = buffer.readInteger(as: UInt8.self),
                let queue = Self.readString(&buffer), let command = QueueCommand(decoding: buffer)
            else { return nil }
            self = .command(token: token, hops: hops, queue: queue, command)
        case .outcome:
            guard let token = buffer.readInteger(as: UInt64.self), let failed = buffer.readInteger(as: UInt8.self)
            else { return nil }
            guard failed != 0 else {
                self = .outcome(token: token, error: nil)
                return
            }
            guard let kind = Self.readString(&buffer), let summary = Self.readString(&buffer),
                let detail = Self.readString(&buffer)
            else { return nil }
            self = .outcome(token: token, error: Failure(kind: kind, summary: summary, detail: detail))
        case .deliver:
            guard let id = buffer.readInteger(as: UInt64.self), let flag = buffer.readInteger(as: UInt8.self),
                flag <= 1, let queue = Self.readString(&buffer)
            else { return nil }
            self = .deliver(queue: queue, id: id, redelivered: flag == 1, payload: buffer)
        case .removed:
            guard let term = buffer.readInteger(as: UInt64.self), let index = buffer.readInteger(as: UInt64.self),
                let queue = Self.readString(&buffer), buffer.readableBytes == 0
            else { return nil }
            self = .removed(queue: queue, RaftRemoval(term: term, membersIndex: index))
        case .lookup:
            guard let id = buffer.readInteger(as: UInt64.self), let flag = buffer.readInteger(as: UInt8.self),
                flag <= 1, let queue = Self.readString(&buffer), buffer.readableBytes == 0
            else { return nil }
            self = .lookup(queue: queue, id: id, makes: flag == 1)
        case .lookupAnswer:
            guard let id = buffer.readInteger(as: UInt64.self), let raw = buffer.readInteger(as: UInt8.self),
                let answer = QueueLookup.Answer(rawValue: raw), let queue = Self.readString(&buffer),
                buffer.readableBytes == 0
            else { return nil }
            self = .lookupAnswer(queue: queue, id: id, answer)
        }
    }

    private static func write(_ string: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(string.utf8.count))
        buffer.writeString(string)
    }

    private static func readString(_ buffer: inout ByteBuffer) -> String? {
        guard let length = buffer.readInteger(as: UInt32.self), length <= 1 << 20,
            let string = buffer.readString(length: Int(length))
        else { return nil }
        return string
    }
}

/// The cluster, as the durable queues see it. The node's cluster shell provides it.
public protocol ReplicationLink: AnyObject {
    /// This node and the members up now, by id.
    var liveNodes: [String] { get }
    /// Members declared dead and still remembered (for a minute, as membership keeps them):
    /// a node that sees fewer than a majority of live and dead members up is cut off.
    var deadNodes: [String] { get }
    /// Sends `payload` to `node`; `false` when no link to it is up. What a link loses, Raft
    /// sends again, and a forwarded command's sender times out.
    @discardableResult
    func send(_ payload: ByteBuffer, to node: String) -> Bool
    /// The consumers of the queue `name` on each linked peer.
    func consumers(ofQueue name: String) -> [String: Int]
    /// The link up to `node` now, as a number no later link to it reuses; `nil` when none is.
    /// What went over a link that is no longer the current one may not have arrived.
    func linkNumber(to node: String) -> UInt64?
    /// Runs `body` once every live peer holds the interest this node announced so far.
    func afterInterestPropagated(_ body: @escaping () -> Void)
}
