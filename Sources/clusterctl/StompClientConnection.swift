import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// clusterctl's one STOMP client stack, for `bench`, `pub` and `sub`: a channel whose
/// pipeline ends in the caller's handler, which reads and writes raw STOMP bytes whatever
/// the transport (the WebSocket framing, if any, sits in front of it).
enum StompClientConnection {
    private enum Upgrade: Sendable {
        case upgraded(any Channel)
        case refused
    }

    /// Connects to `endpoint` on `loop`; for WebSocket, returns once the upgrade (subprotocol
    /// v12.stomp) has succeeded, and throws ``StompClientError`` when the server refuses it.
    static func connect(
        to endpoint: StompEndpoint,
        on loop: any EventLoop,
        handler: @escaping @Sendable () -> any ChannelHandler
    ) async throws -> any Channel {
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(10))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        switch endpoint.transport {
        case .tcp:
            return try await bootstrap.connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(handler())
                    return channel
                }
            }
        case .webSocket(let path):
            let upgrade: EventLoopFuture<Upgrade> = try await bootstrap.connect(
                host: endpoint.host,
                port: endpoint.port
            ) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: .init(upgradeConfiguration: upgradeConfiguration(endpoint, path, handler))
                    )
                }
            }
            guard case .upgraded(let channel) = try await upgrade.get() else {
                throw StompClientError("\(endpoint) refused the WebSocket upgrade")
            }
            return channel
        }
    }

    /// The upgrade request, and what a successful upgrade leaves in the pipeline: the bridge
    /// between WebSocket messages and STOMP bytes, then the caller's handler. Anything else the
    /// server answers is a refusal, which the caller reports.
    private static func upgradeConfiguration(
        _ endpoint: StompEndpoint,
        _ path: String,
        _ handler: @escaping @Sendable () -> any ChannelHandler
    ) -> NIOTypedHTTPClientUpgradeConfiguration<Upgrade> {
        let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: 1 << 24) { channel, _ in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(WebSocketClientBridge())
                try channel.pipeline.syncOperations.addHandler(handler())
                return .upgraded(channel)
            }
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: endpoint.authority)
        headers.add(name: "Sec-WebSocket-Protocol", value: "v12.stomp")
        headers.add(name: "Content-Length", value: "0")
        return NIOTypedHTTPClientUpgradeConfiguration(
            upgradeRequestHead: HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers),
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(.refused) }
        )
    }
}

/// STOMP bytes over WebSocket for a client: masked text messages out, message payloads in.
/// A fragmented message needs no reassembly: its fragments' payloads, in order, are the
/// message's bytes, and the STOMP decoder behind takes bytes as they come.
final class WebSocketClientBridge: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary, .continuation:
            context.fireChannelRead(wrapInboundOut(frame.unmaskedData))
        case .ping:
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)),
                promise: nil
            )
        case .connectionClose:
            context.close(promise: nil)
        default:
            break
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = unwrapOutboundIn(data)
        context.write(
            wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: bytes)),
            promise: promise
        )
    }
}

/// A STOMP client's failure that clusterctl reports in a sentence (and `pub`/`sub` with exit
/// code 4): a refused upgrade or connection, an ERROR frame.
struct StompClientError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
