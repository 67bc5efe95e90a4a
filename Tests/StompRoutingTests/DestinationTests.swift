import Testing

@testable import StompRouting

/// The destinations a client may name: ours, and RabbitMQ's and ActiveMQ's names for the
/// same, so that their applications move over unchanged.
@Suite struct DestinationTests {
    @Test(
        "RabbitMQ's and ActiveMQ's names mean our destinations",
        arguments: [
            ("/topic/a.b", Destination.topic("a.b")),
            ("/queue/jobs", .queue("jobs")),
            ("/exchange/amq.topic/a.b", .topic("a.b")),
            ("/exchange/amq.topic/a.*", .topic("a.*")),
            ("/amq/queue/jobs", .queue("jobs")),
            ("/reply-queue/amq.gen-1f", .queue("amq.gen-1f")),
            ("jobs", .queue("jobs")),
            ("queue/a", .queue("queue/a")),
            ("/topic/prices.>", .topic("prices.#")),
            ("/topic/>", .topic("#")),
            ("/exchange/amq.topic/prices.>", .topic("prices.#")),
        ]
    )
    func aliases(header: String, expected: Destination) throws {
        #expect(try Destination(parsing: header) == expected)
    }

    @Test(
        "'>' is a wildcard only alone as the last word, elsewhere part of a name",
        arguments: [("/topic/a>", "a>"), ("/topic/>.a", ">.a"), ("/topic/a.b>", "a.b>")]
    )
    func greaterThanInNames(header: String, name: String) throws {
        #expect(try Destination(parsing: header) == .topic(name))
    }

    @Test(
        "the canonical form takes no alias",
        arguments: ["jobs", "/amq/queue/jobs", "/exchange/amq.topic/a", "/topic/a.>x\u{1}"]
    )
    func canonicalOnly(header: String) {
        #expect(throws: StompProtocolError.self) { try Destination(canonical: header) }
    }

    @Test("/temp-queue/ is no destination of its own: it goes in a SEND's reply-to")
    func temporaryQueueRequests() {
        #expect {
            try Destination(parsing: "/temp-queue/replies")
        } throws: {
            ($0 as? StompProtocolError)?.detail.contains("only a SEND's reply-to header may name") == true
        }
    }

    @Test("a MESSAGE names the canonical form")
    func canonicalDescription() throws {
        #expect(try Destination(parsing: "/exchange/amq.topic/a.b").description == "/topic/a.b")
        #expect(try Destination(parsing: "jobs").description == "/queue/jobs")
    }

    @Test(
        "/exchange/NAME/KEY is a topic of the exchange NAME, named so in a MESSAGE",
        arguments: [
            ("/exchange/logs/app.error", "logs", "app.error"),
            ("/exchange/logs/app.*", "logs", "app.*"),
            ("/exchange/logs/app.>", "logs", "app.#"),
            ("/exchange/my.ex:1_-/k", "my.ex:1_-", "k"),
            ("/exchange/logs/a/b", "logs", "a/b"),
        ]
    )
    func exchanges(header: String, exchange: String, key: String) throws {
        let destination = try Destination(parsing: header)
        #expect(destination.exchange == exchange)
        #expect(destination.name == key)
        #expect(destination.description == "/exchange/\(exchange)/\(key)")
        #expect(try Destination(canonical: destination.description) == destination)
        #expect(destination.wordCount == key.split(separator: ".", omittingEmptySubsequences: false).count)
        #expect(destination != .topic(key))
    }

    @Test("exchanges of one name are one exchange, and differ from every other and from amq.topic")
    func exchangesAreDistinct() throws {
        let logs = try Destination(parsing: "/exchange/logs/a")
        #expect(try Destination(parsing: "/exchange/logs/a") == logs)
        #expect(try Destination(parsing: "/exchange/logs.x/a") != Destination(parsing: "/exchange/logs/x.a"))
        #expect(try Destination(parsing: "/exchange/audit/a") != logs)
        #expect(try Destination(parsing: "/topic/a") != logs)
        #expect(try Destination(parsing: "/topic/a").exchange == nil)
    }

    @Test(
        "what no topic exchange of this broker serves is refused, and says why",
        arguments: [
            ("/exchange/logs", "needs a routing key"),
            ("/exchange/logs/", "needs a routing key"),
            ("/exchange//key", "letters, digits"),
            ("/exchange/lo gs/key", "letters, digits"),
            ("/exchange/l*/key", "letters, digits"),
            ("/exchange/amq.direct/key", "built-in exchanges"),
            ("/exchange/amq.fanout/key", "built-in exchanges"),
            ("/exchange/amq.headers/key", "built-in exchanges"),
            ("/topic/a\u{1}b", "control characters"),
            ("/queue/a\tb", "control characters"),
            ("/exchange/logs/\u{1}a", "control characters"),
        ]
    )
    func refusedExchanges(header: String, why: String) {
        #expect {
            try Destination(parsing: header)
        } throws: {
            ($0 as? StompProtocolError)?.detail.contains(why) == true
        }
    }
}
