import NIOCore
import NIOWebSocket
import StompRouting

/// Carries STOMP over WebSocket messages, below ``StompConnectionHandler``.
///
/// Inbound, data messages (text or binary, already reassembled from fragments by
/// `NIOWebSocketFrameAggregator`) pass on as raw bytes, so several STOMP frames may share a
/// message and one frame may span several. Pings are answered and the close handshake is
/// completed here. Outbound, each STOMP frame becomes one message: text when its bytes are
/// valid UTF-8, binary otherwise, because clients reject text messages that aren't.
final class WebSocketStompBridge: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = OutboundFrame
    typealias OutboundOut = WebSocketFrame

    /// Whether this side sent its close frame; after that only the peer's close matters.
    private var sentClose = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            guard !sentClose else { return }
            context.fireChannelRead(wrapInboundOut(frame.unmaskedData))
        case .ping:
            guard !sentClose else { return }
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            if sentClose {
                context.close(promise: nil)
            } else {
                // Echo the peer's status code, as RFC 6455 section 5.5.1 suggests, then close.
                // The handshake is complete once our reply is out, and the server closes the
                // TCP connection first (RFC 6455 section 7.1.1).
                var data = frame.unmaskedData
                let code = data.readableBytes >= 2 ? data.readSlice(length: 2)! : ByteBuffer()
                sendClose(context: context, payload: code, closeWhenWritten: true)
            }
        case .pong, .continuation:
            break
        default:
            sendClose(context: context, code: .protocolError)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        guard !sentClose else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let message = WebSocketFrame(fin: true, opcode: frame.isText ? .text : .binary, data: frame.bytes)
        context.write(wrapOutboundOut(message), promise: promise)
    }

    /// A close from above (an ERROR was sent, DISCONNECT answered, the node is stopping)
    /// becomes the WebSocket close handshake, bounded in time.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, !sentClose, context.channel.isActive else {
            context.close(mode: mode, promise: promise)
            return
        }
        sendClose(context: context, code: .normalClosure)
        promise?.succeed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOWebSocketFrameAggregator.Error {
            switch error {
            case .accumulatedFrameSizeIsTooLarge, .tooManyFragments:
                sendClose(context: context, code: .messageTooLarge)
                return
            default:
                sendClose(context: context, code: .protocolError)
                return
            }
        }
        context.fireErrorCaught(error)
    }

    private func sendClose(context: ChannelHandlerContext, code: WebSocketErrorCode) {
        var payload = context.channel.allocator.buffer(capacity: 2)
        payload.write(webSocketErrorCode: code)
        sendClose(context: context, payload: payload)
    }

    private func sendClose(context: ChannelHandlerContext, payload: ByteBuffer, closeWhenWritten: Bool = false) {
        guard !sentClose else { return }
        sentClose = true
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: payload)
        let channel = context.channel
        if closeWhenWritten {
            context.writeAndFlush(wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        // Wait briefly for the peer's close, then close the TCP connection regardless.
        let deadline = context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        channel.closeFuture.whenComplete { _ in deadline.cancel() }
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }
}
