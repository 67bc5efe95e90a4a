import Gossip
import NIOCore
import StompRouting
import Testing

/// Measures what LZ4 saves on the link for the batches a tick produces, and prints it so the
/// figures can be reported ("LINK ..." lines). The assertions are the product's promises:
/// at least 3x fewer bytes for JSON-like text once batches are a few messages deep, and at
/// most 1% more for incompressible bodies.
@Suite("Link compression report")
struct LinkCompressionReportTests {
    /// Deterministic pseudo-random bytes, so the report is repeatable.
    private typealias Generator = SplitMix64

    private static func jsonBody(_ index: Int, _ generator: inout Generator) -> ByteBuffer {
        let symbols = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF"]
        let bid = Double(Int.random(in: 10_000...19_999, using: &generator)) / 10_000
        let text =
            #"{"symbol":"\#(symbols[index % symbols.count])","bid":\#(bid),"ask":\#(bid + 0.0002),"seq":\#(index),"ts":\#(1_764_000_000_000 + index * 7)}"#
        return ByteBuffer(string: text)
    }

    private static func randomBody(_ generator: inout Generator, size: Int = 100) -> ByteBuffer {
        ByteBuffer(bytes: (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// Raw and wire bytes of one frame holding `count` forwards.
    private static func frame(count: Int, body: (Int) -> ByteBuffer) -> LinkFrame.Sizes {
        var payload = ByteBuffer()
        for index in 0..<count {
            let message = MessageEnvelope(
                destination: .topic("prices.fx"),
                messageID: "node-1-mx0abc-\(index)",
                headers: ["content-type": "application/json"],
                body: body(index)
            )
            LinkMessage.forward(message).encode(into: &payload)
        }
        var wire = ByteBuffer()
        return LinkFrame.encode(payload, compressionThreshold: 512, into: &wire)
    }

    @Test(arguments: [1, 10, 100, 1_000])
    func jsonLikeBodies(batch: Int) {
        var generator = Generator(seed: 42)
        let sizes = Self.frame(count: batch) { Self.jsonBody($0, &generator) }
        let ratio = Double(sizes.raw) / Double(sizes.wire)
        print("LINK json batch=\(batch) raw=\(sizes.raw) wire=\(sizes.wire) ratio=\(String(format: "%.2f", ratio))x")
        if batch >= 10 { #expect(ratio >= 3) }
    }

    @Test(arguments: [1, 10, 100, 1_000])
    func randomBodies(batch: Int) {
        var generator = Generator(seed: 7)
        let sizes = Self.frame(count: batch) { _ in Self.randomBody(&generator) }
        let overhead = Double(sizes.wire) / Double(sizes.raw) - 1
        print(
            "LINK random batch=\(batch) raw=\(sizes.raw) wire=\(sizes.wire) overhead=\(String(format: "%.2f", overhead * 100))%"
        )
        // Framing headers, message ids and destinations still compress a little; the bodies
        // can't, and a batch never grows by more than its 5-byte frame header.
        #expect(sizes.wire <= sizes.raw + 5)
        if batch >= 10 { #expect(overhead <= 0.01) }
    }

    /// Bodies large enough that the message framing no longer matters: the frame must stay
    /// raw, paying only its header.
    @Test(arguments: [1, 10, 100])
    func largeRandomBodies(batch: Int) {
        var generator = Generator(seed: 11)
        let sizes = Self.frame(count: batch) { _ in Self.randomBody(&generator, size: 4_096) }
        let overhead = Double(sizes.wire) / Double(sizes.raw) - 1
        print(
            "LINK random-4KiB batch=\(batch) raw=\(sizes.raw) wire=\(sizes.wire) overhead=\(String(format: "%.3f", overhead * 100))%"
        )
        #expect(overhead <= 0.01)
    }
}
