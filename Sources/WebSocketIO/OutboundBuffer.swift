import NIOCore
import NIOWebSocket
import StompRouting

/// How STOMP frames are laid out on a connection's byte stream.
enum OutboundFraming: Sendable {
    /// Plain TCP (or TLS): frames follow one another as they are.
    case stream
    /// WebSocket: each frame is one unmasked, unfragmented message; text when its bytes are
    /// valid UTF-8, binary otherwise, because clients reject text messages that aren't.
    case webSocket
}

/// The bytes a connection has produced and not yet handed to its channel.
///
/// A connection appends every frame of an event-loop tick here, already framed for its
/// transport, and hands the whole buffer to the channel once, when it flushes. A fan-out of
/// one message to many subscribers then costs no allocation per delivery: each delivery is
/// a copy of the message's shared tail into a buffer that is already there. Going through
/// NIO's `WebSocketFrameEncoder` would take one buffer (and one pending write) per frame.
struct OutboundBuffer {
    let framing: OutboundFraming
    private var pending = ByteBuffer()
    /// Capacity to start a new buffer with: what the previous flush needed, so that a busy
    /// connection doesn't grow its buffer by doubling every tick, within bounds.
    private var nextCapacity = Self.minimumCapacity
    private static let minimumCapacity = 1_024
    private static let maximumStartCapacity = 256 * 1_024

    init(framing: OutboundFraming) {
        self.framing = framing
    }

    var isEmpty: Bool { pending.readableBytes == 0 }

    /// Bytes gathered since the last ``take()``.
    var byteCount: Int { pending.readableBytes }

    /// Appends a frame already encoded (a RECEIPT, an ERROR, CONNECTED, a heart-beat).
    mutating func append(_ frame: OutboundFrame) {
        append(isText: frame.isText, maximumSize: frame.bytes.readableBytes) { buffer in
            buffer.writeImmutableBuffer(frame.bytes)
        }
    }

    /// Appends a MESSAGE for one subscriber.
    mutating func append(_ delivery: MessageDelivery) {
        append(isText: delivery.isText, maximumSize: delivery.maximumSize) { buffer in
            delivery.write(into: &buffer)
        }
    }

    /// Appends bytes another buffer of the same framing produced (``take()``), as they are.
    mutating func appendFramed(_ bytes: ByteBuffer) {
        if pending.readableBytes == 0 {
            pending = bytes
        } else {
            pending.writeImmutableBuffer(bytes)
        }
    }

    /// Everything appended since the last call, or `nil` when there is nothing. An idle
    /// connection keeps no buffer.
    mutating func take() -> ByteBuffer? {
        guard !isEmpty else { return nil }
        nextCapacity = min(max(pending.readableBytes, Self.minimumCapacity), Self.maximumStartCapacity)
        defer { pending = ByteBuffer() }
        return pending
    }

    private mutating func append(isText: Bool, maximumSize: Int, _ writeFrame: (inout ByteBuffer) -> Void) {
        if pending.capacity == 0 {
            pending.reserveCapacity(max(nextCapacity, maximumSize + WebSocketMessageHeader.maximumSize))
        }
        switch framing {
        case .stream:
            writeFrame(&pending)
        case .webSocket:
            pending.writeWebSocketMessage(opcode: isText ? .text : .binary, maximumPayloadSize: maximumSize, writeFrame)
        }
    }
}

/// The header of an unmasked, unfragmented WebSocket message, as a server sends it
/// (RFC 6455, section 5.2).
enum WebSocketMessageHeader {
    static let maximumSize = 10

    /// Bytes of the header for a payload of `length` bytes: the length always takes the
    /// shortest form, as the RFC requires.
    static func size(payloadLength length: Int) -> Int {
        switch length {
        case 0...125: return 2
        case 126...0xFFFF: return 4
        default: return 10
        }
    }

    /// Writes the header at `index`, in exactly `size(payloadLength:)` bytes.
    static func set(opcode: WebSocketOpcode, payloadLength length: Int, at index: Int, in buffer: inout ByteBuffer) {
        let first = 0x80 | UInt8(webSocketOpcode: opcode)  // FIN: one frame per message.
        buffer.setInteger(first, at: index)
        switch length {
        case 0...125:
            buffer.setInteger(UInt8(length), at: index + 1)
        case 126...0xFFFF:
            buffer.setInteger(UInt8(126), at: index + 1)
            buffer.setInteger(UInt16(length), at: index + 2)
        default:
            buffer.setInteger(UInt8(127), at: index + 1)
            buffer.setInteger(UInt64(length), at: index + 2)
        }
    }
}

extension ByteBuffer {
    /// Appends one WebSocket message whose payload `writePayload` writes, at most
    /// `maximumPayloadSize` bytes of it.
    ///
    /// The header's size depends on the payload's, which is only known once written: room is
    /// left for the header the maximum would need, and in the rare case the payload turns out
    /// to need a shorter one, the payload moves back by the difference.
    mutating func writeWebSocketMessage(
        opcode: WebSocketOpcode,
        maximumPayloadSize: Int,
        _ writePayload: (inout ByteBuffer) -> Void
    ) {
        let start = writerIndex
        let reserved = WebSocketMessageHeader.size(payloadLength: maximumPayloadSize)
        writeRepeatingByte(0, count: reserved)
        writePayload(&self)
        let length = writerIndex - start - reserved
        let needed = WebSocketMessageHeader.size(payloadLength: length)
        precondition(needed <= reserved, "a WebSocket payload exceeded its stated maximum size")
        if needed < reserved {
            _ = try! copyBytes(at: start + reserved, to: start + needed, length: length)
            moveWriterIndex(to: start + needed + length)
        }
        WebSocketMessageHeader.set(opcode: opcode, payloadLength: length, at: start, in: &self)
    }
}
