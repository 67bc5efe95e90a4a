import DequeModule

/// Which log segments each group still needs, so that the node can remove the others: a
/// group needs the segment of its latest hard state, of its latest snapshot base, and every
/// segment holding one of its entries after that base.
///
/// A segment older than all of those may go. A group's latest hard state or snapshot in an
/// old segment would hold every later segment back, so the store writes them again (a
/// checkpoint, ``groupsToCheckpoint(before:)``) before it removes segments; entries leave as
/// the queue compacts (Raft's snapshot base moves past them) or moves its oldest messages on.
public struct ReplicaLogFootprint: Sendable {
    struct Group: Sendable {
        var hardStateSegment: UInt64?
        var snapshotSegment: UInt64?
        /// Runs of the group's entries: the first index of each record and its segment.
        var runs: Deque<(firstIndex: UInt64, segment: UInt64)> = []
        /// The index of the group's last entry written.
        var lastIndex: UInt64 = 0

        var oldestSegment: UInt64? {
            [hardStateSegment, snapshotSegment, runs.first?.segment].compactMap { $0 }.min()
        }
    }

    private var groups: [String: Group] = [:]

    public init() {}

    /// `record` is on disk in `segment`.
    public mutating func wrote(_ record: ReplicaRecord, in segment: UInt64) {
        let name = record.group
        switch record {
        case .entries(_, let entries):
            guard let first = entries.first else { return }
            var group = groups[name] ?? Group()
            while let last = group.runs.last, last.firstIndex >= first.index { group.runs.removeLast() }
            group.runs.append((first.index, segment))
            group.lastIndex = entries.last!.index
            groups[name] = group
        case .truncate(_, let after):
            guard var group = groups[name] else { return }
            group.runs.removeAll { $0.firstIndex > after }
            group.lastIndex = min(group.lastIndex, after)
            groups[name] = group
        case .hardState:
            groups[name, default: Group()].hardStateSegment = segment
        case .snapshot(_, let base, let keepsLaterEntries):
            var group = groups[name] ?? Group()
            group.snapshotSegment = segment
            if keepsLaterEntries {
                // A run stays while an entry after the base may be in it: drop a run once the
                // next run starts at or before the base's successor.
                while group.runs.count > 1, group.runs[1].firstIndex <= base.index + 1 { group.runs.removeFirst() }
                if group.lastIndex <= base.index { group.runs.removeAll() }
            } else {
                group.runs.removeAll()
                group.lastIndex = base.index
            }
            groups[name] = group
        case .forget:
            groups[name] = nil
        }
    }

    /// The oldest segment any group still needs; every segment before it may be removed.
    /// `nil` when no group needs any.
    public var oldestNeededSegment: UInt64? {
        groups.values.compactMap(\.oldestSegment).min()
    }

    /// Groups whose hard state or snapshot base lies in a segment before `segment`: writing
    /// them again lets those segments go, as far as these records are concerned.
    public func groupsToCheckpoint(before segment: UInt64) -> [String] {
        groups.compactMap { name, group in
            let held = [group.hardStateSegment, group.snapshotSegment].compactMap { $0 }
            return held.contains { $0 < segment } ? name : nil
        }.sorted()
    }

    /// Groups whose entries lie in a segment before `segment`, with the first index there:
    /// the queue must compact or move its messages past it before the segment can go.
    public func groupsWithEntries(before segment: UInt64) -> [(group: String, firstIndex: UInt64)] {
        groups.compactMap { name, group in
            guard let run = group.runs.first, run.segment < segment else { return nil }
            return (name, run.firstIndex)
        }.sorted { $0.group < $1.group }
    }
}
