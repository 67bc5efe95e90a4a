import Testing

@testable import StompRouting

@Suite("TopicTrie")
struct TopicTrieTests {
    private func matches(_ trie: TopicTrie<String>, _ key: String) -> Set<String> {
        var result = Set<String>()
        trie.matches(key, into: &result)
        return result
    }

    /// Whether the trie's root node holds nothing at all, read through reflection because the
    /// nodes are private: proof that removal pruned every node it created.
    private func rootIsEmpty(_ trie: TopicTrie<String>) throws -> Bool {
        let root = try #require(Mirror(reflecting: trie).children.first { $0.label == "root" }?.value)
        var empty = true
        for child in Mirror(reflecting: root).children {
            switch child.label {
            case "children":
                let dictionary = try #require(child.value as? [Substring: Any])
                empty = empty && dictionary.isEmpty
            case "star", "hash":
                empty = empty && Mirror(reflecting: child.value).children.isEmpty  // Optional.none has no children.
            case "values":
                let values = try #require(child.value as? Set<String>)
                empty = empty && values.isEmpty
            default:
                break
            }
        }
        return empty
    }

    @Test(
        "RabbitMQ topic semantics",
        arguments: [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.b", "a.b.c", false),
            ("a.b", "a", false),
            ("*", "a", true),
            ("*", "a.b", false),
            ("a.*", "a.b", true),
            ("a.*", "a", false),
            ("a.*", "a.b.c", false),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("a.*.c", "a.b.b.c", false),
            ("*.*", "a.b", true),
            ("*.*", "a", false),
            ("#", "a", true),
            ("#", "a.b.c", true),
            ("a.#", "a", true),
            ("a.#", "a.b", true),
            ("a.#", "a.b.c", true),
            ("a.#", "b.a", false),
            ("#.c", "c", true),
            ("#.c", "a.b.c", true),
            ("#.c", "a.b.c.d", false),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.b.c", true),
            ("a.#.c", "a.b.d.c", true),
            ("a.#.c", "a.b.d", false),
            ("*.#", "a", true),
            ("*.#", "a.b.c", true),
            ("#.*", "a", true),
            ("#.#", "a.b", true),
            ("a.*.#", "a", false),
            ("a.*.#", "a.b", true),
            ("a.*.#", "a.b.c.d", true),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
        ]
    )
    func semantics(pattern: String, key: String, matches expected: Bool) {
        let trie = TopicTrie<String>()
        trie.insert("v", pattern: pattern)
        #expect(matches(trie, key) == (expected ? ["v"] : []))
    }

    @Test("a scoped key matches only patterns of its own scope; wildcards at the root don't reach into one")
    func scopes() {
        let marker = String(decoding: [TopicTrie<Int>.scopeMarker], as: UTF8.self)
        let logs = marker + "logs"
        let trie = TopicTrie<String>()
        for pattern in ["#", "*.a", "#.a", "*", "*.#", "a", logs + ".#", logs + ".a", logs + ".*", marker + "audit.#"] {
            trie.insert(pattern, pattern: pattern)
        }
        #expect(matches(trie, logs + ".a") == [logs + ".#", logs + ".a", logs + ".*"])
        #expect(matches(trie, logs + ".b.c") == [logs + ".#"])
        #expect(matches(trie, marker + "other.a").isEmpty)
        #expect(matches(trie, "a") == ["#", "*", "*.#", "#.a", "a"])
        #expect(matches(trie, "x.a") == ["#", "*.a", "#.a", "*.#"])
        #expect(!TopicTrie<Int>.matches(pattern: "#", key: logs + ".a"))
        #expect(TopicTrie<Int>.matches(pattern: logs + ".#", key: logs + ".a"))
    }

    @Test("each value is reported once, however many of its patterns match")
    func eachValueOnce() {
        let trie = TopicTrie<String>()
        for pattern in ["a.b", "a.*", "#", "a.#", "#.b", "*.#.b"] {
            trie.insert("x", pattern: pattern)
        }
        trie.insert("y", pattern: "a.b")
        trie.insert("z", pattern: "c")
        #expect(trie.count == 8)
        #expect(matches(trie, "a.b") == ["x", "y"])
    }

    @Test("inserting the same value and pattern twice stores it once")
    func duplicateInsert() {
        let trie = TopicTrie<String>()
        trie.insert("v", pattern: "a.*")
        trie.insert("v", pattern: "a.*")
        #expect(trie.count == 1)
        trie.remove("v", pattern: "a.*")
        #expect(trie.count == 0)
        #expect(matches(trie, "a.b").isEmpty)
    }

    @Test("removing leaves other values and patterns intact")
    func removeOne() {
        let trie = TopicTrie<String>()
        trie.insert("v", pattern: "a.#")
        trie.insert("w", pattern: "a.#")
        trie.insert("v", pattern: "a.b")
        trie.remove("v", pattern: "a.#")
        #expect(trie.count == 2)
        #expect(matches(trie, "a.b") == ["v", "w"])
        #expect(matches(trie, "a.c") == ["w"])
    }

    @Test("removing what is not there changes nothing")
    func removeAbsent() throws {
        let trie = TopicTrie<String>()
        trie.insert("v", pattern: "a.b")
        trie.remove("w", pattern: "a.b")
        trie.remove("v", pattern: "a.c")
        trie.remove("v", pattern: "a")
        trie.remove("v", pattern: "a.b.c")
        trie.remove("v", pattern: "*.b")
        trie.remove("v", pattern: "#")
        #expect(trie.count == 1)
        #expect(matches(trie, "a.b") == ["v"])
        #expect(try rootIsEmpty(trie) == false)
    }

    @Test("inserting then removing everything prunes back to an empty root")
    func pruning() throws {
        let trie = TopicTrie<String>()
        let patterns = ["a", "a.b", "a.b.c", "a.*", "a.*.c", "#", "a.#", "#.c", "*.#.*", "x.y.z", "*"]
        for (index, pattern) in patterns.enumerated() {
            trie.insert("v\(index)", pattern: pattern)
            trie.insert("shared", pattern: pattern)
        }
        #expect(trie.count == patterns.count * 2)
        #expect(try rootIsEmpty(trie) == false)
        for (index, pattern) in patterns.enumerated().reversed() {
            trie.remove("v\(index)", pattern: pattern)
        }
        #expect(trie.count == patterns.count)
        for pattern in patterns {
            trie.remove("shared", pattern: pattern)
        }
        #expect(trie.count == 0)
        #expect(try rootIsEmpty(trie))
        for key in ["a", "a.b", "a.b.c", "x.y.z", "q"] {
            #expect(matches(trie, key).isEmpty)
        }
    }

    @Test("a churn of subscriptions leaves nothing behind")
    func churn() throws {
        let trie = TopicTrie<Int>()
        for round in 0..<100 {
            let pattern = "t.\(round % 7).\(round % 3 == 0 ? "#" : "*").end"
            trie.insert(round, pattern: pattern)
            trie.remove(round, pattern: pattern)
        }
        #expect(trie.count == 0)
        let root = try #require(Mirror(reflecting: trie).children.first { $0.label == "root" }?.value)
        let children = try #require(
            Mirror(reflecting: root).children.first { $0.label == "children" }?.value as? [Substring: Any]
        )
        #expect(children.isEmpty)
    }
}

/// Matching must stay polynomial whatever the patterns: a subscription to `#.#.#.#.#.#.#.#`
/// and a long key once took seconds per publish, and the peers' interest table matched the
/// same patterns on every forward.
@Suite("TopicTrie worst cases")
struct TopicTrieWorstCaseTests {
    /// A reference matcher, dynamic programming over (pattern word, key word): obviously
    /// right and obviously polynomial.
    private static func referenceMatches(pattern: String, key: String) -> Bool {
        let p = pattern.split(separator: ".", omittingEmptySubsequences: false)
        let k = key.split(separator: ".", omittingEmptySubsequences: false)
        // matched[i][j]: the first i pattern words match the first j key words.
        var matched = Array(repeating: Array(repeating: false, count: k.count + 1), count: p.count + 1)
        matched[0][0] = true
        for i in 1...p.count {
            for j in 0...k.count {
                switch p[i - 1] {
                case "#": matched[i][j] = matched[i - 1][j] || (j > 0 && matched[i][j - 1])
                case "*": matched[i][j] = j > 0 && matched[i - 1][j - 1]
                default: matched[i][j] = j > 0 && matched[i - 1][j - 1] && p[i - 1] == k[j - 1]
                }
            }
        }
        return matched[p.count][k.count]
    }

    @Test(
        "adversarial patterns visit each (node, word) pair at most once",
        arguments: [
            "#.#.#.#.#.#.#.#",
            "#.a.#.a.#.a.#.a.#",
            "#.*.#.*.#.*.#.*.#.*.#",
            "*.#.*.#.*.#.*.#.b",
            String(repeating: "#.", count: 63) + "#",
        ]
    )
    func adversarialPatternIsPolynomial(pattern: String) {
        let trie = TopicTrie<Int>()
        trie.insert(1, pattern: pattern)
        let patternWords = pattern.split(separator: ".").count
        for keyWords in [25, 64] {
            for last in ["a", "b", "c"] {
                let key = Array(repeating: "a", count: keyWords - 1).joined(separator: ".") + "." + last
                var result = Set<Int>()
                trie.matches(key, into: &result)
                #expect(
                    result.isEmpty == !Self.referenceMatches(pattern: pattern, key: key),
                    "\(pattern) vs \(keyWords) words ending in \(last)"
                )
                // Trie nodes are at most the pattern's words plus the root.
                #expect(trie.lastLookupSteps <= (patternWords + 1) * (keyWords + 1))
            }
        }
    }

    /// Every sequence of `length` words drawn from `alphabet`, for lengths 1 through `maximum`.
    private static func sequences(of alphabet: [String], upTo maximum: Int) -> [String] {
        var all: [[String]] = []
        var current: [[String]] = [[]]
        for _ in 1...maximum {
            current = current.flatMap { prefix in alphabet.map { prefix + [$0] } }
            all += current
        }
        return all.map { $0.joined(separator: ".") }
    }

    @Test("every pattern of up to four words agrees with the reference matcher on every key of up to five")
    func agreesWithReference() {
        let keys = Self.sequences(of: ["a", "b"], upTo: 5)
        for pattern in Self.sequences(of: ["a", "b", "*", "#"], upTo: 4) {
            let trie = TopicTrie<Int>()
            trie.insert(1, pattern: pattern)
            trie.insert(2, pattern: "a.#")
            for key in keys {
                var result = Set<Int>()
                trie.matches(key, into: &result)
                // Record only disagreements: 21,000 expectations would drown a failure.
                if result.contains(1) != Self.referenceMatches(pattern: pattern, key: key) {
                    Issue.record("\(pattern) vs \(key): trie says \(result.contains(1))")
                }
            }
        }
    }
}
