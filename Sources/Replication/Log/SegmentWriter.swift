import NIOConcurrencyHelpers
import NIOCore

extension WriteAheadLog {
    /// The open segment and the files behind it. Touched by the log's writer thread only,
    /// after ``start(directory:segments:)`` returns (hence `@unchecked Sendable`), but for
    /// ``currentSegment``, which anyone may read.
    final class Writer: @unchecked Sendable {
        enum Outcome {
            /// On disk: at `offset` of `segment`; `rolled` bytes of a new segment's header too.
            case written(segment: UInt64, offset: Int, rolled: Int)
            /// Not written and cut off again; the log goes on.
            case refused(String)
            /// The file's state is unknown; the log must take nothing more.
            case broken(String)
        }

        let directory: String
        let currentSegment: NIOLockedValueBox<UInt64>
        private var fd: Int32
        private var number: UInt64
        private var size: Int
        /// Every segment file's number and size, the open one included, oldest first.
        private var segments: [(number: UInt64, bytes: Int)]

        private init(directory: String, fd: Int32, number: UInt64, size: Int, segments: [(UInt64, Int)]) {
            self.directory = directory
            self.fd = fd
            self.number = number
            self.size = size
            self.segments = segments
            self.currentSegment = NIOLockedValueBox(number)
        }

        /// Opens the newest of `segments` (number and bytes that checked) for appending,
        /// cutting off a torn tail, or starts segment 1 in an empty directory.
        static func start(
            directory: String,
            segments: [(number: UInt64, bytes: Int)]
        ) throws(SegmentFiles.Failure) -> Writer {
            guard let newest = segments.last, newest.bytes >= LogRecordFormat.segmentHeaderBytes else {
                let number = segments.last?.number ?? 1
                let path = directory + "/" + SegmentFiles.fileName(of: number)
                try SegmentFiles.remove(path)
                let fd = try create(number: number, in: directory)
                return Writer(
                    directory: directory,
                    fd: fd,
                    number: number,
                    size: LogRecordFormat.segmentHeaderBytes,
                    segments: segments.dropLast(segments.last == nil ? 0 : 1) + [
                        (number, LogRecordFormat.segmentHeaderBytes)
                    ]
                )
            }
            let path = directory + "/" + SegmentFiles.fileName(of: newest.number)
            let fd = try SegmentFiles.openForAppend(path, create: false)
            do {
                if SegmentFiles.size(path) != newest.bytes {
                    try SegmentFiles.truncate(fd, to: newest.bytes, path: path)
                    try SegmentFiles.sync(fd, path: path)
                }
            } catch {
                SegmentFiles.closeDescriptor(fd)
                throw error
            }
            return Writer(directory: directory, fd: fd, number: newest.number, size: newest.bytes, segments: segments)
        }

        /// A new, synced segment file holding only its header, its name synced in the directory.
        private static func create(number: UInt64, in directory: String) throws(SegmentFiles.Failure) -> Int32 {
            let path = directory + "/" + SegmentFiles.fileName(of: number)
            let fd = try SegmentFiles.openForAppend(path, create: true)
            do {
                var header = ByteBuffer()
                LogRecordFormat.writeSegmentHeader(number: number, into: &header)
                try SegmentFiles.write(fd, header, at: 0, path: path)
                try SegmentFiles.sync(fd, path: path)
                try SegmentFiles.syncDirectory(directory)
                return fd
            } catch {
                SegmentFiles.closeDescriptor(fd)
                try? SegmentFiles.remove(path)
                throw error
            }
        }

        private var path: String { directory + "/" + SegmentFiles.fileName(of: number) }

        func write(_ bytes: ByteBuffer, rollingAt segmentBytes: Int) -> Outcome {
            var rolled = 0
            if size > LogRecordFormat.segmentHeaderBytes && size + bytes.readableBytes > segmentBytes {
                do {
                    let next = try Self.create(number: number + 1, in: directory)
                    SegmentFiles.closeDescriptor(fd)
                    fd = next
                    number += 1
                    size = LogRecordFormat.segmentHeaderBytes
                    segments.append((number, size))
                    currentSegment.withLockedValue { $0 = number }
                    rolled = size
                } catch {
                    return error.isNoSpace ? .refused(error.message) : .broken(error.message)
                }
            }
            let offset = size
            do {
                try SegmentFiles.write(fd, bytes, at: offset, path: path)
            } catch {
                do {
                    try SegmentFiles.truncate(fd, to: offset, path: path)
                } catch {
                    return .broken(error.message)
                }
                return error.isNoSpace ? .refused(error.message) : .broken(error.message)
            }
            do {
                try SegmentFiles.sync(fd, path: path)
            } catch {
                return .broken(error.message)
            }
            size += bytes.readableBytes
            segments[segments.count - 1].bytes = size
            return .written(segment: number, offset: offset, rolled: rolled)
        }

        /// Removes the segments numbered below `before`, never the open one.
        func deleteSegments(before: UInt64) -> (count: Int, bytes: Int) {
            var count = 0
            var bytes = 0
            while let oldest = segments.first, oldest.number < min(before, number) {
                do {
                    try SegmentFiles.remove(directory + "/" + SegmentFiles.fileName(of: oldest.number))
                } catch {
                    break
                }
                segments.removeFirst()
                count += 1
                bytes += oldest.bytes
            }
            if count > 0 { try? SegmentFiles.syncDirectory(directory) }
            return (count, bytes)
        }

        func closeSegment() {
            SegmentFiles.closeDescriptor(fd)
            fd = -1
        }
    }
}
