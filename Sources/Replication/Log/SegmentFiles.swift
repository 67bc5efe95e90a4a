import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The few system calls the log makes, each returning the error it met as text that names
/// the file: the log's shell turns them into ``LogOpenError`` and ``LogAppendError``.
enum SegmentFiles {
    struct Failure: Error {
        var errno: Int32
        var message: String
        var isNoSpace: Bool { errno == ENOSPC || errno == EDQUOT }
    }

    static func fileName(of number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".wal"
    }

    static func number(ofFileNamed name: String) -> UInt64? {
        guard name.hasSuffix(".wal"), name.utf8.count == 24 else { return nil }
        return UInt64(name.dropLast(4))
    }

    static func failure(_ what: String, _ path: String) -> Failure {
        let code = errno
        return Failure(errno: code, message: "\(what) \(path): \(String(cString: strerror(code)))")
    }

    static func makeDirectory(_ path: String) throws(Failure) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST { throw failure("cannot create", prefix) }
        }
        var info = stat()
        guard stat(path, &info) == 0 else { throw failure("cannot read", path) }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw Failure(errno: ENOTDIR, message: "\(path) is not a directory")
        }
    }

    /// Takes the directory's `LOCK` file for this process: two nodes appending to one log would
    /// corrupt it. The lock goes with the descriptor (or the process).
    static func lock(_ directory: String) throws(Failure) -> Int32 {
        let path = directory + "/LOCK"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("cannot open", path) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let failure = failure("cannot lock", path)
            close(fd)
            guard failure.errno == EWOULDBLOCK else { throw failure }
            throw Failure(errno: EWOULDBLOCK, message: "\(directory) is in use by another process (\(path) is locked)")
        }
        return fd
    }

    /// Segment numbers in `directory`, oldest first.
    static func list(_ directory: String) throws(Failure) -> [UInt64] {
        guard let dir = opendir(directory) else { throw failure("cannot list", directory) }
        defer { closedir(dir) }
        var numbers: [UInt64] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if let number = number(ofFileNamed: name) { numbers.append(number) }
        }
        return numbers.sorted()
    }

    static func readAll(_ path: String) throws(Failure) -> ByteBuffer {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open", path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure("cannot read", path) }
        var buffer = ByteBufferAllocator().buffer(capacity: Int(info.st_size))
        while true {
            buffer.reserveCapacity(minimumWritableBytes: 1 << 16)
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1 << 16) { raw in
                let count = read(fd, raw.baseAddress, raw.count)
                return count > 0 ? count : 0
            }
            if count == 0 { break }
        }
        return buffer
    }

    static func openForAppend(_ path: String, create: Bool) throws(Failure) -> Int32 {
        let flags = O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0)
        let fd = open(path, flags, 0o600)
        guard fd >= 0 else { throw failure(create ? "cannot create" : "cannot open for writing", path) }
        return fd
    }

    /// Writes all of `bytes` at `offset`.
    static func write(_ fd: Int32, _ bytes: ByteBuffer, at offset: Int, path: String) throws(Failure) {
        var written = 0
        while written < bytes.readableBytes {
            let result = bytes.withUnsafeReadableBytes { raw in
                pwrite(fd, raw.baseAddress! + written, raw.count - written, off_t(offset + written))
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw failure("cannot write", path)
            }
            written += result
        }
    }

    static func sync(_ fd: Int32, path: String) throws(Failure) {
        guard fdatasync(fd) == 0 else { throw failure("cannot sync", path) }
    }

    static func truncate(_ fd: Int32, to length: Int, path: String) throws(Failure) {
        guard ftruncate(fd, off_t(length)) == 0 else { throw failure("cannot truncate", path) }
    }

    /// Makes a file's creation or removal in `directory` durable.
    static func syncDirectory(_ directory: String) throws(Failure) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open", directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure("cannot sync", directory) }
    }

    static func remove(_ path: String) throws(Failure) {
        guard unlink(path) == 0 || errno == ENOENT else { throw failure("cannot remove", path) }
    }

    static func closeDescriptor(_ fd: Int32) {
        _ = close(fd)
    }

    static func size(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }
}
