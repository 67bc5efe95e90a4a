/// Picks one page of a listing in key order without sorting the whole listing.
///
/// The admin API answers pages of listings that grow with the node's load (100,000
/// connections, their subscriptions, queues, interest entries). Sorting every item to
/// return 50 of them costs O(n log n) and, worse, invites building every item's text first.
/// Here the caller hands over only cheap keys (integer ids, or references to strings the
/// node already holds) with a weight each, and gets back the keys whose place in key order
/// falls on the page: a quickselect that descends only into the parts of the listing that
/// the page overlaps, so the work is expected O(n) plus O(k log k) for a page of k, with no
/// copy of any item's contents.
///
/// Weights let one page cut across groups: a connection weighs as many subscriptions as it
/// holds, so a page of subscriptions picks the few connections whose subscriptions it
/// covers, and where the first of them starts. An item of weight 0 takes no place and is
/// never picked.
public enum PageSelection {
    /// One picked key and the summed weight of every key before it.
    public struct Picked<Key> {
        /// The key.
        public var key: Key
        /// Where the key's items start in the whole listing: the weights of all smaller keys.
        public var start: Int
    }

    /// The keys of one page, in ascending key order.
    ///
    /// - Parameters:
    ///   - items: every key of the listing, each once, with its weight (0 or more); in any order.
    ///   - offset: the first position of the page, counted in weight.
    ///   - limit: the length of the page, counted in weight.
    /// - Returns: the keys whose positions `start..<start + weight` overlap
    ///   `offset..<offset + limit`, ascending, and the summed weight of all items.
    public static func page<Key: Comparable>(
        of items: [(key: Key, weight: Int)],
        offset: Int,
        limit: Int
    ) -> (picked: [Picked<Key>], total: Int) {
        let total = items.reduce(0) { $0 + $1.weight }
        var picked: [Picked<Key>] = []
        let end = offset.addingReportingOverflow(limit)
        let wanted = offset..<(end.overflow ? Int.max : end.partialValue)
        guard !wanted.isEmpty, offset < total else { return (picked, total) }
        var items = items
        select(&items, items.indices, base: 0, weight: total, wanted: wanted, into: &picked)
        return (picked, total)
    }

    /// The keys on one page when every key counts once.
    ///
    /// - Parameters:
    ///   - keys: every key of the listing, each once, in any order.
    ///   - offset: the index of the page's first key in ascending order.
    ///   - limit: the most keys the page holds.
    /// - Returns: at most `limit` keys, ascending; none when `offset` is past the end.
    public static func page<Key: Comparable>(of keys: [Key], offset: Int, limit: Int) -> [Key] {
        page(of: keys.map { (key: $0, weight: 1) }, offset: offset, limit: limit).picked.map(\.key)
    }

    // Below this many items a sort is cheaper than partitioning further.
    private static let sortBelow = 16

    /// Appends the picked keys of `items[range]`, whose weights sum to `weight` and start at
    /// `base`, in ascending order. Only the sides of a pivot that overlap the page are visited.
    private static func select<Key: Comparable>(
        _ items: inout [(key: Key, weight: Int)],
        _ range: Range<Int>,
        base: Int,
        weight: Int,
        wanted: Range<Int>,
        into picked: inout [Picked<Key>]
    ) {
        guard !range.isEmpty, base < wanted.upperBound, base + weight > wanted.lowerBound else { return }
        if range.count < sortBelow {
            items[range].sort { $0.key < $1.key }
            var start = base
            for item in items[range] {
                if item.weight > 0, start < wanted.upperBound, start + item.weight > wanted.lowerBound {
                    picked.append(Picked(key: item.key, start: start))
                }
                start += item.weight
            }
            return
        }
        // Median of three as the pivot, moved to the end: keeps sorted and reversed input linear.
        let last = range.upperBound - 1
        let middle = range.lowerBound + range.count / 2
        let candidates = [range.lowerBound, middle, last].sorted { items[$0].key < items[$1].key }
        items.swapAt(candidates[1], last)
        let pivot = items[last]
        // Lomuto partition: keys below the pivot to the front, summing their weight.
        var store = range.lowerBound
        var lowerWeight = 0
        for index in range.lowerBound..<last where items[index].key < pivot.key {
            items.swapAt(index, store)
            lowerWeight += items[store].weight
            store += 1
        }
        items.swapAt(store, last)
        let pivotStart = base + lowerWeight
        select(&items, range.lowerBound..<store, base: base, weight: lowerWeight, wanted: wanted, into: &picked)
        if pivot.weight > 0, pivotStart < wanted.upperBound, pivotStart + pivot.weight > wanted.lowerBound {
            picked.append(Picked(key: pivot.key, start: pivotStart))
        }
        select(
            &items,
            (store + 1)..<range.upperBound,
            base: pivotStart + pivot.weight,
            weight: weight - lowerWeight - pivot.weight,
            wanted: wanted,
            into: &picked
        )
    }
}
