import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import WebSocketIO

/// `limits.node-inbound-bytes`: frames still arriving, over all connections of a node. Each
/// connection's frame bound alone would let many connections each hold a frame just short of
/// it; past the node's budget, the connection whose unfinished frame grows is let go.
@Suite struct NodeInboundBudgetTests {
    private static let connect = "CONNECT\naccept-version:1.2\nhost:/\n\n\0"
    /// A SEND whose body is `bytes` long and not finished yet.
    private static func unfinishedSend(_ bytes: Int) -> String {
        "SEND\ndestination:/queue/q\n\n" + String(repeating: "x", count: bytes)
    }

    @Test func theConnectionThatGrowsAFramePastTheBudgetIsLetGo() throws {
        let budget = NodeByteBudget(limit: 10_000)
        let first = try TestConnection(nodeInbound: budget)
        let second = try TestConnection(connections: first.connections, nodeInbound: budget)
        try first.send(Self.connect)
        try second.send(Self.connect)
        _ = try first.received()
        _ = try second.received()

        try first.send(Self.unfinishedSend(6_000))
        #expect(budget.current >= 6_000)
        try second.send(Self.unfinishedSend(6_000))
        let error = try second.received()
        #expect(error.hasPrefix("ERROR\n"))
        #expect(error.contains("message:node inbound budget exceeded"))
        #expect(error.contains("limits.node-inbound-bytes"))
        second.channel.embeddedEventLoop.run()
        #expect(!second.channel.isActive, "the ERROR closes the connection")
        #expect(budget.current < 7_000, "the closed connection gave its bytes back")

        // The first goes on: its frame completes, and what it held is given back.
        try first.send("\0SUBSCRIBE\nid:s\ndestination:/queue/q\nreceipt:r\n\n\0")
        let delivered = try first.received()
        #expect(delivered.contains("RECEIPT\nreceipt-id:r"))
        #expect(delivered.contains("MESSAGE\nsubscription:s"))
        #expect(budget.current == 0)
    }

    @Test func underTheBudgetUnfinishedFramesAreCountedAndGivenBack() throws {
        let budget = NodeByteBudget(limit: 1_000_000)
        let connection = try TestConnection(nodeInbound: budget)
        try connection.send(Self.connect)
        _ = try connection.received()
        try connection.send(Self.unfinishedSend(50_000))
        #expect(budget.current >= 50_000)
        try connection.channel.close().wait()
        #expect(budget.current == 0)
    }

    /// A client's bytes for one WebSocket frame, masked.
    private static func wire(_ text: String, fin: Bool = true, opcode: WebSocketOpcode = .text) throws -> ByteBuffer {
        let client = EmbeddedChannel(handler: WebSocketFrameEncoder())
        try client.writeOutbound(
            WebSocketFrame(fin: fin, opcode: opcode, maskKey: [1, 2, 3, 4], data: ByteBuffer(string: text))
        )
        var bytes = ByteBuffer()
        while var part = try client.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        return bytes
    }

    private static func webSocketConnection(budget: NodeByteBudget) throws -> TestConnection {
        let connection = try TestConnection(webSocket: true, nodeInbound: budget)
        try connection.channel.writeInbound(try wire(connect))
        _ = try #require(try connection.readMessage())
        return connection
    }

    @Test func aWebSocketFrameStillArrivingAndUnfinishedFragmentsAreCounted() throws {
        let budget = NodeByteBudget(limit: 1_000_000)
        let connection = try Self.webSocketConnection(budget: budget)
        #expect(budget.current == 0)

        // Half of one frame: inside NIO's frame decoder.
        var frame = try Self.wire("SEND\ndestination:/queue/q\n\n" + String(repeating: "x", count: 40_000) + "\0")
        let half = frame.readSlice(length: frame.readableBytes / 2)!
        try connection.channel.writeInbound(half)
        #expect(budget.current == half.readableBytes)
        try connection.channel.writeInbound(frame)
        #expect(budget.current == 0, "the whole frame went on to STOMP, which completed it")

        // Fragments of a message: inside NIO's aggregator until the final one.
        try connection.channel.writeInbound(try Self.wire("SEND\ndestination:/queue/q\n\n", fin: false))
        try connection.channel.writeInbound(
            try Self.wire(String(repeating: "y", count: 30_000), fin: false, opcode: .continuation)
        )
        #expect(budget.current >= 30_000)
        try connection.channel.writeInbound(try Self.wire("\0", opcode: .continuation))
        #expect(budget.current == 0)

        // A connection that closes mid-message gives back what it held.
        try connection.channel.writeInbound(
            try Self.wire("SEND\ndestination:/queue/q\n\n" + String(repeating: "z", count: 20_000), fin: false)
        )
        #expect(budget.current >= 20_000)
        // The server's close handshake: a close frame, then the TCP close 2 s later at most.
        try connection.channel.close().wait()
        connection.channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!connection.channel.isActive)
        #expect(budget.current == 0)
    }

    @Test func theWebSocketConnectionThatGrowsPastTheBudgetIsLetGo() throws {
        let budget = NodeByteBudget(limit: 50_000)
        let first = try Self.webSocketConnection(budget: budget)
        let second = try Self.webSocketConnection(budget: budget)
        try first.channel.writeInbound(
            try Self.wire("SEND\ndestination:/queue/q\n\n" + String(repeating: "a", count: 40_000), fin: false)
        )
        var frame = try Self.wire(String(repeating: "b", count: 30_000), fin: false, opcode: .continuation)
        try second.channel.writeInbound(frame.readSlice(length: 20_000)!)
        let error = try #require(try second.readMessage())
        #expect(String(buffer: error.data).hasPrefix("ERROR\n"))
        #expect(String(buffer: error.data).contains("message:node inbound budget exceeded"))
        #expect(String(buffer: error.data).contains("limits.node-inbound-bytes"))
        second.channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!second.channel.isActive, "the ERROR closes the connection")
        #expect(budget.current < 45_000, "the closed connection gave its bytes back")

        // The first goes on: its message completes, and what it held is given back.
        try first.channel.writeInbound(try Self.wire("\0", opcode: .continuation))
        #expect(budget.current == 0)
        #expect(first.channel.isActive)
    }
}
