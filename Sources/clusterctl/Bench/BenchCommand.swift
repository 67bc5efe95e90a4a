import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import StompRouting

/// `clusterctl bench`: a STOMP 1.2 load generator over WebSocket or TCP that can drive any
/// broker, this one or a peer, and reports throughput, latency percentiles and the
/// correctness of what arrived.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark a STOMP broker: throughput, latency, loss, duplicates, reordering, memory per connection."
    )

    enum Scenario: String, ExpressibleByArgument, CaseIterable {
        case oneToOne = "one-to-one"
        case fanOut = "fan-out"
        case manyToMany = "many-to-many"
        case queue
        /// The queue scenario with durable messages: `persistent:true`, a receipt for every
        /// SEND, and consumers that acknowledge each message.
        case persistent
        case idle
    }

    @Option(help: "one-to-one, fan-out, many-to-many, queue, persistent or idle.")
    var scenario: Scenario = .oneToOne

    @Option(
        name: .customLong("pub-url"),
        help: "Where publishers connect (repeatable; ws://host:port/ws or tcp://host:port)."
    )
    var pubURLs: [String] = ["ws://127.0.0.1:15674/ws"]

    @Option(
        name: .customLong("sub-url"),
        help: "Where subscribers connect (repeatable; spread round robin). Default: the publisher URLs."
    )
    var subURLs: [String] = []

    @Option(help: "Publishers (many-to-many, queue and persistent; 1 otherwise).")
    var publishers = 10

    @Option(help: "Subscribers for fan-out.")
    var subscribers = 50

    @Option(help: "Queues for the queue and persistent scenarios.")
    var queues = 10

    @Option(help: "Competing consumers per queue.")
    var consumersPerQueue = 2

    @Option(help: "Messages per second per publisher; 0 for as fast as receipt-based flow control allows.")
    var rate = 0

    @Option(help: "Seconds of publishing.")
    var duration: Double = 10

    @Option(help: "Body size in bytes.")
    var size = 100

    @Option(help: "Ask for a receipt every this many messages (unlimited rate; persistent: every message).")
    var window = 100

    @Option(help: "Receipts a publisher may await at once (unlimited rate).")
    var inFlight = 10

    @OptionGroup var persistence: BenchPersistenceOptions

    @Option(help: "Idle scenario: subscribed connections to open.")
    var connections = 10_000

    @Option(
        name: .customLong("server-pid"),
        help: "Idle scenario: broker process(es) whose resident memory to measure (repeatable)."
    )
    var serverPIDs: [Int32] = []

    @Flag(help: "Print JSON.")
    var json = false

    struct Report: Codable {
        var scenario: String
        var publishers: Int
        var subscribers: Int
        var bodySize: Int
        var rate: Int
        /// Publishing time; `publishedPerSecond` is over it.
        var seconds: Double
        /// From the start of publishing until the last delivery arrived (never less than
        /// `seconds`); `deliveredPerSecond` is over it, so a broker that queues messages and
        /// delivers them late gets no credit for the queueing.
        var deliverySeconds: Double
        var published: Int
        var publishedPerSecond: Double
        var delivered: Int
        var deliveredPerSecond: Double
        var expectedDeliveries: Int
        var lost: Int
        var duplicated: Int
        var reordered: Int
        /// Benchmark messages naming a publisher or stream this run doesn't have.
        var unrecognized: Int
        /// Messages that reached a subscriber of another destination (not counted as delivered).
        var misrouted: Int
        var latencyMicroseconds: [String: Double]
        var generatorCPUSeconds: Double
        var connectionsClosedUnexpectedly: Int
        /// Persistent scenario only (absent otherwise): receipts and their latency.
        var persistent: BenchPersistentReport?
        var ok: Bool
    }

    struct IdleReport: Codable {
        var connections: Int
        var serverRSSKiBBefore: Int
        var serverRSSKiBAfter: Int
        var kibPerConnection: Double
    }

    func run() async throws {
        raiseFileLimit()
        let pubs = try pubURLs.map(StompEndpoint.init)
        let subs = try (subURLs.isEmpty ? pubURLs : subURLs).map(StompEndpoint.init)
        // One thread for the whole generator (see BenchRun).
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        do {
            try await measure(pubs, subs, loop: loop)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
    }

    private func measure(_ pubs: [StompEndpoint], _ subs: [StompEndpoint], loop: any EventLoop) async throws {
        if scenario == .idle {
            try await runIdle(subs, loop: loop)
            return
        }
        let plan = makePlan(pubs, subs)
        let run = BenchRun(
            loop: loop,
            plan: plan,
            settings: .init(
                duration: .milliseconds(Int64(duration * 1_000)),
                rate: rate > 0 ? rate : nil,
                bodySize: size,
                window: max(window, 1),
                inFlight: max(inFlight, 1),
                sendHeaders: persistence.extraSendHeaders,
                subscribeHeaders: persistence.extraSubscribeHeaders,
                persistent: scenario == .persistent,
                prefetch: persistence.prefetch
            )
        )
        try await run.subscribeAll()
        try await run.openPublishers()
        let cpuBefore = loopCPUSeconds()
        let timing = try await run.run()
        let cpu = loopCPUSeconds() - cpuBefore
        let report = try await loop.submit { makeReport(run, timing: timing, cpu: cpu) }.get()
        await run.close()
        print(report: report)
        if !report.ok { throw ExitCode(1) }
    }

    // MARK: - Scenarios

    private func makePlan(_ pubs: [StompEndpoint], _ subs: [StompEndpoint]) -> BenchRun.Plan {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        func pub(_ index: Int) -> StompEndpoint { pubs[index % pubs.count] }
        func sub(_ index: Int) -> StompEndpoint { subs[index % subs.count] }
        switch scenario {
        case .oneToOne:
            let topic = "/topic/bench.\(tag).0"
            return .init(
                subscriptions: [.init(endpoint: sub(0), destination: topic, stream: 0)],
                publishers: [.init(endpoint: pub(0), destination: topic, copies: 1)]
            )
        case .fanOut:
            let topic = "/topic/bench.\(tag).fan"
            return .init(
                subscriptions: (0..<subscribers).map { .init(endpoint: sub($0), destination: topic, stream: $0) },
                publishers: [.init(endpoint: pub(0), destination: topic, copies: subscribers)]
            )
        case .manyToMany:
            return .init(
                subscriptions: (0..<publishers).map {
                    .init(endpoint: sub($0), destination: "/topic/bench.\(tag).\($0)", stream: $0)
                },
                publishers: (0..<publishers).map {
                    .init(endpoint: pub($0), destination: "/topic/bench.\(tag).\($0)", copies: 1)
                }
            )
        case .queue, .persistent:
            var subscriptions: [BenchRun.Plan.Subscription] = []
            for queue in 0..<queues {
                for consumer in 0..<consumersPerQueue {
                    // Every consumer of a queue shares its stream: each message must arrive once among them.
                    subscriptions.append(
                        .init(
                            endpoint: sub(queue * consumersPerQueue + consumer),
                            destination: "/queue/bench.\(tag).\(queue)",
                            stream: queue
                        )
                    )
                }
            }
            return .init(
                subscriptions: subscriptions,
                publishers: (0..<publishers).map {
                    .init(endpoint: pub($0), destination: "/queue/bench.\(tag).\($0 % queues)", copies: 1)
                }
            )
        case .idle:
            return .init(subscriptions: [], publishers: [])
        }
    }

    private func runIdle(_ subs: [StompEndpoint], loop: any EventLoop) async throws {
        let before = residentKiB()
        let run = BenchRun(
            loop: loop,
            plan: .init(subscriptions: [], publishers: []),
            settings: .init(duration: .zero, rate: nil, bodySize: 0, window: 1, inFlight: 1)
        )
        // Waves of concurrent connections: some brokers take a while per handshake, and
        // opening ten thousand one after the other would measure that instead.
        var open: [BenchConnection] = []
        let wave = 200
        for start in stride(from: 0, to: connections, by: wave) {
            let opened = try await withThrowingTaskGroup(of: BenchConnection.self) { group in
                for index in start..<min(start + wave, connections) {
                    group.addTask {
                        let connection = try await run.open(subs[index % subs.count])
                        let subscribed = loop.makePromise(of: Void.self)
                        try await loop.submit {
                            connection.send(
                                StompFrame(
                                    .subscribe,
                                    headers: [
                                        "id": "idle", "destination": "/topic/bench.idle.\(index)", "receipt": "s",
                                    ]
                                ),
                                expecting: .receipt,
                                closedFirst: "the broker closed an idle connection before its receipt",
                                answered: subscribed
                            )
                        }.get()
                        try await subscribed.futureResult.get()
                        return connection
                    }
                }
                var batch: [BenchConnection] = []
                for try await connection in group { batch.append(connection) }
                return batch
            }
            open.append(contentsOf: opened)
        }
        try await Task.sleep(for: .seconds(2))
        let after = residentKiB()
        let report = IdleReport(
            connections: connections,
            serverRSSKiBBefore: before,
            serverRSSKiBAfter: after,
            kibPerConnection: Double(after - before) / Double(max(connections, 1))
        )
        try await loop.submit { [open] in for connection in open { connection.close() } }.get()
        if json {
            Output.json(report)
        } else {
            Swift.print(
                "idle: \(connections) subscribed connections; server RSS \(before) KiB -> \(after) KiB: \(String(format: "%.1f", report.kibPerConnection)) KiB per connection"
            )
        }
    }

    // MARK: - Reporting

    private func makeReport(_ run: BenchRun, timing: BenchRun.Timing, cpu: Double) -> Report {
        let seconds = Double(timing.publishing.nanoseconds) / 1e9
        let deliverySeconds = Double(timing.delivering.nanoseconds) / 1e9
        let statistics = run.statistics
        let published = run.published.reduce(0, +)
        let expected = run.expectedDeliveries
        let lost = max(expected - statistics.unique, 0)
        var persistent: BenchPersistentReport?
        if scenario == .persistent {
            persistent = BenchPersistentReport(
                receiptsInFlight: max(inFlight, 1),
                prefetch: persistence.prefetch,
                receipted: run.receipts.answered,
                unanswered: max(published - run.receipts.answered, 0),
                receiptLatencyMicroseconds: run.receipts.percentilesMicroseconds
            )
        }
        var latency: [String: Double] = [:]
        if statistics.latency.totalCount > 0 {
            for (name, percentile) in [("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9)] {
                latency[name] = Double(statistics.latency.valueAtPercentile(percentile)) / 1_000
            }
            latency["max"] = Double(statistics.latency.max) / 1_000
        }
        return Report(
            scenario: scenario.rawValue,
            publishers: run.plan.publishers.count,
            subscribers: run.plan.subscriptions.count,
            bodySize: size,
            rate: rate,
            seconds: seconds,
            deliverySeconds: deliverySeconds,
            published: published,
            publishedPerSecond: Double(published) / seconds,
            delivered: statistics.delivered,
            deliveredPerSecond: Double(statistics.delivered) / deliverySeconds,
            expectedDeliveries: expected,
            lost: lost,
            duplicated: statistics.duplicates,
            reordered: statistics.reordered,
            unrecognized: statistics.unknown,
            misrouted: statistics.misrouted,
            latencyMicroseconds: latency,
            generatorCPUSeconds: cpu,
            connectionsClosedUnexpectedly: run.closedUnexpectedly,
            persistent: persistent,
            ok: lost == 0 && statistics.duplicates == 0 && statistics.reordered == 0 && statistics.unknown == 0
                && statistics.misrouted == 0 && run.closedUnexpectedly == 0 && (persistent?.unanswered ?? 0) == 0
        )
    }

    private func print(report: Report) {
        if json { return Output.json(report) }
        func rate(_ value: Double) -> String { String(format: "%.0f", value) }
        Swift.print(
            "\(report.scenario): \(report.publishers) publisher(s), \(report.subscribers) subscriber(s), \(report.bodySize)-byte bodies, \(report.rate == 0 ? "unlimited rate" : "\(report.rate) msgs/s per publisher"), \(String(format: "%.1f", report.seconds)) s"
        )
        Swift.print("  published  \(report.published) (\(rate(report.publishedPerSecond)) msgs/s)")
        Swift.print(
            "  delivered  \(report.delivered) (\(rate(report.deliveredPerSecond)) msgs/s over \(String(format: "%.2f", report.deliverySeconds)) s to the last delivery) of \(report.expectedDeliveries) expected"
        )
        if !report.latencyMicroseconds.isEmpty {
            let latency = ["p50", "p99", "p99.9", "max"].map {
                "\($0) \(String(format: "%.0f", report.latencyMicroseconds[$0] ?? 0)) µs"
            }.joined(separator: ", ")
            Swift.print("  latency    \(latency)")
        }
        if let persistent = report.persistent {
            let latency = ["p50", "p99", "p99.9", "max"].map {
                "\($0) \(String(format: "%.0f", persistent.receiptLatencyMicroseconds[$0] ?? 0)) µs"
            }.joined(separator: ", ")
            Swift.print(
                "  receipts   \(persistent.receipted) of \(report.published) (up to \(persistent.receiptsInFlight) awaited per publisher; consumers' prefetch \(persistent.prefetch))"
            )
            Swift.print("  to receipt \(latency)")
        }
        Swift.print(
            "  generator  \(String(format: "%.2f", report.generatorCPUSeconds)) CPU-s on its one thread over \(String(format: "%.2f", report.deliverySeconds)) s (\(String(format: "%.0f", 100 * report.generatorCPUSeconds / max(report.deliverySeconds, 0.001)))% of a core)"
        )
        if report.ok {
            Swift.print(
                "  correctness: no loss, no duplicates, no reordering, nothing misrouted\(report.persistent == nil ? "" : ", every SEND receipted")"
            )
        } else {
            Swift.print(
                "  correctness: \(report.lost) lost, \(report.duplicated) duplicated, \(report.reordered) out of order, \(report.misrouted) misrouted, \(report.unrecognized) unrecognized, \(report.connectionsClosedUnexpectedly) connection(s) closed\(report.persistent.map { ", \($0.unanswered) SEND(s) never receipted" } ?? "")"
            )
        }
    }

    // MARK: - Process facts

    private func residentKiB() -> Int {
        serverPIDs.reduce(0) { total, pid in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                let value = Int(line.split(separator: " ").dropFirst().first ?? "")
            else { return total }
            return total + value
        }
    }

    /// CPU time of this whole process (its one event loop does all the work).
    private func loopCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(
            usage.ru_utime.tv_usec + usage.ru_stime.tv_usec
        ) / 1e6
    }

    /// Thousands of connections need more descriptors than the usual soft limit.
    private func raiseFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
