import DequeModule

/// Rebuilds, from the records read back when the log opens, what each group's
/// ``RaftInstance`` starts from: its hard state, its snapshot base and the entries after it.
public struct ReplicaLogRecovery: Sendable {
    public struct Group: Sendable, Equatable {
        public var hardState = RaftHardState()
        public var snapshot: RaftSnapshotBase?
        public var entries: [RaftEntry] { Array(tail) }
        fileprivate var tail: Deque<RaftEntry> = []

        public static func == (lhs: Group, rhs: Group) -> Bool {
            lhs.hardState == rhs.hardState && lhs.snapshot == rhs.snapshot && lhs.tail == rhs.tail
        }
    }

    /// A record that checked but does not make sense: written by another build, or a bug.
    /// Like corruption, the node must not start on it.
    public struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        /// The record, when one alone is at fault.
        public var position: LogPosition?
        public var reason: String
        public var description: String {
            position.map { "log record at \($0): \(reason)" } ?? "durable log: \(reason)"
        }
    }

    public private(set) var groups: [String: Group] = [:]
    /// Where each group's records lie, for compaction.
    public private(set) var footprint = ReplicaLogFootprint()

    public init() {}

    public mutating func replay(_ recovered: RecoveredRecord) throws(Malformed) {
        guard let record = ReplicaRecord(recovered.record) else {
            throw Malformed(
                position: recovered.position,
                reason: "not a replica record (kind \(recovered.record.kind))"
            )
        }
        do {
            try apply(record)
        } catch {
            throw Malformed(position: recovered.position, reason: error.reason)
        }
        footprint.wrote(record, in: recovered.position.segment)
    }

    /// Checks, once every record is replayed, that each group's entries start right after its
    /// snapshot base (or at 1 without one): Raft must not start on a log with a hole.
    public func finish() throws(Malformed) {
        for (name, group) in groups.sorted(by: { $0.key < $1.key }) {
            guard let first = group.tail.first else { continue }
            let base = group.snapshot?.index ?? 0
            guard first.index == base + 1 else {
                throw Malformed(position: nil, reason: "group \(name): entries start at \(first.index), after \(base)")
            }
        }
    }

    struct Inconsistency: Error {
        var reason: String
    }

    private mutating func apply(_ record: ReplicaRecord) throws(Inconsistency) {
        let name = record.group
        switch record {
        case .entries(_, let entries):
            var group = groups[name] ?? Group()
            for entry in entries {
                let base = group.snapshot?.index ?? 0
                guard entry.index > base else { continue }
                if let first = group.tail.first?.index, let last = group.tail.last?.index {
                    if entry.index < first {
                        // Raft only ever replaces entries after the commit index, and the log
                        // keeps every entry after its last compaction.
                        throw Inconsistency(
                            reason: "group \(name): entry \(entry.index) replaces the log from before \(first)"
                        )
                    } else if entry.index <= last {
                        group.tail.removeLast(Int(last - entry.index + 1))
                    } else if entry.index != last + 1 {
                        throw Inconsistency(reason: "group \(name): entry \(entry.index) follows \(last)")
                    }
                }
                // A group's first entry may come before the snapshot base it follows: once
                // older segments are removed, the checkpoint of the base is written after the
                // entries it keeps. ``finish()`` checks they meet.
                group.tail.append(entry)
            }
            groups[name] = group
        case .truncate(_, let after):
            var group = groups[name] ?? Group()
            while let last = group.tail.last, last.index > after { group.tail.removeLast() }
            groups[name] = group
        case .hardState(_, let state):
            groups[name, default: Group()].hardState = state
        case .snapshot(_, let base, let keepsLaterEntries):
            var group = groups[name] ?? Group()
            group.snapshot = base
            if keepsLaterEntries {
                while let first = group.tail.first, first.index <= base.index { group.tail.removeFirst() }
            } else {
                group.tail.removeAll()
            }
            groups[name] = group
        case .forget:
            groups[name] = nil
        }
    }
}
