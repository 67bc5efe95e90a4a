import NIOCore
import StompRouting
import Testing

@testable import clusterctl

/// The generator reads benchmark MESSAGEs straight from the bytes and checks every delivery
/// against per-publisher sequence numbers: what makes a benchmark figure trustworthy.
@Suite struct BenchMessageScannerTests {
    static let subscribed = "/topic/bench.x"

    static func scan(_ bytes: ByteBuffer) -> (Int, BenchMessageScanner.Fields)?? {
        BenchMessageScanner.scan(bytes, subscribedTo: Array(subscribed.utf8))
    }

    static func message(
        publisher: Int = 3,
        sequence: Int = 41,
        sentAt: UInt64 = 123_456_789,
        body: String = "hello",
        destination: String? = subscribed,
        extraHeaders: [(String, String)] = []
    ) -> ByteBuffer {
        var headers: StompHeaders = [:]
        headers.add("subscription", "s0")
        headers.add("message-id", "node-1-41")
        if let destination { headers.add("destination", destination) }
        for (name, value) in extraHeaders { headers.add(name, value) }
        headers.add("bench-ts", String(sentAt))
        headers.add("bench-seq", String(sequence))
        headers.add("bench-pub", String(publisher))
        return StompFrameEncoder.encode(
            StompFrame(.message, headers: headers, body: ByteBuffer(string: body)),
            version: .v1_2
        )
    }

    @Test func aCompleteMessageGivesItsLengthAndFields() throws {
        var bytes = Self.message(extraHeaders: [("content-type", "text/plain"), ("correlation", "b-not-bench")])
        let frameLength = bytes.readableBytes
        bytes.writeString("MESSAGE\n")  // the start of the next frame doesn't matter
        let scanned = try #require(Self.scan(bytes))
        let (length, fields) = try #require(scanned)
        #expect(length == frameLength)
        #expect(fields.publisher == 3)
        #expect(fields.sequence == 41)
        #expect(fields.sentAt == 123_456_789)
        #expect(!fields.misrouted)
    }

    /// A delivery counts only where it was subscribed: another destination, even one that
    /// starts with the subscribed name, or none at all, is misrouted.
    @Test(
        arguments: [
            ("/topic/bench.y", true),
            ("/topic/bench.x2", true),
            ("/topic/bench.", true),
            ("", true),
            (nil, true),
            (BenchMessageScannerTests.subscribed, false),
        ] as [(String?, Bool)]
    )
    func theDestinationMustBeTheSubscribedOne(destination: String?, misrouted: Bool) throws {
        let scanned = try #require(Self.scan(Self.message(destination: destination)))
        let (_, fields) = try #require(scanned)
        #expect(fields.misrouted == misrouted, "destination \(destination ?? "(none)")")
    }

    @Test func ofRepeatedDestinationHeadersTheFirstCounts() throws {
        let repeated = Self.message(destination: "/topic/other", extraHeaders: [("destination", Self.subscribed)])
        let scanned = try #require(Self.scan(repeated))
        let (_, fields) = try #require(scanned)
        #expect(fields.misrouted)
    }

    @Test func everyIncompletePrefixAsksForMoreBytes() throws {
        let bytes = Self.message()
        for length in 0..<bytes.readableBytes {
            let prefix = bytes.getSlice(at: bytes.readerIndex, length: length)!
            let scanned = Self.scan(prefix)
            // A prefix too short to tell is "more bytes"; never a wrong frame.
            if let scanned { #expect(scanned == nil, "prefix of \(length) bytes") }
        }
    }

    @Test func framesThatAreNotBenchmarkMessagesAreLeftToTheDecoder() {
        let receipt = StompFrameEncoder.encode(StompFrame(.receipt, headers: ["receipt-id": "r1"]), version: .v1_2)
        #expect(Self.scan(receipt) == nil)
        var plain: StompHeaders = ["subscription": "s0", "destination": "/topic/other"]
        plain.add("message-id", "m")
        let message = StompFrameEncoder.encode(
            StompFrame(.message, headers: plain, body: ByteBuffer(string: "x")),
            version: .v1_2
        )
        #expect(Self.scan(message) == nil)
    }
}

extension BenchStatistics {
    /// A delivery at `receivedAt` of a message sent at 0, to the subscribed destination unless told.
    mutating func record(
        stream: Int,
        subscriber: Int,
        publisher: Int,
        sequence: Int,
        receivedAt: UInt64 = 1_000,
        misrouted: Bool = false
    ) {
        record(
            stream: stream,
            subscriber: subscriber,
            publisher: publisher,
            sequence: sequence,
            sentAt: 0,
            receivedAt: receivedAt,
            misrouted: misrouted
        )
    }
}

@Suite struct BenchStatisticsTests {
    @Test func everyDeliveryOnceAndInOrderIsClean() {
        var statistics = BenchStatistics(streams: 2, subscribers: 2, publishers: 2)
        for sequence in 0..<100 {
            for publisher in 0..<2 {
                for subscriber in 0..<2 {
                    statistics.record(
                        stream: subscriber,
                        subscriber: subscriber,
                        publisher: publisher,
                        sequence: sequence
                    )
                }
            }
        }
        #expect(statistics.delivered == 400)
        #expect(statistics.unique == 400)
        #expect(statistics.duplicates == 0)
        #expect(statistics.reordered == 0)
        #expect(statistics.unknown == 0)
    }

    @Test func duplicatesAndReorderingAreCounted() {
        var statistics = BenchStatistics(streams: 1, subscribers: 1, publishers: 1)
        for sequence in [0, 1, 3, 2, 3, 4] {
            statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: sequence)
        }
        #expect(statistics.duplicates == 1)
        #expect(statistics.reordered == 1)
        #expect(statistics.unique == 5)
    }

    /// A queue's consumers share one stream: a message must arrive once among all of them,
    /// while order is judged per consumer.
    @Test func aQueueStreamCountsAMessageOnceAcrossItsConsumers() {
        var statistics = BenchStatistics(streams: 1, subscribers: 2, publishers: 1)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 0)
        statistics.record(stream: 0, subscriber: 1, publisher: 0, sequence: 1)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 2)
        #expect(statistics.reordered == 0)
        statistics.record(stream: 0, subscriber: 1, publisher: 0, sequence: 0)
        #expect(statistics.duplicates == 1)
        #expect(statistics.unique == 3)
    }

    @Test func deliveriesFromUnknownPublishersAreCountedNotTrusted() {
        var statistics = BenchStatistics(streams: 1, subscribers: 1, publishers: 1)
        statistics.record(stream: 0, subscriber: 0, publisher: 7, sequence: 0)
        statistics.record(stream: 0, subscriber: 0, publisher: -1, sequence: 0)
        statistics.record(stream: 5, subscriber: 0, publisher: 0, sequence: 0)
        #expect(statistics.unknown == 3)
        #expect(statistics.delivered == 0)
        #expect(statistics.unique == 0)
    }

    /// Misrouted messages are counted on their own and never as delivered, so they can't
    /// hide a loss: here one message is lost and another arrives at the wrong destination.
    @Test func aMisroutedMessageDoesNotMakeUpForALostOne() {
        var statistics = BenchStatistics(streams: 1, subscribers: 1, publishers: 1)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 0)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 1, misrouted: true)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 2)
        #expect(statistics.misrouted == 1)
        #expect(statistics.delivered == 2)
        #expect(statistics.unique == 2)
        #expect(statistics.duplicates == 0)
        #expect(statistics.unknown == 0)
    }

    /// Throughput runs until the last delivery: that is the last one counted, not the last
    /// frame of any kind.
    @Test func theLastDeliveryIsTheLastOneCounted() {
        var statistics = BenchStatistics(streams: 1, subscribers: 1, publishers: 1)
        #expect(statistics.lastDeliveryAt == nil)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 0, receivedAt: 5_000)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 1, receivedAt: 9_000)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 2, receivedAt: 12_000, misrouted: true)
        statistics.record(stream: 0, subscriber: 0, publisher: 9, sequence: 0, receivedAt: 13_000)
        #expect(statistics.lastDeliveryAt == 9_000)
    }
}

@Suite struct BenchTimingTests {
    @Test func deliveriesAreCountedUntilTheLastOneArrived() {
        let timing = BenchRun.Timing(publishing: .seconds(5), untilLastDelivery: .milliseconds(6_500))
        #expect(timing.delivering == .milliseconds(6_500))
    }

    /// When the tail of a run is lost, the last delivery comes before publishing ended; the
    /// run still took the publishing time.
    @Test func neverLessThanThePublishingTime() {
        #expect(BenchRun.Timing(publishing: .seconds(5), untilLastDelivery: .seconds(2)).delivering == .seconds(5))
        #expect(BenchRun.Timing(publishing: .seconds(5), untilLastDelivery: nil).delivering == .seconds(5))
    }
}
