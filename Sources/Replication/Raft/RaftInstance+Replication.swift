import NIOCore

extension RaftInstance {
    // MARK: - Leader

    /// Appends a command to the log, if this replica is a leader that accepts proposals. The
    /// entry goes to the followers at once, in parallel with the local write.
    public mutating func propose(
        _ command: ByteBuffer,
        now: NIODeadline
    ) -> (
        result: ProposeResult, directives: [Directive]
    ) {
        var result = ProposeResult.notLeader(leaderHint: leader)
        let directives = event(now: now) { instance, directives in
            guard instance.role == .leader else { return }
            guard instance.transfer == nil else {
                result = .rejected(.transferring)
                return
            }
            let entry = instance.appendAsLeader(.command(command), into: &directives)
            result = .accepted(index: entry.index, term: entry.term)
            instance.replicate(now: now, into: &directives)
        }
        return (result, directives)
    }

    @discardableResult
    mutating func appendAsLeader(_ content: RaftEntry.Content, into directives: inout [Directive]) -> RaftEntry {
        let entry = RaftEntry(term: term, index: log.lastIndex + 1, content: content)
        log.append(entry)
        directives.append(.persist(entries: [entry], truncatingAfter: nil))
        return entry
    }

    /// Sends what each follower's pipeline has room for.
    mutating func replicate(now: NIODeadline, into directives: inout [Directive]) {
        for peer in peers.keys.sorted() {
            sendAppends(to: peer, now: now, into: &directives)
        }
    }

    /// Fills one follower's pipeline: a single message while probing, up to
    /// `maxInFlightAppends` while replicating; a snapshot when it needs compacted entries.
    mutating func sendAppends(to peerID: ReplicaID, now: NIODeadline, into directives: inout [Directive]) {
        while var peer = peers[peerID], peer.snapshotIndex == nil {
            let room = peer.probing ? peer.inFlight.isEmpty : peer.inFlight.count < settings.maxInFlightAppends
            guard room, peer.next <= log.lastIndex else { return }
            let prevIndex = peer.next - 1
            guard let prevTerm = log.term(at: prevIndex) else {
                peer.snapshotIndex = log.base.index
                peer.snapshotSentAt = now
                peers[peerID] = peer
                directives.append(.send(.installSnapshot(term: term, base: log.base), to: peerID))
                return
            }
            let batch = log.entries(
                from: peer.next,
                maxCount: settings.maxEntriesPerAppend,
                maxBytes: settings.maxBytesPerAppend
            )
            let last = prevIndex + UInt64(batch.count)
            if peer.inFlight.isEmpty { peer.inFlightSince = now }
            peer.inFlight.append(last)
            if !peer.probing { peer.next = last + 1 }
            peers[peerID] = peer
            directives.append(
                .send(
                    .appendEntries(
                        term: term,
                        prevIndex: prevIndex,
                        prevTerm: prevTerm,
                        entries: batch,
                        leaderCommit: commitIndex
                    ),
                    to: peerID
                )
            )
            if peer.probing { return }
        }
    }

    mutating func leaderTick(now: NIODeadline, into directives: inout [Directive]) {
        // Check-quorum: a leader that a majority of voters stopped answering (it is on the
        // minority side of a partition) steps down, so that it stops taking proposals.
        let window = settings.minElectionTimeout
        var heard: Set<ReplicaID> = [id]
        for (peerID, peer) in peers where now < peer.lastHeard + window {
            heard.insert(peerID)
        }
        guard members.isQuorum(heard) || members.voters.isEmpty else {
            becomeFollower(term: term, leader: nil, now: now)
            return
        }
        if let transfer, now >= transfer.deadline {
            self.transfer = nil
        }
        guard now >= nextHeartbeat else { return }
        nextHeartbeat = now + settings.heartbeatInterval
        for peerID in peers.keys.sorted() {
            guard var peer = peers[peerID] else { continue }
            // No progress for half an election timeout with appends in flight: take them as
            // lost and probe again from the last known match.
            if !peer.inFlight.isEmpty, now >= peer.inFlightSince + .nanoseconds(window.nanoseconds / 2) {
                peer.inFlight = []
                peer.probing = true
                peer.next = peer.match + 1
            }
            if peer.snapshotIndex != nil, now >= peer.snapshotSentAt + window {
                peer.snapshotIndex = nil
            }
            peers[peerID] = peer
            // The heartbeat claims only what the follower is known to hold, so it is never
            // rejected for entries still in flight, and commits nothing the follower lacks.
            if let matchTerm = log.term(at: peer.match) {
                directives.append(
                    .send(
                        .appendEntries(
                            term: term,
                            prevIndex: peer.match,
                            prevTerm: matchTerm,
                            entries: [],
                            leaderCommit: min(commitIndex, peer.match)
                        ),
                        to: peerID
                    )
                )
            }
            sendAppends(to: peerID, now: now, into: &directives)
        }
    }

    mutating func receiveAppendSuccess(
        matchIndex: UInt64,
        from peerID: ReplicaID,
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        guard var peer = peers[peerID] else { return }
        peer.lastHeard = now
        if matchIndex > peer.match {
            peer.match = matchIndex
            peer.inFlightSince = now
        }
        peer.inFlight.removeAll { $0 <= matchIndex }
        if peer.probing && matchIndex >= peer.next - 1 {
            peer.probing = false
            peer.inFlight = []
        }
        peer.next = max(peer.next, peer.match + 1)
        if let snapshot = peer.snapshotIndex, peer.match >= snapshot {
            peer.snapshotIndex = nil
        }
        peers[peerID] = peer
        advanceCommit(into: &directives)
        guard role == .leader else { return }
        if let transfer, transfer.target == peerID, peer.match == log.lastIndex {
            directives.append(.send(.timeoutNow(term: term), to: peerID))
        }
        sendAppends(to: peerID, now: now, into: &directives)
    }

    mutating func receiveAppendRejection(
        hintIndex: UInt64,
        hintTerm: UInt64,
        from peerID: ReplicaID,
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        guard var peer = peers[peerID] else { return }
        peer.lastHeard = now
        // A rejection of something older than what the follower acknowledged since.
        guard hintIndex >= peer.match else {
            peers[peerID] = peer
            return
        }
        var agreed = min(hintIndex, log.lastIndex)
        while agreed > log.base.index, let entryTerm = log.term(at: agreed), entryTerm > hintTerm {
            agreed -= 1
        }
        if agreed == log.base.index && log.base.term > hintTerm && agreed > 0 {
            // Even the base is too new for the follower: only the snapshot will do.
            agreed -= 1
        }
        peer.next = max(peer.match + 1, agreed + 1)
        peer.probing = true
        peer.inFlight = []
        peers[peerID] = peer
        sendAppends(to: peerID, now: now, into: &directives)
    }

    /// Commits the highest index durable on a majority of voters (this leader counting what it
    /// persisted itself), provided its entry is of the current term (§5.4.2).
    mutating func advanceCommit(into directives: inout [Directive]) {
        guard role == .leader, !members.voters.isEmpty else { return }
        let matches = members.voters.map { $0 == id ? persistedIndex : (peers[$0]?.match ?? 0) }.sorted(by: >)
        let candidate = matches[members.quorum - 1]
        guard candidate > commitIndex, log.term(at: candidate) == term else { return }
        commitIndex = candidate
        applyCommitted(into: &directives)
        if !members.voters.contains(id), membersIndex <= commitIndex {
            stepDownAfterRemoval(into: &directives)
        }
    }

    // MARK: - Follower

    mutating func receiveAppend(
        prevIndex: UInt64,
        prevTerm: UInt64,
        entries: [RaftEntry],
        leaderCommit: UInt64,
        from sender: ReplicaID,
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        if role != .follower || leader != sender {
            becomeFollower(term: term, leader: sender, now: now)
        }
        lastLeaderContact = now
        resetElectionDeadline(now: now)

        var prevIndex = prevIndex
        var prevTerm = prevTerm
        var entries = entries[...]
        if prevIndex < log.base.index {
            // The base is committed, so it matches the leader's log: skip what it covers.
            entries = entries.dropFirst(Int(min(log.base.index - prevIndex, UInt64(entries.count))))
            prevIndex = log.base.index
            prevTerm = log.base.term
        }
        guard log.term(at: prevIndex) == prevTerm else {
            var hint = min(prevIndex, log.lastIndex)
            while hint > log.base.index, let entryTerm = log.term(at: hint), entryTerm > prevTerm {
                hint -= 1
            }
            directives.append(
                .send(.appendRejected(term: term, hintIndex: hint, hintTerm: log.term(at: hint) ?? 0), to: sender)
            )
            return
        }

        // Skip what the log already holds; drop a conflicting suffix (never committed ones).
        var truncatedAfter: UInt64?
        var new: [RaftEntry] = []
        for entry in entries {
            if new.isEmpty, let existing = log.term(at: entry.index) {
                if existing == entry.term { continue }
                guard entry.index > commitIndex else { return }
                log.truncate(after: entry.index - 1)
                truncatedAfter = entry.index - 1
                persistedIndex = min(persistedIndex, entry.index - 1)
            }
            log.append(entry)
            new.append(entry)
        }
        if !new.isEmpty {
            directives.append(.persist(entries: new, truncatingAfter: truncatedAfter))
            if truncatedAfter != nil || new.contains(where: \.isMembers) {
                refreshMembers()
            }
        }

        let lastNew = prevIndex + UInt64(entries.count)
        verifiedIndex = max(verifiedIndex, lastNew)
        let newCommit = min(leaderCommit, lastNew)
        if newCommit > commitIndex {
            commitIndex = newCommit
            applyCommitted(into: &directives)
        }
        // Holding all the leader had committed: the configurations that name this replica are
        // current ones.
        if catchingUp, commitIndex >= leaderCommit { catchingUp = false }
        // Entries not yet durable are acknowledged by `persisted(through:term:)`; anything else
        // (a heartbeat, a repeat) gets its answer now, which also keeps the leader's
        // check-quorum fed.
        if entries.isEmpty || matchToReport >= lastNew {
            reportedIndex = max(reportedIndex, matchToReport)
            directives.append(.send(.appendResponse(term: term, matchIndex: matchToReport), to: sender))
        }
    }

    /// How far this follower's log is known to match the leader's, durably.
    var matchToReport: UInt64 {
        min(persistedIndex, max(verifiedIndex, commitIndex))
    }

    /// Tells the leader about entries that just became durable.
    mutating func reportMatch(into directives: inout [Directive]) {
        guard role == .follower, let leader, matchToReport > reportedIndex else { return }
        reportedIndex = matchToReport
        directives.append(.send(.appendResponse(term: term, matchIndex: matchToReport), to: leader))
    }
}

extension RaftEntry {
    var isMembers: Bool {
        if case .members = content { return true }
        return false
    }
}
