import Histogram

/// Publish-to-receipt latency: when each SEND that asked for a receipt went out, and how long
/// its RECEIPT took. For a persistent message that is the time the broker took to make it
/// durable, which is what a publisher waits for.
///
/// Receipts are matched by sequence number rather than by arrival order: a broker may confirm
/// out of order (RabbitMQ confirms can cover several messages, answered as they commit).
struct BenchReceiptLatency {
    var latency = Histogram<UInt64>(
        lowestDiscernibleValue: 1,
        highestTrackableValue: 60_000_000_000,
        numberOfSignificantValueDigits: .three
    )
    /// Receipts that arrived for a SEND this run made.
    private(set) var answered = 0
    /// Per publisher: the send time of each sequence number still awaiting its receipt. At most
    /// the publisher's window of them, so a dictionary stays small.
    private var pending: [[Int: UInt64]]

    init(publishers: Int) {
        pending = Array(repeating: [:], count: publishers)
    }

    /// - Parameter at: monotonic nanoseconds (`NIODeadline.uptimeNanoseconds`).
    mutating func sent(publisher: Int, sequence: Int, at: UInt64) {
        pending[publisher][sequence] = at
    }

    /// Counts the receipt of `sequence`; one for a SEND this run didn't make, or a second
    /// receipt for the same SEND, is ignored.
    mutating func receiptArrived(publisher: Int, sequence: Int, at: UInt64) {
        guard pending.indices.contains(publisher),
            let sentAt = pending[publisher].removeValue(forKey: sequence)
        else { return }
        answered += 1
        _ = latency.record(max(at >= sentAt ? at - sentAt : 0, 1))
    }

    /// Receipts asked for and not (yet) received.
    var awaiting: Int { pending.reduce(0) { $0 + $1.count } }

    /// p50, p99, p99.9 and max in microseconds; empty when no receipt arrived.
    var percentilesMicroseconds: [String: Double] {
        guard latency.totalCount > 0 else { return [:] }
        var result: [String: Double] = [:]
        for (name, percentile) in [("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9)] {
            result[name] = Double(latency.valueAtPercentile(percentile)) / 1_000
        }
        result["max"] = Double(latency.max) / 1_000
        return result
    }
}
