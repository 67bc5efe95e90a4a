import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

extension StompEndpoint {
    /// Opens a connection whose pipeline ends in `handler`, which then reads and writes raw
    /// STOMP bytes whatever the transport.
    func connect(
        on loop: any EventLoop,
        handler: @escaping @Sendable () -> any ChannelHandler
    ) -> EventLoopFuture<any Channel> {
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(10))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        switch transport {
        case .tcp:
            return bootstrap.channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler()) }
            }.connect(host: host, port: port)
        case .webSocket(let path):
            let host = host
            let port = port
            return bootstrap.connect(host: host, port: port).flatMap { channel in
                let upgraded = channel.eventLoop.makePromise(of: Void.self)
                let upgrader = NIOWebSocketClientUpgrader(maxFrameSize: 1 << 24, automaticErrorHandling: true) {
                    channel,
                    _ in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(WebSocketClientBridge())
                        try channel.pipeline.syncOperations.addHandler(handler())
                    }.always { _ in upgraded.succeed() }
                }
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: authority)
                headers.add(name: "Sec-WebSocket-Protocol", value: "v12.stomp")
                headers.add(name: "Content-Length", value: "0")
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in })
                    )
                }.flatMap {
                    channel.writeAndFlush(HTTPClientRequestPart.head(head))
                }.flatMap {
                    channel.writeAndFlush(HTTPClientRequestPart.end(nil))
                }.flatMap {
                    upgraded.futureResult
                }.map { channel }
            }
        }
    }
}

/// STOMP bytes over WebSocket for a client: masked text messages out, message payloads in.
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

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
