import Testing

@testable import StompRouting

@Suite struct DestinationPermissionsTests {
    private func pattern(_ text: String) throws -> DestinationPattern { try DestinationPattern(parsing: text) }
    private func topic(_ name: String) -> Destination { .topic(name) }

    @Test func aSubscriptionIsReadableOnlyIfEverythingItMatchesIs() throws {
        let prices = try pattern("/topic/prices.#")
        #expect(prices.covers(topic("prices.eur")))
        #expect(prices.covers(topic("prices")))  // `#` may be no word at all
        #expect(prices.covers(topic("prices.*")))
        #expect(prices.covers(topic("prices.*.spot")))
        #expect(prices.covers(topic("prices.#")))
        #expect(!prices.covers(topic("#")))
        #expect(!prices.covers(topic("*.eur")))
        #expect(!prices.covers(topic("pricesx.eur")))
        #expect(!prices.covers(topic("chat.prices")))

        let onePair = try pattern("/topic/prices.*")
        #expect(onePair.covers(topic("prices.eur")))
        #expect(onePair.covers(topic("prices.*")))
        #expect(!onePair.covers(topic("prices.#")))  // could be no word, or two
        #expect(!onePair.covers(topic("prices")))
        #expect(!onePair.covers(topic("prices.eur.spot")))
    }

    @Test func queuesAreNamedLiterallyAndTopicsAndQueuesNeverMix() throws {
        let jobs = try pattern("/queue/jobs")
        #expect(jobs.covers(.queue("jobs")))
        #expect(!jobs.covers(.queue("jobs2")))
        #expect(!jobs.covers(.topic("jobs")))
        let regional = try pattern("/queue/jobs.*")
        #expect(regional.covers(.queue("jobs.eu")))
        #expect(!regional.covers(.queue("jobs")))
        // A queue's own name is never a pattern: a queue literally named `*` is not `jobs.eu`.
        #expect(try pattern("/queue/*").covers(.queue("*")))
        #expect(!jobs.covers(.queue("#")))
        #expect(try pattern("/queue/#").covers(.queue("#")))
        #expect(!(try pattern("/topic/#")).covers(.queue("jobs")))
    }

    @Test func permissionsTakeAnyMatchingPattern() throws {
        let alice = try DestinationPermissions(read: ["/topic/prices.#", "/queue/jobs"], write: ["/queue/jobs"])
        #expect(alice.mayRead(.topic("prices.eur")))
        #expect(alice.mayRead(.queue("jobs")))
        #expect(!alice.mayRead(.topic("#")))
        #expect(alice.mayWrite(.queue("jobs")))
        #expect(!alice.mayWrite(.topic("prices.eur")))
        #expect(DestinationPermissions.everything.mayRead(.topic("#")))
        #expect(DestinationPermissions.everything.mayWrite(.queue("anything.at.all")))
        #expect(throws: StompProtocolError.self) { try DestinationPermissions(read: ["prices.#"], write: []) }
        #expect(throws: StompProtocolError.self) { try DestinationPermissions(read: [], write: ["/exchange/x"]) }
        #expect(throws: StompProtocolError.self) { try DestinationPermissions(read: [], write: ["/topic/\u{1}"]) }
    }

    @Test func exchangesAreNamedInPermissionsAndNeverReachedFromTopics() throws {
        let logs = try Destination(parsing: "/exchange/logs/app.error")
        let logsPattern = try Destination(parsing: "/exchange/logs/app.*")
        let audit = try Destination(parsing: "/exchange/audit/app.error")
        #expect(try pattern("/exchange/logs/#").covers(logs))
        #expect(try pattern("/exchange/logs/app.*").covers(logsPattern))
        #expect(try !pattern("/exchange/logs/app.*").covers(try Destination(parsing: "/exchange/logs/#")))
        #expect(try !pattern("/exchange/logs/#").covers(audit))
        #expect(try !pattern("/topic/#").covers(logs))
        #expect(try !pattern("/topic/#").covers(logsPattern))
        #expect(try !pattern("/exchange/logs/#").covers(.topic("app.error")))
        #expect(try !pattern("/exchange/logs/#").covers(.queue("logs")))
        // `*` as the exchange: every exchange but amq.topic, whose topics `/topic/` names.
        #expect(try pattern("/exchange/*/app.#").covers(logs))
        #expect(try pattern("/exchange/*/app.#").covers(audit))
        #expect(try !pattern("/exchange/*/#").covers(.topic("app.error")))
        #expect(try !pattern("/exchange/*/other.#").covers(logs))
        #expect(DestinationPermissions.everything.mayRead(logsPattern))
        #expect(DestinationPermissions.everything.mayWrite(audit))
        // A permission names the canonical form: amq.topic's alias, a missing key, a built-in
        // exchange of another type are mistakes.
        for text in ["/exchange/amq.topic/#", "/exchange/logs", "/exchange/*/", "/exchange/amq.direct/#"] {
            #expect(throws: StompProtocolError.self) { try pattern(text) }
        }
    }

    /// Adversarial shapes that make naive backtracking exponential stay cheap: the table has
    /// (words + 1)^2 cells.
    @Test func adversarialPatternsAreDecidedInPolynomialTime() throws {
        let hashes = Array(repeating: "#", count: 64).joined(separator: ".")
        let hashesThenMiss = try pattern("/topic/" + Array(repeating: "#.a", count: 32).joined(separator: ".") + ".b")
        #expect(!hashesThenMiss.covers(topic(Array(repeating: "a", count: 63).joined(separator: "."))))
        #expect(!hashesThenMiss.covers(topic(hashes)))
        #expect(try pattern("/topic/" + hashes).covers(topic(hashes)))
        #expect(try pattern("/topic/#").covers(topic(hashes)))
        let stars = Array(repeating: "*", count: 64).joined(separator: ".")
        #expect(try pattern("/topic/" + stars).covers(topic(Array(repeating: "x", count: 64).joined(separator: "."))))
        #expect(!(try pattern("/topic/" + stars)).covers(topic(hashes)))
    }

    /// Whatever the check allows is right: over small alphabets, every key (of up to six words)
    /// that the inner pattern matches, the outer matches too. And where neither pattern has a
    /// word after a `#` (permissions like `prices.#`, `chat.*.eu`, subscriptions like
    /// `prices.*`), it is exact; it refuses some containments only where a `#` stands before
    /// other words (`a.#.a` under `a.*.#`).
    @Test func agreesWithMatchingEveryKeyOverSmallAlphabets() throws {
        let tokens = ["a", "b", "*", "#"]
        var patterns: [String] = []
        func build(_ prefix: [String]) {
            if !prefix.isEmpty { patterns.append(prefix.joined(separator: ".")) }
            if prefix.count < 3 { for token in tokens { build(prefix + [token]) } }
        }
        build([])
        var keys: [String] = []
        func keysOf(_ prefix: [String]) {
            if !prefix.isEmpty { keys.append(prefix.joined(separator: ".")) }
            if prefix.count < 6 { for word in ["a", "b", "c"] { keysOf(prefix + [word]) } }
        }
        keysOf([])
        let matchesOf = Dictionary(
            uniqueKeysWithValues: patterns.map { pattern in
                (pattern, Set(keys.filter { TopicTrie<Int>.matches(pattern: pattern, key: $0) }))
            }
        )
        func hashOnlyAtTheEnd(_ pattern: String) -> Bool { !pattern.dropLast().contains("#") }
        var exactPairs = 0
        for outer in patterns {
            let permission = try pattern("/topic/" + outer)
            for inner in patterns {
                let allowed = permission.covers(topic(inner))
                let contained = matchesOf[inner]!.isSubset(of: matchesOf[outer]!)
                if allowed {
                    #expect(contained, "/topic/\(outer) was said to cover /topic/\(inner)")
                }
                if hashOnlyAtTheEnd(outer), hashOnlyAtTheEnd(inner) {
                    exactPairs += 1
                    #expect(
                        allowed == contained,
                        "/topic/\(outer) over /topic/\(inner): allowed \(allowed), contained \(contained)"
                    )
                }
            }
        }
        #expect(exactPairs > 1_000)
    }
}
