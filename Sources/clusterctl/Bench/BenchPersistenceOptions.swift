import ArgumentParser

/// The options of `clusterctl bench` that the persistent scenario adds: how many messages a
/// consumer may hold unacknowledged, and extra SEND and SUBSCRIBE headers. Another broker may
/// need its own headers for the same test: RabbitMQ, for instance, makes a `/queue/` a quorum
/// queue only when every SEND and SUBSCRIBE that declares it says `x-queue-type:quorum`.
struct BenchPersistenceOptions: ParsableArguments {
    @Option(
        help: "Persistent scenario: messages a consumer may hold unacknowledged (its SUBSCRIBE's prefetch-count)."
    )
    var prefetch = 100

    @Option(
        name: .customLong("send-header"),
        help: "A header NAME:VALUE added to every SEND (repeatable; any scenario)."
    )
    var sendHeaders: [String] = []

    @Option(
        name: .customLong("subscribe-header"),
        help: "A header NAME:VALUE added to every SUBSCRIBE (repeatable; any scenario)."
    )
    var subscribeHeaders: [String] = []

    func validate() throws {
        guard prefetch > 0 else { throw ValidationError("--prefetch must be positive") }
        for header in sendHeaders + subscribeHeaders { _ = try Self.parse(header) }
    }

    /// `--send-header` values, split into (name, value).
    var extraSendHeaders: [(String, String)] { sendHeaders.compactMap { try? Self.parse($0) } }

    /// `--subscribe-header` values, split into (name, value).
    var extraSubscribeHeaders: [(String, String)] { subscribeHeaders.compactMap { try? Self.parse($0) } }

    /// Splits `name:value` at its first colon; the value may hold more colons.
    static func parse(_ header: String) throws -> (String, String) {
        guard let colon = header.firstIndex(of: ":"), colon != header.startIndex else {
            throw ValidationError("a header must be NAME:VALUE, not '\(header)'")
        }
        let name = String(header[..<colon])
        let value = String(header[header.index(after: colon)...])
        guard !name.contains(where: \.isNewline), !value.contains(where: \.isNewline) else {
            throw ValidationError("a header may not contain a line break: '\(header)'")
        }
        return (name, value)
    }
}

/// What the persistent scenario adds to `Bench.Report`.
struct BenchPersistentReport: Codable {
    /// Receipts a publisher could await at once (`--in-flight`): every SEND asks for one.
    var receiptsInFlight: Int
    /// Unacknowledged messages a consumer could hold (`--prefetch`).
    var prefetch: Int
    /// Benchmark SENDs whose RECEIPT arrived.
    var receipted: Int
    /// Benchmark SENDs whose RECEIPT never came: the broker did not confirm them.
    var unanswered: Int
    /// From sending a message until its RECEIPT arrived, on the generator's clock: how long
    /// the broker took to make it durable (for us: on disk on a majority of its replicas).
    var receiptLatencyMicroseconds: [String: Double]
}
