import Histogram

/// What subscribers saw: latency, and per-publisher sequence numbers checked for loss,
/// duplicates and reordering.
struct BenchStatistics {
    /// Bits of the sequence numbers seen, per publisher (and per subscriber, for topics).
    struct SeenSet {
        private var words: [UInt64] = []
        /// - Returns: whether `sequence` was new.
        mutating func insert(_ sequence: Int) -> Bool {
            let word = sequence >> 6, bit = UInt64(1) << UInt64(sequence & 63)
            if word >= words.count { words.append(contentsOf: repeatElement(0, count: word - words.count + 1 + words.count / 2)) }
            defer { words[word] |= bit }
            return words[word] & bit == 0
        }
        var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }
    }

    var latency = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    var delivered = 0
    var duplicates = 0
    var reordered = 0
    /// Keyed by (stream, publisher): a stream is one subscriber for topics, the whole cluster
    /// for queues (each message must arrive exactly once anywhere).
    var seen: [Int: SeenSet] = [:]
    /// Keyed by (subscriber, publisher): the last sequence number, for order.
    var last: [Int: Int] = [:]

    mutating func record(stream: Int, subscriber: Int, publisher: Int, sequence: Int, latencyNanoseconds: UInt64) {
        delivered += 1
        _ = latency.record(max(latencyNanoseconds, 1))
        let streamKey = stream << 20 | publisher
        if !seen[streamKey, default: SeenSet()].insert(sequence) {
            duplicates += 1
            return
        }
        let orderKey = subscriber << 20 | publisher
        if let previous = last[orderKey], sequence < previous { reordered += 1 }
        last[orderKey] = max(last[orderKey] ?? -1, sequence)
    }

    /// Distinct (stream, publisher, sequence) deliveries.
    var unique: Int { seen.values.reduce(0) { $0 + $1.count } }
}
