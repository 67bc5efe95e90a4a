import NIOCore

/// The bytes of a segment file, big-endian throughout:
///
/// ```
/// segment header (16 bytes): "SWAL" | version UInt16 (1) | reserved UInt16 (0) | segment number UInt64
/// record:                    body length UInt32 | CRC-32 of kind and body UInt32 | kind UInt8 | body
/// ```
///
/// The CRC covers the kind and the body, so a torn write, a flipped bit or a stale tail shows
/// as a record that does not check; the length is bounded so that garbage cannot ask for
/// gigabytes.
public enum LogRecordFormat {
    public static let magic: UInt32 = 0x5357_414C  // "SWAL"
    public static let version: UInt16 = 1
    public static let segmentHeaderBytes = 16
    public static let recordHeaderBytes = 9
    /// The largest body a record may have: well above the largest STOMP frame a node accepts
    /// (4 MiB by default, `limits.frame-bytes`) with the headers of a batch of entries.
    public static let maxBodyBytes = 64 << 20

    public static func writeSegmentHeader(number: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeInteger(magic)
        buffer.writeInteger(version)
        buffer.writeInteger(UInt16(0))
        buffer.writeInteger(number)
    }

    /// Appends `record`, framed and checked. Returns the bytes written.
    @discardableResult
    public static func write(_ record: LogRecord, into buffer: inout ByteBuffer) -> Int {
        precondition(record.body.readableBytes <= maxBodyBytes, "log record body over \(maxBodyBytes) bytes")
        let start = buffer.writerIndex
        buffer.writeInteger(UInt32(record.body.readableBytes))
        buffer.writeInteger(UInt32(0))  // the CRC, filled in below
        buffer.writeInteger(record.kind)
        buffer.writeImmutableBuffer(record.body)
        let checked = buffer.viewBytes(at: start + 8, length: buffer.writerIndex - start - 8)!
        buffer.setInteger(RecordChecksum.of(checked), at: start + 4)
        return buffer.writerIndex - start
    }

    public static func encodedSize(of record: LogRecord) -> Int {
        recordHeaderBytes + record.body.readableBytes
    }
}
