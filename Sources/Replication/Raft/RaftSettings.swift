import NIOCore

/// Timing and flow-control knobs of one Raft group; every replica of a group should use the
/// same values.
public struct RaftSettings: Sendable {
    /// Milliseconds without a leader before a follower campaigns, drawn anew each time from
    /// this range so that candidates rarely collide. Also the window of check-quorum (its
    /// lower bound) and the lease within which a follower ignores vote requests.
    public var electionTimeout: ClosedRange<Int64> = 1_000...2_000
    /// How often a leader sends heartbeats (and retries what went unanswered); well below the
    /// election timeout so that a few lost heartbeats don't start an election.
    public var heartbeatInterval: TimeAmount = .milliseconds(150)
    /// Entries per appendEntries message.
    public var maxEntriesPerAppend = 1_024
    /// Approximate bytes of entries per appendEntries message (at least one entry is sent).
    public var maxBytesPerAppend = 1 << 20
    /// appendEntries messages in flight to one follower before its acknowledgements: the
    /// pipeline that hides the round trip without flooding a slow follower.
    public var maxInFlightAppends = 4

    public init() {}

    var minElectionTimeout: TimeAmount { .milliseconds(electionTimeout.lowerBound) }
}
