import CoreMetrics
import NIOCore
import NIOSSL
import NIOTLS

/// The steps a client connection goes through before its STOMP session, each of which a
/// silent or slow peer could otherwise stretch for ever.
enum HandshakeStage: String, Sendable, CaseIterable {
    /// The TLS handshake (`timeouts.tls-handshake-ms`).
    case tls
    /// From accepting to a complete WebSocket upgrade (`timeouts.upgrade-ms`).
    case upgrade

    var timeouts: Counter { Self.counters[self]! }

    private static let counters = Dictionary(
        uniqueKeysWithValues: allCases.map {
            ($0, Counter(label: "stomp_handshake_timeouts_total", dimensions: [("stage", $0.rawValue)]))
        }
    )
}

extension Channel {
    /// Closes the channel unless `cancel` is called on the result within `timeout`; counted
    /// as a timeout of `stage`. The deadline goes with the channel when it closes first.
    func closeUnlessCompleted(within timeout: TimeAmount, stage: HandshakeStage) -> Scheduled<Void> {
        let deadline = eventLoop.scheduleTask(in: timeout) { [self] in
            stage.timeouts.increment()
            close(promise: nil)
        }
        closeFuture.whenComplete { _ in deadline.cancel() }
        return deadline
    }
}

/// Sits right after the TLS handler and closes a connection whose TLS handshake does not
/// complete in time; it leaves the pipeline once it does.
final class TLSHandshakeDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let timeout: TimeAmount
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        deadline = context.channel.closeUnlessCompleted(within: timeout, stage: .tls)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            deadline?.cancel()
            deadline = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}
