import BrokerShell
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import StompRouting
import Testing

@testable import WebSocketIO

/// A STOMP connection over an in-memory channel: the real handlers and broker, no sockets.
final class TestConnection {
    let channel = EmbeddedChannel()
    let connections: ConnectionRegistry
    var broker: Broker { connections.broker }
    private let handler: StompConnectionHandler

    /// - Parameter connections: another test connection's, to share its broker.
    init(
        connections: ConnectionRegistry? = nil,
        webSocket: Bool = false,
        maxConnections: Int = 10,
        maxOutboundBytes: Int = 8 * 1_048_576,
        nodeOutbound: NodeByteBudget = NodeByteBudget(limit: 512 * 1_048_576),
        nodeInbound: NodeByteBudget = NodeByteBudget(limit: 256 * 1_048_576),
        maxDurableWritesInFlight: Int = 1_024,
        routerSettings: Router.Settings = .init(messageIDPrefix: "test-"),
        authenticator: (any ClientAuthenticator)? = nil
    ) throws {
        self.connections =
            connections
            ?? ConnectionRegistry(
                broker: Broker(
                    settings: routerSettings,
                    eventLoop: channel.embeddedEventLoop,
                    logger: Logger(label: "test")
                )
            )
        let pipeline = channel.pipeline.syncOperations
        let admission = ConnectionAdmission(
            limits: .init(connections: maxConnections, pendingConnections: 10, perAddress: 0)
        )
        handler = StompConnectionHandler(
            id: self.connections.broker.makeConnectionID(),
            connections: self.connections,
            ticket: try admission.admit(channel).get(),
            limits: ConnectionLimits(
                maxOutboundBytes: maxOutboundBytes,
                connectTimeout: .seconds(10),
                nodeConnections: maxConnections,
                nodeOutbound: nodeOutbound,
                nodeInbound: nodeInbound,
                maxDurableWritesInFlight: maxDurableWritesInFlight
            ),
            metrics: StompMetrics(),
            sessionSettings: .init(authentication: authenticator == nil ? .none : .external),
            frameLimits: .init(),
            sessionIDPrefix: "t-",
            framing: webSocket ? .webSocket : .stream,
            authenticator: authenticator,
            logger: Logger(label: "test")
        )
        if webSocket {
            // What NIO's upgrader puts in place, then what the server adds on top.
            try pipeline.addHandler(WebSocketFrameEncoder())
            try pipeline.addHandler(ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 20)))
            try pipeline.addStompOverWebSocketHandlers(
                maxMessageSize: 1 << 20,
                nodeInbound: nodeInbound,
                connection: handler
            )
        } else {
            try pipeline.addHandler(handler)
        }
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    }

    /// Whether the connection stopped reading for flow control. (An embedded channel has no
    /// real autoRead to look at.)
    var readsPaused: Bool { handler.readsPaused }

    /// Decodes what the server wrote with NIO's own frame decoder, as a client would.
    private let wire = EmbeddedChannel(handler: ByteToMessageHandler(WebSocketFrameDecoder()))

    /// The next WebSocket message the server wrote.
    func readMessage() throws -> WebSocketFrame? {
        while let bytes = try channel.readOutbound(as: ByteBuffer.self) {
            try wire.writeInbound(bytes)
        }
        return try wire.readInbound(as: WebSocketFrame.self)
    }

    func send(_ text: String) throws {
        try channel.writeInbound(ByteBuffer(string: text))
    }

    /// Sends one WebSocket frame as a client puts it on the wire (masked, when it has a mask
    /// key), through NIO's frame decoder.
    func send(_ frame: WebSocketFrame) throws {
        let client = EmbeddedChannel(handler: WebSocketFrameEncoder())
        try client.writeOutbound(frame)
        while let bytes = try client.readOutbound(as: ByteBuffer.self) {
            try channel.writeInbound(bytes)
        }
    }

    /// Everything written so far, as one string of raw STOMP bytes.
    func received() throws -> String {
        var result = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            result += String(buffer: buffer)
        }
        return result
    }
}

@Suite struct StompConnectionHandlerTests {
    @Test func connectSubscribeSendDeliversOnTheSameNode() throws {
        let connection = try TestConnection()
        try connection.send("CONNECT\naccept-version:1.2\nhost:/\n\n\0")
        #expect(try connection.received().hasPrefix("CONNECTED\nversion:1.2\n"))

        try connection.send("SUBSCRIBE\nid:s1\ndestination:/topic/news.*\nreceipt:r1\n\n\0")
        #expect(try connection.received() == "RECEIPT\nreceipt-id:r1\n\n\0")

        try connection.send("SEND\ndestination:/topic/news.eu\n\nhello\0")
        let message = try connection.received()
        #expect(message.hasPrefix("MESSAGE\nsubscription:s1\nmessage-id:test-1\ndestination:/topic/news.eu\n"))
        #expect(message.hasSuffix("content-length:5\n\nhello\0"))
    }

    @Test func frameSplitAcrossReadsAndSeveralFramesInOneRead() throws {
        let connection = try TestConnection()
        try connection.send("CONNECT\naccept-")
        try connection.send(
            "version:1.2\n\n\0\nSUBSCRIBE\nid:1\ndestination:/queue/q\n\n\0SEND\ndestination:/queue/q\n\nx\0"
        )
        let output = try connection.received()
        #expect(output.hasPrefix("CONNECTED\n"))
        #expect(output.contains("MESSAGE\nsubscription:1\n"))
    }

    @Test func protocolErrorSendsErrorAndCloses() throws {
        let connection = try TestConnection()
        try connection.send("SEND\ndestination:/topic/x\n\n\0")
        let output = try connection.received()
        #expect(output.hasPrefix("ERROR\nmessage:not connected\n"))
        connection.channel.embeddedEventLoop.run()
        #expect(!connection.channel.isActive)
    }

    @Test func garbageGetsAnError() throws {
        let connection = try TestConnection()
        try connection.send("\u{01}\u{02}garbage\n\n\0")
        #expect(try connection.received().hasPrefix("ERROR\nmessage:unknown command\n"))
    }

    @Test func disconnectWithReceiptAnswersThenCloses() throws {
        let connection = try TestConnection()
        try connection.send("CONNECT\naccept-version:1.2\n\n\0")
        _ = try connection.received()
        try connection.send("DISCONNECT\nreceipt:bye\n\n\0")
        #expect(try connection.received() == "RECEIPT\nreceipt-id:bye\n\n\0")
        connection.channel.embeddedEventLoop.run()
        #expect(!connection.channel.isActive)
    }

    /// The registry holds its broker and the broker only a weak reference back: once the
    /// last connection and the server are gone, so are both (a cycle here leaked one broker,
    /// router and registry per test server).
    @Test func theBrokerAndItsRegistryGoWithTheirLastConnection() throws {
        weak var broker: Broker?
        weak var registry: ConnectionRegistry?
        try {
            let connection = try TestConnection()
            (broker, registry) = (connection.broker, connection.connections)
            try connection.send("CONNECT\naccept-version:1.2\n\n\0")
            try connection.send("SUBSCRIBE\nid:1\ndestination:/queue/q\n\n\0SEND\ndestination:/queue/q\n\nx\0")
            #expect(try connection.received().contains("MESSAGE\n"))
            try connection.send("DISCONNECT\n\n\0")
            connection.channel.embeddedEventLoop.run()
            #expect(!connection.channel.isActive)
        }()
        #expect(broker == nil)
        #expect(registry == nil)
    }

    @Test func publisherStopsReadingWhileTheBrokerIsBehind() throws {
        let connection = try TestConnection()
        let subscriber = try TestConnection(connections: connection.connections)
        try connection.send("CONNECT\naccept-version:1.2\n\n\0")
        try subscriber.send("CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/t\n\n\0")
        let flow = connection.broker.flowControl
        flow.queued(flow.highWater + 1)

        try subscriber.send("UNSUBSCRIBE\nid:1\n\n\0")
        #expect(!subscriber.readsPaused, "a connection that doesn't publish keeps reading")
        try connection.send("SEND\ndestination:/topic/t\n\nx\0")
        #expect(connection.readsPaused)

        flow.completed(flow.highWater - flow.lowWater)
        connection.channel.embeddedEventLoop.run()
        #expect(connection.readsPaused, "still above the low-water mark")
        flow.completed(1)
        connection.channel.embeddedEventLoop.run()
        #expect(!connection.readsPaused)
    }

    @Test func publisherStopsReadingAtItsLimitOfDurableWritesInFlight() throws {
        // Durable queues on, none attached: no write ever ends, so the holds only pile up.
        var settings = Router.Settings(messageIDPrefix: "test-")
        settings.durableQueues = true
        let connection = try TestConnection(maxDurableWritesInFlight: 3, routerSettings: settings)
        try connection.send("CONNECT\naccept-version:1.2\n\n\0")
        let persistentSend = "SEND\ndestination:/queue/jobs\npersistent:true\n\nx\0"
        try connection.send(persistentSend + persistentSend)
        connection.channel.embeddedEventLoop.run()
        #expect(!connection.readsPaused, "two writes wait, below the limit")
        try connection.send("SEND\ndestination:/queue/jobs\n\nnot persistent\0")
        connection.channel.embeddedEventLoop.run()
        #expect(!connection.readsPaused, "a message kept in memory is no durable write")
        try connection.send(persistentSend)
        connection.channel.embeddedEventLoop.run()
        #expect(connection.readsPaused)
    }

    @Test func connectionLimitRefusesAtConnectWithError() throws {
        let connection = try TestConnection(maxConnections: 0)
        #expect(try connection.received().isEmpty, "a connection counts against the limit only once it CONNECTs")
        try connection.send("CONNECT\naccept-version:1.2\n\n\0")
        #expect(try connection.received().hasPrefix("ERROR\nmessage:too many connections\n"))
    }

    @Test func connectionThatNeverConnectsIsClosedAtItsDeadline() throws {
        let connection = try TestConnection()
        connection.channel.embeddedEventLoop.advanceTime(by: .seconds(9))
        #expect(connection.channel.isActive)
        connection.channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(try connection.received().hasPrefix("ERROR\nmessage:connect timeout\n"))
        #expect(!connection.channel.isActive)
    }

    @Test func connectedClientHasNoConnectDeadline() throws {
        let connection = try TestConnection()
        try connection.send("CONNECT\naccept-version:1.2\n\n\0")
        _ = try connection.received()
        connection.channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(connection.channel.isActive)
    }

    @Test func fanOutStopsAtTheSubscribersOutboundBound() throws {
        // One connection with many subscriptions to one topic: a single SEND would put a copy
        // per subscription in its outbound buffer. It is cut as soon as it passes its bound.
        let subscriber = try TestConnection(maxOutboundBytes: 64 * 1_024)
        let publisher = try TestConnection(connections: subscriber.connections)
        try subscriber.send("CONNECT\naccept-version:1.2\n\n\0")
        for id in 0..<64 { try subscriber.send("SUBSCRIBE\nid:\(id)\ndestination:/topic/t\n\n\0") }
        _ = try subscriber.received()
        try publisher.send("CONNECT\naccept-version:1.2\n\n\0")
        try publisher.send("SEND\ndestination:/topic/t\n\n\(String(repeating: "x", count: 8_192))\0")
        subscriber.channel.embeddedEventLoop.run()
        let written = try subscriber.received()
        #expect(written.contains("ERROR\nmessage:slow consumer\n"))
        let deliveries = written.ranges(of: "MESSAGE\n").count
        #expect(deliveries < 8, "at most its bound's worth of 8 KiB copies, not 64")
        #expect(!subscriber.channel.isActive)
    }

    @Test func shutdownTellsConnectedClients() async throws {
        let connection = try TestConnection()
        try connection.send("CONNECT\naccept-version:1.2\n\n\0")
        _ = try connection.received()
        let reason = StompProtocolError(.shuttingDown, "node is shutting down")
        await connection.broker.shutdown(reason: reason)
        #expect(try connection.received().hasPrefix("ERROR\nmessage:node is shutting down\n"))
    }
}

@Suite struct WebSocketStompBridgeTests {
    @Test func textAndBinaryMessagesFollowUTF8Validity() throws {
        let connection = try TestConnection(webSocket: true)
        try connection.send(
            WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: "CONNECT\naccept-version:1.2\n\n\0"))
        )
        let connected = try #require(try connection.readMessage())
        #expect(connected.opcode == .text)

        try connection.send(
            WebSocketFrame(
                fin: true,
                opcode: .binary,
                data: ByteBuffer(string: "SUBSCRIBE\nid:1\ndestination:/topic/t\n\n\0")
            )
        )
        var body = ByteBuffer(string: "SEND\ndestination:/topic/t\ncontent-length:2\n\n")
        body.writeBytes([0xFF, 0xFE, 0])
        try connection.send(WebSocketFrame(fin: true, opcode: .binary, data: body))
        let message = try #require(try connection.readMessage())
        #expect(message.opcode == .binary)
        #expect(String(buffer: message.data).hasPrefix("MESSAGE\n"))
    }

    @Test func pingIsAnsweredWithPong() throws {
        let connection = try TestConnection(webSocket: true)
        try connection.send(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "hi")))
        let pong = try #require(try connection.readMessage())
        #expect(pong.opcode == .pong)
        #expect(String(buffer: pong.data) == "hi")
    }

    @Test func closeIsEchoedWithItsCode() throws {
        let connection = try TestConnection(webSocket: true)
        var code = ByteBuffer()
        code.write(webSocketErrorCode: .goingAway)
        try connection.send(WebSocketFrame(fin: true, opcode: .connectionClose, data: code))
        let reply = try #require(try connection.readMessage())
        #expect(reply.opcode == .connectionClose)
        var data = reply.data
        #expect(data.readWebSocketErrorCode() == .goingAway)
    }

    @Test func errorEndsWithACloseFrame() throws {
        let connection = try TestConnection(webSocket: true)
        try connection.send(
            WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: "NOPE\n\n\0"))
        )
        let error = try #require(try connection.readMessage())
        #expect(String(buffer: error.data).hasPrefix("ERROR\n"))
        connection.channel.embeddedEventLoop.run()
        let close = try #require(try connection.readMessage())
        #expect(close.opcode == .connectionClose)
    }
}

@Suite struct SubprotocolTests {
    @Test(
        arguments: [
            (["v10.stomp", "v11.stomp", "v12.stomp"], "v12.stomp"),
            (["v11.stomp", "v10.stomp"], "v11.stomp"),
            (["V10.STOMP"], "v10.stomp"),
            (["mqtt"], nil),
            ([], nil),
        ] as [([String], String?)]
    )
    func highestKnownProtocolIsChosen(offered: [String], expected: String?) {
        #expect(StompSubprotocol.choose(from: offered) == expected)
    }

    @Test func requestPathIgnoresQuery() {
        #expect(requestPath("/ws?token=1") == "/ws")
        #expect(requestPath("/ws") == "/ws")
    }
}

@Suite struct ConnectionAdmissionTests {
    private func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    @Test func fullPendingTableEvictsItsOldestToAdmitANewcomer() throws {
        let admission = ConnectionAdmission(limits: .init(connections: 10, pendingConnections: 2, perAddress: 0))
        let silent = try (0..<2).map { _ in try channel() }
        for channel in silent { _ = try admission.admit(channel).get() }
        let newcomer = try channel()
        let ticket = try admission.admit(newcomer).get()
        #expect(!silent[0].isActive, "the oldest silent connection made room")
        #expect(silent[1].isActive)
        #expect(admission.pendingCount == 2)
        #expect(ticket.promote())
        #expect(admission.pendingCount == 1)
        #expect(admission.connectedCount == 1)
        ticket.release()
        #expect(admission.connectedCount == 0)
    }

    @Test func pendingConnectionsDontCountAgainstTheClientLimit() throws {
        let admission = ConnectionAdmission(limits: .init(connections: 1, pendingConnections: 10, perAddress: 0))
        let tickets = try (0..<5).map { _ in try admission.admit(try channel()).get() }
        #expect(admission.connectedCount == 0)
        #expect(tickets[0].promote())
        #expect(!tickets[1].promote(), "one client is the limit")
        for ticket in tickets { ticket.release() }
        #expect(admission.pendingCount == 0)
        #expect(admission.connectedCount == 0)
    }

    @Test func perAddressLimitRefusesAndFreesUp() throws {
        let admission = ConnectionAdmission(limits: .init(connections: 10, pendingConnections: 10, perAddress: 2))
        let first = try admission.admit(try channel()).get()
        _ = try admission.admit(try channel()).get()
        #expect(throws: ConnectionAdmission.Refusal.addressLimit) { try admission.admit(try channel()).get() }
        first.release()
        _ = try admission.admit(try channel()).get()
    }
}

/// Alice may read `/topic/news.#` and write `/topic/news.eu`; everybody else is refused. The
/// passcode "token" logs her in with a token good for `tokenLifetime`.
private final class OneUser: ClientAuthenticator, @unchecked Sendable {
    private(set) var generation = 0
    private var permissions = try! DestinationPermissions(read: ["/topic/news.#"], write: ["/topic/news.eu"])
    var tokenLifetime = TimeAmount.seconds(60)
    /// The clock of the loop the connection runs on.
    var now: () -> NIODeadline = { .now() }

    func authenticate(_ credentials: ConnectCredentials, from remote: SocketAddress?) -> AuthenticationDecision {
        if credentials.passcode == "token" {
            let expiresAt = now() + tokenLifetime
            return .decided(
                .success(
                    SessionIdentity(user: "alice", permissions: permissions, credential: .token(expiresAt: expiresAt))
                )
            )
        }
        guard credentials.login == "alice", credentials.passcode == "secret" else {
            return .decided(.failure(.accessRefused))
        }
        return .decided(.success(SessionIdentity(user: "alice", permissions: permissions)))
    }

    func currentPermissions(of user: String) -> DestinationPermissions? { user == "alice" ? permissions : nil }

    func reload(_ permissions: DestinationPermissions) {
        self.permissions = permissions
        generation += 1
    }
}

@Suite struct ConnectionAuthenticationTests {
    @Test func framesRightBehindTheConnectWaitForItsAnswer() throws {
        let connection = try TestConnection(authenticator: OneUser())
        // A client that doesn't wait for CONNECTED: its SUBSCRIBE and SEND are held, not lost.
        try connection.send(
            "CONNECT\naccept-version:1.2\nlogin:alice\npasscode:secret\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/news.*\n\n\0SEND\ndestination:/topic/news.eu\n\nhi\0"
        )
        connection.channel.embeddedEventLoop.run()
        let output = try connection.received()
        #expect(output.hasPrefix("CONNECTED\n"))
        #expect(output.contains("MESSAGE\nsubscription:1\n"))
        #expect(output.hasSuffix("hi\0"))
    }

    @Test func aWrongPasswordIsRefused() throws {
        let connection = try TestConnection(authenticator: OneUser())
        try connection.send("CONNECT\naccept-version:1.2\nlogin:alice\npasscode:guess\nreceipt:r\n\n\0")
        connection.channel.embeddedEventLoop.run()
        // A refusal waits before it is told: guessing gets slow.
        #expect(try connection.received().isEmpty)
        connection.channel.embeddedEventLoop.advanceTime(by: .milliseconds(500))
        let output = try connection.received()
        #expect(
            output.hasPrefix("ERROR\nreceipt-id:r\nmessage:access refused\n")
                || output.hasPrefix("ERROR\nmessage:access refused\n")
        )
        #expect(!connection.channel.isActive)
    }

    @Test func deniedDestinationsGetAnErrorNamingThem() throws {
        let connection = try TestConnection(authenticator: OneUser())
        try connection.send("CONNECT\naccept-version:1.2\nlogin:alice\npasscode:secret\n\n\0")
        connection.channel.embeddedEventLoop.run()
        _ = try connection.received()
        try connection.send("SUBSCRIBE\nid:1\ndestination:/topic/#\n\n\0")
        let output = try connection.received()
        #expect(output.hasPrefix("ERROR\nmessage:access denied\n"))
        #expect(output.contains("user 'alice' may not read from /topic/#"))
    }

    @Test func aReloadAppliesAtTheNextFrame() throws {
        let users = OneUser()
        let connection = try TestConnection(authenticator: users)
        try connection.send("CONNECT\naccept-version:1.2\nlogin:alice\npasscode:secret\n\n\0")
        connection.channel.embeddedEventLoop.run()
        _ = try connection.received()
        users.reload(try DestinationPermissions(read: ["/topic/#"], write: []))
        try connection.send("SUBSCRIBE\nid:1\ndestination:/topic/#\nreceipt:r\n\n\0")
        #expect(try connection.received() == "RECEIPT\nreceipt-id:r\n\n\0")
        try connection.send("SEND\ndestination:/topic/news.eu\n\nx\0")
        #expect(try connection.received().hasPrefix("ERROR\nmessage:access denied\n"))
    }

    @Test func aTokenConnectionEndsWhenItsTokenDoes() throws {
        let users = OneUser()
        let connection = try TestConnection(authenticator: users)
        users.now = { [loop = connection.channel.embeddedEventLoop] in loop.now }
        try connection.send("CONNECT\naccept-version:1.2\npasscode:token\n\n\0")
        connection.channel.embeddedEventLoop.run()
        #expect(try connection.received().hasPrefix("CONNECTED\n"))
        // A reload leaves what the token granted alone: it isn't a password user's.
        users.reload(try DestinationPermissions(read: [String](), write: [String]()))
        try connection.send("SUBSCRIBE\nid:1\ndestination:/topic/news.*\nreceipt:r\n\n\0")
        #expect(try connection.received() == "RECEIPT\nreceipt-id:r\n\n\0")
        connection.channel.embeddedEventLoop.advanceTime(by: .seconds(59))
        #expect(try connection.received().isEmpty)
        #expect(connection.channel.isActive)
        connection.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let output = try connection.received()
        #expect(output.hasPrefix("ERROR\nmessage:credentials expired\n"))
        #expect(output.contains("connect again with a fresh one"))
        connection.channel.embeddedEventLoop.run()
        #expect(!connection.channel.isActive)
    }
}
