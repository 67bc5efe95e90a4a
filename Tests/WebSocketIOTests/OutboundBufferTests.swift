import NIOCore
import NIOEmbedded
import NIOWebSocket
import StompRouting
import Testing

@testable import WebSocketIO

/// Every message the buffer frames must read back, byte for byte, through NIO's own
/// WebSocket decoder, as a client's would.
@Suite struct OutboundBufferTests {
    private func decodeMessages(_ bytes: ByteBuffer) throws -> [WebSocketFrame] {
        let wire = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
        try wire.writeInbound(bytes)
        var frames: [WebSocketFrame] = []
        while let frame = try wire.readInbound(as: WebSocketFrame.self) { frames.append(frame) }
        #expect(try wire.finish().isClean)
        return frames
    }

    /// Payload sizes at each edge of the header's three length forms.
    @Test(arguments: [0, 1, 125, 126, 127, 65_535, 65_536, 100_000])
    func payloadOfAnySizeDecodes(size: Int) throws {
        var buffer = OutboundBuffer(framing: .webSocket)
        let bytes = ByteBuffer(repeating: UInt8(ascii: "a"), count: size)
        buffer.append(OutboundFrame(bytes: bytes, isText: true))
        let taken = buffer.take()
        let wire = try #require(taken)
        #expect(wire.readableBytes == size + WebSocketMessageHeader.size(payloadLength: size))
        let frames = try decodeMessages(wire)
        #expect(frames.count == 1)
        #expect(frames.first?.fin == true)
        #expect(frames.first?.opcode == .text)
        #expect(frames.first?.maskKey == nil)
        #expect(frames.first?.data == bytes)
    }

    /// A maximum that overstates the payload (escaping did not double anything) must still
    /// give the shortest header, which the RFC requires.
    @Test(arguments: [(10, 200), (130, 70_000), (125, 65_536)])
    func overstatedMaximumStillGivesTheShortestHeader(actual: Int, stated: Int) throws {
        var wire = ByteBuffer()
        let payload = ByteBuffer(repeating: 7, count: actual)
        wire.writeWebSocketMessage(opcode: .binary, maximumPayloadSize: stated) { $0.writeImmutableBuffer(payload) }
        #expect(wire.readableBytes == actual + WebSocketMessageHeader.size(payloadLength: actual))
        let frames = try decodeMessages(wire)
        #expect(frames.map(\.opcode) == [.binary])
        #expect(frames.first?.data == payload)
    }

    @Test func framesOfATickTravelTogetherInOrder() throws {
        var buffer = OutboundBuffer(framing: .webSocket)
        buffer.append(OutboundFrame(bytes: ByteBuffer(string: "RECEIPT\nreceipt-id:1\n\n\0"), isText: true))
        var binary = ByteBuffer(string: "MESSAGE\n\n")
        binary.writeBytes([0xFF, 0])
        buffer.append(OutboundFrame(bytes: binary, isText: false))
        buffer.append(OutboundFrame(bytes: ByteBuffer(string: "\n"), isText: true))
        let taken = buffer.take()
        let frames = try decodeMessages(try #require(taken))
        #expect(frames.map(\.opcode) == [.text, .binary, .text])
        #expect(
            frames.map { String(buffer: $0.data) } == ["RECEIPT\nreceipt-id:1\n\n\0", String(buffer: binary), "\n"]
        )
        #expect(buffer.isEmpty)
        let again = buffer.take()
        #expect(again == nil)
    }

    @Test func streamFramingWritesFramesAsTheyAre() throws {
        var buffer = OutboundBuffer(framing: .stream)
        buffer.append(OutboundFrame(bytes: ByteBuffer(string: "RECEIPT\nreceipt-id:1\n\n\0"), isText: true))
        buffer.append(OutboundFrame(bytes: ByteBuffer(string: "\n"), isText: true))
        let taken = buffer.take()
        #expect(taken == ByteBuffer(string: "RECEIPT\nreceipt-id:1\n\n\0\n"))
    }

    /// A delivery's stated maximum holds even when every byte of its own headers needs an
    /// escape.
    @Test func deliveryWithEscapedHeadersStaysWithinItsMaximum() throws {
        let router = Router(settings: .init(messageIDPrefix: "m-"))
        var outputs: [RouterOutput] = []
        let subscriber = ConnectionID(1)
        router.handle(.open(.v1_2), from: subscriber, receipt: nil, into: &outputs)
        let id = String(repeating: ":\\\n", count: 50)
        router.handle(
            .subscribe(SubscribeRequest(id: id, destination: .topic("t"), ackMode: .client, prefetch: 10)),
            from: subscriber,
            receipt: nil,
            into: &outputs
        )
        router.handle(
            .send(PublishRequest(destination: .topic("t"), headers: [:], body: ByteBuffer(string: "x"))),
            from: subscriber,
            receipt: nil,
            into: &outputs
        )
        let delivery = try #require(
            outputs.compactMap { if case .deliver(_, let delivery) = $0 { delivery } else { nil } }.first
        )
        var buffer = OutboundBuffer(framing: .webSocket)
        buffer.append(delivery)
        let taken = buffer.take()
        let frames = try decodeMessages(try #require(taken))
        var decoder = StompFrameDecoder()
        var payload = try #require(frames.first?.data)
        let frame = try #require(try decoder.nextFrame(from: &payload))
        #expect(frame.command == .message)
        #expect(frame.headers[StompHeader.subscription] == id)
    }
}
