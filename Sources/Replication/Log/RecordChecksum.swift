import CZlib
import NIOCore

/// The CRC-32 (zlib's, hardware-assisted where the CPU has it) that guards each record of the
/// write-ahead log against a torn write or a flipped bit.
enum RecordChecksum {
    static func of(_ bytes: ByteBufferView) -> UInt32 {
        bytes.withContiguousStorageIfAvailable { raw in
            UInt32(crc32(0, raw.baseAddress, UInt32(raw.count)))
        } ?? UInt32(Array(bytes).withUnsafeBufferPointer { crc32(0, $0.baseAddress, UInt32($0.count)) })
    }
}
