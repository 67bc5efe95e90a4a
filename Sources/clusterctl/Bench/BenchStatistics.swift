import Histogram

/// What subscribers saw: latency, per-publisher sequence numbers checked for loss,
/// duplicates and reordering, deliveries to the wrong destination, and when the last
/// delivery arrived (throughput is counted up to then, not only over the publishing time).
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
    /// Deliveries to a subscriber whose subscription names another destination. They are
    /// not counted as delivered: a message that went to the wrong place must not make up for
    /// one that was lost.
    var misrouted = 0
    /// Monotonic nanoseconds (`NIODeadline.uptimeNanoseconds`) of the last counted delivery.
    private(set) var lastDeliveryAt: UInt64?
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

    /// Counts one benchmark MESSAGE that a subscriber received.
    ///
    /// - Parameters:
    ///   - sentAt: the publisher's clock when it sent the message (`bench-ts`), monotonic nanoseconds.
    ///   - receivedAt: the same clock when the message arrived.
    ///   - misrouted: the MESSAGE's destination is not the one the subscriber subscribed to.
    mutating func record(
        stream: Int,
        subscriber: Int,
        publisher: Int,
        sequence: Int,
        sentAt: UInt64,
        receivedAt: UInt64,
        misrouted: Bool
    ) {
        // First: a message at the wrong destination says nothing about the stream it names.
        if misrouted {
            self.misrouted += 1
            return
        }
        guard publisher >= 0, publisher < publishers, sequence >= 0,
            seen.indices.contains(stream * publishers + publisher),
            last.indices.contains(subscriber * publishers + publisher)
        else {
            unknown += 1
            return
        }
        delivered += 1
        lastDeliveryAt = receivedAt
        _ = latency.record(max(receivedAt >= sentAt ? receivedAt - sentAt : 0, 1))
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
