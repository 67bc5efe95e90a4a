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

    @Test("the canonical form takes no alias", arguments: ["jobs", "/amq/queue/jobs", "/exchange/amq.topic/a"])
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
}
