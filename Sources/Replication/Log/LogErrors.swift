/// Why the log could not be opened.
public enum LogOpenError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A segment holds data that does not check, other than a torn tail: the node must not
    /// start on it. Names the file so that an operator can move it aside or restore it.
    case corrupt(path: String, offset: Int, reason: String)
    /// The directory cannot be used for writing (read-only, no permission, not a directory):
    /// the node can run without durable queues and refuse persistent messages, saying this.
    case unavailable(String)

    public var description: String {
        switch self {
        case .corrupt(let path, let offset, let reason): "corrupt log segment \(path) at byte \(offset): \(reason)"
        case .unavailable(let reason): reason
        }
    }
}

/// Why records were not made durable. None of them was acknowledged, and the log holds none
/// of their bytes (a failed batch is cut off the file again), except after ``failed(_:)``.
public enum LogAppendError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The log reached `data.max-bytes`; acknowledged records must be compacted away first.
    case diskLimit(bytes: Int64)
    /// The file system refused the bytes (`ENOSPC`, quota): later batches may succeed.
    case noSpace(String)
    /// A write or a sync failed in a way that leaves the file's contents unknown (after a
    /// failed `fsync` the kernel may have dropped the dirty pages): the log takes nothing more
    /// until the node restarts and reads back what is really on disk.
    case failed(String)
    /// The log was closed.
    case closed

    public var description: String {
        switch self {
        case .diskLimit(let bytes): "the durable log reached data.max-bytes (\(bytes) bytes)"
        case .noSpace(let reason): "the data dir is full: \(reason)"
        case .failed(let reason): "the durable log failed: \(reason)"
        case .closed: "the durable log is closed"
        }
    }
}
