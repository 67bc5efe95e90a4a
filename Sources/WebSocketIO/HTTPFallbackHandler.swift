import CoreMetrics
import NIOCore
import NIOHTTP1

/// Answers HTTP requests on the WebSocket port that are not WebSocket upgrades, so a plain
/// request gets a clear status instead of a hang: 426 on the WebSocket path, 404 elsewhere,
/// and for a refused upgrade (``UpgradeRequestPolicy``) 403 (a browser origin that isn't
/// allowed, `ws.allowed-origins`) or 400 (a request with a body).
final class HTTPFallbackHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let policy: UpgradeRequestPolicy
    private var pending: (status: HTTPResponseStatus, message: String)?

    init(policy: UpgradeRequestPolicy) {
        self.policy = policy
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            switch policy.refusal(of: head) {
            case .body:
                pending = (.badRequest, "A WebSocket opening handshake has no body (RFC 6455, section 4.1).\n")
            case .origin:
                Self.refusedOrigins.increment()
                pending = (
                    .forbidden, "This origin may not open STOMP over WebSocket connections here (ws.allowed-origins).\n"
                )
            case .notFound:
                pending = (.notFound, "Not found. STOMP over WebSocket is served at \(policy.path).\n")
            case nil:
                // Upgradable, but it came here: no upgrade was asked for.
                pending = (
                    .upgradeRequired,
                    "This endpoint speaks STOMP over WebSocket: send a WebSocket upgrade request (subprotocols v12.stomp, v11.stomp, v10.stomp).\n"
                )
            }
        case .body:
            break
        case .end:
            guard let (status, message) = pending else { return }
            pending = nil
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            headers.add(name: "Content-Length", value: String(message.utf8.count))
            headers.add(name: "Connection", value: "close")
            if status == .upgradeRequired {
                headers.add(name: "Upgrade", value: "websocket")
            }
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                promise: nil
            )
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: message)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
                channel.close(promise: nil)
            }
        }
    }
}

extension HTTPFallbackHandler {
    private static let refusedOrigins = Counter(
        label: "stomp_upgrades_refused_total",
        dimensions: [("reason", "origin")]
    )

    /// A request that doesn't parse has been answered with 400 by NIO's protocol error
    /// handler; the connection can't be resynchronised, so it ends here. (A refused upgrade
    /// also arrives here as an error, and is answered by `channelRead` instead.)
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is HTTPParserError {
            context.close(promise: nil)
        }
    }
}
