import NIOCore
import StompRouting
import Testing

@testable import clusterctl

/// The generator reads benchmark MESSAGEs straight from the bytes and checks every delivery
/// against per-publisher sequence numbers: what makes a benchmark figure trustworthy.
@Suite struct BenchMessageScannerTests {
    static func message(
        publisher: Int = 3,
        sequence: Int = 41,
        sentAt: UInt64 = 123_456_789,
        body: String = "hello",
        extraHeaders: [(String, String)] = []
    ) -> ByteBuffer {
        var headers: StompHeaders = [:]
        headers.add("subscription", "s0")
        headers.add("message-id", "node-1-41")
        headers.add("destination", "/topic/bench.x")
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
        let scanned = try #require(BenchMessageScanner.scan(bytes))
        let (length, fields) = try #require(scanned)
        #expect(length == frameLength)
        #expect(fields.publisher == 3)
        #expect(fields.sequence == 41)
        #expect(fields.sentAt == 123_456_789)
    }

    @Test func everyIncompletePrefixAsksForMoreBytes() throws {
        let bytes = Self.message()
        for length in 0..<bytes.readableBytes {
            let prefix = bytes.getSlice(at: bytes.readerIndex, length: length)!
            let scanned = BenchMessageScanner.scan(prefix)
            // A prefix too short to tell is "more bytes"; never a wrong frame.
            if let scanned { #expect(scanned == nil, "prefix of \(length) bytes") }
        }
    }

    @Test func framesThatAreNotBenchmarkMessagesAreLeftToTheDecoder() {
        let receipt = StompFrameEncoder.encode(StompFrame(.receipt, headers: ["receipt-id": "r1"]), version: .v1_2)
        #expect(BenchMessageScanner.scan(receipt) == nil)
        var plain: StompHeaders = ["subscription": "s0", "destination": "/topic/other"]
        plain.add("message-id", "m")
        let message = StompFrameEncoder.encode(
            StompFrame(.message, headers: plain, body: ByteBuffer(string: "x")),
            version: .v1_2
        )
        #expect(BenchMessageScanner.scan(message) == nil)
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
                        sequence: sequence,
                        latencyNanoseconds: 1_000
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
            statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: sequence, latencyNanoseconds: 1)
        }
        #expect(statistics.duplicates == 1)
        #expect(statistics.reordered == 1)
        #expect(statistics.unique == 5)
    }

    /// A queue's consumers share one stream: a message must arrive once among all of them,
    /// while order is judged per consumer.
    @Test func aQueueStreamCountsAMessageOnceAcrossItsConsumers() {
        var statistics = BenchStatistics(streams: 1, subscribers: 2, publishers: 1)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 0, latencyNanoseconds: 1)
        statistics.record(stream: 0, subscriber: 1, publisher: 0, sequence: 1, latencyNanoseconds: 1)
        statistics.record(stream: 0, subscriber: 0, publisher: 0, sequence: 2, latencyNanoseconds: 1)
        #expect(statistics.reordered == 0)
        statistics.record(stream: 0, subscriber: 1, publisher: 0, sequence: 0, latencyNanoseconds: 1)
        #expect(statistics.duplicates == 1)
        #expect(statistics.unique == 3)
    }

    @Test func deliveriesFromUnknownPublishersAreCountedNotTrusted() {
        var statistics = BenchStatistics(streams: 1, subscribers: 1, publishers: 1)
        statistics.record(stream: 0, subscriber: 0, publisher: 7, sequence: 0, latencyNanoseconds: 1)
        statistics.record(stream: 0, subscriber: 0, publisher: -1, sequence: 0, latencyNanoseconds: 1)
        statistics.record(stream: 5, subscriber: 0, publisher: 0, sequence: 0, latencyNanoseconds: 1)
        #expect(statistics.unknown == 3)
        #expect(statistics.delivered == 0)
        #expect(statistics.unique == 0)
    }
}
