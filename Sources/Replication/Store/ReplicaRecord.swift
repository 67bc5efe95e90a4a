import NIOCore

/// What the node's write-ahead log holds for the Raft groups it hosts: one record per
/// directive of a group's ``RaftInstance`` that asks for durability. Records of all groups
/// interleave in the one log; each names its group.
public enum ReplicaRecord: Sendable, Equatable {
    /// Entries appended after the group's last (a `truncate` comes first if they replace some).
    case entries(group: String, [RaftEntry])
    /// The entries after `after` are gone (a follower's conflicting suffix).
    case truncate(group: String, after: UInt64)
    case hardState(group: String, RaftHardState)
    /// The log through `base.index` is replaced by the snapshot. `keepsLaterEntries`: a
    /// compaction, the entries after the base stay; otherwise a follower installed the
    /// leader's snapshot and holds nothing else.
    case snapshot(group: String, RaftSnapshotBase, keepsLaterEntries: Bool)
    /// The node no longer hosts the group (the queue was deleted or its replica moved away).
    case forget(group: String)

    private enum Kind: UInt8 {
        case entries = 1
        case truncate = 2
        case hardState = 3
        case snapshot = 4
        case forget = 5
    }

    public var group: String {
        switch self {
        case .entries(let group, _), .truncate(let group, _), .hardState(let group, _), .snapshot(let group, _, _),
            .forget(let group):
            group
        }
    }

    public var logRecord: LogRecord {
        var body = ByteBuffer()
        RaftCodec.writeName(group, into: &body)
        let kind: Kind
        switch self {
        case .entries(_, let entries):
            kind = .entries
            body.writeInteger(UInt32(entries.count))
            for entry in entries { RaftCodec.write(entry, into: &body) }
        case .truncate(_, let after):
            kind = .truncate
            body.writeInteger(after)
        case .hardState(_, let state):
            kind = .hardState
            RaftCodec.write(state, into: &body)
        case .snapshot(_, let base, let keepsLaterEntries):
            kind = .snapshot
            body.writeInteger(UInt8(keepsLaterEntries ? 1 : 0))
            RaftCodec.write(base, into: &body)
        case .forget:
            kind = .forget
        }
        return LogRecord(kind: kind.rawValue, body: body)
    }

    /// `nil` for a record this build did not write.
    public init?(_ record: LogRecord) {
        var body = record.body
        guard let kind = Kind(rawValue: record.kind), let group = RaftCodec.readName(&body) else { return nil }
        switch kind {
        case .entries:
            guard let count = body.readInteger(as: UInt32.self) else { return nil }
            var entries: [RaftEntry] = []
            for _ in 0..<count {
                guard let entry = RaftCodec.readEntry(&body) else { return nil }
                entries.append(entry)
            }
            self = .entries(group: group, entries)
        case .truncate:
            guard let after = body.readInteger(as: UInt64.self) else { return nil }
            self = .truncate(group: group, after: after)
        case .hardState:
            guard let state = RaftCodec.readHardState(&body) else { return nil }
            self = .hardState(group: group, state)
        case .snapshot:
            guard let keeps = body.readInteger(as: UInt8.self), keeps <= 1, let base = RaftCodec.readSnapshotBase(&body)
            else { return nil }
            self = .snapshot(group: group, base, keepsLaterEntries: keeps == 1)
        case .forget:
            self = .forget(group: group)
        }
        guard body.readableBytes == 0 else { return nil }
    }
}
