import NIOCore

/// The link's framing: `[u32 length][u8 flags]([u32 raw length])[payload]`, where the
/// payload is a batch of ``LinkMessage``s, LZ4-compressed when the flags say so.
///
/// Batches are compressed only when they are big enough for it to pay and only when the
/// result is smaller, so incompressible data costs at most the 5-byte header.
public enum LinkFrame {
    /// Flag bit: the payload is an LZ4 block preceded by its raw length.
    static let compressedFlag: UInt8 = 0x01
    /// Bytes before the payload of an uncompressed frame: length and flags.
    static let headerSize = 5

    /// Bytes on the wire and before compression, for metrics and for the compression report.
    public struct Sizes: Sendable, Equatable {
        public var raw: Int
        public var wire: Int
    }

    /// Appends one frame carrying `payload`.
    ///
    /// - Parameters:
    ///   - payload: encoded messages.
    ///   - compressionThreshold: payloads smaller than this go uncompressed; LZ4 can't win much
    ///     on a few bytes and the header costs four more.
    ///   - buffer: the output.
    /// - Returns: the raw and on-the-wire sizes.
    @discardableResult
    public static func encode(_ payload: ByteBuffer, compressionThreshold: Int, into buffer: inout ByteBuffer) -> Sizes
    {
        let start = buffer.writerIndex
        if payload.readableBytes >= compressionThreshold {
            buffer.writeInteger(UInt32(0))
            buffer.writeInteger(compressedFlag)
            buffer.writeInteger(UInt32(payload.readableBytes))
            if let compressed = LZ4Block.compress(payload, into: &buffer), compressed + 4 < payload.readableBytes {
                buffer.setInteger(UInt32(1 + 4 + compressed), at: start)
                return Sizes(raw: payload.readableBytes, wire: buffer.writerIndex - start)
            }
            buffer.moveWriterIndex(to: start)
        }
        buffer.writeInteger(UInt32(1 + payload.readableBytes))
        buffer.writeInteger(UInt8(0))
        buffer.writeImmutableBuffer(payload)
        return Sizes(raw: payload.readableBytes, wire: buffer.writerIndex - start)
    }

    /// A resumable reader of frames from a byte stream.
    public struct Decoder: Sendable {
        /// The largest frame, compressed or raw, a peer may send. Bounds memory per link: a
        /// link starts with a small bound for the handshake and raises it once the peer has
        /// proved the cluster secret.
        public var maxFrameSize: Int

        public init(maxFrameSize: Int = 64 * 1_048_576) {
            self.maxFrameSize = maxFrameSize
        }

        /// Consumes one frame if it is complete.
        ///
        /// - Returns: the raw payload and its sizes, or `nil` when more bytes are needed.
        /// - Throws: ``LinkWire/Malformed`` for oversized, corrupt or unknown frames.
        public func nextPayload(
            from buffer: inout ByteBuffer
        ) throws(LinkWire.Malformed) -> (payload: ByteBuffer, sizes: Sizes)? {
            guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
            guard length >= 1, Int(length) <= maxFrameSize else {
                throw LinkWire.Malformed("frame length \(length) out of bounds")
            }
            guard buffer.readableBytes >= 4 + Int(length) else { return nil }
            buffer.moveReaderIndex(forwardBy: 4)
            let flags: UInt8 = buffer.readInteger()!
            guard flags & ~compressedFlag == 0 else { throw LinkWire.Malformed("unknown frame flags \(flags)") }
            let wire = 4 + Int(length)
            guard flags & compressedFlag != 0 else {
                let payload = buffer.readSlice(length: Int(length) - 1)!
                return (payload, Sizes(raw: payload.readableBytes, wire: wire))
            }
            guard length >= 5, let rawSize = buffer.readInteger(as: UInt32.self), Int(rawSize) <= maxFrameSize else {
                throw LinkWire.Malformed("bad compressed frame header")
            }
            let block = buffer.readSlice(length: Int(length) - 5)!
            guard let payload = LZ4Block.decompress(block, rawSize: Int(rawSize)) else {
                throw LinkWire.Malformed("corrupt LZ4 block")
            }
            return (payload, Sizes(raw: Int(rawSize), wire: wire))
        }
    }
}
