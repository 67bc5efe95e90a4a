import NIOCore
import NIOWebSocket
import StompRouting

/// Carries STOMP over WebSocket messages, below ``StompConnectionHandler``.
///
/// Inbound, data messages (text or binary, already reassembled from fragments by
/// `NIOWebSocketFrameAggregator`) pass on as raw bytes, so several STOMP frames may share a
/// message and one frame may span several. Pings are answered and the close handshake is
/// completed here.
///
/// Outbound, the connection hands over whole WebSocket messages, one per STOMP frame, that
/// ``OutboundBuffer`` framed and gathered for a whole tick. They go out through
/// ``WebSocketMessageOutput``, which sits below NIO's `WebSocketFrameEncoder`: that encoder
/// takes one `WebSocketFrame` at a time, and only NIO's protocol-error handler still uses it.
final class WebSocketStompBridge: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Whether this side sent its close frame; after that only the peer's close matters.
    private var sentClose = false
    /// Where framed messages leave: the context of the ``WebSocketMessageOutput`` below.
    private var output: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        guard let output = try? context.pipeline.syncOperations.context(handlerType: WebSocketMessageOutput.self) else {
            preconditionFailure("WebSocketStompBridge needs a WebSocketMessageOutput below it")
        }
        self.output = output
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        output = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            guard !sentClose else { return }
            context.fireChannelRead(wrapInboundOut(frame.unmaskedData))
        case .ping:
            guard !sentClose else { return }
            send(opcode: .pong, payload: frame.unmaskedData, promise: nil)
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
        guard !sentClose, let output else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        output.write(data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        output?.flush()
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
        // NIO's protocol-error handler answers the decoder's own errors.
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
        let channel = context.channel
        if closeWhenWritten {
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
            send(opcode: .connectionClose, payload: payload, promise: written)
            return
        }
        // Wait briefly for the peer's close, then close the TCP connection regardless.
        let deadline = context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        channel.closeFuture.whenComplete { _ in deadline.cancel() }
        send(opcode: .connectionClose, payload: payload, promise: nil)
    }

    /// Writes and flushes one control message.
    private func send(opcode: WebSocketOpcode, payload: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let output else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        var message = ByteBuffer()
        message.writeWebSocketMessage(opcode: opcode, maximumPayloadSize: payload.readableBytes) {
            $0.writeImmutableBuffer(payload)
        }
        output.writeAndFlush(NIOAny(message), promise: promise)
    }
}

/// Gives ``WebSocketStompBridge`` a place in the pipeline below NIO's `WebSocketFrameEncoder`
/// from which to write messages it framed itself. Bytes written here pass on unchanged.
final class WebSocketMessageOutput: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
}
