import Logging
import NIOCore
import Synchronization

/// A log line that is written at most once per interval, however often it is asked for,
/// with the number of times it was held back since the last one. A bound that thousands of
/// clients reach at once (a slow-consumer storm, a flood of bad frames) must not turn the
/// log into the bottleneck.
final class RateLimitedLog: Sendable {
    private let interval: Int64
    /// Uptime in nanoseconds before which nothing is written.
    private let quietUntil = Atomic<Int64>(0)
    private let heldBack = Atomic<Int>(0)

    init(interval: TimeAmount) {
        self.interval = interval.nanoseconds
    }

    /// Writes `message` at `level` unless a line was written less than the interval ago.
    func log(
        _ logger: Logger,
        _ message: @autoclosure () -> Logger.Message,
        level: Logger.Level = .info,
        metadata: Logger.Metadata = [:]
    ) {
        let now = Int64(NIODeadline.now().uptimeNanoseconds)
        let until = quietUntil.load(ordering: .relaxed)
        guard now >= until,
            quietUntil.compareExchange(expected: until, desired: now + interval, ordering: .relaxed).exchanged
        else {
            heldBack.add(1, ordering: .relaxed)
            return
        }
        var metadata = metadata
        let skipped = heldBack.exchange(0, ordering: .relaxed)
        if skipped > 0 { metadata["log.suppressed"] = "\(skipped)" }
        logger.log(level: level, message(), metadata: metadata)
    }
}
