/// Where a frame is sent or subscribed, in RabbitMQ Web-STOMP's naming so that applications
/// move over unchanged.
public enum Destination: Hashable, Sendable, CustomStringConvertible {
    /// `/topic/NAME`: publish/subscribe. The name is a routing key of dot-separated words; a
    /// subscription may use `*` (exactly one word) and `#` (zero or more words).
    ///
    /// A topic of another exchange than amq.topic (`/exchange/NAME/KEY`) is the KEY behind one
    /// more word, the exchange's scope word (``TopicTrie/scopeMarker`` and the exchange's name),
    /// so one trie and one interest table serve every exchange, and a peer that predates
    /// exchanges treats such interest as a topic that none of its keys match.
    case topic(String)
    /// `/queue/NAME`: competing consumers; each message goes to one of them.
    case queue(String)

    static let topicPrefix = "/topic/"
    static let queuePrefix = "/queue/"
    /// RabbitMQ's names for the same two kinds (its STOMP plugin's destinations).
    static let amqTopicExchangePrefix = "/exchange/amq.topic/"
    static let amqQueuePrefix = "/amq/queue/"
    /// RabbitMQ's other exchanges; each name is a topic exchange of its own.
    static let exchangePrefix = "/exchange/"
    /// Where a reply to a temporary queue goes: the `reply-to` a responder reads.
    static let replyQueuePrefix = "/reply-queue/"

    /// Parses a `destination` header. Besides `/topic/NAME` and `/queue/NAME`, it takes
    /// RabbitMQ's `/exchange/amq.topic/KEY` (the topic KEY), `/amq/queue/NAME`,
    /// `/reply-queue/NAME` and a name without a prefix (each the queue NAME), and ActiveMQ's
    /// `>` as a topic's last word (the same as `#`). What a subscriber sees in a MESSAGE is the
    /// canonical form.
    ///
    /// - Throws: ``StompProtocolError`` of kind `invalidDestination` for any other form.
    public init(parsing header: String) throws(StompProtocolError) {
        try Self.checkText(header)
        if let name = Self.name(in: header, after: Self.topicPrefix)
            ?? Self.name(in: header, after: Self.amqTopicExchangePrefix)
        {
            self = .topic(Self.replacingTrailingGreaterThan(name))
        } else if let rest = Self.name(in: header, after: Self.exchangePrefix) {
            let (exchange, key) = try Self.exchangeAndKey(rest, in: header)
            self = .topic(Self.scopeWord(exchange) + "." + Self.replacingTrailingGreaterThan(key))
        } else if let name = Self.name(in: header, after: Self.queuePrefix)
            ?? Self.name(in: header, after: Self.amqQueuePrefix)
            ?? Self.name(in: header, after: Self.replyQueuePrefix)
        {
            self = .queue(name)
        } else if !header.isEmpty, !header.hasPrefix("/") {
            self = .queue(header)
        } else if header.hasPrefix(TemporaryQueues.requestPrefix) {
            throw StompProtocolError(
                .invalidDestination,
                "invalid destination",
                detail:
                    "'\(header.prefix(200))' asks for a temporary reply queue, which only a SEND's reply-to header may name; the replies then arrive on subscription '\(header.prefix(200))'."
            )
        } else {
            throw StompProtocolError(
                .invalidDestination,
                "invalid destination",
                detail:
                    "'\(header.prefix(200))' is not a destination this broker serves; use /topic/NAME, /queue/NAME, /exchange/EXCHANGE/KEY, /amq/queue/NAME, /reply-queue/NAME or a queue name without a prefix."
            )
        }
    }

    /// Parses the canonical form only, `/topic/NAME`, `/queue/NAME` or `/exchange/EXCHANGE/KEY`
    /// (EXCHANGE not amq.topic): what peers send on the link and what permissions are written
    /// in, where an alias would hide a mistake.
    public init(canonical text: String) throws(StompProtocolError) {
        try Self.checkText(text)
        if let name = Self.name(in: text, after: Self.topicPrefix) {
            self = .topic(name)
        } else if let name = Self.name(in: text, after: Self.queuePrefix) {
            self = .queue(name)
        } else if let rest = Self.name(in: text, after: Self.exchangePrefix) {
            let (exchange, key) = try Self.exchangeAndKey(rest, in: text)
            self = .topic(Self.scopeWord(exchange) + "." + key)
        } else {
            throw StompProtocolError(
                .invalidDestination,
                "invalid destination",
                detail: "'\(text.prefix(200))' is neither /topic/NAME, /queue/NAME nor /exchange/EXCHANGE/KEY."
            )
        }
    }

    /// A destination is text: no control characters, which also keeps the scope marker of
    /// an exchange's topics out of what a client can write.
    private static func checkText(_ text: String) throws(StompProtocolError) {
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else { return }
        throw StompProtocolError(
            .invalidDestination,
            "invalid destination",
            detail: "A destination may not contain control characters."
        )
    }

    /// Splits `EXCHANGE/KEY` (what follows `/exchange/`), refusing what this broker can't
    /// serve as RabbitMQ would: exchange names of letters, digits, `-`, `_`, `.` and `:`, and
    /// RabbitMQ's built-in exchanges of other types than topic (`amq.direct`, `amq.fanout`,
    /// `amq.headers`, `amq.match`), whose routing differs.
    static func exchangeAndKey(_ rest: String, in header: String) throws(StompProtocolError) -> (Substring, Substring) {
        func refuse(_ why: String) -> StompProtocolError {
            StompProtocolError(.invalidDestination, "invalid destination", detail: "'\(header.prefix(200))': \(why)")
        }
        guard let slash = rest.firstIndex(of: "/") else {
            throw refuse("a destination of an exchange needs a routing key: /exchange/EXCHANGE/KEY.")
        }
        let exchange = rest[..<slash]
        let key = rest[rest.index(after: slash)...]
        guard !exchange.isEmpty, exchange.utf8.allSatisfy(Self.isExchangeNameByte) else {
            throw refuse("an exchange's name is made of letters, digits, '-', '_', '.' and ':'.")
        }
        guard !key.isEmpty else {
            throw refuse("a destination of an exchange needs a routing key: /exchange/EXCHANGE/KEY.")
        }
        guard !exchange.hasPrefix("amq.") else {
            throw refuse(
                "\(exchange) is one of RabbitMQ's built-in exchanges; of those this broker serves amq.topic only, as /exchange/amq.topic/KEY or /topic/KEY (other exchange types route differently)."
            )
        }
        return (exchange, key)
    }

    private static func isExchangeNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
            UInt8(ascii: ":"):
            true
        default: false
        }
    }

    /// The first word of an exchange's topic keys: the scope marker, then the exchange's name
    /// with its dots replaced by the marker (a word has no dots).
    static func scopeWord(_ exchange: Substring) -> String {
        String(
            decoding: [TopicTrie<Int>.scopeMarker]
                + exchange.utf8.map { $0 == UInt8(ascii: ".") ? TopicTrie<Int>.scopeMarker : $0 },
            as: UTF8.self
        )
    }

    /// The exchange of a topic that isn't amq.topic's, with the scope word's length.
    private var scope: (exchange: String, wordLength: Int)? {
        guard case .topic(let key) = self, key.utf8.first == TopicTrie<Int>.scopeMarker else { return nil }
        let word = key.utf8.prefix { $0 != UInt8(ascii: ".") }
        let exchange = String(
            decoding: word.dropFirst().map { $0 == TopicTrie<Int>.scopeMarker ? UInt8(ascii: ".") : $0 },
            as: UTF8.self
        )
        return (exchange, word.count)
    }

    /// The exchange's name for `/exchange/NAME/KEY`; nil for amq.topic's topics and for queues.
    public var exchange: String? { scope?.exchange }

    private static func name(in header: String, after prefix: String) -> String? {
        guard header.hasPrefix(prefix), header.utf8.count > prefix.utf8.count else { return nil }
        return String(header.dropFirst(prefix.count))
    }

    /// ActiveMQ's `>` (this word and all after it) where it can only be a wildcard: alone as
    /// the last word.
    private static func replacingTrailingGreaterThan(_ name: some StringProtocol) -> String {
        if name == ">" { return "#" }
        guard name.hasSuffix(".>") else { return String(name) }
        return name.dropLast() + "#"
    }

    /// The header value: `/topic/NAME`, `/queue/NAME` or `/exchange/EXCHANGE/KEY`.
    public var description: String {
        prefix + name
    }

    /// The name after the prefix: a queue's name, or a topic's routing key.
    public var name: String {
        switch self {
        case .queue(let name): return name
        case .topic(let key):
            guard let scope else { return key }
            return String(key[key.utf8.index(key.utf8.startIndex, offsetBy: scope.wordLength + 1)...])
        }
    }

    /// The prefix of the header value: `/topic/`, `/queue/` or `/exchange/EXCHANGE/`.
    public var prefix: String {
        switch self {
        case .topic: return scope.map { Self.exchangePrefix + $0.exchange + "/" } ?? Self.topicPrefix
        case .queue: return Self.queuePrefix
        }
    }

    /// Dot-separated words of a topic's routing key (an exchange's scope word not counted); 1
    /// for a queue, whose name is not split.
    public var wordCount: Int {
        guard case .topic(let key) = self else { return 1 }
        var count = key.utf8.first == TopicTrie<Int>.scopeMarker ? 0 : 1
        for byte in key.utf8 where byte == UInt8(ascii: ".") { count += 1 }
        return count
    }

    /// True for a temporary reply queue (``TemporaryQueues``): a SEND to it needs no
    /// permission, since only who was given its name can name it, and no client may subscribe.
    public var isTemporaryReplyQueue: Bool {
        guard case .queue(let name) = self else { return false }
        return TemporaryQueues.isPrivate(name)
    }

    /// True when this is a topic whose name contains a wildcard word, which only a
    /// subscription may use.
    public var isPattern: Bool {
        guard case .topic(let name) = self else { return false }
        // Most names have no wildcard character at all; only those need splitting into words.
        guard name.utf8.contains(where: { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "#") }) else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).contains { $0 == "*" || $0 == "#" }
    }
}

// The admin API pages destinations in one stable order without building the text of every
// destination: queues by name, then topics by routing key (another exchange's topics, whose
// key begins with its scope word, ahead of amq.topic's).
extension Destination: Comparable {
    public static func < (lhs: Destination, rhs: Destination) -> Bool {
        switch (lhs, rhs) {
        case (.queue(let a), .queue(let b)), (.topic(let a), .topic(let b)): a < b
        case (.queue, .topic): true
        case (.topic, .queue): false
        }
    }
}
