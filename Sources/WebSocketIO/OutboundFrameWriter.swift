import NIOCore
import StompRouting

/// Plain TCP (or TLS) framing: STOMP frames are written to the stream as they are.
final class OutboundFrameWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = OutboundFrame
    typealias OutboundOut = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(wrapOutboundOut(unwrapOutboundIn(data).bytes), promise: promise)
    }
}
