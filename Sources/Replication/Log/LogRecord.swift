import NIOCore

/// One record of the write-ahead log: a kind the store defines and an opaque body. The log
/// frames, checks and orders records; what they mean is the store's business.
public struct LogRecord: Sendable, Equatable {
    public var kind: UInt8
    public var body: ByteBuffer

    public init(kind: UInt8, body: ByteBuffer) {
        self.kind = kind
        self.body = body
    }
}

/// Where a record lies: its segment's number and its byte offset in that file. Segments are
/// numbered in the order they were written, so positions order records.
public struct LogPosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var segment: UInt64
    public var offset: UInt64

    public init(segment: UInt64, offset: UInt64) {
        self.segment = segment
        self.offset = offset
    }

    public static func < (lhs: LogPosition, rhs: LogPosition) -> Bool {
        (lhs.segment, lhs.offset) < (rhs.segment, rhs.offset)
    }

    public var description: String { "\(segment):\(offset)" }
}

/// A record read back from disk when the log is opened, with its place.
public struct RecoveredRecord: Sendable, Equatable {
    public var position: LogPosition
    public var record: LogRecord

    public init(position: LogPosition, record: LogRecord) {
        self.position = position
        self.record = record
    }
}
