import CLZ4
import NIOCore

/// LZ4 block compression of `ByteBuffer`s, through the system's liblz4.
///
/// The block format carries no length of its own; the link's frame header holds the raw
/// length (see `WIRE-FORMAT.md`), which also bounds what decompression may produce.
public enum LZ4Block {
    /// Compresses `source` into `destination`.
    ///
    /// - Returns: the compressed size, or `nil` when compression would not make the data
    ///   smaller (incompressible input is then sent raw).
    public static func compress(_ source: ByteBuffer, into destination: inout ByteBuffer) -> Int? {
        let sourceSize = source.readableBytes
        guard sourceSize > 0, sourceSize <= Int(LZ4_MAX_INPUT_SIZE) else { return nil }
        // Only a result strictly smaller than the input is worth it.
        let capacity = sourceSize - 1
        let written = source.withUnsafeReadableBytes { input in
            destination.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { output in
                let size = LZ4_compress_default(
                    input.baseAddress!.assumingMemoryBound(to: CChar.self),
                    output.baseAddress!.assumingMemoryBound(to: CChar.self),
                    Int32(sourceSize),
                    Int32(capacity)
                )
                return max(Int(size), 0)
            }
        }
        return written > 0 ? written : nil
    }

    /// Decompresses a block that must expand to exactly `rawSize` bytes.
    ///
    /// - Returns: the raw bytes, or `nil` when the block is corrupt or of another size.
    public static func decompress(
        _ source: ByteBuffer,
        rawSize: Int,
        allocator: ByteBufferAllocator = .init()
    ) -> ByteBuffer? {
        guard rawSize > 0, source.readableBytes > 0 else { return nil }
        var output = allocator.buffer(capacity: rawSize)
        let produced = source.withUnsafeReadableBytes { input in
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: rawSize) { out in
                let size = LZ4_decompress_safe(
                    input.baseAddress!.assumingMemoryBound(to: CChar.self),
                    out.baseAddress!.assumingMemoryBound(to: CChar.self),
                    Int32(input.count),
                    Int32(rawSize)
                )
                return max(Int(size), 0)
            }
        }
        return produced == rawSize ? output : nil
    }
}
