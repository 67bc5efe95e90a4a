/// An index of topic patterns by word, answering "which subscriptions match this routing key".
///
/// Patterns are dot-separated words where `*` matches exactly one word and `#` zero or more,
/// as RabbitMQ's topic exchange does. A lookup walks one path per literal word plus the
/// wildcard branches, so its cost depends on the key's length and the wildcards present, not
/// on how many subscriptions exist (the shape of nats-server's sublist).
///
/// A key whose first word begins with ``scopeMarker`` is scoped: only patterns that begin
/// with the same word match it, so a `*` or `#` at the start of an unscoped pattern doesn't
/// reach into a scope. (``Destination`` scopes the topics of each exchange but amq.topic.)
///
/// A class: the nodes are mutated in place, so copies must not exist. Its owner confines it
/// to one thread.
public final class TopicTrie<Value: Hashable> {
    private final class Node {
        var children: [Substring: Node] = [:]
        var star: Node?
        var hash: Node?
        var values: Set<Value> = []
        /// The lookup that last expanded this node's `#` branch, and the lowest word index it
        /// expanded it from. An expansion from index `i` covers every split point from `i` to
        /// the end, so one from a later index adds nothing, and one from an earlier index
        /// need only cover the indices before. A generation number instead of a reset keeps
        /// lookups free of allocation.
        var hashLookup: UInt64 = 0
        var hashExpandedFrom = 0

        var isEmpty: Bool { values.isEmpty && children.isEmpty && star == nil && hash == nil }
    }

    private var root = Node()

    /// The first byte of a scope word, one that no destination a client writes may contain.
    public static var scopeMarker: UInt8 { 0x01 }

    public init() {}

    /// The number of values stored, over all patterns.
    public private(set) var count = 0

    public func insert(_ value: Value, pattern: String) {
        var node = root
        for word in Self.words(pattern) {
            switch word {
            case "*":
                if node.star == nil { node.star = Node() }
                node = node.star!
            case "#":
                if node.hash == nil { node.hash = Node() }
                node = node.hash!
            default:
                if let child = node.children[word] {
                    node = child
                } else {
                    let child = Node()
                    node.children[word] = child
                    node = child
                }
            }
        }
        if node.values.insert(value).inserted { count += 1 }
    }

    /// Removes `value` from `pattern`, pruning nodes that become empty so that a churn of
    /// short-lived subscriptions leaves no garbage behind.
    public func remove(_ value: Value, pattern: String) {
        if Self.remove(value, words: Self.words(pattern)[...], from: root) { count -= 1 }
    }

    private static func remove(_ value: Value, words: ArraySlice<Substring>, from node: Node) -> Bool {
        guard let word = words.first else { return node.values.remove(value) != nil }
        let rest = words.dropFirst()
        let removed: Bool
        switch word {
        case "*":
            guard let child = node.star else { return false }
            removed = remove(value, words: rest, from: child)
            if child.isEmpty { node.star = nil }
        case "#":
            guard let child = node.hash else { return false }
            removed = remove(value, words: rest, from: child)
            if child.isEmpty { node.hash = nil }
        default:
            guard let child = node.children[word] else { return false }
            removed = remove(value, words: rest, from: child)
            if child.isEmpty { node.children[word] = nil }
        }
        return removed
    }

    /// Every value whose pattern matches `key`, each once.
    public func matches(_ key: String, into result: inout Set<Value>) {
        let words = Self.words(key)
        lookup &+= 1
        var steps = 0
        if words[0].utf8.first == Self.scopeMarker {
            steps += 1
            if let scope = root.children[words[0]] {
                Self.collect(scope, words: words, index: 1, lookup: lookup, steps: &steps, into: &result)
            }
        } else {
            Self.collect(root, words: words, index: 0, lookup: lookup, steps: &steps, into: &result)
        }
        lastLookupSteps = steps
    }

    /// Numbers lookups, for the per-node memo of `#` expansions.
    private var lookup: UInt64 = 0
    /// (node, word index) pairs the last lookup visited: what the worst-case bound is about.
    private(set) var lastLookupSteps = 0

    private static func collect(
        _ node: Node,
        words: [Substring],
        index: Int,
        lookup: UInt64,
        steps: inout Int,
        into result: inout Set<Value>
    ) {
        steps += 1
        if let hash = node.hash {
            // `#` absorbs zero or more words: every split point from `index` on, each once per
            // lookup (see `hashExpandedFrom`).
            if node.hashLookup != lookup {
                node.hashLookup = lookup
                node.hashExpandedFrom = words.count + 1
            }
            if index < node.hashExpandedFrom {
                let end = node.hashExpandedFrom
                node.hashExpandedFrom = index
                for next in index..<end {
                    collect(hash, words: words, index: next, lookup: lookup, steps: &steps, into: &result)
                }
            }
        }
        guard index < words.count else {
            result.formUnion(node.values)
            return
        }
        if let child = node.children[words[index]] {
            collect(child, words: words, index: index + 1, lookup: lookup, steps: &steps, into: &result)
        }
        if let star = node.star {
            collect(star, words: words, index: index + 1, lookup: lookup, steps: &steps, into: &result)
        }
    }

    private static func words(_ key: String) -> [Substring] {
        key.split(separator: ".", omittingEmptySubsequences: false)
    }

    /// Whether one pattern matches one routing key, by the same rules as the trie.
    public static func matches(pattern: String, key: String) -> Bool {
        let trie = TopicTrie<Int>()
        trie.insert(0, pattern: pattern)
        var result = Set<Int>()
        trie.matches(key, into: &result)
        return !result.isEmpty
    }
}
