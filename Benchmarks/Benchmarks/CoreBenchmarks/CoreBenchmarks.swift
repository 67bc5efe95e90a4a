import Benchmark
import Gossip
import NIOCore
import StompRouting

/// The per-message costs that decide throughput: decoding a SEND, fanning a MESSAGE out,
/// matching a destination against many patterns, applying interest, batching for a link.
/// Each reports wall time, throughput and mallocs, so an allocation creeping into the hot
/// path shows before it ships.
let benchmarks: @Sendable () -> Void = {
    let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal, .instructions]
    let configuration = Benchmark.Configuration(metrics: metrics, maxDuration: .seconds(3), maxIterations: 1_000_000)

    // MARK: Codec

    let sendFrame: ByteBuffer = {
        var headers: StompHeaders = ["destination": "/topic/prices.eur", "content-type": "application/json"]
        headers.add("receipt", "r-1")
        return StompFrameEncoder.encode(
            StompFrame(.send, headers: headers, body: ByteBuffer(repeating: UInt8(ascii: "x"), count: 100)),
            version: .v1_2
        )
    }()

    Benchmark("decode a SEND with a 100-byte body", configuration: configuration) { benchmark in
        var decoder = StompFrameDecoder()
        for _ in benchmark.scaledIterations {
            var input = sendFrame
            blackHole(try decoder.nextFrame(from: &input))
        }
    }

    Benchmark("encode an ERROR frame", configuration: configuration) { benchmark in
        let error = StompProtocolError(.unknownCommand, "unknown command", detail: "'FOO' is not a STOMP command.")
        for _ in benchmark.scaledIterations {
            blackHole(StompFrameEncoder.encode(error.errorFrame(version: .v1_2), version: .v1_2))
        }
    }

    // MARK: Router

    for subscribers in [1, 50] {
        Benchmark(
            "publish to a topic with \(subscribers) subscriber(s) and write the deliveries",
            configuration: configuration
        ) { benchmark in
            let router = Router(settings: .init(messageIDPrefix: "bench-"))
            var outputs: [RouterOutput] = []
            for index in 0..<subscribers {
                let connection = ConnectionID(UInt64(index))
                router.handle(.open(.v1_2), from: connection, receipt: nil, into: &outputs)
                let request = SubscribeRequest(id: "s", destination: .topic("prices.*"), ackMode: .auto, prefetch: 100)
                router.handle(.subscribe(request), from: connection, receipt: nil, into: &outputs)
            }
            let publish = PublishRequest(
                destination: .topic("prices.eur"),
                headers: [:],
                body: ByteBuffer(repeating: 120, count: 100)
            )
            let publisher = ConnectionID(1_000_000)
            router.handle(.open(.v1_2), from: publisher, receipt: nil, into: &outputs)
            // Each delivery written out as a connection would, into a buffer that is already
            // there: the whole cost of a publish up to the socket, bar the hop between loops.
            var wire = ByteBuffer()
            wire.reserveCapacity(1 << 20)
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                outputs.removeAll(keepingCapacity: true)
                router.handle(.send(publish), from: publisher, receipt: nil, into: &outputs)
                wire.clear()
                for case .deliver(_, let delivery) in outputs { delivery.write(into: &wire) }
                blackHole(wire.readableBytes)
            }
        }
    }

    // MARK: Subscription index

    let trie: TopicTrie<Int> = {
        let trie = TopicTrie<Int>()
        for index in 0..<100_000 {
            switch index % 4 {
            case 0: trie.insert(index, pattern: "prices.\(index % 1_000).eur")
            case 1: trie.insert(index, pattern: "prices.\(index % 1_000).*")
            case 2: trie.insert(index, pattern: "news.\(index % 500).#")
            default: trie.insert(index, pattern: "chat.room\(index).messages")
            }
        }
        return trie
    }()

    Benchmark("match a routing key against 100k patterns", configuration: configuration) { benchmark in
        var result = Set<Int>()
        for iteration in benchmark.scaledIterations {
            result.removeAll(keepingCapacity: true)
            trie.matches("prices.\(iteration % 1_000).eur", into: &result)
            blackHole(result.count)
        }
    }

    // One subscription of eight `#`s and a 25-word key: exponential for a naive matcher
    // (seconds per lookup), words x pattern length for ours.
    let adversarial: TopicTrie<Int> = {
        let trie = TopicTrie<Int>()
        trie.insert(1, pattern: "#.#.#.#.#.#.#.#")
        trie.insert(2, pattern: "#.a.#.a.#.a.#.a.#.b")
        return trie
    }()
    let longKey = Array(repeating: "a", count: 24).joined(separator: ".") + ".c"

    Benchmark("match a 25-word key against adversarial # patterns", configuration: configuration) { benchmark in
        var result = Set<Int>()
        for _ in benchmark.scaledIterations {
            result.removeAll(keepingCapacity: true)
            adversarial.matches(longKey, into: &result)
            blackHole(result.count)
        }
    }

    // MARK: Interest

    // Built once, outside the measured closure: only the lookup is timed.
    let table: InterestTable = {
        let table = InterestTable()
        for origin in 0..<1_000 {
            let changes: [(Destination, Int)] = (0..<10).map { (.topic("app.\(origin).\($0).*"), 1) }
            _ = table.applySnapshot(
                from: NodeID("n\(origin)"),
                epoch: 1,
                version: 1,
                entries: changes + [(.topic("broadcast.#"), 1)]
            )
        }
        return table
    }()

    Benchmark("interest: peers for a topic among 1000 origins", configuration: configuration) { benchmark in
        var peers = Set<NodeID>()
        for iteration in benchmark.scaledIterations {
            peers.removeAll(keepingCapacity: true)
            table.peers(forTopic: "app.\(iteration % 1_000).3.x", into: &peers)
            blackHole(peers.count)
        }
    }

    // MARK: Link

    let batch: ByteBuffer = {
        var payload = ByteBuffer()
        for index in 0..<100 {
            let body = ByteBuffer(string: #"{"symbol":"EURUSD","bid":1.08\#(index % 10),"ask":1.09,"seq":\#(index)}"#)
            LinkMessage.forward(
                MessageEnvelope(destination: .topic("prices.eur"), messageID: "n1-x-\(index)", headers: [:], body: body)
            ).encode(into: &payload)
        }
        return payload
    }()

    Benchmark("LZ4-frame a batch of 100 JSON forwards", configuration: configuration) { benchmark in
        var output = ByteBuffer()
        output.reserveCapacity(batch.readableBytes + 64)
        for _ in benchmark.scaledIterations {
            output.clear()
            blackHole(LinkFrame.encode(batch, compressionThreshold: 512, into: &output))
        }
    }
}
