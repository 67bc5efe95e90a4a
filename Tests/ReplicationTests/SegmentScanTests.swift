import NIOCore
import Testing

@testable import Replication

@Suite struct SegmentScanTests {
    static func record(_ kind: UInt8, _ text: String) -> LogRecord {
        LogRecord(kind: kind, body: ByteBuffer(string: text))
    }

    static func segment(_ records: [LogRecord], number: UInt64 = 7) -> ByteBuffer {
        var buffer = ByteBuffer()
        LogRecordFormat.writeSegmentHeader(number: number, into: &buffer)
        for record in records { LogRecordFormat.write(record, into: &buffer) }
        return buffer
    }

    let records = [record(1, "first"), record(2, ""), record(3, String(repeating: "x", count: 3_000))]

    @Test func recordsComeBackInOrderWithTheirOffsets() throws {
        let result = try SegmentScan.scan(Self.segment(records), number: 7, isNewest: false)
        #expect(result.records.map(\.record) == records)
        #expect(!result.tornTail)
        let offsets: [UInt64] = [16, 30, 39]
        #expect(result.records.map(\.position.offset) == offsets)
        #expect(result.records.allSatisfy { $0.position.segment == 7 })
    }

    @Test(arguments: [1, 5, 9, 12, 30])
    func aRecordCutShortAtTheEndOfTheNewestSegmentIsATornTail(cut: Int) throws {
        var bytes = Self.segment(records)
        bytes.moveWriterIndex(to: bytes.writerIndex - cut)
        let result = try SegmentScan.scan(bytes, number: 7, isNewest: true)
        #expect(result.records.map(\.record) == Array(records.prefix(2)))
        #expect(result.validBytes == 16 + 9 + 5 + 9)
        #expect(result.tornTail)
    }

    @Test func aLastRecordThatDoesNotCheckOrZerosAfterTheRecordsAreATornTail() throws {
        var flipped = Self.segment(records)
        flipped.setInteger(UInt8(ascii: "y"), at: flipped.writerIndex - 1)
        #expect(try SegmentScan.scan(flipped, number: 7, isNewest: true).records.count == 2)

        var zeros = Self.segment(records)
        zeros.writeRepeatingByte(0, count: 4_096)
        let result = try SegmentScan.scan(zeros, number: 7, isNewest: true)
        #expect(result.records.count == 3)
        #expect(result.validBytes == Self.segment(records).readableBytes)
    }

    @Test func aBadRecordWithRecordsAfterItIsCorruptionEvenInTheNewestSegment() {
        var bytes = Self.segment(records)
        bytes.setInteger(UInt8(ascii: "F"), at: 16 + 9)  // the first record's body
        #expect(throws: SegmentScan.Corruption(offset: 16, reason: "CRC mismatch")) {
            try SegmentScan.scan(bytes, number: 7, isNewest: true)
        }
    }

    @Test func anyDamageInAnOlderSegmentIsCorruption() {
        var bytes = Self.segment(records)
        bytes.moveWriterIndex(to: bytes.writerIndex - 1)
        #expect(throws: SegmentScan.Corruption.self) {
            try SegmentScan.scan(bytes, number: 7, isNewest: false)
        }
    }

    @Test func aLengthPastTheBoundIsNeverRead() throws {
        var bytes = Self.segment([Self.record(1, "a")])
        bytes.writeInteger(UInt32.max)
        bytes.writeRepeatingByte(0xFF, count: 64)
        #expect(throws: SegmentScan.Corruption(offset: 26, reason: "record length 4294967295 over 67108864")) {
            try SegmentScan.scan(bytes, number: 7, isNewest: false)
        }
        #expect(try SegmentScan.scan(bytes, number: 7, isNewest: true).records.count == 1)
    }

    @Test func theHeaderMustNameALogSegmentOfThisFormatAndNumber() {
        var magic = Self.segment(records)
        magic.setInteger(UInt32(0x5357_414D), at: 0)
        #expect(throws: SegmentScan.Corruption(offset: 0, reason: "not a log segment (bad magic)")) {
            try SegmentScan.scan(magic, number: 7, isNewest: true)
        }
        var version = Self.segment(records)
        version.setInteger(UInt16(9), at: 4)
        #expect(throws: SegmentScan.Corruption.self) { try SegmentScan.scan(version, number: 7, isNewest: true) }
        #expect(throws: SegmentScan.Corruption(offset: 8, reason: "header says segment 7, file name says 8")) {
            try SegmentScan.scan(Self.segment(records), number: 8, isNewest: true)
        }
    }

    @Test func aNewestSegmentWhoseHeaderNeverReachedTheDiskHoldsNothing() throws {
        var short = Self.segment([])
        short.moveWriterIndex(to: 10)
        #expect(try SegmentScan.scan(short, number: 7, isNewest: true).validBytes == 0)
        let zeros = ByteBuffer(repeating: 0, count: 64)
        #expect(try SegmentScan.scan(zeros, number: 7, isNewest: true).validBytes == 0)
        #expect(throws: SegmentScan.Corruption.self) { try SegmentScan.scan(short, number: 7, isNewest: false) }
    }

    @Test func aScanDoesNotDependOnWhereTheBufferStarts() throws {
        var bytes = ByteBuffer(string: "prefix")
        bytes.writeImmutableBuffer(Self.segment(records))
        bytes.moveReaderIndex(forwardBy: 6)
        #expect(try SegmentScan.scan(bytes, number: 7, isNewest: false).records.map(\.record) == records)
    }
}
