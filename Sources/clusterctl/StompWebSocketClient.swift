import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import StompRouting

/// A STOMP 1.2 client over WebSocket, for `clusterctl pub` and `sub`: a real client on the
/// wire, built from the broker's own codec and SwiftNIO's WebSocket client.
struct StompWebSocketClient {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private let channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>

    private enum Upgrade {
        case upgraded(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        case refused
    }

    /// Opens the WebSocket (subprotocol v12.stomp).
    ///
    /// - Parameter url: `ws://host:port/path`.
    static func open(_ url: String) async throws -> StompWebSocketClient {
        guard url.hasPrefix("ws://") else { throw Failure(description: "only ws:// URLs are supported, not \(url)") }
        let rest = url.dropFirst("ws://".count)
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count)
        guard let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...])
        else {
            throw Failure(description: "the URL \(url) needs a port")
        }
        let host = String(authority[..<colon])
        let upgrade: EventLoopFuture<Upgrade> = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: 1 << 24) { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(
                                NIOWebSocketFrameAggregator(
                                    minNonFinalFragmentSize: 0,
                                    maxAccumulatedFrameCount: 4_096,
                                    maxAccumulatedFrameSize: 1 << 24
                                )
                            )
                            return .upgraded(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
                        }
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: String(authority))
                    headers.add(name: "Sec-WebSocket-Protocol", value: "v12.stomp")
                    headers.add(name: "Content-Length", value: "0")
                    let head = HTTPRequestHead(
                        version: .http1_1,
                        method: .GET,
                        uri: path.isEmpty ? "/ws" : String(path),
                        headers: headers
                    )
                    let configuration = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
                        upgradeRequestHead: head,
                        upgraders: [upgrader],
                        notUpgradingCompletionHandler: { channel in channel.eventLoop.makeSucceededFuture(.refused) }
                    )
                    return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                        configuration: .init(upgradeConfiguration: configuration)
                    )
                }
            }
        guard case .upgraded(let channel) = try await upgrade.get() else {
            throw Failure(description: "\(url) refused the WebSocket upgrade")
        }
        return StompWebSocketClient(channel: channel)
    }

    /// Runs a session: CONNECT, CONNECTED, then `body` with a way to send frames and an
    /// iterator over the frames received; DISCONNECT and close when `body` returns.
    func session<T>(
        _ body: (
            _ send: (StompFrame) async throws -> Void,
            _ frames: inout AsyncThrowingStream<StompFrame, any Error>.AsyncIterator
        ) async throws -> T
    ) async throws -> T {
        try await channel.executeThenClose { inbound, outbound in
            func send(_ frame: StompFrame) async throws {
                let bytes = StompFrameEncoder.encode(frame, version: .v1_2)
                try await outbound.write(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: bytes))
            }
            let (frames, continuation) = AsyncThrowingStream.makeStream(of: StompFrame.self)
            let reader = Task {
                var decoder = StompFrameDecoder(limits: .init(maxFrameSize: 1 << 24, maxBodySize: 1 << 24))
                var buffer = ByteBuffer()
                do {
                    for try await message in inbound {
                        if message.opcode == .connectionClose { break }
                        guard message.opcode == .text || message.opcode == .binary else { continue }
                        var data = message.unmaskedData
                        buffer.writeBuffer(&data)
                        while let frame = try decoder.nextFrame(from: &buffer) {
                            continuation.yield(frame)
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            defer { reader.cancel() }
            try await send(StompFrame(.connect, headers: ["accept-version": "1.2", "host": "/", "heart-beat": "0,0"]))
            var iterator = frames.makeAsyncIterator()
            guard let connected = try await iterator.next() else {
                throw Failure(description: "the connection closed before CONNECTED")
            }
            guard connected.command == .connected else {
                throw Failure(
                    description:
                        "the broker refused the connection: \(connected.headers["message"] ?? connected.command.rawValue)"
                )
            }
            let result = try await body(send, &iterator)
            try? await send(StompFrame(.disconnect))
            return result
        }
    }
}
