import NIOCore

// MARK: - Sending

extension PeerSessions {
    /// Holds a forward (its body, encoded once and shared by every outbox) for `peers`.
    ///
    /// The message path: no effect list per call. When a bound is reached (or was, and the
    /// message joins a gap) the effects wait in ``takeEffects()``, and the outcome says so.
    func append(forward body: ByteBuffer, to peers: some Sequence<NodeID>) -> AppendOutcome {
        var outcome = AppendOutcome()
        for peer in peers { append(.forward(body), to: peer, into: &outcome) }
        outcome.effectsWaiting = !effects.isEmpty
        return outcome
    }

    /// Holds queue hand-off `id` for `peer`; when a bound is reached it is reclaimed instead.
    func append(handoff id: UInt64, _ body: ByteBuffer, to peer: NodeID) -> AppendOutcome {
        var outcome = AppendOutcome()
        append(.handoff(id: id, body), to: peer, into: &outcome)
        outcome.effectsWaiting = !effects.isEmpty
        return outcome
    }

    private func append(_ entry: PeerOutbox.Entry, to peer: NodeID, into outcome: inout AppendOutcome) {
        let cost = entry.cost
        if nodeBytes + cost > settings.nodeBytes, accepts(peer) { relieveNode(of: cost) }
        let appended = modify(peer) { session -> Bool in
            if let dropping = session.dropping, session.outbox.acknowledged >= dropping.through {
                session.dropping = nil
            }
            if session.dropping == nil, !session.graceExpired, session.outbox.bytes + cost > settings.peerBytes {
                collapse(&session, peer, reason: .bytes)
            }
            let dropReason = session.graceExpired ? .grace : session.dropping?.reason
            if dropReason == nil, nodeBytes + cost <= settings.nodeBytes {
                session.outbox.append(entry)
                return true
            }
            drop(entry, for: peer, from: &session, reason: dropReason ?? .nodeBytes)
            return false
        }
        switch appended {
        case true?: outcome.held += 1
        case false?: outcome.dropped += 1
        case nil: outcome.unknown += 1
        }
    }

    /// A message that can't be held: a forward joins the trailing gap, a hand-off comes back.
    private func drop(_ entry: PeerOutbox.Entry, for peer: NodeID, from session: inout Session, reason: DropReason) {
        switch entry {
        case .forward(let body):
            let gapReason: SequenceGap.Reason = reason == .grace ? .grace : reason == .bytes ? .bytes : .nodeBytes
            session.outbox.append(.gap(SequenceGap(lost: 1, reason: gapReason, keys: keyOf(body).map { [$0] })))
            recordDrop(peer, reason)
        case .handoff(let id, let body):
            effects.append(.reclaimed(peer, handoff: id, body: body))
        case .gap:
            session.outbox.append(entry)
        }
    }

    /// The next entry to write on `peer`'s link, with its number, while the link is resumed
    /// and writable: the pump after an append, a resume and a return of writability.
    func nextToWrite(for peer: NodeID) -> (seq: UInt64, entry: PeerOutbox.Entry)? {
        modify(peer) { session in
            guard let link = session.link, link.resumable, link.resumed, link.writable else { return nil }
            return session.outbox.next()
        } ?? nil
    }

    // MARK: - The peer's answers

    /// The peer's `resume` arrived on `link`: it processed this node's sequence up to
    /// `received`, as it holds this node at `receiverEpoch`. Entries after that go again,
    /// with their numbers, once the owner pumps.
    func resumeReceived(
        from peer: NodeID,
        senderEpoch: UInt64,
        receiverEpoch: UInt64,
        received: UInt64,
        link: UInt64
    ) -> [Effect] {
        modify(peer) { session in
            guard let attached = session.link, attached.number == link else { return }
            guard attached.resumable, !attached.resumed else {
                effects.append(.closeLink(peer, link: link, detail: "resumed twice, or on a link of wire version 2"))
                return
            }
            guard session.epoch == senderEpoch else {
                effects.append(
                    .closeLink(peer, link: link, detail: "resumed as epoch \(senderEpoch), linked as \(session.epoch)")
                )
                return
            }
            do throws(PeerOutbox.Violation) {
                try resume(&session, peer, receiverEpoch: receiverEpoch, received: received)
            } catch {
                effects.append(.closeLink(peer, link: link, detail: error.detail))
                return
            }
            session.link?.resumed = true
        }
        return takeEffects()
    }

    private func resume(
        _ session: inout Session,
        _ peer: NodeID,
        receiverEpoch: UInt64,
        received: UInt64
    ) throws(PeerOutbox.Violation) {
        let outbox = session.outbox
        if receiverEpoch != epoch, outbox.acknowledged > 0 {
            // The peer holds nothing of this life's sequence it once acknowledged: it forgot
            // this node. Counting starts again at 1 behind a gap for what was in flight.
            var gap = SequenceGap(lost: 0, reason: .sessionUnknown, keys: [])
            for (_, entry) in outbox.inFlight {
                switch entry {
                case .forward(let body): gap.merge(lost: 1, keys: keyOf(body).map { [$0] })
                case .handoff(let id, let body): effects.append(.reclaimed(peer, handoff: id, body: body))
                case .gap(let earlier): gap.merge(lost: earlier.lost, keys: earlier.keys)
                }
            }
            restart(&session, PeerOutbox(), leading: outbox.inFlight.isEmpty ? nil : gap)
        } else if receiverEpoch == epoch, received > 0, outbox.nextSeq == 1 {
            // The peer counts in a sequence this node forgot (its summary was evicted): carry
            // on after it, behind a gap that can name nothing.
            let gap = SequenceGap(lost: .max, reason: .sessionUnknown, keys: nil)
            restart(&session, PeerOutbox(acknowledged: received, nextSeq: received + 1), leading: gap)
        } else {
            let settled = try session.outbox.resume(peerReceived: receiverEpoch == epoch ? received : 0)
            for id in settled { effects.append(.settled(peer, handoff: id)) }
        }
        if session.inbound.received > 0 { session.inboundKnown = true }
    }

    /// Replaces the outbox by `fresh`, with `leading` first and the old one's unsent after.
    private func restart(_ session: inout Session, _ fresh: PeerOutbox, leading: SequenceGap?) {
        var outbox = fresh
        if let leading { outbox.append(.gap(leading)) }
        for entry in session.outbox.unsent {
            guard case .gap(var gap) = entry else {
                outbox.append(entry)
                continue
            }
            // The numbers it covered belong to the old count.
            gap.coveredFrom = nil
            outbox.append(.gap(gap))
        }
        session.outbox = outbox
    }

    /// The peer acknowledged this node's sequence through `seq` (from any of its links).
    func receivedAck(
        from peer: NodeID,
        senderEpoch: UInt64,
        receiverEpoch: UInt64,
        seq: UInt64,
        link: UInt64
    ) -> [Effect] {
        modify(peer) { session in
            guard session.epoch == senderEpoch, receiverEpoch == epoch else { return }
            do throws(PeerOutbox.Violation) {
                for id in try session.outbox.acknowledge(through: seq) { effects.append(.settled(peer, handoff: id)) }
            } catch {
                effects.append(.closeLink(peer, link: link, detail: error.detail))
            }
        }
        return takeEffects()
    }

    // MARK: - Receiving

    /// What to tell `peer` first on a new link: how far its sequence was processed here. A
    /// session opened from nothing says it holds no epoch of the peer, so that a peer that
    /// kept counting for a life of this node's sessions forgot starts again instead of
    /// seeing a resume behind what it was acknowledged.
    func resumeMessage(for peer: NodeID) -> LinkMessage? {
        modify(peer) { session in
            let known = session.inboundKnown || session.inbound.received > 0
            return .resume(
                senderEpoch: epoch,
                receiverEpoch: known ? session.epoch : 0,
                received: known ? session.inbound.resumePoint : 0
            )
        }
    }

    /// Sequenced entry `seq` of `bytes` arrived from `peer` on `link`.
    ///
    /// - Returns: the verdict, or `nil` when `link` isn't the peer's current one (what it
    ///   carries comes again on the new one).
    func sequencedArrived(_ seq: UInt64, bytes: Int, from peer: NodeID, link: UInt64) -> InboundSequence.Verdict? {
        modify(peer) { session in
            guard session.link?.number == link else { return nil }
            return session.inbound.arrived(seq, bytes: bytes)
        } ?? nil
    }

    /// A gap from `peer` arrived on `link`: see ``InboundSequence/gapArrived(first:last:)``.
    func gapArrived(
        first: UInt64,
        last: UInt64,
        from peer: NodeID,
        link: UInt64
    ) -> (verdict: InboundSequence.Verdict, processedAlready: UInt64)? {
        modify(peer) { session in
            guard session.link?.number == link else { return nil }
            return session.inbound.gapArrived(first: first, last: last)
        } ?? nil
    }

    /// The acknowledgement to send `peer` now, when enough arrived since the last one (the
    /// tick sends the rest).
    func acknowledgementIfDue(for peer: NodeID) -> LinkMessage? {
        modify(peer) { session in
            guard session.inbound.acknowledgementDue, let seq = session.inbound.acknowledgement() else { return nil }
            return acknowledgement(seq, session)
        } ?? nil
    }
}
