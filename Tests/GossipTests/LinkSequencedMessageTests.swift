import NIOCore
import Testing

@testable import Gossip

/// Wire version 3's numbered bulk messages (issue 15), as the link will write them.
@Suite struct LinkSequencedMessageTests {
    /// Version 3's numbered bulk messages are written from the body an outbox holds, and read
    /// as the message they wrap; one whose destination doesn't parse keeps its number.
    @Test func aNumberedMessageIsItsBodyBehindTheNumber() throws {
        var forwardBody = ByteBuffer()
        LinkMessage.write(LinkMessageTests.body, into: &forwardBody)
        var written = ByteBuffer()
        LinkMessage.writeSequenced(seq: 42, handoff: false, body: forwardBody, into: &written)
        var built = ByteBuffer()
        LinkMessage.sequenced(seq: 42, .forward(LinkMessageTests.body)).encode(into: &built)
        #expect(written == built, "the same bytes as the message built whole")

        var foreign = ForeignMessage.forward(destination: "prices.eur")
        foreign.moveReaderIndex(forwardBy: 5)
        var numbered = ByteBuffer()
        LinkMessage.writeSequenced(seq: 43, handoff: false, body: foreign, into: &numbered)
        var decoded: [LinkMessage] = []
        try LinkMessage.decodeAll(&numbered, into: &decoded)
        guard case .sequenced(43, nil) = decoded.first else {
            Issue.record("expected number 43 with nothing inside, got \(decoded)")
            return
        }
        // And it reads back the same once encoded again, as the link fuzzer checks.
        var again = ByteBuffer()
        decoded[0].encode(into: &again)
        var reread: [LinkMessage] = []
        try LinkMessage.decodeAll(&again, into: &reread)
        #expect(reread == decoded)
        #expect(!LinkMessage.sequenced(seq: 1, nil).isControl)
        #expect(!LinkMessage.gap(SequenceGap(lost: 1, reason: .bytes, keys: [])).isControl)
        #expect(LinkMessage.resume(senderEpoch: 1, receiverEpoch: 1, received: 1).isControl)
    }

}
