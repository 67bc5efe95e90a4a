import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The node's write-ahead log: one append-only sequence of records in segment files under
/// `data.dir`, shared by every durable queue on the node so that one `fdatasync` covers the
/// records of all of them (group commit).
///
/// Appends come from any thread (event loops) and return at once; a writer thread of its own
/// takes everything appended while it was busy, writes it with one `pwrite` and syncs once,
/// then completes each append with the place its records landed. A batch that fails is cut off
/// the file again, so the file only ever holds whole batches the writer did not report lost.
///
/// The log knows nothing of queues: the store above it decides which segments hold nothing it
/// needs (``deleteSegments(before:)``) and re-appends what it still needs from them first.
public final class WriteAheadLog: Sendable {
    public struct Settings: Sendable, Equatable {
        /// A new segment starts once the current one holds this many bytes (a batch is never
        /// split, so a segment may end a little past it).
        public var segmentBytes: Int
        /// `data.max-bytes`: appends of ``Admission/payload`` records fail past it.
        public var maxBytes: Int64
        /// Room past ``maxBytes`` for ``Admission/control`` records (acknowledgements, votes),
        /// so that a full log can still record what lets it shrink.
        public var controlReserveBytes: Int64

        public init(segmentBytes: Int = 64 << 20, maxBytes: Int64 = 1 << 30, controlReserveBytes: Int64 = 16 << 20) {
            self.segmentBytes = segmentBytes
            self.maxBytes = maxBytes
            self.controlReserveBytes = controlReserveBytes
        }
    }

    /// Which bound an append is held to.
    public enum Admission: Sendable {
        /// New messages: refused at ``Settings/maxBytes``.
        case payload
        /// Records that let the log shrink or keep a queue's replicas in step.
        case control
    }

    public struct Statistics: Sendable, Equatable {
        public var segments = 0
        /// Bytes in the segment files, and appended but not yet written.
        public var diskBytes: Int64 = 0
        public var pendingBytes: Int64 = 0
        public var bytesWritten: Int64 = 0
        public var recordsWritten: Int64 = 0
        public var syncs: Int64 = 0
        public var refusedAppends: Int64 = 0
    }

    public typealias Completion = @Sendable (Result<LogPosition, LogAppendError>) -> Void

    public let directory: String
    public let settings: Settings
    private let shared: NIOLockedValueBox<Shared>
    private let wakeUp: ConditionLock<Int>
    private let writer: Writer
    private let thread: NIOThreadPool
    /// The directory's `LOCK`, held while the log is open.
    private let lock: Int32

    /// What appenders and the writer thread share, under the lock.
    private struct Shared {
        var pending = Batch()
        var deleteBefore: UInt64?
        var closing = false
        var failure: String?
        var statistics = Statistics()
    }

    /// Appends waiting for the writer: their bytes back to back, and where each append starts.
    private struct Batch {
        var bytes = ByteBuffer()
        var appends: [(start: Int, records: Int, completion: Completion)] = []
        var isEmpty: Bool { appends.isEmpty }
    }

    /// Opens the log in `directory` (created if missing), reads back every record in order
    /// through `visit`, cuts a torn tail off the newest segment and starts the writer.
    public static func open(
        directory: String,
        settings: Settings = Settings(),
        visit: (RecoveredRecord) throws -> Void
    ) throws -> WriteAheadLog {
        let lock: Int32
        do {
            try SegmentFiles.makeDirectory(directory)
            lock = try SegmentFiles.lock(directory)
        } catch {
            throw LogOpenError.unavailable(error.message)
        }
        do {
            return try open(directory: directory, settings: settings, lock: lock, visit: visit)
        } catch {
            SegmentFiles.closeDescriptor(lock)
            throw error
        }
    }

    private static func open(
        directory: String,
        settings: Settings,
        lock: Int32,
        visit: (RecoveredRecord) throws -> Void
    ) throws -> WriteAheadLog {
        let numbers: [UInt64]
        do {
            numbers = try SegmentFiles.list(directory)
        } catch {
            throw LogOpenError.unavailable(error.message)
        }
        var statistics = Statistics()
        var segments: [(number: UInt64, bytes: Int)] = []
        for (position, number) in numbers.enumerated() {
            let path = directory + "/" + SegmentFiles.fileName(of: number)
            let isNewest = position == numbers.count - 1
            let scan: SegmentScan.Result
            do {
                scan = try SegmentScan.scan(try SegmentFiles.readAll(path), number: number, isNewest: isNewest)
            } catch let corruption as SegmentScan.Corruption {
                throw LogOpenError.corrupt(path: path, offset: corruption.offset, reason: corruption.reason)
            } catch let failure as SegmentFiles.Failure {
                throw LogOpenError.unavailable(failure.message)
            }
            for record in scan.records { try visit(record) }
            statistics.segments += 1
            statistics.diskBytes += Int64(scan.validBytes)
            segments.append((number, scan.validBytes))
        }

        let writer: Writer
        do {
            writer = try Writer.start(directory: directory, segments: segments)
        } catch {
            throw LogOpenError.unavailable(error.message)
        }
        if let newest = segments.last, newest.bytes < LogRecordFormat.segmentHeaderBytes {
            // A segment whose header never reached the disk was replaced by a fresh one.
            statistics.diskBytes += Int64(LogRecordFormat.segmentHeaderBytes - newest.bytes)
        } else if segments.isEmpty {
            statistics.segments = 1
            statistics.diskBytes = Int64(LogRecordFormat.segmentHeaderBytes)
        }
        return WriteAheadLog(
            directory: directory,
            settings: settings,
            writer: writer,
            statistics: statistics,
            lock: lock
        )
    }

    private init(directory: String, settings: Settings, writer: Writer, statistics: Statistics, lock: Int32) {
        self.lock = lock
        self.directory = directory
        self.settings = settings
        self.writer = writer
        self.shared = NIOLockedValueBox(Shared(statistics: statistics))
        self.wakeUp = ConditionLock(value: 0)
        self.thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        thread.submit { [self] _ in runWriter() }
    }

    /// Appends `records` after everything appended before; `completion` runs on the log's
    /// writer thread once they are on disk (or at once if they are refused), with the position
    /// of the first. The records of one append land in one segment, back to back.
    public func append(_ records: [LogRecord], admission: Admission, completion: @escaping Completion) {
        let size = records.reduce(0) { $0 + LogRecordFormat.encodedSize(of: $1) }
        let refusal: LogAppendError? = shared.withLockedValue { shared in
            if shared.closing { return .closed }
            if let failure = shared.failure { return .failed(failure) }
            let bound = settings.maxBytes + (admission == .control ? settings.controlReserveBytes : 0)
            let projected = shared.statistics.diskBytes + shared.statistics.pendingBytes + Int64(size)
            if projected > bound {
                shared.statistics.refusedAppends += 1
                return .diskLimit(bytes: settings.maxBytes)
            }
            let start = shared.pending.bytes.writerIndex
            for record in records { LogRecordFormat.write(record, into: &shared.pending.bytes) }
            shared.pending.appends.append((start, records.count, completion))
            shared.statistics.pendingBytes += Int64(size)
            return nil
        }
        if let refusal {
            completion(.failure(refusal))
        } else {
            signalWriter()
        }
    }

    /// Removes every segment numbered below `segment` (never the one being written) at the
    /// writer's next turn, before it writes what was appended since its last. The caller
    /// re-appends what it still needs from those segments and waits for that to complete
    /// first; an append made after this call completes only after the removal.
    public func deleteSegments(before segment: UInt64) {
        shared.withLockedValue { $0.deleteBefore = max($0.deleteBefore ?? 0, segment) }
        signalWriter()
    }

    /// The segment new appends go to now (a hint: it moves on when the writer rolls).
    public var currentSegment: UInt64 { writer.currentSegment.withLockedValue { $0 } }

    public var statistics: Statistics { shared.withLockedValue { $0.statistics } }

    /// Writes what was appended, stops the writer and closes the file. Appends after this fail
    /// with ``LogAppendError/closed``.
    public func close() {
        let alreadyClosing = shared.withLockedValue { shared in
            defer { shared.closing = true }
            return shared.closing
        }
        guard !alreadyClosing else { return }
        signalWriter()
        try? thread.syncShutdownGracefully()
        SegmentFiles.closeDescriptor(lock)
    }

    private func signalWriter() {
        wakeUp.lock()
        wakeUp.unlock(withValue: 1)
    }

    // MARK: The writer thread

    private func runWriter() {
        while true {
            wakeUp.lock(whenValue: 1)
            wakeUp.unlock(withValue: 0)
            let (batch, deleteBefore, closing) = shared.withLockedValue { shared in
                defer {
                    shared.pending = Batch()
                    shared.deleteBefore = nil
                }
                return (shared.pending, shared.deleteBefore, shared.closing)
            }
            if let deleteBefore { delete(before: deleteBefore) }
            if !batch.isEmpty { write(batch) }
            if closing {
                // Appends that raced with close() were refused, so nothing is left behind.
                writer.closeSegment()
                return
            }
        }
    }

    private func write(_ batch: Batch) {
        let outcome = writer.write(batch.bytes, rollingAt: settings.segmentBytes)
        let failed: LogAppendError?
        switch outcome {
        case .written(let segment, let offset, let rolled):
            shared.withLockedValue { shared in
                shared.statistics.pendingBytes -= Int64(batch.bytes.readableBytes)
                shared.statistics.diskBytes += Int64(batch.bytes.readableBytes + rolled)
                shared.statistics.segments += rolled > 0 ? 1 : 0
                shared.statistics.bytesWritten += Int64(batch.bytes.readableBytes)
                shared.statistics.recordsWritten += Int64(batch.appends.reduce(0) { $0 + $1.records })
                shared.statistics.syncs += 1
            }
            for append in batch.appends {
                append.completion(.success(LogPosition(segment: segment, offset: UInt64(offset + append.start))))
            }
            return
        case .refused(let message):
            failed = .noSpace(message)
        case .broken(let message):
            failed = .failed(message)
        }
        shared.withLockedValue { shared in
            shared.statistics.pendingBytes -= Int64(batch.bytes.readableBytes)
            if case .failed(let message) = failed { shared.failure = shared.failure ?? message }
        }
        for append in batch.appends { append.completion(.failure(failed!)) }
    }

    private func delete(before segment: UInt64) {
        let removed = writer.deleteSegments(before: segment)
        shared.withLockedValue { shared in
            shared.statistics.segments -= removed.count
            shared.statistics.diskBytes -= Int64(removed.bytes)
        }
    }
}
