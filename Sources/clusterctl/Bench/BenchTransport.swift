import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Where a benchmark client connects: `ws://host:port/path` (STOMP over WebSocket) or
/// `tcp://host:port` (STOMP over TCP).
struct BenchEndpoint: Sendable, CustomStringConvertible {
    enum Kind: Sendable {
        case webSocket(path: String)
        case tcp
    }

    var host: String
    var port: Int
    var kind: Kind

    init(_ url: String) throws {
        let rest: Substring
        if url.hasPrefix("ws://") {
            rest = url.dropFirst(5)
            let authority = rest.prefix { $0 != "/" }
            let path = rest.dropFirst(authority.count)
            kind = .webSocket(path: path.isEmpty ? "/ws" : String(path))
            (host, port) = try Self.split(authority)
        } else if url.hasPrefix("tcp://") || url.hasPrefix("stomp://") {
            rest = url.drop { $0 != "/" }.dropFirst(2)
            kind = .tcp
            (host, port) = try Self.split(rest.prefix { $0 != "/" })
        } else {
            throw BenchError("unsupported URL \(url): use ws://host:port/ws or tcp://host:port")
        }
    }

    private static func split(_ authority: Substring) throws -> (String, Int) {
        guard let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...])
        else {
            throw BenchError("\(authority) needs a port")
        }
        return (String(authority[..<colon]), port)
    }

    var description: String {
        switch kind {
        case .webSocket(let path): return "ws://\(host):\(port)\(path)"
        case .tcp: return "tcp://\(host):\(port)"
        }
    }

    /// Opens a connection whose pipeline ends in `handler`, which then reads and writes raw
    /// STOMP bytes whatever the transport.
    func connect(
        on loop: any EventLoop,
        handler: @escaping @Sendable () -> any ChannelHandler
    ) -> EventLoopFuture<any Channel> {
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(10))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        switch kind {
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
                headers.add(name: "Host", value: "\(host):\(port)")
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
