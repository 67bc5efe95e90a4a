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

    /// Groups whose entries hold the oldest needed segment back, each with the index from which
    /// its entries lie in later segments: the queue moves the messages it holds in entries
    /// before that index forward (and compacts), and the segment can go. One segment at a
    /// time, so a long-lived message is copied once per pass of the log, not once per call.
    public func groupsHoldingTheOldestSegment() -> [(group: String, moveBefore: UInt64)] {
        guard let oldest = oldestNeededSegment else { return [] }
        return groups.compactMap { name, group in
            guard let first = group.runs.first, first.segment == oldest else { return nil }
            let later = group.runs.first { $0.segment > oldest }
            return (name, later?.firstIndex ?? group.lastIndex + 1)
        }.sorted { $0.group < $1.group }
    }
}
