import NIOCore
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
}
