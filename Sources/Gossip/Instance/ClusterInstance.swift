import NIOCore
import StompRouting

/// The cluster's protocol on one node, without I/O: membership (``MembershipInstance``),
/// interest and its acknowledgements (``InterestSync``), queue hand-offs
/// (``QueueHandoffs``), the resumable sessions that carry topic messages to each peer
/// (``PeerSessions``), and how each reacts to the others. A member declared dead takes its
/// link along and what was handed to it comes back; its interest stays for
/// `cluster.outage-grace-ms`, so the topic messages meant for it wait in its session, and
/// goes when the grace ends. An acknowledgement releases receipts; a queue's consumers
/// elsewhere reach the router.
///
/// The cluster shell feeds it link events, peers' messages and the clock, and carries out
/// the directives; the simulation drives the same type over simulated links. `Release` is
/// what a receipt waiting for the peers carries (a closure in the shell).
struct ClusterInstance<Release> {
    enum Directive {
        /// Send over the established link to `peer`; with none, the message is lost and the
        /// protocol's timeouts take care of it.
        case send(LinkMessage, to: NodeID)
        /// Send to every linked peer.
        case broadcast(LinkMessage)
        /// Dial this member now (membership needs a link to it).
        case connect(NodeID, address: String)
        /// Close the link to `peer`: it was declared dead or left.
        case closeLink(NodeID)
        /// Work for the local router.
        case route(RouterClusterOperation)
        /// A receipt that waited for the peers may go.
        case release(Release, InterestSync<Release>.Outcome)
        /// A member changed status (or appeared: `previous` is nil); `droppedEntries` counts
        /// the interest entries that went with a dead or departed one (`nil`: it keeps them,
        /// alive, or dead within `cluster.outage-grace-ms`).
        case memberChanged(MemberUpdate, previous: MemberUpdate.Status?, droppedEntries: Int?)
        /// Write what `peer`'s session has ready on its link (``PeerSessions/nextToWrite(for:)``).
        case pump(NodeID)
        /// Close link number `link` to `peer`: it broke the sequence protocol.
        case breakLink(NodeID, link: UInt64, reason: String)
        /// `peer`'s vote on the node's publishers: pause while its link is full and it is reachable.
        case congested(NodeID, Bool)
        /// `peer` became unreachable (it keeps its interest for the grace), or reachable
        /// again after `outage` (`nil`: the first time).
        case reachability(NodeID, reachable: Bool, outage: TimeAmount?)
        /// Interest entries of `peer` dropped because its outage outlasted the grace.
        case interestExpired(NodeID, entries: Int)
        /// Topic messages held for `peer` were dropped for `reason`.
        case dropped(NodeID, PeerSessions.DropReason, messages: Int)
    }

    struct Settings {
        var membership = MembershipInstance.Settings()
        /// How long a receipt waits for the peers' acknowledgements at most.
        var acknowledgementTimeout: TimeAmount = .seconds(2)
        /// How often each linked peer gets a digest of the interest views.
        var digestInterval: TimeAmount = .seconds(5)
        /// Members (this one included) the node must once be linked to, with their interest,
        /// before it counts as joined.
        var minimumMembers = 1
        /// What each peer's session may hold, and for how long while the peer is away.
        var sessions = PeerSessions.Settings()
    }

    let settings: Settings
    private(set) var membership: MembershipInstance
    private(set) var interest: InterestSync<Release>
    /// Every peer's resumable session: what is held for it and what arrived from it. A class,
    /// so that the shell's message path appends and writes without copying the instance.
    let sessions: PeerSessions
    private var handoffs: QueueHandoffs
    /// The established link to each peer, by the shell's number for it.
    private(set) var links: [NodeID: UInt64] = [:]
    private var lastDigest: NIODeadline
    /// Whether the node was once linked to `minimumMembers - 1` peers holding their
    /// interest: the start of "joined". Never reset, so a node that lost its peers later
    /// stays in service for the clients it has.
    private(set) var hasFormed = false

    init(
        node: NodeID,
        epoch: UInt64,
        address: String,
        settings: Settings,
        now: NIODeadline,
        membershipRandom: any RandomNumberGenerator = SystemRandomNumberGenerator(),
        handoffRandom: any RandomNumberGenerator = SystemRandomNumberGenerator()
    ) {
        self.settings = settings
        self.membership = MembershipInstance(
            node: node,
            epoch: epoch,
            address: address,
            settings: settings.membership,
            random: membershipRandom
        )
        self.interest = InterestSync(epoch: epoch, acknowledgementTimeout: settings.acknowledgementTimeout)
        self.sessions = PeerSessions(epoch: epoch, settings: settings.sessions, keyOf: LinkMessage.topicKey(ofForward:))
        self.handoffs = QueueHandoffs(random: handoffRandom)
        self.lastDigest = now
    }

    /// The address peers reach this node at, once the listener is bound (before any link).
    mutating func advertise(address: String, random: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        membership = MembershipInstance(
            node: membership.node,
            epoch: membership.epoch,
            address: address,
            settings: settings.membership,
            random: random
        )
    }

    /// Hand-offs not acknowledged yet.
    var pendingHandoffs: Int { handoffs.pendingCount }

    /// Peers with an established link, as the shell reports them.
    var linked: Set<NodeID> { Set(links.keys) }

    /// Leaving: with no consumer anywhere, any linked peer taking a queue message beats losing it.
    var evacuating: Bool {
        get { handoffs.evacuating }
        set { handoffs.evacuating = newValue }
    }

    // MARK: - The clock

    /// Something arrived from `peer` at `time` (the shell's link saw it).
    mutating func heard(from peer: NodeID, at time: NIODeadline) {
        membership.heard(from: peer, at: time)
    }

    mutating func tick(now: NIODeadline) -> [Directive] {
        var directives: [Directive] = []
        perform(membership.tick(now: now), now: now, into: &directives)
        perform(sessions.tick(now: now), now: now, into: &directives)
        if now - lastDigest >= settings.digestInterval {
            lastDigest = now
            for peer in links.keys.sorted() { directives.append(.send(interest.digest(for: peer), to: peer)) }
        }
        releaseWaiters(now: now, into: &directives)
        noteFormation()
        return directives
    }

    /// The node leaves gracefully: peers hear of it at once.
    mutating func leave(now: NIODeadline) -> [Directive] {
        var directives: [Directive] = []
        perform(membership.leave(), now: now, into: &directives)
        return directives
    }

    // MARK: - Links

    /// A link to `peer` (boot `epoch`, reachable at `address`) is established and kept; `link`
    /// is the shell's number for it, unique among the node's links. A `resumable` link (wire
    /// version 3) carries the session's numbered entries once the peer's resume arrives.
    mutating func linkEstablished(
        to peer: NodeID,
        epoch: UInt64,
        address: String,
        link: UInt64,
        resumable: Bool,
        now: NIODeadline
    ) -> [Directive] {
        let wasLinked = links[peer] != nil
        links[peer] = link
        var directives: [Directive] = []
        perform(
            membership.linkEstablished(node: peer, epoch: epoch, address: address, now: now),
            now: now,
            into: &directives
        )
        perform(
            sessions.linkAttached(to: peer, epoch: epoch, link: link, resumable: resumable, now: now),
            now: now,
            into: &directives
        )
        // The session's resume first: the peer writes nothing numbered before it.
        if resumable, let resume = sessions.resumeMessage(for: peer) { directives.append(.send(resume, to: peer)) }
        // A link that (re)connects starts from a full snapshot of this node's interest.
        directives.append(.send(interest.linkEstablished(to: peer, peerEpoch: epoch), to: peer))
        // Its queue consumers count again (they didn't while it had no link).
        if !wasLinked { for queue in queues(consumedOn: peer) { directives.append(remoteConsumers(of: queue)) } }
        return directives
    }

    /// An established link to `peer` closed. Queue messages handed over it and not
    /// acknowledged are this node's again. When it was the peer's current link, membership
    /// hears of it; one that another link had replaced takes only its own hand-offs along.
    mutating func linkClosed(
        to peer: NodeID,
        epoch: UInt64,
        link: UInt64,
        now: NIODeadline,
        leaving: Bool
    ) -> [Directive] {
        var directives: [Directive] = []
        guard links[peer] == link else {
            for handoff in handoffs.reclaim(from: peer, over: link) { directives.append(.route(reclaimed(handoff))) }
            // The session may still hold it: a member declared dead lets go of its link here first.
            perform(sessions.linkDetached(from: peer, epoch: epoch, link: link, now: now), now: now, into: &directives)
            return directives
        }
        links[peer] = nil
        reclaimHandoffs(from: peer, into: &directives)
        perform(sessions.linkDetached(from: peer, epoch: epoch, link: link, now: now), now: now, into: &directives)
        // Its queue consumers can't be handed anything until it is linked again.
        for queue in queues(consumedOn: peer) { directives.append(remoteConsumers(of: queue)) }
        if !leaving { perform(membership.linkClosed(node: peer, now: now), now: now, into: &directives) }
        return directives
    }

    /// The link's unsent bytes passed its high-water mark, or fell under its low one.
    mutating func linkWritabilityChanged(
        of peer: NodeID,
        link: UInt64,
        writable: Bool,
        now: NIODeadline
    ) -> [Directive] {
        var directives: [Directive] = []
        perform(
            sessions.writabilityChanged(of: peer, link: link, writable: writable, now: now),
            now: now,
            into: &directives
        )
        if writable { directives.append(.pump(peer)) }
        return directives
    }

    // MARK: - Peers' messages

    /// A message from `peer` (boot `peerEpoch`) on its established link.
    mutating func received(
        _ message: LinkMessage,
        from peer: NodeID,
        peerEpoch: UInt64,
        now: NIODeadline
    ) -> [Directive] {
        var directives: [Directive] = []
        switch message {
        case .ping, .ack, .pingRequest, .members:
            perform(membership.received(message, from: peer, now: now), now: now, into: &directives)

        case .interestDelta, .interestSnapshot, .interestAck, .interestDigest:
            let reaction = interest.received(message, from: peer, peerEpoch: peerEpoch)
            for reply in reaction.replies { directives.append(.send(reply, to: peer)) }
            for queue in reaction.queuesChanged.sorted() { directives.append(remoteConsumers(of: queue)) }
            if reaction.acknowledgementAdvanced { releaseWaiters(now: now, into: &directives) }

        case .forward(let envelope):
            directives.append(.route(.deliverForwarded(envelope)))

        case .handoff(let id, let queue, let envelope, let redelivered, let hops):
            let hops = QueueHandoffs.hopsOnArrival(hops)
            directives.append(.route(.acceptHandoff(queue: queue, envelope, redelivered: redelivered, hops: hops)))
            directives.append(.send(.handoffAck(id: id), to: peer))

        case .handoffAck(let id):
            handoffs.acknowledged(id)

        case .nodeInfo, .adminRequest, .heartbeat, .hello, .challenge, .proof, .refuse, .replication:
            // The shell handles these itself.
            break

        case .sequenced(let seq, let inner):
            guard let link = links[peer] else { break }
            switch sessions.sequencedArrived(seq, bytes: inner?.bodySize ?? 0, from: peer, link: link) {
            case .process?:
                switch inner {
                case .forward(let envelope)?:
                    directives.append(.route(.deliverForwarded(envelope)))
                case .handoff(_, let queue, let envelope, let redelivered, let hops)?:
                    let hops = QueueHandoffs.hopsOnArrival(hops)
                    directives.append(
                        .route(.acceptHandoff(queue: queue, envelope, redelivered: redelivered, hops: hops))
                    )
                default:
                    // A destination that didn't parse: its number counts, the message is dropped.
                    break
                }
                if let ack = sessions.acknowledgementIfDue(for: peer) { directives.append(.send(ack, to: peer)) }
            case .hole(let expected, let got)?:
                directives.append(
                    .breakLink(peer, link: link, reason: "sequence hole: expected \(expected), got \(got)")
                )
            case .duplicate?, nil:
                break
            }

        case .gap(let gap):
            guard let link = links[peer],
                let (verdict, processed) = sessions.gapArrived(
                    first: gap.first,
                    last: gap.last,
                    from: peer,
                    link: link
                )
            else { break }
            switch verdict {
            case .process:
                if let loss = Self.loss(gap, processedAlready: processed, peer: peer) {
                    directives.append(.route(.forwardsLost(loss)))
                }
                if let ack = sessions.acknowledgementIfDue(for: peer) { directives.append(.send(ack, to: peer)) }
            case .hole(let expected, let got):
                directives.append(
                    .breakLink(peer, link: link, reason: "sequence hole: expected \(expected), got \(got)")
                )
            case .duplicate:
                break
            }

        case .resume(let senderEpoch, let receiverEpoch, let received):
            guard let link = links[peer] else { break }
            let effects = sessions.resumeReceived(
                from: peer,
                senderEpoch: senderEpoch,
                receiverEpoch: receiverEpoch,
                received: received,
                link: link
            )
            perform(effects, now: now, into: &directives)
            directives.append(.pump(peer))

        case .received(let senderEpoch, let receiverEpoch, let seq):
            guard let link = links[peer] else { break }
            let effects = sessions.receivedAck(
                from: peer,
                senderEpoch: senderEpoch,
                receiverEpoch: receiverEpoch,
                seq: seq,
                link: link
            )
            perform(effects, now: now, into: &directives)
        }
        return directives
    }

    /// What the local subscribers lost to a gap: none when every number it stands for that
    /// was written had arrived here before the sender dropped the rest.
    static func loss(_ gap: SequenceGap, processedAlready: UInt64, peer: NodeID) -> ForwardLoss? {
        let messages: UInt32? =
            gap.lost == .max ? nil : gap.lost - UInt32(clamping: min(UInt64(gap.lost), processedAlready))
        if messages == 0 { return nil }
        let reason =
            switch gap.reason {
            case .grace: "it could not reach this node for longer than cluster.outage-grace-ms"
            case .bytes: "it held cluster.outbox-bytes for this node"
            case .nodeBytes: "it held cluster.outbox-node-bytes for all its peers"
            case .sessionUnknown: "it had lost track of what it sent this node"
            }
        return ForwardLoss(peer: LinkHandshake.quoted(peer.name), messages: messages, reason: reason, keys: gap.keys)
    }

    // MARK: - From the local router

    /// Local subscriptions to `destination` changed by `delta`.
    ///
    /// - Returns: the delta for every linked peer, or `nil` when peers need not hear of it.
    mutating func interestChanged(_ destination: Destination, by delta: Int) -> LinkMessage? {
        interest.localChanged(destination, by: delta)
    }

    /// A queue message no consumer here can take: handed to a linked peer with consumers
    /// (chosen in proportion to their counts), or kept here.
    mutating func handOff(queue: String, _ message: MessageEnvelope, redelivered: Bool, hops: UInt8) -> Directive {
        let decision = handoffs.handOff(
            queue: queue,
            message,
            redelivered: redelivered,
            hops: hops,
            consumers: interest.remote.consumers(ofQueue: queue).filter { [links] in
                links[$0.key] != nil && sessions.isReachable($0.key)
            },
            linkedPeers: links.keys,
            link: { [links] in links[$0] ?? 0 }
        )
        switch decision {
        case .send(let id, let peer):
            return .send(
                .handoff(id: id, queue: queue, message: message, redelivered: redelivered, hops: hops),
                to: peer
            )
        case .keepHere:
            // As a message that travelled as far as it may: not offered again until a consumer appears.
            return .route(.acceptHandoff(queue: queue, message, redelivered: redelivered, hops: .max))
        }
    }

    /// Holds `release` until every live peer acknowledged this node's current interest.
    ///
    /// - Returns: `release` back when nothing needs waiting for.
    mutating func waitForPropagation(_ release: Release, now: NIODeadline) -> Release? {
        interest.waitForPropagation(release, live: membership.liveMembers, now: now)
    }

    // MARK: - Joined

    /// Why the node isn't joined yet; `nil` when it is: linked to enough members once, and
    /// now to every live member, holding its interest.
    mutating func notJoinedReason(seeds: [String]) -> String? {
        noteFormation()
        let holding = Set(links.keys.filter { interest.remote.version(of: $0) != nil })
        if !hasFormed {
            let seeds = seeds.isEmpty ? "no seeds configured" : "seeds " + seeds.joined(separator: ",")
            return
                "waiting for members: linked to \(holding.count) of the \(settings.minimumMembers - 1) peer(s) cluster.min-members=\(settings.minimumMembers) asks for (\(seeds))"
        }
        // Member ids come from peers' gossip: shown to operators, so quoted like in the logs.
        let missing = membership.liveMembers.filter { !holding.contains($0) }.map { LinkHandshake.quoted($0.name) }
            .sorted()
        guard !missing.isEmpty else { return nil }
        return "not yet linked to live member(s) \(missing.joined(separator: ", ")) with their interest"
    }

    private mutating func noteFormation() {
        guard !hasFormed else { return }
        let holding = links.keys.filter { interest.remote.version(of: $0) != nil }.count
        if holding + 1 >= settings.minimumMembers { hasFormed = true }
    }

    // MARK: - Glue

    private mutating func perform(
        _ membershipDirectives: [MembershipInstance.Directive],
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        for directive in membershipDirectives {
            switch directive {
            case .send(let message, let peer):
                directives.append(.send(message, to: peer))
            case .broadcast(let message):
                directives.append(.broadcast(message))
            case .connect(let peer, let address):
                if links[peer] == nil { directives.append(.connect(peer, address: address)) }
            case .statusChanged(let update, let previous):
                memberChanged(update, previous: previous, now: now, into: &directives)
            case .forgotten(let peer):
                perform(sessions.memberForgotten(peer), now: now, into: &directives)
            }
        }
    }

    private mutating func perform(
        _ effects: [PeerSessions.Effect],
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        for effect in effects {
            switch effect {
            case .congested(let peer, let vote):
                directives.append(.congested(peer, vote))
            case .unreachable(let peer):
                directives.append(.reachability(peer, reachable: false, outage: nil))
            case .reachable(let peer, let outage):
                directives.append(.reachability(peer, reachable: true, outage: outage))
            case .graceExpired(let peer):
                // A dead member's interest stayed for the grace; a suspect one keeps it.
                if membership.status(of: peer).map({ $0.status >= .dead }) ?? true {
                    dropInterest(of: peer, into: &directives)
                }
            case .dropped(let peer, let reason, let messages):
                directives.append(.dropped(peer, reason, messages: messages))
            case .reclaimed, .settled:
                // Hand-offs travel outside the sessions (``QueueHandoffs``), so none is held there.
                break
            case .send(let message, let peer):
                directives.append(.send(message, to: peer))
            case .closeLink(let peer, let link, let detail):
                directives.append(.breakLink(peer, link: link, reason: detail))
            }
        }
    }

    /// The effects an append left waiting (``PeerSessions/AppendOutcome/effectsWaiting``).
    mutating func sessionEffects(now: NIODeadline) -> [Directive] {
        var directives: [Directive] = []
        perform(sessions.takeEffects(), now: now, into: &directives)
        return directives
    }

    private mutating func memberChanged(
        _ update: MemberUpdate,
        previous: MemberUpdate.Status?,
        now: NIODeadline,
        into directives: inout [Directive]
    ) {
        let peer = update.node
        guard update.status >= .dead else {
            directives.append(.memberChanged(update, previous: previous, droppedEntries: nil))
            perform(
                sessions.statusChanged(peer, epoch: update.epoch, to: update.status, now: now),
                now: now,
                into: &directives
            )
            return
        }
        // A dead member within its grace keeps its interest, so that what is published for it
        // waits in its session; a departed one, or one with no grace, takes it along.
        let keepsInterest = update.status == .dead && sessions.holdsFor(peer)
        let entries = keepsInterest ? nil : interest.remote.entries(of: peer)?.count ?? 0
        directives.append(.memberChanged(update, previous: previous, droppedEntries: entries))
        if !keepsInterest { dropInterest(of: peer, into: &directives, report: false) }
        perform(
            sessions.statusChanged(peer, epoch: update.epoch, to: update.status, now: now),
            now: now,
            into: &directives
        )
        // What was handed to it and not acknowledged comes back; receipts no longer wait for it.
        if let link = links.removeValue(forKey: peer) {
            directives.append(.closeLink(peer))
            let effects = sessions.linkDetached(from: peer, epoch: update.epoch, link: link, now: now)
            perform(effects, now: now, into: &directives)
        }
        for queue in queues(consumedOn: peer) { directives.append(remoteConsumers(of: queue)) }
        reclaimHandoffs(from: peer, into: &directives)
        releaseWaiters(now: now, into: &directives)
    }

    /// `peer`'s interest goes: nothing more is routed there.
    private mutating func dropInterest(of peer: NodeID, into directives: inout [Directive], report: Bool = true) {
        if report { directives.append(.interestExpired(peer, entries: interest.remote.entries(of: peer)?.count ?? 0)) }
        for queue in interest.memberGone(peer).sorted() { directives.append(remoteConsumers(of: queue)) }
    }

    /// The queues `peer` has consumers of, as its interest says.
    private func queues(consumedOn peer: NodeID) -> [String] {
        guard let entries = interest.remote.entries(of: peer) else { return [] }
        return entries.keys.compactMap { if case .queue(let name) = $0 { name } else { nil } }.sorted()
    }

    /// Messages handed to a peer that went away before acknowledging them are this node's
    /// again, in the order they were handed over.
    private mutating func reclaimHandoffs(from peer: NodeID, into directives: inout [Directive]) {
        for handoff in handoffs.reclaim(from: peer) { directives.append(.route(reclaimed(handoff))) }
    }

    private func reclaimed(_ handoff: QueueHandoffs.Pending) -> RouterClusterOperation {
        .acceptHandoff(queue: handoff.queue, handoff.message, redelivered: handoff.redelivered, hops: handoff.hops)
    }

    private mutating func releaseWaiters(now: NIODeadline, into directives: inout [Directive]) {
        // Runs on every tick: the live members are only worth listing when someone waits.
        guard interest.waitingCount > 0 else { return }
        for (release, outcome) in interest.releaseWaiters(live: membership.liveMembers, now: now) {
            directives.append(.release(release, outcome))
        }
    }

    /// The consumers of `queue` on linked peers: only those can be handed a message.
    private func remoteConsumers(of queue: String) -> Directive {
        let total = interest.remote.consumers(ofQueue: queue).filter { links[$0.key] != nil }.values.reduce(0, +)
        return .route(.remoteQueueConsumers(queue: queue, count: total))
    }
}
