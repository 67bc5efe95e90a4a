/// Where a frame is sent or subscribed, in RabbitMQ Web-STOMP's naming so that applications
/// move over unchanged.
public enum Destination: Hashable, Sendable, CustomStringConvertible {
    /// `/topic/NAME`: publish/subscribe. The name is a routing key of dot-separated words; a
    /// subscription may use `*` (exactly one word) and `#` (zero or more words).
    case topic(String)
    /// `/queue/NAME`: competing consumers; each message goes to one of them.
    case queue(String)

    static let topicPrefix = "/topic/"
    static let queuePrefix = "/queue/"
    /// RabbitMQ's names for the same two kinds (its STOMP plugin's destinations).
    static let amqTopicExchangePrefix = "/exchange/amq.topic/"
    static let amqQueuePrefix = "/amq/queue/"
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
        if let name = Self.name(in: header, after: Self.topicPrefix)
            ?? Self.name(in: header, after: Self.amqTopicExchangePrefix)
        {
            self = .topic(Self.replacingTrailingGreaterThan(name))
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
                    "'\(header.prefix(200))' is not a destination this broker serves; use /topic/NAME, /queue/NAME, /exchange/amq.topic/KEY, /amq/queue/NAME, /reply-queue/NAME or a queue name without a prefix."
            )
        }
    }

    /// Parses the canonical form only, `/topic/NAME` or `/queue/NAME`: what peers send on the
    /// link and what permissions are written in, where an alias would hide a mistake.
    public init(canonical text: String) throws(StompProtocolError) {
        if let name = Self.name(in: text, after: Self.topicPrefix) {
            self = .topic(name)
        } else if let name = Self.name(in: text, after: Self.queuePrefix) {
            self = .queue(name)
        } else {
            throw StompProtocolError(
                .invalidDestination,
                "invalid destination",
                detail: "'\(text.prefix(200))' is neither /topic/NAME nor /queue/NAME."
            )
        }
    }

    private static func name(in header: String, after prefix: String) -> String? {
        guard header.hasPrefix(prefix), header.utf8.count > prefix.utf8.count else { return nil }
        return String(header.dropFirst(prefix.count))
    }

    /// ActiveMQ's `>` (this word and all after it) where it can only be a wildcard: alone as
    /// the last word.
    private static func replacingTrailingGreaterThan(_ name: String) -> String {
        if name == ">" { return "#" }
        guard name.hasSuffix(".>") else { return name }
        return name.dropLast() + "#"
    }

    /// The header value: `/topic/NAME` or `/queue/NAME`.
    public var description: String {
        prefix + name
    }

    /// The name after the `/topic/` or `/queue/` prefix.
    public var name: String {
        switch self {
        case .topic(let name), .queue(let name): return name
        }
    }

    /// The prefix of the header value: `/topic/` or `/queue/`.
    public var prefix: String {
        switch self {
        case .topic: return Self.topicPrefix
        case .queue: return Self.queuePrefix
        }
    }

    /// Dot-separated words of a topic's name; 1 for a queue, whose name is not split.
    public var wordCount: Int {
        guard case .topic(let name) = self else { return 1 }
        var count = 1
        for byte in name.utf8 where byte == UInt8(ascii: ".") { count += 1 }
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

// The admin API lists destinations in the order of their text: `/queue/...` before
// `/topic/...` (q < t, prefixes of equal length), then by name. Comparing the kind and the
// name gives that order without building the text of every destination.
extension Destination: Comparable {
    public static func < (lhs: Destination, rhs: Destination) -> Bool {
        switch (lhs, rhs) {
        case (.queue(let a), .queue(let b)), (.topic(let a), .topic(let b)): a < b
        case (.queue, .topic): true
        case (.topic, .queue): false
        }
    }
}
