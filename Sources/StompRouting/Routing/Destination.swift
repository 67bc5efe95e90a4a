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

    /// Parses a `destination` header.
    ///
    /// - Throws: ``StompProtocolError`` of kind `invalidDestination` for any other form.
    public init(parsing header: String) throws(StompProtocolError) {
        if header.hasPrefix(Self.topicPrefix), header.utf8.count > Self.topicPrefix.utf8.count {
            self = .topic(String(header.dropFirst(Self.topicPrefix.count)))
        } else if header.hasPrefix(Self.queuePrefix), header.utf8.count > Self.queuePrefix.utf8.count {
            self = .queue(String(header.dropFirst(Self.queuePrefix.count)))
        } else {
            throw StompProtocolError(
                .invalidDestination,
                "invalid destination",
                detail:
                    "'\(header.prefix(200))' is not a destination this broker serves; use /topic/NAME or /queue/NAME."
            )
        }
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

    /// True when this is a topic whose name contains a wildcard word, which only a
    /// subscription may use.
    public var isPattern: Bool {
        guard case .topic(let name) = self else { return false }
        // Most names have no wildcard character at all; only those need splitting into words.
        guard name.utf8.contains(where: { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "#") }) else { return false }
        return name.split(separator: ".", omittingEmptySubsequences: false).contains { $0 == "*" || $0 == "#" }
    }
}
