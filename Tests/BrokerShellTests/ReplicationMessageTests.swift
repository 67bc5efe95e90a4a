import NIOCore
import Replication
import Testing

@testable import BrokerShell

/// What the durable queues of two nodes say to each other reads back as written, and bytes
/// that are not such a message are refused rather than misread.
@Suite struct ReplicationMessageTests {
    static let messages: [ReplicationMessage] = [
        .raft(RaftEnvelope(group: "jobs", message: .appendResponse(term: 3, matchIndex: 17))),
        .raft(RaftEnvelope(group: "nœud", message: .timeoutNow(term: .max))),
        .command(token: 9, hops: 1, queue: "jobs", .enqueue(ByteBuffer(string: "payload"))),
        .command(token: 0, hops: 2, queue: "", .settle([1, 2, 3])),
        .command(token: .max, hops: 0, queue: "q", .requeue([])),
        .outcome(token: 9, error: nil),
        .deliver(queue: "jobs", id: 42, redelivered: true, payload: ByteBuffer(string: "stored")),
        .deliver(queue: "", id: 0, redelivered: false, payload: ByteBuffer()),
        .removed(queue: "jobs", RaftRemoval(term: 7, membersIndex: 1_234)),
        .removed(queue: "", RaftRemoval(term: .max, membersIndex: 0)),
        .lookup(queue: "jobs", id: 7, makes: true),
        .lookup(queue: "", id: .max, makes: false),
        .lookupAnswer(queue: "jobs", id: 7, .heldWithLeader),
        .lookupAnswer(queue: "jobs", id: 0, .heldWithoutLeader),
        .lookupAnswer(queue: "nœud", id: 1, .notHeld),
        .outcome(
            token: 10,
            error: ReplicationMessage.Failure(kind: "data_limit", summary: "durable log full", detail: "data.max-bytes")
        ),
    ]

    @Test(arguments: messages)
    func readsBackAsWritten(_ message: ReplicationMessage) {
        #expect(ReplicationMessage(decoding: message.encoded) == message)
    }

    @Test func everyTruncationAndAnUnknownKindAreRefused() {
        for message in Self.messages {
            let bytes = message.encoded
            for length in 0..<bytes.readableBytes {
                guard let decoded = ReplicationMessage(decoding: bytes.getSlice(at: 0, length: length)!) else {
                    continue
                }
                // A command's or a delivery's payload is the rest of the bytes: a shorter one
                // still reads, as another; nothing else may.
                switch decoded {
                case .command, .deliver: continue
                default:
                    Issue.record("\(length) of \(bytes.readableBytes) bytes of \(message) read as \(decoded)")
                }
            }
        }
        #expect(ReplicationMessage(decoding: ByteBuffer(bytes: [99, 0, 0])) == nil)
        // An answer is one of three, and a lookup's flag is a flag.
        #expect(ReplicationMessage(decoding: ByteBuffer(bytes: [7, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0, 0, 0, 0])) == nil)
        #expect(ReplicationMessage(decoding: ByteBuffer(bytes: [6, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0])) == nil)
        #expect(ReplicationMessage(decoding: ByteBuffer(bytes: [7, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0])) != nil)
        #expect(ReplicationMessage(decoding: ByteBuffer()) == nil)
    }
}
