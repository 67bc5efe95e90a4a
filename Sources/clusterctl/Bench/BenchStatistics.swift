import Histogram

/// What subscribers saw: latency, and per-publisher sequence numbers checked for loss,
/// duplicates and reordering.
struct BenchStatistics {
    /// Bits of the sequence numbers seen, per publisher (and per subscriber, for topics).
    struct SeenSet {
        private var words: [UInt64] = []
        /// - Returns: whether `sequence` was new.
        mutating func insert(_ sequence: Int) -> Bool {
            let word = sequence >> 6
            let bit = UInt64(1) << UInt64(sequence & 63)
            if word >= words.count {
                words.append(contentsOf: repeatElement(0, count: word - words.count + 1 + words.count / 2))
            }
            defer { words[word] |= bit }
            return words[word] & bit == 0
        }
        var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }
    }

    var latency = Histogram<UInt64>(
        lowestDiscernibleValue: 1,
        highestTrackableValue: 60_000_000_000,
        numberOfSignificantValueDigits: .three
    )
    var delivered = 0
    var duplicates = 0
    var reordered = 0
    /// Deliveries whose publisher, subscriber or stream this run doesn't know.
    var unknown = 0
    private let publishers: Int
    /// Per (stream, publisher): a stream is one subscriber for topics, the whole cluster for
    /// queues (each message must arrive exactly once anywhere). Flat arrays, not dictionaries:
    /// this runs for every delivery, up to a million a second.
    private var seen: [SeenSet]
    /// Per (subscriber, publisher): the highest sequence number so far, for order.
    private var last: [Int]

    init(streams: Int, subscribers: Int, publishers: Int) {
        self.publishers = publishers
        self.seen = Array(repeating: SeenSet(), count: streams * publishers)
        self.last = Array(repeating: -1, count: subscribers * publishers)
    }

    mutating func record(stream: Int, subscriber: Int, publisher: Int, sequence: Int, latencyNanoseconds: UInt64) {
        guard publisher >= 0, publisher < publishers, sequence >= 0,
            seen.indices.contains(stream * publishers + publisher),
            last.indices.contains(subscriber * publishers + publisher)
        else {
            unknown += 1
            return
        }
        delivered += 1
        _ = latency.record(max(latencyNanoseconds, 1))
        if !seen[stream * publishers + publisher].insert(sequence) {
            duplicates += 1
            return
        }
        let order = subscriber * publishers + publisher
        if sequence < last[order] { reordered += 1 }
        last[order] = max(last[order], sequence)
    }

    /// Distinct (stream, publisher, sequence) deliveries.
    var unique: Int { seen.reduce(0) { $0 + $1.count } }
}
