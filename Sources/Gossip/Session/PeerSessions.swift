import DequeModule
import NIOCore

/// This node's resumable sessions with its peers (README, "No silent loss at the seam"): per
/// peer and boot epoch of that peer, what is held for it (``PeerOutbox``), what
/// arrived from it (``InboundSequence``), whether it is reachable, since when it isn't, and
/// the congestion vote its link casts on the node's publishers.
///
/// It bounds what it holds: per peer in bytes, over all peers in bytes, and in time from the
/// moment a peer became unreachable. Past a bound the peer's outbox collapses into one gap,
/// which the peer reads when it is back and tells its subscribers about; the drop is reported
/// per peer and reason, so that a long outage is never silent.
///
/// Sans-IO and confined to one thread by its owner: events come in with the clock; what the
/// owner must do comes back as ``Effect``s, except on the message path (``append(forward:to:)``,
/// ``nextToWrite(for:)``, ``sequencedArrived(_:bytes:from:link:)``), which returns small values
/// and leaves the rare effects of an overflow queued for ``takeEffects()``.
final class PeerSessions {
    struct Settings {
        /// Bytes held for one peer before its outbox collapses (`cluster.outbox-bytes`).
        var peerBytes = 64 << 20
        /// Bytes held for all peers together before the largest outbox collapses
        /// (`cluster.outbox-node-bytes`): a partition from many peers must not take the node's memory.
        var nodeBytes = 256 << 20
        /// How long a peer may stay unreachable before what is held for it collapses
        /// (`cluster.outage-grace-ms`). Zero collapses at once, as links did before resuming.
        /// It counts from the end of reachability: a peer never reached has no outage (its
        /// interest, and so anything held for it, comes over a link).
        var outageGrace: TimeAmount = .seconds(30)
        /// Sessions of peers membership forgot, kept as summaries so that a peer coming back
        /// in the same life resumes where it was instead of being told "unknown".
        var summaryCapacity = 1_024
    }

    /// Why what was held for a peer was dropped; the labels are the metric's.
    enum DropReason: String, Sendable, CaseIterable {
        case grace
        case bytes
        case nodeBytes = "node_bytes"
        /// The peer booted again: what was meant for its previous life is of no use.
        case peerRestarted = "peer_restarted"
        /// The peer left gracefully, after telling its clients.
        case peerLeft = "peer_left"
    }

    /// What the owner must do after an event.
    enum Effect: Equatable {
        /// Apply this peer's congestion vote to the node's flow control. Votes alternate
        /// per peer, starting with `true`: every pause is followed by its release.
        case congested(NodeID, Bool)
        /// The peer became unreachable: new queue hand-offs avoid it, its interest stays.
        case unreachable(NodeID)
        /// The peer is reachable again after `outage` (`nil`: for the first time).
        case reachable(NodeID, outage: TimeAmount?)
        /// The peer stayed unreachable for the whole grace: what was held for it collapsed,
        /// and the reactions to a dead member are due.
        case graceExpired(NodeID)
        /// `messages` topic messages held for the peer were dropped (counted per reason).
        case dropped(NodeID, DropReason, messages: Int)
        /// A queue hand-off held for the peer is this node's again.
        case reclaimed(NodeID, handoff: UInt64, body: ByteBuffer)
        /// The peer processed hand-off `handoff`: it owns the message now.
        case settled(NodeID, handoff: UInt64)
        /// Send on the peer's link (acknowledgements).
        case send(LinkMessage, to: NodeID)
        /// The peer broke the sequence protocol on `link`: close it.
        case closeLink(NodeID, link: UInt64, detail: String)
    }

    /// What became of a message appended for some peers.
    struct AppendOutcome: Equatable {
        /// Peers holding it until they process it.
        var held = 0
        /// Peers for which it joined a gap instead (a bound was reached).
        var dropped = 0
        /// Peers without a session: nothing to hold it in.
        var unknown = 0
        /// Something was dropped or an outbox collapsed: take the effects waiting in
        /// ``takeEffects()`` now.
        var effectsWaiting = false
    }

    /// How far the two sequences with one life of a peer went.
    struct Position: Equatable {
        var epoch: UInt64
        /// This node's sequence: the peer processed every number up to this one.
        var acknowledged: UInt64
        /// This node's sequence: the number the next entry written gets.
        var nextSeq: UInt64
        /// The peer's sequence: processed here up to this number.
        var received: UInt64
    }

    /// What the owner may read about one peer's session (for status, metrics and tests).
    struct State: Equatable {
        var position: Position
        var reachable: Bool
        var outageSince: NIODeadline?
        var graceExpired: Bool
        var congestionVote: Bool
        var link: UInt64?
        var heldBytes: Int
        var heldMessages: Int
    }

    /// Where a forgotten peer's session stood, for when that life of the peer comes back.
    struct Summary: Equatable {
        var position: Position
        /// What was held, collapsed (`nil`: nothing was).
        var gap: SequenceGap?
    }

    let epoch: UInt64
    let settings: Settings
    /// The routing key of a forward's body, for the gaps to name the topics they concern.
    let keyOf: (ByteBuffer) -> String?

    /// One per peer, for the newest boot epoch heard of. Removed when the peer leaves, when a
    /// newer epoch replaces it, or when membership forgets the peer (into ``summaries``).
    private var sessions: [NodeID: Session] = [:]
    /// Removed when taken back by a session of the same epoch, when a newer epoch of the peer
    /// appears, or as the oldest past ``Settings/summaryCapacity``.
    private var summaries: [NodeID: Summary] = [:]
    /// ``summaries``' keys, oldest first; the same entries leave both.
    private var summaryOrder = Deque<NodeID>()
    /// Emptied by ``takeEffects()``, which every event but the message path's calls.
    var effects: [Effect] = []
    /// What every outbox holds, kept in step with each change to one.
    private(set) var nodeBytes = 0

    /// - Parameters:
    ///   - epoch: this node's boot epoch.
    ///   - keyOf: reads a forward body's routing key (only when an outbox collapses).
    init(epoch: UInt64, settings: Settings, keyOf: @escaping (ByteBuffer) -> String?) {
        self.epoch = epoch
        self.settings = settings
        self.keyOf = keyOf
    }

    /// The effects waiting: an event returns them with its own, and the owner takes them at
    /// once when an append says `effectsWaiting`.
    func takeEffects() -> [Effect] {
        defer { effects = [] }
        return effects
    }

    func state(of peer: NodeID) -> State? {
        sessions[peer].map { session in
            State(
                position: session.position,
                reachable: session.reachable,
                outageSince: session.outageSince,
                graceExpired: session.graceExpired,
                congestionVote: session.congestionVote,
                link: session.link?.number,
                heldBytes: session.outbox.bytes,
                heldMessages: session.outbox.inFlight.count + session.outbox.unsent.count
            )
        }
    }

    /// Whether `peer` is alive and linked: new queue hand-offs may go there.
    func isReachable(_ peer: NodeID) -> Bool { sessions[peer]?.reachable ?? false }

    /// Whether what is published for `peer` is held for it: it has a session, and no outage
    /// of it outlasted the grace.
    func holdsFor(_ peer: NodeID) -> Bool {
        guard settings.outageGrace > .zero, let session = sessions[peer] else { return false }
        return !session.graceExpired
    }

    /// Whether `peer`'s link carries numbered entries (wire version 3), or it has no link and
    /// what is published for it waits in its session.
    func sequences(_ peer: NodeID) -> Bool {
        guard let session = sessions[peer] else { return false }
        return session.link?.resumable ?? true
    }

    /// The peers with a session, for status and metrics.
    var peers: Dictionary<NodeID, Session>.Keys { sessions.keys }

    func summary(of peer: NodeID) -> Summary? { summaries[peer] }
    var summaryCount: Int { summaries.count }

    // MARK: - Links

    /// A link to `peer` (boot `epoch`) is established; `link` is the owner's number for it.
    /// A resumable link carries sequenced entries once the peer's resume arrives; another
    /// (wire version 2) carries none, and only counts for reachability and the vote.
    ///
    /// The peer counts as reachable from here, not from its resume: a link that replaces a
    /// healthy one is no outage, and with a zero grace it would collapse the outbox.
    func linkAttached(to peer: NodeID, epoch: UInt64, link: UInt64, resumable: Bool, now: NIODeadline) -> [Effect] {
        if openSession(peer, epoch: epoch, status: .alive) {
            modify(peer) { session in
                // A link that replaces another writes again what went out on the old one.
                session.outbox.linkDetached()
                session.link = Session.Link(number: link, resumable: resumable, resumed: false, writable: true)
                refresh(&session, peer, now: now)
            }
        }
        return takeEffects()
    }

    /// A link to `peer` closed; one another link had replaced changes nothing.
    func linkDetached(from peer: NodeID, epoch: UInt64, link: UInt64, now: NIODeadline) -> [Effect] {
        modify(peer) { session in
            guard session.epoch == epoch, session.link?.number == link else { return }
            session.link = nil
            session.outbox.linkDetached()
            refresh(&session, peer, now: now)
        }
        return takeEffects()
    }

    /// The link's channel became writable or stopped being so (its high-water mark).
    func writabilityChanged(of peer: NodeID, link: UInt64, writable: Bool, now: NIODeadline) -> [Effect] {
        modify(peer) { session in
            guard session.link?.number == link else { return }
            session.link?.writable = writable
            refresh(&session, peer, now: now)
        }
        return takeEffects()
    }

    // MARK: - Membership

    /// Membership changed `peer`'s status (at boot `epoch`). A newer epoch ends the session
    /// of the older; leaving ends it (its clients were told by its drain); dead or suspect
    /// only makes it unreachable, and the grace starts.
    func statusChanged(_ peer: NodeID, epoch: UInt64, to status: MemberUpdate.Status, now: NIODeadline) -> [Effect] {
        if status == .left {
            if let session = sessions[peer], session.epoch <= epoch {
                endSession(peer, reason: session.epoch < epoch ? .peerRestarted : .peerLeft)
            }
            forget(summaryOf: peer)
        } else if status == .dead, sessions[peer] == nil {
            // Nothing is held for a peer never heard of alive.
        } else if openSession(peer, epoch: epoch, status: status) {
            modify(peer) { session in
                session.status = status
                refresh(&session, peer, now: now)
            }
        }
        return takeEffects()
    }

    /// Membership forgot `peer` (its tombstone expired): the session is kept as a summary,
    /// in case the same life of the peer comes back.
    func memberForgotten(_ peer: NodeID) -> [Effect] {
        guard var session = sessions[peer] else { return takeEffects() }
        // Gaps alone collapse too: one written and not acknowledged must stand in the summary.
        if !session.outbox.isEmpty { collapse(&session, peer, reason: .grace) }
        var gap: SequenceGap?
        if case .gap(let held) = session.outbox.unsent.last { gap = held }
        remember(peer, Summary(position: session.position, gap: gap))
        if session.congestionVote { effects.append(.congested(peer, false)) }
        nodeBytes -= sessions.removeValue(forKey: peer)?.outbox.bytes ?? 0
        return takeEffects()
    }

    // MARK: - The clock

    /// Expires the graces that ran out and acknowledges what arrived since the last tick.
    func tick(now: NIODeadline) -> [Effect] {
        for peer in sessions.keys.sorted() {
            modify(peer) { session in
                expireIfDue(&session, peer, now: now)
                if session.link != nil, let seq = session.inbound.acknowledgement() {
                    effects.append(.send(acknowledgement(seq, session), to: peer))
                }
            }
        }
        return takeEffects()
    }

    // MARK: - Sessions

    /// Opens (or keeps) the session for `peer`'s boot `epoch`.
    ///
    /// - Returns: whether a session for that epoch is open; `false` for an older epoch.
    private func openSession(_ peer: NodeID, epoch: UInt64, status: MemberUpdate.Status) -> Bool {
        if let held = sessions[peer] {
            if held.epoch == epoch { return true }
            if held.epoch > epoch { return false }
            endSession(peer, reason: .peerRestarted)
        }
        var session = Session(epoch: epoch, status: status)
        if let summary = summaries[peer] {
            forget(summaryOf: peer)
            let position = summary.position
            if position.epoch == epoch {
                session.outbox = PeerOutbox(acknowledged: position.acknowledged, nextSeq: position.nextSeq)
                if let gap = summary.gap { session.outbox.append(.gap(gap)) }
                session.inbound = InboundSequence(peerEpoch: epoch, received: position.received)
                session.inboundKnown = true
            }
        }
        nodeBytes += session.outbox.bytes
        sessions[peer] = session
        return true
    }

    /// Ends `peer`'s session: its topic messages are dropped for `reason`, its hand-offs reclaimed.
    private func endSession(_ peer: NodeID, reason: DropReason) {
        guard let session = sessions.removeValue(forKey: peer) else { return }
        nodeBytes -= session.outbox.bytes
        if session.congestionVote { effects.append(.congested(peer, false)) }
        var messages = 0
        for entry in session.outbox.inFlight.lazy.map(\.entry) + session.outbox.unsent {
            switch entry {
            case .forward: messages += 1
            case .handoff(let id, let body): effects.append(.reclaimed(peer, handoff: id, body: body))
            case .gap: break
            }
        }
        if messages > 0 { effects.append(.dropped(peer, reason, messages: messages)) }
    }

    private func remember(_ peer: NodeID, _ summary: Summary) {
        forget(summaryOf: peer)
        summaries[peer] = summary
        summaryOrder.append(peer)
        while summaryOrder.count > settings.summaryCapacity, let oldest = summaryOrder.popFirst() {
            summaries[oldest] = nil
        }
    }

    private func forget(summaryOf peer: NodeID) {
        guard summaries.removeValue(forKey: peer) != nil else { return }
        // Linear, but only when a forgotten peer comes back or is forgotten again.
        if let index = summaryOrder.firstIndex(of: peer) { summaryOrder.remove(at: index) }
    }

    /// Runs `body` on `peer`'s session in place, keeping ``nodeBytes`` in step.
    @discardableResult
    func modify<Result>(_ peer: NodeID, _ body: (inout Session) -> Result) -> Result? {
        guard let index = sessions.index(forKey: peer) else { return nil }
        let before = sessions.values[index].outbox.bytes
        let result = body(&sessions.values[index])
        nodeBytes += sessions.values[index].outbox.bytes - before
        return result
    }

    // MARK: - Reachability, votes, grace

    /// Brings the outage clock, the vote and the grace in line with the session's state.
    func refresh(_ session: inout Session, _ peer: NodeID, now: NIODeadline) {
        let reachable = session.reachable
        if reachable != session.reportedReachable {
            session.reportedReachable = reachable
            if reachable {
                effects.append(.reachable(peer, outage: session.outageSince.map { now - $0 }))
                session.outageSince = nil
                session.graceExpired = false
            } else {
                session.outageSince = now
                effects.append(.unreachable(peer))
            }
        }
        let vote = session.reachable && session.link?.writable == false
        if vote != session.congestionVote {
            session.congestionVote = vote
            effects.append(.congested(peer, vote))
        }
        expireIfDue(&session, peer, now: now)
    }

    private func expireIfDue(_ session: inout Session, _ peer: NodeID, now: NIODeadline) {
        guard let since = session.outageSince, !session.graceExpired, now - since >= settings.outageGrace else {
            return
        }
        session.graceExpired = true
        if holdsMessages(session.outbox) { collapse(&session, peer, reason: .grace) }
        effects.append(.graceExpired(peer))
    }

    /// Turns everything held for `peer` into one gap; hand-offs come back to this node.
    func collapse(_ session: inout Session, _ peer: NodeID, reason: DropReason) {
        let gapReason: SequenceGap.Reason =
            switch reason {
            case .bytes: .bytes
            case .nodeBytes: .nodeBytes
            default: .grace
            }
        var messages = 0
        for entry in session.outbox.inFlight.lazy.map(\.entry) + session.outbox.unsent {
            if case .forward = entry { messages += 1 }
        }
        for handoff in session.outbox.collapse(reason: gapReason, keyOf: keyOf) {
            effects.append(.reclaimed(peer, handoff: handoff.id, body: handoff.body))
        }
        if messages > 0 { effects.append(.dropped(peer, reason, messages: messages)) }
        if reason != .grace {
            // The collapse's gap is the next number written: until the peer processed it, what
            // arrives joins a gap too, so a peer too slow to keep up isn't refilled at once.
            session.dropping = Session.Dropping(reason: reason, through: session.outbox.nextSeq)
        }
    }

    /// Whether `peer` has a session that holds what arrives now, rather than adding it to a gap.
    func accepts(_ peer: NodeID) -> Bool {
        guard let session = sessions[peer], !session.graceExpired else { return false }
        guard let dropping = session.dropping else { return true }
        return session.outbox.acknowledged >= dropping.through
    }

    /// Collapses the largest outboxes until `cost` more bytes fit under the node's bound, so
    /// that one peer far behind doesn't starve the others.
    func relieveNode(of cost: Int) {
        while nodeBytes + cost > settings.nodeBytes {
            // Sorted first, so that ties go to the same peer in every run.
            let candidates = sessions.sorted { $0.key < $1.key }.filter { holdsMessages($0.value.outbox) }
            guard let largest = candidates.max(by: { $0.value.outbox.bytes < $1.value.outbox.bytes })?.key else {
                break
            }
            modify(largest) { collapse(&$0, largest, reason: .nodeBytes) }
        }
    }

    /// Whether the outbox holds anything but gaps (gaps come at most two in a row).
    func holdsMessages(_ outbox: PeerOutbox) -> Bool {
        outbox.inFlight.contains { !$0.entry.isGap } || outbox.unsent.contains { !$0.isGap }
    }

    func acknowledgement(_ seq: UInt64, _ session: Session) -> LinkMessage {
        .received(senderEpoch: epoch, receiverEpoch: session.epoch, seq: seq)
    }

    /// Counts one more message dropped for `peer`, folded into the last report when it is the
    /// same peer's for the same reason, so a long run of drops is one effect.
    func recordDrop(_ peer: NodeID, _ reason: DropReason) {
        if case .dropped(peer, reason, let messages) = effects.last {
            effects[effects.count - 1] = .dropped(peer, reason, messages: messages + 1)
        } else {
            effects.append(.dropped(peer, reason, messages: 1))
        }
    }
}

// MARK: - Session

extension PeerSessions {
    /// One peer's session for one boot epoch of that peer.
    struct Session {
        struct Link {
            var number: UInt64
            /// Wire version 3: it carries entries, after the peer's resume.
            var resumable: Bool
            /// The peer's resume arrived: entries may be written on it.
            var resumed: Bool
            var writable: Bool
        }

        /// The peer's outbox is being refilled into gaps until it processed `through`.
        struct Dropping {
            var reason: DropReason
            var through: UInt64
        }

        let epoch: UInt64
        /// Entries leave when the peer acknowledges or resumes past them, all at once in a
        /// collapse, or with the session.
        var outbox = PeerOutbox()
        var inbound: InboundSequence
        /// Whether the peer's outbox counts from this inbound sequence: false for a session
        /// opened from nothing, which may be a peer's life forgotten here while it kept counting.
        var inboundKnown = false
        var status: MemberUpdate.Status
        var link: Link?
        /// Since when the peer has been unreachable; `nil` while it is, and before it ever was.
        var outageSince: NIODeadline?
        /// Reachability as last reported in an effect.
        var reportedReachable = false
        /// The current outage outlasted the grace: what arrives joins a gap until it ends.
        var graceExpired = false
        var dropping: Dropping?
        var congestionVote = false

        init(epoch: UInt64, status: MemberUpdate.Status) {
            self.epoch = epoch
            self.status = status
            self.inbound = InboundSequence(peerEpoch: epoch)
        }

        /// Alive and linked.
        var reachable: Bool { status == .alive && link != nil }

        var position: Position {
            Position(
                epoch: epoch,
                acknowledged: outbox.acknowledged,
                nextSeq: outbox.nextSeq,
                received: inbound.received
            )
        }
    }
}

extension PeerOutbox.Entry {
    var isGap: Bool {
        if case .gap = self { true } else { false }
    }
}
