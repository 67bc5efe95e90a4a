import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Replication

#if canImport(Glibc)
import Glibc
#endif

/// The log on real files in a fresh temporary directory per test.
@Suite final class WriteAheadLogTests {
    let directory: String

    init() {
        var template = Array("/tmp/wal-test-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit {
        for number in (try? SegmentFiles.list(directory)) ?? [] { unlink(segmentPath(number)) }
        unlink(directory + "/plain-file")
        rmdir(directory)
    }

    static func record(_ index: Int, bytes: Int = 20) -> LogRecord {
        var body = ByteBuffer()
        body.writeInteger(UInt64(index))
        body.writeRepeatingByte(UInt8(truncatingIfNeeded: index), count: max(0, bytes - 8))
        return LogRecord(kind: UInt8(truncatingIfNeeded: index % 7), body: body)
    }

    func open(_ settings: WriteAheadLog.Settings = .init()) throws -> (WriteAheadLog, [RecoveredRecord]) {
        var recovered: [RecoveredRecord] = []
        let log = try WriteAheadLog.open(directory: directory, settings: settings) { recovered.append($0) }
        return (log, recovered)
    }

    /// Appends and waits for the outcome.
    @discardableResult
    func append(
        _ log: WriteAheadLog,
        _ records: [LogRecord],
        admission: WriteAheadLog.Admission = .payload
    ) -> Result<LogPosition, LogAppendError> {
        let done = ConditionLock(value: 0)
        let outcome = NIOLockedValueBox<Result<LogPosition, LogAppendError>?>(nil)
        log.append(records, admission: admission) { result in
            outcome.withLockedValue { $0 = result }
            done.lock()
            done.unlock(withValue: 1)
        }
        done.lock(whenValue: 1)
        done.unlock()
        return outcome.withLockedValue { $0! }
    }

    func segmentPath(_ number: UInt64) -> String { directory + "/" + SegmentFiles.fileName(of: number) }

    @Test func whatWasAppendedIsReadBackInOrderAfterAReopen() throws {
        let (log, recovered) = try open()
        #expect(recovered.isEmpty)
        let first = try append(log, [Self.record(1), Self.record(2)]).get()
        let second = try append(log, [Self.record(3)]).get()
        #expect(first == LogPosition(segment: 1, offset: 16))
        #expect(second == LogPosition(segment: 1, offset: 16 + 2 * 29))
        #expect(log.statistics.recordsWritten == 3)
        log.close()

        let (again, records) = try open()
        defer { again.close() }
        #expect(records.map(\.record) == [Self.record(1), Self.record(2), Self.record(3)])
        #expect(records.map(\.position) == [first, LogPosition(segment: 1, offset: 45), second])
        let third = try append(again, [Self.record(4)]).get()
        #expect(third == LogPosition(segment: 1, offset: 16 + 3 * 29))
    }

    @Test func appendsMadeWhileTheWriterIsBusyShareOneSync() throws {
        let (log, _) = try open()
        defer { log.close() }
        let done = ConditionLock(value: 0)
        let completed = NIOLockedValueBox(0)
        let count = 2_000
        let finish: WriteAheadLog.Completion = { result in
            precondition((try? result.get()) != nil)
            let total = completed.withLockedValue { value in
                value += 1
                return value
            }
            done.lock()
            done.unlock(withValue: total)
        }
        // The first append's completion runs on the writer thread, between two batches:
        // whatever the scheduling, every append made there waits for the same next batch.
        log.append([Self.record(0)], admission: .payload) { result in
            for index in 1..<count { log.append([Self.record(index)], admission: .payload, completion: finish) }
            finish(result)
        }
        done.lock(whenValue: count)
        done.unlock()
        let statistics = log.statistics
        #expect(statistics.recordsWritten == Int64(count))
        #expect(statistics.syncs == 2, "group commit: \(statistics.syncs) syncs for \(count) appends")
        #expect(statistics.pendingBytes == 0)
    }

    @Test func segmentsRollAtTheirSizeAndOlderOnesCanBeDeleted() throws {
        let (log, _) = try open(.init(segmentBytes: 200))
        var positions: [LogPosition] = []
        for index in 0..<20 { positions.append(try append(log, [Self.record(index)]).get()) }
        #expect(positions.last!.segment > 3)
        #expect(Set(positions.map(\.segment)).count == Int(positions.last!.segment))
        #expect(log.statistics.segments == Int(positions.last!.segment))
        let before = log.statistics.diskBytes

        log.deleteSegments(before: 3)
        try append(log, [Self.record(99)]).get()  // deletions happen after what was appended before
        #expect(access(segmentPath(1), F_OK) != 0)
        #expect(access(segmentPath(2), F_OK) != 0)
        #expect(access(segmentPath(3), F_OK) == 0)
        #expect(log.statistics.diskBytes < before + 29)
        log.close()

        let (again, records) = try open(.init(segmentBytes: 200))
        defer { again.close() }
        #expect(records.first!.position.segment == 3)
        #expect(records.last!.record == Self.record(99))
    }

    @Test func theOpenSegmentIsNeverDeleted() throws {
        let (log, _) = try open()
        defer { log.close() }
        try append(log, [Self.record(1)]).get()
        log.deleteSegments(before: 100)
        try append(log, [Self.record(2)]).get()
        #expect(access(segmentPath(1), F_OK) == 0)
        #expect(log.statistics.segments == 1)
    }

    @Test func newMessagesAreRefusedAtTheBoundButControlRecordsHaveAReserve() throws {
        let (log, _) = try open(.init(maxBytes: 16 + 3 * 29, controlReserveBytes: 29))
        defer { log.close() }
        for index in 0..<3 { try append(log, [Self.record(index)]).get() }
        #expect(append(log, [Self.record(3)]) == .failure(.diskLimit(bytes: 16 + 3 * 29)))
        try append(log, [Self.record(4)], admission: .control).get()
        #expect(append(log, [Self.record(5)], admission: .control) == .failure(.diskLimit(bytes: 16 + 3 * 29)))
        #expect(log.statistics.refusedAppends == 2)
    }

    @Test func aTornTailIsCutOffAtOpenAndTheLogGoesOnAfterIt() throws {
        let (log, _) = try open()
        for index in 0..<3 { try append(log, [Self.record(index)]).get() }
        log.close()
        // A crash in the middle of writing a fourth record.
        var torn = ByteBuffer()
        LogRecordFormat.write(Self.record(3), into: &torn)
        torn.moveWriterIndex(to: 20)
        appendRaw(torn, to: segmentPath(1))

        let (again, records) = try open()
        #expect(records.map(\.record) == (0..<3).map { Self.record($0) })
        #expect(SegmentFiles.size(segmentPath(1)) == 16 + 3 * 29)
        try append(again, [Self.record(5)]).get()
        again.close()
        let (third, all) = try open()
        defer { third.close() }
        #expect(all.map(\.record) == [0, 1, 2, 5].map { Self.record($0) })
    }

    @Test func aCorruptSegmentStopsTheOpenNamingTheFile() throws {
        let (log, _) = try open(.init(segmentBytes: 100))
        for index in 0..<6 { try append(log, [Self.record(index)]).get() }
        log.close()
        flipByte(at: 16 + 12, in: segmentPath(1))
        #expect(throws: LogOpenError.corrupt(path: segmentPath(1), offset: 16, reason: "CRC mismatch")) {
            try open()
        }
    }

    @Test func aDirectoryThatCannotBeWrittenIsUnavailableNotACrash() throws {
        let file = directory + "/plain-file"
        appendRaw(ByteBuffer(string: "x"), to: file)
        var recovered = 0
        #expect(throws: LogOpenError.self) {
            _ = try WriteAheadLog.open(directory: file + "/wal") { _ in recovered += 1 }
        }
        do {
            _ = try WriteAheadLog.open(directory: file + "/wal") { _ in }
        } catch let error as LogOpenError {
            guard case .unavailable(let reason) = error else {
                Issue.record("expected unavailable, got \(error)")
                return
            }
            #expect(reason.contains(file))
        }
    }

    /// A file system that fills up refuses the batch and keeps the log as it was: a tmpfs of
    /// 64 KiB mounted for the test (root only; the sandboxes that run CI allow it).
    @Test(.enabled(if: getuid() == 0)) func aFullFileSystemRefusesTheBatchAndTheLogGoesOn() throws {
        let mountPoint = directory + "/small"
        mkdir(mountPoint, 0o700)
        defer { rmdir(mountPoint) }
        guard mount("tmpfs", mountPoint, "tmpfs", 0, "size=64k") == 0 else {
            Issue.record("cannot mount a tmpfs as root: \(String(cString: strerror(errno)))")
            return
        }
        defer { umount(mountPoint) }
        var recovered = 0
        let log = try WriteAheadLog.open(directory: mountPoint, settings: .init(segmentBytes: 16 << 10)) { _ in
            recovered += 1
        }
        var written: [Int] = []
        var refusal: LogAppendError?
        for index in 0..<40 {
            switch append(log, [Self.record(index, bytes: 3_000)]) {
            case .success: written.append(index)
            case .failure(let error):
                refusal = error
                break
            }
            if refusal != nil { break }
        }
        guard case .noSpace(let reason) = refusal else {
            Issue.record("expected no space, got \(String(describing: refusal))")
            log.close()
            return
        }
        #expect(reason.contains("No space left on device"))
        log.deleteSegments(before: log.currentSegment)
        try append(log, [Self.record(100, bytes: 3_000)]).get()
        log.close()
        var records: [LogRecord] = []
        let again = try WriteAheadLog.open(directory: mountPoint) { records.append($0.record) }
        again.close()
        #expect(records.last == Self.record(100, bytes: 3_000))
        for number in (try? SegmentFiles.list(mountPoint)) ?? [] {
            unlink(mountPoint + "/" + SegmentFiles.fileName(of: number))
        }
    }

    @Test func appendsAfterCloseAreRefused() throws {
        let (log, _) = try open()
        log.close()
        #expect(append(log, [Self.record(1)]) == .failure(.closed))
    }

    private func appendRaw(_ bytes: ByteBuffer, to path: String) {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT, 0o600)
        precondition(fd >= 0)
        bytes.withUnsafeReadableBytes { _ = write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    private func flipByte(at offset: Int, in path: String) {
        let fd = Glibc.open(path, O_RDWR)
        precondition(fd >= 0)
        var byte: UInt8 = 0
        _ = pread(fd, &byte, 1, off_t(offset))
        byte ^= 0xFF
        _ = pwrite(fd, &byte, 1, off_t(offset))
        close(fd)
    }
}
