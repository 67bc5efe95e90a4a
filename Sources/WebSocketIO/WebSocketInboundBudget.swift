import NIOCore
import NIOWebSocket

/// Counts in the node's inbound budget (`limits.node-inbound-bytes`) what a WebSocket
/// connection holds before its bytes reach STOMP: a frame still arriving, inside NIO's frame
/// decoder, and the fragments of a message not complete yet, inside NIO's frame aggregator.
/// Each is bounded per connection by `limits.websocket-message-size`; without this count, many
/// connections each trickling a message just short of it would hold that much times the
/// number of connections. Past the node's budget, the connection that grows is let go with
/// ERROR `node inbound budget exceeded`, as a STOMP frame still arriving is.
///
/// Two handlers share one account: ``BytesIn`` before the decoder sees every byte read, and
/// ``FramesOut`` after it sees each decoded frame, whose size on the wire it takes back. What
/// lies between is what the decoder holds. Confined to the channel's event loop.
final class WebSocketInboundBudget {
    private let budget: NodeByteBudget
    /// Bytes read from the socket, and the wire size of the frames decoded from them.
    private var received = 0
    private var decoded = 0
    /// Payload bytes of the data fragments of a message that hasn't had its final fragment.
    private var fragments = 0
    /// What this connection adds to the budget now.
    private var counted = 0
    private var reported = false
    /// The connection is gone and gave everything back; nothing counts any more.
    private var closed = false

    init(budget: NodeByteBudget) {
        self.budget = budget
    }

    /// The two handlers, to go before and after NIO's frame decoder.
    static func handlers(budget: NodeByteBudget) -> (BytesIn, FramesOut) {
        let account = WebSocketInboundBudget(budget: budget)
        return (BytesIn(account), FramesOut(account))
    }

    /// A frame left the decoder: what it took on the wire is no longer the decoder's, and a
    /// data fragment is the aggregator's until the final one, when the message goes on.
    private func decoded(_ frame: WebSocketFrame) {
        decoded += Self.wireSize(of: frame)
        switch frame.opcode {
        case .text, .binary, .continuation:
            fragments = frame.fin ? 0 : fragments + frame.length
        default:
            break
        }
    }

    /// Brings the budget up to what the connection holds and passes `data` on; then, if the
    /// connection grew while the node is over its budget, raises that (once per connection)
    /// for the connection's handler to answer.
    private func pass(_ data: NIOAny, on context: ChannelHandlerContext) {
        let held = received - decoded + fragments
        guard !closed, held != counted else { return context.fireChannelRead(data) }
        let grew = held > counted
        budget.add(held - counted)
        counted = held
        context.fireChannelRead(data)
        guard grew, !reported, budget.isExceeded else { return }
        reported = true
        context.fireErrorCaught(NodeInboundBudgetExceeded(held: held, limit: budget.limit))
    }

    /// The connection is gone: everything it held goes back.
    private func release() {
        guard !closed else { return }
        closed = true
        budget.remove(counted)
        counted = 0
    }

    /// The size a frame had on the wire: 2 bytes, the extended length (2 or 8 bytes past 125
    /// or 65,535 bytes of payload), the mask, the payload.
    static func wireSize(of frame: WebSocketFrame) -> Int {
        let length = frame.length
        let extendedLength = length <= 125 ? 0 : length <= 65_535 ? 2 : 8
        return 2 + extendedLength + (frame.maskKey == nil ? 0 : 4) + length
    }

    /// Before NIO's frame decoder: every byte read.
    final class BytesIn: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        private let account: WebSocketInboundBudget

        fileprivate init(_ account: WebSocketInboundBudget) {
            self.account = account
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            account.received += unwrapInboundIn(data).readableBytes
            account.pass(data, on: context)
        }
    }

    /// After NIO's frame decoder: each whole frame, and the fragments of a message.
    final class FramesOut: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = WebSocketFrame
        typealias InboundOut = WebSocketFrame
        private let account: WebSocketInboundBudget

        fileprivate init(_ account: WebSocketInboundBudget) {
            self.account = account
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            account.decoded(unwrapInboundIn(data))
            account.pass(data, on: context)
        }

        func channelInactive(context: ChannelHandlerContext) {
            account.release()
            context.fireChannelInactive()
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            account.release()
        }
    }
}

/// A WebSocket connection grew what it holds of a message still arriving while the node held
/// more than `limits.node-inbound-bytes`; ``StompConnectionHandler`` answers it with an ERROR.
struct NodeInboundBudgetExceeded: Error {
    var held: Int
    var limit: Int
}
