import Gossip
import NIOCore
import StompRouting
import Testing

@Suite("Link frames and LZ4")
struct LinkFrameTests {
    private func roundTrip(
        _ messages: [LinkMessage],
        threshold: Int
    ) throws -> (messages: [LinkMessage], sizes: LinkFrame.Sizes) {
        var payload = ByteBuffer()
        for message in messages { message.encode(into: &payload) }
        var wire = ByteBuffer()
        LinkFrame.encode(payload, compressionThreshold: threshold, into: &wire)
        let decoder = LinkFrame.Decoder()
        let (decoded, sizes) = try #require(try decoder.nextPayload(from: &wire))
        var body = decoded
        var result: [LinkMessage] = []
        try LinkMessage.decodeAll(&body, into: &result)
        #expect(wire.readableBytes == 0)
        return (result, sizes)
    }

    @Test func textBatchCompressesAndRoundTrips() throws {
        let messages = (0..<200).map { index in
            LinkMessage.forward(
                MessageEnvelope(
                    destination: .topic("prices.eur"),
                    messageID: "n1-abc-\(index)",
                    headers: ["content-type": "application/json"],
                    body: ByteBuffer(string: #"{"symbol":"EURUSD","bid":1.0842,"ask":1.0844,"seq":\#(index)}"#)
                )
            )
        }
        let (decoded, sizes) = try roundTrip(messages, threshold: 512)
        #expect(decoded == messages)
        #expect(sizes.wire * 3 < sizes.raw)
    }

    @Test func incompressibleBatchIsSentRaw() throws {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<8_192).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let messages = [
            LinkMessage.forward(
                MessageEnvelope(destination: .topic("x"), messageID: "1", headers: [:], body: ByteBuffer(bytes: bytes))
            )
        ]
        let (decoded, sizes) = try roundTrip(messages, threshold: 512)
        #expect(decoded == messages)
        #expect(sizes.wire == sizes.raw + 5)
    }

    @Test func partialFramesWaitForMoreBytes() throws {
        var payload = ByteBuffer()
        LinkMessage.heartbeat.encode(into: &payload)
        var wire = ByteBuffer()
        LinkFrame.encode(payload, compressionThreshold: 512, into: &wire)
        let decoder = LinkFrame.Decoder()
        for cut in 0..<wire.readableBytes {
            var prefix = wire.getSlice(at: 0, length: cut)!
            #expect(try decoder.nextPayload(from: &prefix) == nil)
        }
    }

    @Test func oversizedAndCorruptFramesAreRejected() {
        let decoder = LinkFrame.Decoder(maxFrameSize: 1_024)
        var oversized = ByteBuffer()
        oversized.writeInteger(UInt32(4_096))
        #expect(throws: LinkWire.Malformed.self) { try decoder.nextPayload(from: &oversized) }

        var corrupt = ByteBuffer()
        corrupt.writeInteger(UInt32(1 + 4 + 3))
        corrupt.writeInteger(UInt8(1))
        corrupt.writeInteger(UInt32(100))
        corrupt.writeBytes([0xFF, 0xFF, 0xFF])
        #expect(throws: LinkWire.Malformed.self) { try decoder.nextPayload(from: &corrupt) }

        var unknownFlags = ByteBuffer()
        unknownFlags.writeInteger(UInt32(1))
        unknownFlags.writeInteger(UInt8(0x80))
        #expect(throws: LinkWire.Malformed.self) { try decoder.nextPayload(from: &unknownFlags) }
    }

    @Test func unknownMessageTypesAreSkipped() throws {
        var payload = ByteBuffer()
        payload.writeInteger(UInt8(200))
        payload.writeInteger(UInt32(3))
        payload.writeBytes([1, 2, 3])
        LinkMessage.heartbeat.encode(into: &payload)
        var messages: [LinkMessage] = []
        try LinkMessage.decodeAll(&payload, into: &messages)
        #expect(messages == [.heartbeat])
    }
}
