import NIOCore
import Testing

@testable import Replication

@Suite struct RaftEnvelopeTests {
    static let members = RaftMembers(voters: ["n1", "n2", "n3"], learners: ["n4"])
    static let entries = [
        RaftEntry(term: 3, index: 10, content: .noop),
        RaftEntry(term: 3, index: 11, content: .command(ByteBuffer(string: "enqueue"))),
        RaftEntry(term: 4, index: 12, content: .members(members)),
    ]

    static let messages: [RaftMessage] = [
        .preVote(term: 5, lastIndex: 12, lastTerm: 4),
        .preVoteResponse(term: 5, granted: true),
        .vote(term: 6, lastIndex: 12, lastTerm: 4, transfer: true),
        .voteResponse(term: 6, granted: false),
        .appendEntries(term: 7, prevIndex: 9, prevTerm: 3, entries: entries, leaderCommit: 11),
        .appendEntries(term: 7, prevIndex: 12, prevTerm: 4, entries: [], leaderCommit: 12),
        .appendResponse(term: 7, matchIndex: 12),
        .appendRejected(term: 7, hintIndex: 8, hintTerm: 2),
        .installSnapshot(
            term: 8,
            base: RaftSnapshotBase(index: 100, term: 7, members: members, state: ByteBuffer(bytes: [0, 0, 0, 0]))
        ),
        .timeoutNow(term: .max),
    ]

    @Test(arguments: messages)
    func everyMessageRoundTrips(_ message: RaftMessage) {
        let envelope = RaftEnvelope(group: "/queue/orders", message: message)
        var bytes = ByteBuffer()
        envelope.encode(into: &bytes)
        #expect(RaftEnvelope(decoding: bytes) == envelope)
    }

    /// Every strict prefix of every message, and every message with a byte too many, is
    /// refused rather than read as something else.
    @Test(arguments: messages)
    func cutOrPaddedBytesAreRefused(_ message: RaftMessage) {
        var bytes = ByteBuffer()
        RaftEnvelope(group: "q", message: message).encode(into: &bytes)
        for length in 0..<bytes.readableBytes {
            #expect(RaftEnvelope(decoding: bytes.getSlice(at: 0, length: length)!) == nil, "prefix of \(length)")
        }
        bytes.writeInteger(UInt8(0))
        #expect(RaftEnvelope(decoding: bytes) == nil)
    }

    @Test func unknownTypesAndFlagsAreRefused() {
        var unknown = ByteBuffer()
        RaftCodec.writeName("q", into: &unknown)
        unknown.writeMultipleIntegers(UInt8(42), UInt64(1))
        #expect(RaftEnvelope(decoding: unknown) == nil)

        var flag = ByteBuffer()
        RaftEnvelope(group: "q", message: .voteResponse(term: 1, granted: true)).encode(into: &flag)
        flag.setInteger(UInt8(2), at: flag.writerIndex - 1)
        #expect(RaftEnvelope(decoding: flag) == nil)
    }
}
