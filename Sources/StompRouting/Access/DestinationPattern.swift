/// A destination pattern of a permission: `/topic/prices.#`, `/topic/chat.*.eu`,
/// `/queue/jobs`, `/queue/jobs.*`, `/exchange/logs/#`, `/exchange/*/#`. Words are
/// dot-separated; `*` stands for exactly one word and `#` for zero or more, in queue names too
/// (where a client's own names are always literal). An exchange's name is literal, or `*` for
/// every exchange (no exchange is named `*`); `/topic/` patterns cover amq.topic's topics only.
public struct DestinationPattern: Sendable, Hashable, CustomStringConvertible {
    enum Word: Hashable, Sendable {
        case literal(Substring)
        /// `*`: exactly one word.
        case one
        /// `#`: zero or more words.
        case any
    }

    /// Which destinations the pattern's words are about.
    enum Scope: Hashable, Sendable {
        case queues
        /// `/topic/`: amq.topic's topics.
        case topics
        /// `/exchange/NAME/`: the topics of one exchange.
        case exchange(String)
        /// `/exchange/*/`: the topics of every exchange but amq.topic.
        case everyExchange
    }

    let scope: Scope
    let words: [Word]
    public let description: String

    /// - Throws: ``StompProtocolError`` (`invalidDestination`) unless the text starts with
    ///   `/topic/`, `/queue/` or `/exchange/NAME/` and names something after it.
    public init(parsing text: String) throws(StompProtocolError) {
        description = text
        if text.hasPrefix(Destination.exchangePrefix + "*/") {
            let key = String(text.dropFirst(Destination.exchangePrefix.count + 2))
            _ = try Destination(canonical: Destination.topicPrefix + key)  // checks the key as a topic's
            scope = .everyExchange
            words = Self.words(of: key, wildcards: true)
            return
        }
        let destination = try Destination(canonical: text)
        switch destination {
        case .queue(let name):
            scope = .queues
            words = Self.words(of: name, wildcards: true)
        case .topic:
            scope = destination.exchange.map(Scope.exchange) ?? .topics
            words = Self.words(of: destination.name, wildcards: true)
        }
    }

    /// Whether every destination that `destination` can stand for matches this pattern: for a
    /// SEND, the destination itself; for a SUBSCRIBE to a topic pattern, each routing key the
    /// subscription can match (`/topic/prices.*` is covered by `/topic/prices.#`, `/topic/#`
    /// is not). Queue names are never patterns.
    ///
    /// The check takes at most (pattern words + 1) x (destination words + 1) steps. It is
    /// exact where neither side has a word after a `#` (the usual shapes: `prices.#`,
    /// `chat.*.eu`); where one has, it may refuse a subscription that is in fact covered
    /// (`/topic/a.#.a` under `/topic/a.*.#`), never allow one that isn't: a refusal is the
    /// safe mistake.
    public func covers(_ destination: Destination) -> Bool {
        let wanted: [Word]
        switch destination {
        case .topic:
            switch (scope, destination.exchange) {
            case (.topics, nil), (.everyExchange, _?): break
            case (.exchange(let name), let exchange?) where name == exchange: break
            default: return false
            }
            let words = Self.words(of: destination.name, wildcards: true)
            // A routing key has at least one word, so `#` alone stands for what `*.#` does;
            // spelt that way, the table sees the word it must find room for.
            wanted = words.allSatisfy { $0 == .any } ? [.one, .any] : words
        case .queue(let name):
            guard scope == .queues else { return false }
            wanted = Self.words(of: name, wildcards: false)
        }
        return Self.contains(words, wanted)
    }

    static func words(of name: String, wildcards: Bool) -> [Word] {
        name.split(separator: ".", omittingEmptySubsequences: false).map { word in
            switch word {
            case "*" where wildcards: .one
            case "#" where wildcards: .any
            default: .literal(word)
            }
        }
    }

    /// Whether every key `inner` matches is matched by `outer`, by dynamic programming over
    /// suffixes: `covered[i][j]` says whether `inner[i...]` is covered by `outer[j...]`.
    static func contains(_ outer: [Word], _ inner: [Word]) -> Bool {
        let width = outer.count + 1
        var covered = [Bool](repeating: false, count: (inner.count + 1) * width)
        func index(_ i: Int, _ j: Int) -> Int { i * width + j }
        for i in stride(from: inner.count, through: 0, by: -1) {
            for j in stride(from: outer.count, through: 0, by: -1) {
                let result: Bool
                if j == outer.count {
                    result = i == inner.count
                } else {
                    switch outer[j] {
                    case .any:
                        // `#` matches nothing more, or takes the next inner word (whatever
                        // that word stands for, another `#` included) and stays.
                        result = covered[index(i, j + 1)] || (i < inner.count && covered[index(i + 1, j)])
                    case .one:
                        // One word: an inner literal or `*`, never an inner `#` (which may be
                        // no word or several).
                        guard i < inner.count, inner[i] != .any else {
                            result = false
                            break
                        }
                        result = covered[index(i + 1, j + 1)]
                    case .literal(let word):
                        guard i < inner.count, inner[i] == .literal(word) else {
                            result = false
                            break
                        }
                        result = covered[index(i + 1, j + 1)]
                    }
                }
                covered[index(i, j)] = result
            }
        }
        return covered[index(0, 0)]
    }
}

/// What one client may read (SUBSCRIBE) and write (SEND), as destination patterns.
public struct DestinationPermissions: Sendable, Hashable {
    public var read: [DestinationPattern]
    public var write: [DestinationPattern]

    public init(read: [DestinationPattern], write: [DestinationPattern]) {
        self.read = read
        self.write = write
    }

    /// Reads and writes everything: what an anonymous client gets where anonymous access is
    /// allowed, and what every client had before permissions existed.
    public static let everything = try! DestinationPermissions(
        read: ["/topic/#", "/queue/#", "/exchange/*/#"],
        write: ["/topic/#", "/queue/#", "/exchange/*/#"]
    )

    /// - Throws: ``StompProtocolError`` for a pattern that isn't a destination.
    public init(read: [String], write: [String]) throws(StompProtocolError) {
        var readPatterns: [DestinationPattern] = []
        for text in read { readPatterns.append(try DestinationPattern(parsing: text)) }
        var writePatterns: [DestinationPattern] = []
        for text in write { writePatterns.append(try DestinationPattern(parsing: text)) }
        self.init(read: readPatterns, write: writePatterns)
    }

    /// A SUBSCRIBE: every destination the subscription can receive from must be readable
    /// under one read pattern.
    public func mayRead(_ destination: Destination) -> Bool {
        read.contains { $0.covers(destination) }
    }

    /// A SEND (never a pattern: a SEND's destination is a routing key).
    public func mayWrite(_ destination: Destination) -> Bool {
        write.contains { $0.covers(destination) }
    }
}
