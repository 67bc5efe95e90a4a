/// RabbitMQ's temporary reply queues, for request/reply.
///
/// A SEND with `reply-to:/temp-queue/NAME` makes a queue of its connection's own, named
/// `amq.gen-` and 128 random bits, and subscribes the connection to it (subscription id
/// `/temp-queue/NAME`, as RabbitMQ names it); the responder sees `reply-to` rewritten to
/// `/reply-queue/amq.gen-…`. Further SENDs of that connection naming `/temp-queue/NAME` reuse
/// the queue. The name is the capability: anyone who holds it may send to it, no client may
/// subscribe to it, and it is deleted with its connection.
struct TemporaryQueues {
    /// The `reply-to` prefix that asks for a temporary queue.
    static let requestPrefix = "/temp-queue/"
    /// The prefix of every private queue's name, which no client may subscribe to.
    static let privatePrefix = "amq.gen-"

    /// Temporary queues one connection may hold.
    let limitPerConnection: Int
    /// Each connection's temporary queues: the name it asked for -> the private queue.
    /// Entries go with their connection (``remove(_:)``), and ``limitPerConnection`` bounds each.
    private var byConnection: [ConnectionID: [String: String]] = [:]
    private var random: any RandomNumberGenerator

    init(limitPerConnection: Int, random: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.limitPerConnection = limitPerConnection
        self.random = random
    }

    /// True for the queue of a temporary reply queue.
    static func isPrivate(_ queue: String) -> Bool {
        queue.hasPrefix(privatePrefix)
    }

    /// The temporary queue's name in a `reply-to` header value, or `nil` when the value asks
    /// for none.
    static func requestedName(in replyTo: String) -> String? {
        guard replyTo.hasPrefix(requestPrefix), replyTo.utf8.count > requestPrefix.utf8.count else { return nil }
        return String(replyTo.dropFirst(requestPrefix.count))
    }

    /// The private queue `/temp-queue/name` stands for on `connection`, made on first use.
    ///
    /// - Returns: the queue's name, and whether it was made now (and needs its subscription).
    /// - Throws: ``StompProtocolError`` of kind `tooManyTemporaryQueues` past the limit.
    mutating func queue(
        named name: String,
        for connection: ConnectionID
    ) throws(StompProtocolError) -> (queue: String, isNew: Bool) {
        if let queue = byConnection[connection]?[name] { return (queue, false) }
        guard byConnection[connection, default: [:]].count < limitPerConnection else {
            throw StompProtocolError(
                .tooManyTemporaryQueues,
                "too many temporary queues",
                detail:
                    "A connection may hold at most \(limitPerConnection) temporary reply queues (limits.temp-queues); reuse a /temp-queue/ name."
            )
        }
        let queue = Self.privatePrefix + randomSuffix()
        byConnection[connection, default: [:]][name] = queue
        return (queue, true)
    }

    /// Forgets `connection`'s temporary queues, once it closed.
    mutating func remove(_ connection: ConnectionID) {
        byConnection[connection] = nil
    }

    /// Temporary queues held over all connections.
    var count: Int { byConnection.values.reduce(0) { $0 + $1.count } }

    /// 128 random bits in hex: a name no one guesses, so it can stand in for a permission.
    private mutating func randomSuffix() -> String {
        let words = [random.next() as UInt64, random.next() as UInt64]
        return words.map { word in
            let hex = String(word, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }
}
