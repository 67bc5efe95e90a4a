import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A request to the admin API, read whole (bodies are small: actions and their options).
struct AdminRequest: Sendable {
    var method: HTTPMethod
    var path: String
    var query: [String: String]
    var headers: HTTPHeaders
    var body: ByteBuffer
}

/// An answer of the admin API.
struct AdminResponse: Sendable {
    var status: HTTPResponseStatus
    var contentType: String
    var body: ByteBuffer

    static func text(_ status: HTTPResponseStatus, _ text: String) -> AdminResponse {
        AdminResponse(status: status, contentType: "text/plain; charset=utf-8", body: ByteBuffer(string: text))
    }
}

/// The HTTP listener of the admin API (health, readiness, metrics, `/v1/...`).
///
/// A cold path: each request runs as a task; nothing here touches the message path except
/// through the snapshots the API asks for.
final class AdminServer: Sendable {
    private let api: AdminAPI
    private let logger: Logger

    init(api: AdminAPI, logger: Logger) {
        self.api = api
        self.logger = logger
    }

    /// Binds the listener.
    ///
    /// - Returns: the channel and its bound port.
    func start(host: String, port: Int, group: any EventLoopGroup) async throws -> (any Channel, Int) {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [api] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHTTPHandler(api: api))
                }
            }
            .bind(host: host, port: port)
            .get()
        let bound = channel.localAddress?.port ?? port
        logger.info("admin API listening", metadata: ["net.address": "\(host):\(bound)"])
        return (channel, bound)
    }
}

/// Reads one request at a time, answers it, and keeps the connection for the next.
private final class AdminHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private static let maxBody = 65_536
    private let api: AdminAPI
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(api: AdminAPI) {
        self.api = api
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            guard body.readableBytes + chunk.readableBytes <= Self.maxBody else {
                respond(context: context, keepAlive: false, .text(.payloadTooLarge, "request body too large\n"))
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            self.head = nil
            let (path, query) = Self.split(head.uri)
            let request = AdminRequest(method: head.method, path: path, query: query, headers: head.headers, body: body)
            let keepAlive = head.isKeepAlive
            let api = api
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.makeFutureWithTask { await api.respond(to: request) }.whenSuccess { response in
                let (handler, context) = loopBound.value
                handler.respond(context: context, keepAlive: keepAlive, response)
            }
        }
    }

    private func respond(context: ChannelHandlerContext, keepAlive: Bool, _ response: AdminResponse) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.readableBytes))
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: response.status, headers: headers))),
            promise: nil
        )
        context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            done.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        }
    }

    private static func split(_ uri: String) -> (String, [String: String]) {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [String: String] = [:]
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0]).removingPercentEncoding
                query[key] = kv.count == 2 ? String(kv[1]).removingPercentEncoding : ""
            }
        }
        return (String(parts.first ?? "/"), query)
    }
}

extension String {
    /// Decodes `%XX` escapes and `+` (as in query strings).
    fileprivate var removingPercentEncoding: String {
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%"), let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
