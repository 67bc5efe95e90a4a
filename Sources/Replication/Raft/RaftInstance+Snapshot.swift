import NIOCore

extension RaftInstance {
    /// The state machine captured its state after applying through `index` as `state`: the
    /// log through `index` is replaced by a snapshot base. Returns the base for the shell to
    /// make durable (before it drops the log's prefix), or nil when `index` is not both applied
    /// and durable here, or not after the current base.
    ///
    /// Followers that need entries before the base get it through `installSnapshot`.
    public mutating func compact(through index: UInt64, state: ByteBuffer) -> RaftSnapshotBase? {
        guard index > log.base.index, index <= appliedIndex, index <= persistedIndex else { return nil }
        return log.compact(through: index, state: state)
    }

    /// The leader sent its snapshot base because this follower needs compacted entries.
    mutating func receiveSnapshot(
        _ base: RaftSnapshotBase,
        from sender: ReplicaID,
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        if role != .follower || leader != sender {
            becomeFollower(term: term, leader: sender, now: now)
        }
        lastLeaderContact = now
        resetElectionDeadline(now: now)

        if base.index <= commitIndex {
            // Already there: nothing to install.
        } else if log.term(at: base.index) == base.term {
            // The log holds the base's entry, so it matches the leader's through it, and the
            // base is committed: keep the log, commit through it.
            verifiedIndex = max(verifiedIndex, base.index)
            commitIndex = base.index
            applyCommitted(into: &directives)
        } else {
            log.reset(to: base)
            persistedIndex = min(persistedIndex, base.index - 1)
            verifiedIndex = base.index
            commitIndex = base.index
            appliedIndex = base.index
            refreshMembers()
            directives.append(.persistSnapshot(base))
            directives.append(.installSnapshot(base))
            // Acknowledged once durable, by `persisted(through:term:)`.
            return
        }
        reportedIndex = max(reportedIndex, matchToReport)
        directives.append(.send(.appendResponse(term: term, matchIndex: matchToReport), to: sender))
    }
}
