import NIOCore

/// Reads the records of one segment file's bytes, for opening the log after a stop or a crash.
///
/// The log writes each batch with one `write` and syncs before it acknowledges anything, so
/// the only damage a crash can leave is at the end of the newest segment: a record cut short,
/// or one whose bytes never reached the disk (zeros, or a CRC that does not check) with
/// nothing after it. That tail held nothing acknowledged; the scan reports where it starts
/// and the log truncates it. Anything else that does not check (in an older segment, or a bad
/// record with records after it) means the disk returned wrong data: the scan throws, naming
/// the offset, and the node refuses to start rather than serve it.
public enum SegmentScan {
    public struct Result: Sendable, Equatable {
        public var records: [RecoveredRecord]
        /// Bytes from the start of the file that hold whole, checked records; the rest is a
        /// torn tail (only ever in the newest segment).
        public var validBytes: Int
        public var tornTail: Bool { validBytes < fileBytes }
        public var fileBytes: Int
    }

    public struct Corruption: Error, Sendable, Equatable, CustomStringConvertible {
        public var offset: Int
        public var reason: String
        public var description: String { "at byte \(offset): \(reason)" }
    }

    /// Scans `bytes`, the whole of segment `number`. `isNewest` allows a torn tail.
    public static func scan(_ file: ByteBuffer, number: UInt64, isNewest: Bool) throws(Corruption) -> Result {
        // Offsets below count from the file's first byte, so the buffer must start at index 0.
        let bytes = file.slice()
        var buffer = bytes
        let fileBytes = buffer.readableBytes
        guard fileBytes >= LogRecordFormat.segmentHeaderBytes else {
            // Created, then the crash came before its header reached the disk.
            if isNewest { return Result(records: [], validBytes: 0, fileBytes: fileBytes) }
            throw Corruption(offset: 0, reason: "segment header cut short (\(fileBytes) bytes)")
        }
        let magic = buffer.readInteger(as: UInt32.self)!
        let version = buffer.readInteger(as: UInt16.self)!
        _ = buffer.readInteger(as: UInt16.self)!
        let headerNumber = buffer.readInteger(as: UInt64.self)!
        guard magic == LogRecordFormat.magic else {
            if isNewest && isZero(bytes, from: 0) { return Result(records: [], validBytes: 0, fileBytes: fileBytes) }
            throw Corruption(offset: 0, reason: "not a log segment (bad magic)")
        }
        guard version == LogRecordFormat.version else {
            throw Corruption(
                offset: 4,
                reason: "segment format version \(version); this build reads \(LogRecordFormat.version)"
            )
        }
        guard headerNumber == number else {
            throw Corruption(offset: 8, reason: "header says segment \(headerNumber), file name says \(number)")
        }

        var records: [RecoveredRecord] = []
        while buffer.readableBytes > 0 {
            let offset = fileBytes - buffer.readableBytes
            switch nextRecord(&buffer) {
            case .record(let record):
                records.append(
                    RecoveredRecord(position: LogPosition(segment: number, offset: UInt64(offset)), record: record)
                )
            case .bad(let reason, let declaredEnd):
                let tailIsEmpty =
                    declaredEnd >= fileBytes || isZero(bytes, from: declaredEnd) || isZero(bytes, from: offset)
                if isNewest && tailIsEmpty {
                    return Result(records: records, validBytes: offset, fileBytes: fileBytes)
                }
                throw Corruption(offset: offset, reason: reason)
            }
        }
        return Result(records: records, validBytes: fileBytes, fileBytes: fileBytes)
    }

    private enum Next {
        case record(LogRecord)
        /// `declaredEnd`: where the record would end by its length field (an absolute offset).
        case bad(String, declaredEnd: Int)
    }

    private static func nextRecord(_ buffer: inout ByteBuffer) -> Next {
        let start = buffer.readerIndex
        let fileEnd = buffer.writerIndex
        guard buffer.readableBytes >= LogRecordFormat.recordHeaderBytes else {
            return .bad("record header cut short", declaredEnd: fileEnd)
        }
        let length = Int(buffer.getInteger(at: start, as: UInt32.self)!)
        guard length <= LogRecordFormat.maxBodyBytes else {
            return .bad("record length \(length) over \(LogRecordFormat.maxBodyBytes)", declaredEnd: fileEnd)
        }
        let end = start + LogRecordFormat.recordHeaderBytes + length
        guard end <= fileEnd else {
            return .bad("record cut short (\(length) body bytes declared)", declaredEnd: end)
        }
        let stored = buffer.getInteger(at: start + 4, as: UInt32.self)!
        let checked = buffer.viewBytes(at: start + 8, length: 1 + length)!
        guard RecordChecksum.of(checked) == stored else {
            return .bad("CRC mismatch", declaredEnd: end)
        }
        let kind = buffer.getInteger(at: start + 8, as: UInt8.self)!
        let body = buffer.getSlice(at: start + LogRecordFormat.recordHeaderBytes, length: length)!
        buffer.moveReaderIndex(to: end)
        return .record(LogRecord(kind: kind, body: body))
    }

    private static func isZero(_ bytes: ByteBuffer, from offset: Int) -> Bool {
        guard offset < bytes.readableBytes else { return true }
        return bytes.readableBytesView.dropFirst(offset).allSatisfy { $0 == 0 }
    }
}
