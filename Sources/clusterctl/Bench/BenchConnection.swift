import NIOCore
import StompRouting

/// One benchmark client connection: decodes STOMP frames and hands them to its owner; writes
/// are flushed once per event-loop tick.
final class BenchConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var decoder = StompFrameDecoder(limits: .init(maxFrameSize: 1 << 24, maxBodySize: 1 << 24, maxHeaderCount: 256))
    private var inbound = ByteBuffer()
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    /// Called for every frame received, on the connection's loop.
    var onFrame: (StompFrame) -> Void = { _ in }
    var onClose: () -> Void = {}

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if inbound.readableBytes == 0 { inbound = bytes } else { inbound.writeBuffer(&bytes) }
        do {
            while let frame = try decoder.nextFrame(from: &inbound) { onFrame(frame) }
        } catch {
            context.close(promise: nil)
        }
        if inbound.readableBytes == 0 { inbound.clear() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Writes bytes now and flushes at the end of the tick.
    func write(_ bytes: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(bytes), promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let connection = loopBound.value
            connection.flushScheduled = false
            connection.context?.flush()
        }
    }

    func write(_ frame: StompFrame) {
        write(StompFrameEncoder.encode(frame, version: .v1_2))
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func close() {
        context?.close(promise: nil)
    }
}
