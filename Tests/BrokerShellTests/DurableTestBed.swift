import Foundation
import NIOCore
import NIOPosix
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What the durable queues' suites share: a data dir of their own, removed afterwards, and one
/// event loop that the queues are confined to, with the calls a test makes on it.
class DurableTestBed {
    let directory: String
    let loopGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let loop: any EventLoop

    init(prefix: String) {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        loop = loopGroup.next()
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
        try? loopGroup.syncShutdownGracefully()
    }

    func onLoop<T: Sendable>(_ body: @escaping () throws -> T) throws -> T {
        try loop.submit(body).wait()
    }

    /// Polls `done` on the loop, for five seconds at most.
    func wait(_ what: String, until done: @escaping () -> Bool) throws {
        for _ in 0..<2_500 {
            if try onLoop(done) { return }
            usleep(2_000)
        }
        Issue.record("\(what) did not happen")
    }
}
