import BrokerShell
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import StompRouting
import Synchronization

/// The client listeners of a node: STOMP over WebSocket and over TCP, each optionally over
/// TLS, all feeding one ``Broker``.
public final class StompServer: Sendable {
    /// The ports actually bound (useful when a configured port is 0).
    public struct BoundPorts: Sendable, Equatable {
        public var ws: Int?
        public var stomp: Int?
        public var wss: Int?
        public var stomps: Int?
    }

    enum Transport: Sendable {
        case webSocket
        case tcp
    }

    private let configuration: WebSocketIOConfiguration
    private let connections: ConnectionRegistry
    private let group: any EventLoopGroup
    private let logger: Logger
    private let sslContext: NIOSSLContext?
    private let admission: ConnectionAdmission
    private let connectionLimits: ConnectionLimits
    private let metrics = StompMetrics()
    private let listeners = Mutex<[any Channel]>([])

    /// Validates the configuration and loads TLS material once, before anything binds.
    ///
    /// - Throws: when the TLS files can't be read or don't form a usable server identity.
    public init(
        configuration: WebSocketIOConfiguration,
        broker: Broker,
        group: any EventLoopGroup,
        logger: Logger
    ) throws {
        self.configuration = configuration
        self.connections = ConnectionRegistry(broker: broker)
        self.group = group
        self.logger = logger
        self.admission = ConnectionAdmission(
            limits: .init(
                connections: configuration.maxConnections,
                pendingConnections: configuration.maxPendingConnections,
                perAddress: configuration.maxConnectionsPerAddress
            )
        )
        self.connectionLimits = ConnectionLimits(
            maxOutboundBytes: configuration.maxOutboundBytes,
            connectTimeout: configuration.connectTimeout,
            nodeConnections: configuration.maxConnections,
            nodeOutbound: NodeByteBudget(limit: configuration.maxNodeOutboundBytes),
            nodeInbound: NodeByteBudget(limit: configuration.maxNodeInboundBytes),
            failedLoginDelay: configuration.failedLoginDelay,
            maxDurableWritesInFlight: configuration.maxDurableWritesInFlight
        )
        if let tls = configuration.tls {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificateChainPath).map {
                NIOSSLCertificateSource.certificate($0)
            }
            let key = try NIOSSLPrivateKey(file: tls.privateKeyPath, format: .pem)
            var tlsConfiguration = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain,
                privateKey: .privateKey(key)
            )
            // TLS 1.0 and 1.1 are deprecated (RFC 8996).
            tlsConfiguration.minimumTLSVersion = .tlsv12
            self.sslContext = try NIOSSLContext(configuration: tlsConfiguration)
        } else {
            self.sslContext = nil
        }
    }

    /// Binds every configured listener.
    ///
    /// - Returns: the ports bound.
    public func start() async throws -> BoundPorts {
        var ports = BoundPorts()
        ports.ws = try await bind(configuration.webSocketPort, transport: .webSocket, tls: nil)
        ports.stomp = try await bind(configuration.stompPort, transport: .tcp, tls: nil)
        if let sslContext {
            ports.wss = try await bind(configuration.secureWebSocketPort, transport: .webSocket, tls: sslContext)
            ports.stomps = try await bind(configuration.secureStompPort, transport: .tcp, tls: sslContext)
        }
        return ports
    }

    /// Clients connected now (their STOMP session established).
    public var openConnections: Int { admission.connectedCount }
    /// Connections still in their handshakes (TLS, WebSocket upgrade, CONNECT) now.
    public var pendingConnections: Int { admission.pendingCount }
    /// Bytes handed to client sockets and not yet written, over all clients.
    public var unwrittenBytes: Int { connectionLimits.nodeOutbound.current }
    /// Bytes of frames still arriving, over all clients.
    public var unfinishedInboundBytes: Int { connectionLimits.nodeInbound.current }

    /// Stops accepting connections. Open connections are not touched.
    public func closeListeners() async {
        let channels = listeners.withLock { channels in
            defer { channels.removeAll() }
            return channels
        }
        for channel in channels {
            try? await channel.close()
        }
    }

    // MARK: - Bootstrap

    private func bind(_ port: Int?, transport: Transport, tls: NIOSSLContext?) async throws -> Int? {
        guard let port else { return nil }
        let highWater = max(configuration.maxOutboundBytes, 2)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1_024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: highWater / 2, high: highWater))
            .childChannelInitializer { [self] channel in
                do {
                    try self.configureConnection(channel, transport: transport, tls: tls)
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .bind(host: configuration.host, port: port)
            .get()
        listeners.withLock { $0.append(channel) }
        let bound = channel.localAddress?.port ?? port
        logger.info(
            "listening",
            metadata: [
                "stomp.transport":
                    "\(transport == .webSocket ? (tls == nil ? "ws" : "wss") : (tls == nil ? "stomp" : "stomp+tls"))",
                "net.address": "\(configuration.host):\(bound)",
            ]
        )
        return bound
    }

    /// Admits the connection as pending (or refuses it: the failed initializer closes the
    /// channel at once) and builds its pipeline.
    func configureConnection(_ channel: any Channel, transport: Transport, tls: NIOSSLContext?) throws {
        let ticket: AdmissionTicket
        switch admission.admit(channel) {
        case .success(let admitted): ticket = admitted
        case .failure(let refusal): throw ConnectionRefused(reason: refusal)
        }
        let heldTicket = NIOLoopBound(ticket, eventLoop: channel.eventLoop)
        channel.closeFuture.whenComplete { _ in heldTicket.value.release() }

        let pipeline = channel.pipeline.syncOperations
        if let tls {
            try pipeline.addHandler(NIOSSLServerHandler(context: tls))
            try pipeline.addHandler(TLSHandshakeDeadlineHandler(timeout: configuration.tlsHandshakeTimeout))
        }
        switch transport {
        case .tcp:
            try pipeline.addHandler(makeConnectionHandler(framing: .stream, ticket: ticket))
        case .webSocket:
            try configureWebSocket(channel, ticket: ticket)
        }
    }

    /// Why a connection was closed as soon as it was accepted.
    private struct ConnectionRefused: Error {
        var reason: ConnectionAdmission.Refusal
    }

    private func configureWebSocket(_ channel: any Channel, ticket: AdmissionTicket) throws {
        // Until the upgrade completes, the connection speaks HTTP, and a client that never
        // finishes its request would hold it for ever.
        let upgradeDeadline = channel.closeUnlessCompleted(within: configuration.upgradeTimeout, stage: .upgrade)
        let heldTicket = NIOLoopBound(ticket, eventLoop: channel.eventLoop)
        let policy = UpgradeRequestPolicy(path: configuration.webSocketPath, origins: configuration.allowedOrigins)
        let maxMessage = configuration.maxWebSocketMessageSize
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: maxMessage,
            automaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                // A refused upgrade goes on to HTTPFallbackHandler, which says why.
                guard policy.refusal(of: head) == nil else {
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                var headers = HTTPHeaders()
                if let chosen = StompSubprotocol.choose(
                    from: head.headers[canonicalForm: "Sec-WebSocket-Protocol"].map(String.init)
                ) {
                    headers.add(name: "Sec-WebSocket-Protocol", value: chosen)
                }
                return channel.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { [self] channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addStompOverWebSocketHandlers(
                        maxMessageSize: maxMessage,
                        nodeInbound: self.connectionLimits.nodeInbound,
                        connection: self.makeConnectionHandler(framing: .webSocket, ticket: heldTicket.value)
                    )
                }
            }
        )
        let fallback = HTTPFallbackHandler(policy: policy)
        let fallbackBox = NIOLoopBound(fallback, eventLoop: channel.eventLoop)
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (
                upgraders: [upgrader],
                completionHandler: { context in
                    upgradeDeadline.cancel()
                    context.pipeline.syncOperations.removeHandler(fallbackBox.value, promise: nil)
                }
            )
        )
        try channel.pipeline.syncOperations.addHandler(fallback)
    }

    private func makeConnectionHandler(framing: OutboundFraming, ticket: AdmissionTicket) -> StompConnectionHandler {
        StompConnectionHandler(
            id: connections.broker.makeConnectionID(),
            connections: connections,
            ticket: ticket,
            limits: connectionLimits,
            metrics: metrics,
            sessionSettings: configuration.session,
            frameLimits: configuration.frameLimits,
            sessionIDPrefix: configuration.sessionIDPrefix,
            framing: framing,
            authenticator: configuration.authenticator,
            logger: logger
        )
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Completes an upgraded WebSocket pipeline (NIO's frame encoder and decoder already in
    /// place) for STOMP: what the decoder and the aggregator hold counted in the node's inbound
    /// budget, fragments reassembled, messages bridged to STOMP bytes, the connection's handler
    /// on top.
    func addStompOverWebSocketHandlers(
        maxMessageSize: Int,
        nodeInbound: NodeByteBudget,
        connection: StompConnectionHandler
    ) throws {
        let encoder = try handler(type: WebSocketFrameEncoder.self)
        try addHandler(WebSocketMessageOutput(), position: .before(encoder))
        let decoder = try handler(type: ByteToMessageHandler<WebSocketFrameDecoder>.self)
        let (bytesIn, framesOut) = WebSocketInboundBudget.handlers(budget: nodeInbound)
        try addHandler(bytesIn, position: .before(decoder))
        try addHandler(framesOut, position: .after(decoder))
        try addHandler(
            NIOWebSocketFrameAggregator(
                minNonFinalFragmentSize: 0,
                maxAccumulatedFrameCount: 4_096,
                maxAccumulatedFrameSize: maxMessageSize
            )
        )
        try addHandler(WebSocketStompBridge())
        try addHandler(connection)
    }
}
