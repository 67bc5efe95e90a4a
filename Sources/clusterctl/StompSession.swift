import NIOCore
import NIOPosix
import StompRouting

/// `pub` and `sub`'s view of a STOMP connection: an async `send`, and the frames received as
/// an async sequence. It sits on the bench's stack (``StompClientConnection`` and the
/// ``BenchConnection`` handler, which decodes frames as they arrive), so clusterctl has one
/// client on the wire.
enum StompSession {
    typealias Frames = AsyncThrowingStream<StompFrame, any Error>

    /// How long the broker has to answer CONNECT.
    static let connectedTimeout: TimeAmount = .seconds(10)

    /// Runs a session: CONNECT, CONNECTED, then `body` with a way to send frames and an
    /// iterator over the frames received (it ends when the connection closes); DISCONNECT and
    /// close when `body` returns or throws.
    static func run<T>(
        _ endpoint: StompEndpoint,
        _ body: (
            _ send: (StompFrame) async throws -> Void,
            _ frames: inout Frames.AsyncIterator
        ) async throws -> T
    ) async throws -> T {
        let (frames, continuation) = Frames.makeStream()
        let channel = try await StompClientConnection.connect(
            to: endpoint,
            on: MultiThreadedEventLoopGroup.singleton.next()
        ) {
            let connection = BenchConnection()
            connection.onFrame = { continuation.yield($0) }
            connection.onClose = { continuation.finish() }
            return connection
        }
        // A server that accepts and never answers must not hold the command for ever.
        let deadline = channel.eventLoop.scheduleTask(in: connectedTimeout) {
            let seconds = connectedTimeout.nanoseconds / 1_000_000_000
            continuation.finish(throwing: StompClientError("\(endpoint) sent no CONNECTED within \(seconds) s"))
            channel.close(promise: nil)
        }
        @Sendable func send(_ frame: StompFrame) async throws {
            try await channel.writeAndFlush(StompFrameEncoder.encode(frame, version: .v1_2))
        }
        do {
            try await send(StompFrame(.connect, headers: ["accept-version": "1.2", "host": "/", "heart-beat": "0,0"]))
            var iterator = frames.makeAsyncIterator()
            guard let connected = try await iterator.next() else {
                throw StompClientError("the connection closed before CONNECTED")
            }
            deadline.cancel()
            guard connected.command == .connected else {
                throw StompClientError(
                    "the broker refused the connection: \(connected.headers["message"] ?? connected.command.rawValue)"
                )
            }
            let result = try await body(send, &iterator)
            try? await send(StompFrame(.disconnect))
            try? await channel.close()
            return result
        } catch {
            deadline.cancel()
            try? await channel.close()
            throw error
        }
    }
}
