import BrokerShell
import Logging
import NIOCore
import NIOEmbedded
import StompRouting
@_spi(Fuzzing) import WebSocketIO

/// libFuzzer entry point: one WebSocket client connection through the node's real pipeline
/// (HTTP server, upgrade, WebSocket frames, the STOMP bridge and connection handler, the
/// broker and its router), on an `EmbeddedChannel` instead of a socket.
///
/// The input is what the client sends: an HTTP request, then (if it upgraded) WebSocket
/// frames carrying STOMP. It arrives in three reads so that every input also splits a request
/// or a frame somewhere. Seeds mask with the key 0, which leaves the payload readable to the
/// fuzzer's mutations.
///
/// - Parameters:
///   - data: the input.
///   - size: its length in bytes.
/// - Returns: 0, as libFuzzer requires; a bug traps instead.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let node = EmbeddedNode()
    node.receive([input[..<(size / 3)], input[(size / 3)..<(2 * size / 3)], input[(2 * size / 3)...]])
    node.shutDown()
    return 0
}

/// A node with one connection, built fresh for every input so that nothing one input did
/// can change how the next one runs (a crash must reproduce from its input alone).
private struct EmbeddedNode {
    /// Heart-beats of a second: the timers fire a few times in the three simulated seconds
    /// below without costing much per input.
    private static let configuration: WebSocketIOConfiguration = {
        var configuration = WebSocketIOConfiguration()
        configuration.session = SessionStateMachine.Settings(
            heartbeatSend: .seconds(1),
            heartbeatReceive: .seconds(1),
            maxSubscriptions: 8,
            maxUnacked: 4
        )
        configuration.maxWebSocketMessageSize = 65_536
        configuration.frameLimits = StompFrameDecoder.Limits(maxFrameSize: 32_768, maxBodySize: 16_384)
        return configuration
    }()
    private static let logger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

    let loop = EmbeddedEventLoop()
    let channel: EmbeddedChannel

    init() {
        let broker = Broker(
            settings: Router.Settings(messageIDPrefix: "m-", maxQueueDepth: 64),
            eventLoop: loop,
            logger: Self.logger
        )
        channel = EmbeddedChannel(loop: loop)
        do {
            let server = try StompServer(
                configuration: Self.configuration,
                broker: broker,
                group: loop,
                logger: Self.logger
            )
            try server.configureAcceptedWebSocketConnection(channel)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).wait()
        } catch {
            fatalError("the pipeline could not be set up: \(error)")
        }
    }

    /// Feeds the reads in order, stopping once the node closed the connection.
    func receive(_ reads: [Slice<UnsafeBufferPointer<UInt8>>]) {
        for read in reads where channel.isActive {
            // Errors the pipeline raises are its answer to bad input (it closes), not bugs.
            _ = try? channel.writeInbound(ByteBuffer(bytes: read))
            loop.run()
            drainOutbound()
        }
    }

    /// Lets the timers run out (heart-beats, handshake deadlines, the close handshake's wait),
    /// closes the connection, and tears everything down, so that no input leaves memory
    /// behind.
    ///
    /// Order matters. `EmbeddedChannel.finish()` cancels every scheduled task, and a close the
    /// node starts itself on a WebSocket connection is deferred: it sends a WebSocket close
    /// and lets a 2 s deadline close the socket if the client never answers (this one never
    /// does). Finishing first would cancel that deadline and leave the connection, with its
    /// pipeline and its registration in the broker, open after the loop is gone: a cycle that
    /// only this harness makes, since a real loop always runs the deadline. So simulated time
    /// is taken past every deadline (upgrade and CONNECT: 10 s; each may start the 2 s wait)
    /// and a still-open connection is closed, again past its wait, before `finish`.
    func shutDown() {
        for _ in 0..<3 {
            loop.advanceTime(by: .seconds(11))
            drainOutbound()
        }
        if channel.isActive {
            channel.close(promise: nil)
            loop.advanceTime(by: .seconds(3))
            drainOutbound()
        }
        _ = try? channel.finish(acceptAlreadyClosed: true)
        do {
            try loop.syncShutdownGracefully()
        } catch {
            fatalError("the embedded loop did not shut down: \(error)")
        }
    }

    /// What the node wrote is dropped: the fuzzer looks for crashes, hangs and leaks. The
    /// HTTP encoder writes `IOData` and the WebSocket side `ByteBuffer`; a read of the wrong
    /// type still takes the item off, so the loop empties the queue either way.
    private func drainOutbound() {
        while true {
            do {
                guard try channel.readOutbound(as: ByteBuffer.self) != nil else { return }
            } catch {
                continue
            }
        }
    }
}
