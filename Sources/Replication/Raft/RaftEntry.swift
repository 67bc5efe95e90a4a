import NIOCore

/// One entry of a group's replicated log.
public struct RaftEntry: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        /// Appended by every new leader: committing an entry of its own term is how it learns
        /// which earlier entries are committed (Raft §5.4.2).
        case noop
        /// An opaque command for the state machine.
        case command(ByteBuffer)
        /// A configuration, effective as soon as it is appended (dissertation §4.1).
        case members(RaftMembers)
    }

    public var term: UInt64
    public var index: UInt64
    public var content: Content

    public init(term: UInt64, index: UInt64, content: Content) {
        self.term = term
        self.index = index
        self.content = content
    }

    /// Roughly what the entry costs on the wire, for bounding batches (not an exact encoding).
    var approximateSize: Int {
        switch content {
        case .noop: 24
        case .command(let buffer): 24 + buffer.readableBytes
        case .members(let members): 24 + 32 * (members.voters.count + members.learners.count)
        }
    }
}

/// What must be durable before this replica says anything that depends on it: the latest
/// term it knows and whom it voted for in that term.
public struct RaftHardState: Sendable, Hashable {
    public var term: UInt64
    public var votedFor: ReplicaID?

    public init(term: UInt64 = 0, votedFor: ReplicaID? = nil) {
        self.term = term
        self.votedFor = votedFor
    }
}

/// The point the log was compacted to: everything through `index` is summarised by the
/// state machine's snapshot `state`, and `members` is the configuration in force there.
public struct RaftSnapshotBase: Sendable, Equatable {
    public var index: UInt64
    public var term: UInt64
    public var members: RaftMembers
    /// Opaque to Raft: the state machine's own encoding of its state after `index`.
    public var state: ByteBuffer

    public init(index: UInt64, term: UInt64, members: RaftMembers, state: ByteBuffer) {
        self.index = index
        self.term = term
        self.members = members
        self.state = state
    }
}
