import Histogram
import NIOCore
import NIOPosix
import StompRouting

/// One benchmark run, confined to a single event loop: every client connection, publisher
/// pacing and statistic lives on it, so the generator needs no locks and its cost per
/// message is a frame encode or decode. (`Bench` reports the loop's CPU time, which is how
/// to tell that the generator was not the bottleneck.)
final class BenchRun: @unchecked Sendable {
    struct Plan {
        struct Subscription {
            var endpoint: StompEndpoint
            var destination: String
            /// Topics: each subscriber is its own stream. Queues: all consumers of a queue share one.
            var stream: Int
        }

        struct Publisher {
            var endpoint: StompEndpoint
            var destination: String
            /// Subscriber streams that should receive each message of this publisher.
            var copies: Int
        }

        var subscriptions: [Subscription]
        var publishers: [Publisher]
    }

    struct Settings {
        var duration: TimeAmount
        /// Messages per second per publisher; nil for as fast as receipts allow.
        var rate: Int?
        var bodySize: Int
        /// A receipt is asked for every `window` messages; at most `inFlight` may be awaited.
        var window: Int
        var inFlight: Int
        /// Headers added to every SEND, the final one too, and to every SUBSCRIBE.
        var sendHeaders: [(String, String)] = []
        var subscribeHeaders: [(String, String)] = []
        /// Durable messages: every SEND says `persistent:true` and asks for a receipt (`window`
        /// is ignored), the time to each receipt is measured, and consumers acknowledge each
        /// message (`client-individual`), holding at most `prefetch` unacknowledged.
        var persistent = false
        var prefetch = 100
    }

    let loop: any EventLoop
    let plan: Plan
    let settings: Settings
    private(set) var statistics: BenchStatistics
    private(set) var published: [Int] = []
    private var publishers: [PublisherState] = []
    private var subscribers: [BenchConnection] = []
    private var running = false
    private(set) var closedUnexpectedly = 0
    private var body: ByteBuffer
    /// What every SEND carries besides its destination and the benchmark's own headers.
    private let sendHeaders: [(String, String)]
    /// `sendHeaders` as header lines, escaped once: they go into every benchmark SEND.
    private let extraSendHeaderLines: ByteBuffer
    /// Publish-to-receipt times of the receipts asked for (reported for persistent runs).
    private(set) var receipts: BenchReceiptLatency

    init(loop: any EventLoop, plan: Plan, settings: Settings) {
        self.loop = loop
        self.plan = plan
        self.settings = settings
        self.body = ByteBuffer(repeating: UInt8(ascii: "x"), count: settings.bodySize)
        self.sendHeaders = (settings.persistent ? [("persistent", "true")] : []) + settings.sendHeaders
        self.extraSendHeaderLines = BenchRun.headerLines(sendHeaders)
        self.receipts = BenchReceiptLatency(publishers: plan.publishers.count)
        self.statistics = BenchStatistics(
            streams: (plan.subscriptions.map(\.stream).max() ?? -1) + 1,
            subscribers: plan.subscriptions.count,
            publishers: plan.publishers.count
        )
    }

    // MARK: - Connections

    /// Connects, sends CONNECT and waits for CONNECTED.
    func open(_ endpoint: StompEndpoint) async throws -> BenchConnection {
        let connection = try await loop.submit { BenchConnection() }.get()
        _ = try await StompClientConnection.connect(to: endpoint, on: loop) { connection }
        let connected = loop.makePromise(of: Void.self)
        try await loop.submit {
            connection.send(
                StompFrame(.connect, headers: ["accept-version": "1.2", "host": "/", "heart-beat": "0,0"]),
                expecting: .connected,
                closedFirst: "\(endpoint) closed the connection",
                answered: connected
            )
        }.get()
        try await connected.futureResult.get()
        return connection
    }

    /// Opens every subscriber and waits for each SUBSCRIBE's receipt, so that the run starts
    /// with every subscription in place across the cluster.
    func subscribeAll() async throws {
        for (index, subscription) in plan.subscriptions.enumerated() {
            let connection = try await open(subscription.endpoint)
            let receipt = loop.makePromise(of: Void.self)
            try await loop.submit { [self] in
                connection.onFrame = { [self] frame in
                    switch frame.command {
                    case .receipt: receipt.succeed()
                    case .message: received(frame, subscriber: index, subscription: subscription)
                    case .error: receipt.fail(StompClientError("ERROR: \(frame.headers["message"] ?? "")"))
                    default: break
                    }
                }
                connection.subscribedDestination = Array(subscription.destination.utf8)
                connection.onBenchMessage = { [self] fields in
                    received(fields, subscriber: index, stream: subscription.stream)
                }
                connection.onClose = { [self] in if running { closedUnexpectedly += 1 } }
                connection.acknowledgesMessages = settings.persistent
                var headers: StompHeaders = [
                    "id": "s\(index)", "destination": subscription.destination, "receipt": "sub",
                ]
                if settings.persistent {
                    headers.add("ack", "client-individual")
                    headers.add("prefetch-count", String(settings.prefetch))
                }
                for (name, value) in settings.subscribeHeaders { headers.add(name, value) }
                connection.write(StompFrame(.subscribe, headers: headers))
                subscribers.append(connection)
            }.get()
            try await receipt.futureResult.get()
        }
    }

    func openPublishers() async throws {
        for (index, publisher) in plan.publishers.enumerated() {
            let connection = try await open(publisher.endpoint)
            try await loop.submit { [self] in
                let state = PublisherState(
                    index: index,
                    connection: connection,
                    run: self,
                    destination: publisher.destination
                )
                connection.onFrame = { [self] frame in
                    guard frame.command == .receipt else { return }
                    // Benchmark SENDs ask for receipt `r<sequence>`; the final one for `final`.
                    if let id = frame.headers["receipt-id"], id.hasPrefix("r"), let sequence = Int(id.dropFirst()) {
                        receipts.receiptArrived(
                            publisher: index,
                            sequence: sequence,
                            at: NIODeadline.now().uptimeNanoseconds
                        )
                    }
                    state.receiptArrived()
                }
                connection.onClose = { [self] in if running { closedUnexpectedly += 1 } }
                publishers.append(state)
                published.append(0)
            }.get()
        }
    }

    // MARK: - Running

    /// How long a run took.
    struct Timing {
        /// From starting the publishers until they were told to stop.
        var publishing: TimeAmount
        /// From the start of publishing until the last delivery arrived (publishing plus
        /// draining); nil when nothing arrived.
        var untilLastDelivery: TimeAmount?

        /// What throughput is counted over: until the last delivery, and never less than the
        /// publishing time (when the tail of a run is lost, its last delivery comes early).
        var delivering: TimeAmount {
            max(publishing, untilLastDelivery ?? publishing)
        }
    }

    /// Publishes for the configured duration, then waits (bounded) for stragglers.
    func run() async throws -> Timing {
        let started = NIODeadline.now()
        try await loop.submit { [self] in
            running = true
            for publisher in publishers { publisher.start(rate: settings.rate) }
        }.get()
        try await Task.sleep(for: .nanoseconds(settings.duration.nanoseconds))
        let elapsed = NIODeadline.now() - started
        try await loop.submit { [self] in
            running = false
            for publisher in publishers { publisher.stop() }
        }.get()
        // Everything sent has been acknowledged by the broker once the final receipts arrive;
        // deliveries may still be in flight: wait until they are all in, or 10 s.
        let expected = try await loop.submit { [self] in expectedDeliveries }.get()
        let deadline = NIODeadline.now() + .seconds(10)
        while NIODeadline.now() < deadline {
            // Persistent runs report every receipt too: a consumer on another node may get a
            // message before its publisher gets the receipt.
            let done = try await loop.submit { [self] in
                statistics.unique >= expected && (!settings.persistent || receipts.awaiting == 0)
            }.get()
            if done { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let lastDelivery = try await loop.submit { [self] in statistics.lastDeliveryAt }.get()
        return Timing(
            publishing: elapsed,
            untilLastDelivery: lastDelivery.map {
                .nanoseconds(Int64($0) - Int64(started.uptimeNanoseconds))
            }
        )
    }

    var expectedDeliveries: Int {
        zip(published, plan.publishers).reduce(0) { $0 + $1.0 * $1.1.copies }
    }

    func close() async {
        try? await loop.submit { [self] in
            for connection in subscribers { connection.close() }
            for publisher in publishers { publisher.connection.close() }
        }.get()
    }

    // MARK: - Messages

    fileprivate func encodeSend(destination: String, publisher: Int, sequence: Int, receipt: Bool) -> ByteBuffer {
        let sentAt = NIODeadline.now().uptimeNanoseconds
        if receipt { receipts.sent(publisher: publisher, sequence: sequence, at: sentAt) }
        var frame = ByteBuffer()
        frame.reserveCapacity(body.readableBytes + 160 + extraSendHeaderLines.readableBytes)
        frame.writeStaticString("SEND\ndestination:")
        frame.writeString(destination)
        frame.writeImmutableBuffer(extraSendHeaderLines)
        frame.writeStaticString("\nbench-pub:")
        frame.writeString(String(publisher))
        frame.writeStaticString("\nbench-seq:")
        frame.writeString(String(sequence))
        frame.writeStaticString("\nbench-ts:")
        frame.writeString(String(sentAt))
        if receipt {
            frame.writeStaticString("\nreceipt:r")
            frame.writeString(String(sequence))
        }
        frame.writeStaticString("\ncontent-length:")
        frame.writeString(String(body.readableBytes))
        frame.writeStaticString("\n\n")
        frame.writeImmutableBuffer(body)
        frame.writeInteger(UInt8(0))
        return frame
    }

    fileprivate func sent(by publisher: Int) { published[publisher] += 1 }

    /// The last SEND of a publisher, whose receipt says the broker has applied all it sent:
    /// with the same extra headers as the others (a broker may insist on them for the
    /// destination), but no benchmark headers, so subscribers leave it out of their counts.
    fileprivate func finalSend(destination: String) -> StompFrame {
        var headers: StompHeaders = ["destination": destination, "receipt": "final"]
        for (name, value) in sendHeaders { headers.add(name, value) }
        return StompFrame(.send, headers: headers, body: ByteBuffer())
    }

    /// Header lines (each after a line feed, as `encodeSend` writes them), with STOMP 1.2's
    /// escapes, so that a value may hold a colon or a backslash.
    private static func headerLines(_ headers: [(String, String)]) -> ByteBuffer {
        func escaped(_ text: String) -> String {
            var out = ""
            for character in text {
                switch character {
                case "\\": out += "\\\\"
                case ":": out += "\\c"
                default: out.append(character)
                }
            }
            return out
        }
        var lines = ByteBuffer()
        for (name, value) in headers {
            lines.writeString("\n\(escaped(name)):\(escaped(value))")
        }
        return lines
    }

    /// A benchmark MESSAGE the scanner could not take (no content-length, say), decoded.
    private func received(_ frame: StompFrame, subscriber: Int, subscription: Plan.Subscription) {
        guard let publisher = frame.headers["bench-pub"].flatMap({ Int($0) }),
            let sequence = frame.headers["bench-seq"].flatMap({ Int($0) }),
            let sentAt = frame.headers["bench-ts"].flatMap({ UInt64($0) })
        else { return }
        let fields = BenchMessageScanner.Fields(
            publisher: publisher,
            sequence: sequence,
            sentAt: sentAt,
            misrouted: frame.headers[StompHeader.destination] != subscription.destination
        )
        received(fields, subscriber: subscriber, stream: subscription.stream)
    }

    private func received(_ fields: BenchMessageScanner.Fields, subscriber: Int, stream: Int) {
        statistics.record(
            stream: stream,
            subscriber: subscriber,
            publisher: fields.publisher,
            sequence: fields.sequence,
            sentAt: fields.sentAt,
            receivedAt: NIODeadline.now().uptimeNanoseconds,
            misrouted: fields.misrouted
        )
    }
}

/// One publisher's pacing: as fast as receipt-based flow control allows, or a fixed rate.
/// Confined to the run's loop, like ``BenchRun``; its timers run there too.
private final class PublisherState: @unchecked Sendable {
    let index: Int
    let connection: BenchConnection
    unowned let run: BenchRun
    let destination: String
    private var sequence = 0
    private var awaiting = 0
    private var active = false
    private var rateTask: RepeatedTask?
    private var startedAt = NIODeadline.now()

    init(index: Int, connection: BenchConnection, run: BenchRun, destination: String) {
        self.index = index
        self.connection = connection
        self.run = run
        self.destination = destination
    }

    func start(rate: Int?) {
        active = true
        startedAt = .now()
        if let rate {
            rateTask = run.loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { [self] _ in
                let due = Int(Double(rate) * Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9)
                var budget = 1_000
                while active, sequence < due, budget > 0 {
                    // Paced: receipts don't set the pace, but persistent messages still ask for
                    // them, for their latency.
                    send(receipt: run.settings.persistent)
                    budget -= 1
                }
            }
        } else {
            pump()
        }
    }

    func stop() {
        active = false
        rateTask?.cancel()
        // A last receipt confirms that the broker has applied everything this publisher sent.
        connection.write(run.finalSend(destination: destination))
    }

    private func send(receipt: Bool) {
        connection.write(
            run.encodeSend(destination: destination, publisher: index, sequence: sequence, receipt: receipt)
        )
        sequence += 1
        run.sent(by: index)
    }

    /// Sends until the window of unanswered receipts is full, a little at a time so that the
    /// loop keeps reading (receipts and deliveries) in between.
    private func pump() {
        var budget = 256
        while active, awaiting < run.settings.inFlight, budget > 0 {
            let withReceipt = run.settings.persistent || (sequence + 1) % run.settings.window == 0
            if withReceipt { awaiting += 1 }
            send(receipt: withReceipt)
            budget -= 1
        }
        guard active, awaiting < run.settings.inFlight else { return }
        if connection.isWritable {
            run.loop.execute { [self] in pump() }
        } else {
            run.loop.scheduleTask(in: .milliseconds(1)) { [self] in pump() }
        }
    }

    func receiptArrived() {
        guard awaiting > 0 else { return }
        awaiting -= 1
        if active, run.settings.rate == nil { pump() }
    }
}
