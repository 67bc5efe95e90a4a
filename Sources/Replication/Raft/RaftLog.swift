import DequeModule
import NIOCore

/// The in-memory tail of a replica's log: the snapshot base it was compacted to, and the
/// entries after it. Memory is bounded by how often the state machine compacts.
struct RaftLog: Sendable {
    private(set) var base: RaftSnapshotBase
    private var entries: Deque<RaftEntry>

    init(base: RaftSnapshotBase, entries: [RaftEntry]) {
        self.base = base
        // Restored entries at or before the base are already covered by it.
        self.entries = Deque(entries.drop { $0.index <= base.index })
    }

    var firstIndex: UInt64 { base.index + 1 }
    var lastIndex: UInt64 { base.index + UInt64(entries.count) }
    var lastTerm: UInt64 { entries.last?.term ?? base.term }

    /// The term of the entry at `index`, known for the base and the entries after it.
    func term(at index: UInt64) -> UInt64? {
        if index == base.index { return base.term }
        guard index > base.index, index <= lastIndex else { return nil }
        return entries[Int(index - base.index - 1)].term
    }

    func entry(at index: UInt64) -> RaftEntry? {
        guard index > base.index, index <= lastIndex else { return nil }
        return entries[Int(index - base.index - 1)]
    }

    /// Entries from `index` on, at most `maxCount` and about `maxBytes` (always at least one
    /// when there is one, however large).
    func entries(from index: UInt64, maxCount: Int = .max, maxBytes: Int = .max) -> [RaftEntry] {
        guard index > base.index, index <= lastIndex else { return [] }
        var batch: [RaftEntry] = []
        var bytes = 0
        var position = Int(index - base.index - 1)
        while position < entries.count, batch.count < maxCount {
            let entry = entries[position]
            bytes += entry.approximateSize
            if !batch.isEmpty && bytes > maxBytes { break }
            batch.append(entry)
            position += 1
        }
        return batch
    }

    /// Entries `from...through`, both in the tail.
    func entries(from index: UInt64, through last: UInt64) -> [RaftEntry] {
        guard index <= last else { return [] }
        return entries(from: index, maxCount: Int(last - index + 1))
    }

    mutating func append(_ entry: RaftEntry) {
        precondition(entry.index == lastIndex + 1, "log entries must be contiguous")
        entries.append(entry)
    }

    /// Drops the entries after `index` (a conflicting suffix).
    mutating func truncate(after index: UInt64) {
        precondition(index >= base.index, "cannot truncate into the snapshot")
        entries.removeLast(Int(lastIndex - index))
    }

    /// Replaces the entries through `index` by a snapshot with `state`, keeping the rest.
    mutating func compact(through index: UInt64, state: ByteBuffer) -> RaftSnapshotBase {
        precondition(index > base.index && index <= lastIndex)
        let newBase = RaftSnapshotBase(
            index: index,
            term: term(at: index)!,
            members: members(through: index).members,
            state: state
        )
        entries.removeFirst(Int(index - base.index))
        base = newBase
        return newBase
    }

    /// Replaces the whole log by a snapshot from the leader.
    mutating func reset(to newBase: RaftSnapshotBase) {
        base = newBase
        entries.removeAll()
    }

    /// The configuration in force after `index` (the last one appended at or before it) and
    /// the index of its entry (the base's index when it comes from the snapshot).
    func members(through index: UInt64) -> (members: RaftMembers, index: UInt64) {
        var position = Int(min(index, lastIndex) - base.index)
        while position > 0 {
            position -= 1
            if case .members(let members) = entries[position].content {
                return (members, base.index + UInt64(position) + 1)
            }
        }
        return (base.members, base.index)
    }

    /// The latest configuration, committed or not: the one in force (§4.1).
    var latestMembers: (members: RaftMembers, index: UInt64) { members(through: lastIndex) }
}
