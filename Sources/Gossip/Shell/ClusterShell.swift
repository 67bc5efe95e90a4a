import BrokerShell
import CoreMetrics
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import StompRouting

/// The networking around ``ClusterInstance``: the link listener and dialler, the protocol
/// clock, and carrying out the instance's directives on links and on the local router.
///
/// Confined to one event loop, the router's, so that matching a publish against peers'
/// interest and writing to links need no locks and no hops: links are bootstrapped on that
/// loop too. `@unchecked Sendable` because of that confinement; every entry point asserts it.
public final class ClusterShell: ClusterSeam, @unchecked Sendable {
    public let settings: ClusterSettings
    public let eventLoop: any EventLoop
    let metrics = ClusterMetrics()
    let logger: Logger
    /// The local router's end of the seam (on this loop). Weak: the broker holds this shell.
    weak var router: (any RouterClusterInput)?
    /// The node's back-pressure, which links pause for and report congestion to.
    let flowControl: FlowControl?

    /// Membership, interest and hand-offs: every decision about peers.
    var instance: ClusterInstance<() -> Void>
    /// Established links, one per peer.
    var links: [NodeID: LinkChannelHandler] = [:]
    /// Every open link handler, established or still in its handshake.
    var openLinks: [ObjectIdentifier: LinkChannelHandler] = [:]
    /// Whom to dial when, and which of two links to a peer stays.
    var linkPolicy: LinkPolicy
    /// The number the last established link got (``LinkChannelHandler/number``).
    private var linksEstablished: UInt64 = 0
    private var topicScratch = Set<NodeID>()
    private var sequencedScratch: [NodeID] = []
    /// What each peer's session holds, as gauges: an entry per session, removed with it.
    private var outboxGauges: [NodeID: OutboxGauges] = [:]
    /// What was dropped for each peer, by reason: an entry per peer that had a drop, removed
    /// once membership forgot the peer and it has no session.
    private var outboxDrops: [NodeID: [PeerSessions.DropReason: Counter]] = [:]
    var listener: (any Channel)?
    var clock: RepeatedTask?
    var leaving = false
    /// Where the durable queues' traffic from peers goes (``LinkMessage/replication(_:)``).
    var replicationHandler: ((NodeID, ByteBuffer) -> Void)?
    /// This node's admin API address and its peers', as they told them (an entry goes when
    /// its member does), and what runs an operator's request that a peer passed on.
    var admin = ClusterAdminState()

    /// - Parameters:
    ///   - settings: the cluster's configuration.
    ///   - eventLoop: the router's loop; links and timers run here too.
    ///   - logger: for membership and link events.
    ///   - flowControl: the node's back-pressure; `nil` for links that never pause.
    ///   - router: the local router's end of the seam, called on `eventLoop`; held weakly,
    ///     since its owner (the broker) holds this shell as its ``ClusterSeam``.
    public init(
        settings: ClusterSettings,
        eventLoop: any EventLoop,
        logger: Logger,
        flowControl: FlowControl? = nil,
        router: any RouterClusterInput
    ) {
        self.settings = settings
        self.eventLoop = eventLoop
        self.flowControl = flowControl
        self.router = router
        var logger = logger
        logger[metadataKey: "cluster.node"] = "\(settings.node)"
        self.logger = logger
        self.instance = ClusterInstance(
            node: settings.node,
            epoch: settings.epoch,
            address: settings.advertisedAddress ?? "\(settings.host):\(settings.port)",
            settings: ClusterInstance.Settings(
                membership: settings.membership,
                acknowledgementTimeout: settings.interestAckTimeout,
                digestInterval: settings.digestInterval,
                minimumMembers: settings.minimumMembers,
                sessions: settings.sessions
            ),
            now: .now()
        )
        self.linkPolicy = LinkPolicy(
            settings: LinkPolicy.Settings(
                backoffMinimum: settings.reconnectBackoffMinimum,
                backoffMaximum: settings.reconnectBackoffMaximum
            ),
            now: .now()
        )
    }

    // MARK: - The protocol clock

    func tick() {
        guard !leaving else { return }
        let now = NIODeadline.now()
        for (peer, link) in links {
            // A link this node stopped reading (flow control) may hold the answer unread: its
            // peer is not to blame for that.
            instance.heard(from: peer, at: link.isPausedForFlowControl ? now : link.lastReceived)
        }
        perform(instance.tick(now: now))
        recordOutboxes()
        keepLinksAlive(now: now)
        dialMissingPeers(now: now)
    }

    /// Brings the held-bytes and held-messages gauges in line with the peers' sessions.
    private func recordOutboxes() {
        let sessions = instance.sessions
        for (peer, gauges) in outboxGauges where sessions.state(of: peer) == nil {
            gauges.destroy()
            outboxGauges[peer] = nil
        }
        for (peer, counters) in outboxDrops
        where sessions.state(of: peer) == nil && instance.membership.status(of: peer) == nil {
            for counter in counters.values { counter.destroy() }
            outboxDrops[peer] = nil
        }
        for peer in sessions.peers {
            guard let state = sessions.state(of: peer) else { continue }
            let gauges = outboxGauges[peer] ?? metrics.outboxGauges(for: peer)
            outboxGauges[peer] = gauges
            gauges.bytes.record(state.heldBytes)
            gauges.messages.record(state.heldMessages)
        }
    }

    private func keepLinksAlive(now: NIODeadline) {
        for link in openLinks.values {
            // A link this node stopped reading isn't silent; it just isn't being listened to.
            if now - link.lastReceived > settings.linkTimeout, !link.isPausedForFlowControl {
                logger.info(
                    "closing silent link",
                    metadata: [
                        "cluster.peer": "\(LinkHandshake.quoted(link.peer?.node.name ?? link.dialedAddress ?? "?"))"
                    ]
                )
                link.close()
            } else if link.isEstablished, now - link.lastSent >= settings.heartbeatInterval {
                link.send(.heartbeat)
            }
        }
    }

    // MARK: - Directives

    func perform(_ directives: [ClusterInstance<() -> Void>.Directive]) {
        for directive in directives { perform(directive) }
    }

    private func perform(_ directive: ClusterInstance<() -> Void>.Directive) {
        switch directive {
        case .send(let message, let peer):
            links[peer]?.send(message)
            if case .handoff = message { metrics.queueHandedOff() }
        case .broadcast(let message):
            for link in links.values { link.send(message) }
        case .connect(_, let address):
            dial(address, now: .now(), force: true)
        case .closeLink(let peer):
            links.removeValue(forKey: peer)?.close()
        case .route(let operation):
            router?.apply(operation)
        case .release(let body, let outcome):
            switch outcome {
            case .propagated(let waited):
                metrics.interestPropagated(after: waited.nanoseconds)
            case .timedOut:
                metrics.interestAckTimedOut()
                logger.warning("interest not acknowledged by every peer in time; answering the SUBSCRIBE anyway")
            }
            body()
        case .memberChanged(let update, let previous, let droppedEntries):
            memberChanged(update, previous: previous, droppedEntries: droppedEntries)
        case .pump(let peer):
            pump(peer)
        case .breakLink(let peer, let number, let reason):
            guard let link = links[peer], link.number == number else { return }
            logger.warning(
                "closing link that broke the session protocol",
                metadata: ["cluster.peer": "\(LinkHandshake.quoted(peer.name))", "reason": "\(reason)"]
            )
            link.close()
        case .congested(_, let vote):
            flowControl?.linkCongestionChanged(congested: vote)
        case .reachability(let peer, let reachable, let outage):
            reachabilityChanged(peer, reachable: reachable, outage: outage)
        case .interestExpired(let peer, let entries):
            admin.peerAddresses[peer] = nil
            logger.warning(
                "dropped interest of member unreachable past the grace",
                metadata: [
                    "cluster.peer": "\(LinkHandshake.quoted(peer.name))", "cluster.interest.entries": "\(entries)",
                    "cluster.outage_grace_ms": "\(settings.sessions.outageGrace.nanoseconds / 1_000_000)",
                ]
            )
        case .dropped(let peer, let reason, let messages):
            metrics.forwardsDropped(messages, reason: reason)
            let counter = outboxDrops[peer]?[reason] ?? metrics.outboxDropCounter(for: peer, reason: reason)
            outboxDrops[peer, default: [:]][reason] = counter
            counter.increment(by: messages)
            logger.debug(
                "dropped topic messages held for a peer",
                metadata: [
                    "cluster.peer": "\(LinkHandshake.quoted(peer.name))", "reason": "\(reason.rawValue)",
                    "messages": "\(messages)",
                ]
            )
        }
    }

    private func reachabilityChanged(_ peer: NodeID, reachable: Bool, outage: TimeAmount?) {
        let quoted = LinkHandshake.quoted(peer.name)
        if reachable {
            guard let outage else { return }
            metrics.peerRecovered()
            logger.info(
                "peer reachable again",
                metadata: ["cluster.peer": "\(quoted)", "cluster.outage_ms": "\(outage.nanoseconds / 1_000_000)"]
            )
        } else {
            metrics.peerOutage()
            let held = instance.sessions.state(of: peer)
            logger.info(
                "peer unreachable; holding its messages",
                metadata: [
                    "cluster.peer": "\(quoted)", "cluster.held.bytes": "\(held?.heldBytes ?? 0)",
                    "cluster.outage_grace_ms": "\(settings.sessions.outageGrace.nanoseconds / 1_000_000)",
                ]
            )
        }
    }

    /// Writes what `peer`'s session has ready, up to the link's budget for this tick.
    func pump(_ peer: NodeID) {
        guard let link = links[peer] else { return }
        let sessions = instance.sessions
        while link.roomForSequenced(), let (seq, entry) = sessions.nextToWrite(for: peer) {
            link.sendSequenced(seq, entry)
        }
    }

    private func memberChanged(_ update: MemberUpdate, previous: MemberUpdate.Status?, droppedEntries: Int?) {
        let peer = LinkHandshake.quoted(update.node.name)
        logger.info(
            "member \(update.status)",
            metadata: [
                "cluster.peer": "\(peer)",
                "cluster.incarnation": "\(update.incarnation)",
                "cluster.previous": "\(previous.map { "\($0)" } ?? "unknown")",
            ]
        )
        guard let droppedEntries else { return }
        admin.peerAddresses[update.node] = nil
        logger.info(
            "dropped interest of departed member",
            metadata: ["cluster.peer": "\(peer)", "cluster.interest.entries": "\(droppedEntries)"]
        )
    }

    // MARK: - Link events (called by LinkChannelHandler on this loop)

    func linkOpened(_ link: LinkChannelHandler) {
        openLinks[ObjectIdentifier(link)] = link
    }

    func linkEstablished(_ link: LinkChannelHandler, peer: LinkHello, version: UInt16) {
        linkPolicy.linkEstablished(dialedAddress: link.dialedAddress)
        if let existing = links[peer.node], existing !== link {
            let keepNew = LinkPolicy.keepsNewLink(
                existingPeerEpoch: existing.peer?.epoch ?? 0,
                newPeerEpoch: peer.epoch,
                newLinkDialedHere: link.isOutbound,
                localNode: settings.node,
                peer: peer.node
            )
            if !keepNew {
                link.close()
                return
            }
        }
        let replaced = links[peer.node]
        links[peer.node] = link
        linksEstablished += 1
        link.number = linksEstablished
        logger.info(
            "link up",
            metadata: [
                "cluster.peer": "\(LinkHandshake.quoted(peer.node.name))",
                "net.address": "\(LinkHandshake.quoted(peer.address))",
                "link.outbound": "\(link.isOutbound)",
                "link.wire_version": "\(version)",
            ]
        )
        perform(
            instance.linkEstablished(
                to: peer.node,
                epoch: peer.epoch,
                address: peer.address,
                link: link.number,
                resumable: version >= 3,
                now: .now()
            )
        )
        link.send(.nodeInfo(adminAddress: admin.ownAddress))
        // Closed only once the instance holds the new link: a plain TCP channel reports its
        // close from within close(), which must read as a replaced link, not the peer's going.
        if let replaced, replaced !== link { replaced.close() }
    }

    func linkClosed(_ link: LinkChannelHandler) {
        openLinks[ObjectIdentifier(link)] = nil
        guard let peer = link.peer?.node else {
            if let address = link.dialedAddress {
                linkPolicy.linkClosedBeforeHandshake(dialedAddress: address, now: .now())
            }
            return
        }
        // A link the tie-break refused at once was never this node's to use.
        guard link.number != 0 else { return }
        // A link replaced by a newer one to the same peer (or let go when the peer died) only
        // gives back what went over it and wasn't acknowledged; the current one goes down.
        if links[peer] === link {
            links[peer] = nil
            let counters = link.counters
            logger.info(
                "link down",
                metadata: [
                    "cluster.peer": "\(LinkHandshake.quoted(peer.name))",
                    "link.bytes.sent.raw": "\(counters.rawBytesSent)",
                    "link.bytes.sent.wire": "\(counters.wireBytesSent)",
                    "link.frames.sent": "\(counters.framesSent)",
                ]
            )
        }
        let epoch = link.peer?.epoch ?? 0
        perform(instance.linkClosed(to: peer, epoch: epoch, link: link.number, now: .now(), leaving: leaving))
    }

    func linkWritabilityChanged(_ link: LinkChannelHandler, writable: Bool) {
        guard let peer = link.peer?.node, links[peer] === link else { return }
        perform(instance.linkWritabilityChanged(of: peer, link: link.number, writable: writable, now: .now()))
    }

    func linkReadyForMore(_ link: LinkChannelHandler) {
        guard let peer = link.peer?.node, links[peer] === link else { return }
        pump(peer)
    }

    /// A link ended in error. `reason` is composed by the link and its handshake, with every
    /// part that came from the peer already quoted (``LinkHandshake/quoted(_:)``).
    func linkFailed(_ link: LinkChannelHandler, reason: String) {
        if !link.isEstablished {
            metrics.linkRefused()
            var metadata: Logger.Metadata = [
                "net.address": "\(link.dialedAddress.map(LinkHandshake.quoted) ?? "inbound")",
                "reason": "\(reason)",
            ]
            // Who knocked: the socket's address, not anything the peer said.
            if let remote = link.channel?.remoteAddress { metadata["net.peer.address"] = "\(remote)" }
            logger.warning("link refused", metadata: metadata)
        } else {
            logger.info(
                "link failed",
                metadata: [
                    "cluster.peer": "\(LinkHandshake.quoted(link.peer?.node.name ?? "?"))", "reason": "\(reason)",
                ]
            )
        }
    }

    /// The handshake found this node at both ends (it lists itself as a seed, under another
    /// address than it advertises): the dialled address is remembered as its own and never
    /// dialled again.
    func linkReachedItself(_ link: LinkChannelHandler) {
        if let address = link.dialedAddress { linkPolicy.noteOwnAddress(address) }
        logger.debug(
            "link reached this node itself",
            metadata: [
                "net.address": "\(link.dialedAddress.map(LinkHandshake.quoted) ?? "inbound")",
                "link.outbound": "\(link.isOutbound)",
            ]
        )
    }

    func received(_ message: LinkMessage, on link: LinkChannelHandler) {
        guard let hello = link.peer else { return }
        guard links[hello.node] === link else {
            // A replaced link still brings acknowledgements of the hand-offs that went over it.
            if case .handoffAck = message, link.number != 0 {
                perform(instance.received(message, from: hello.node, peerEpoch: hello.epoch, now: .now()))
            }
            return
        }
        switch message {
        case .nodeInfo(let address):
            admin.peerTold(address, from: hello.node)
        case .adminRequest(let action):
            // The peer proved the cluster secret, and its admin API accepted the operator's
            // token; members may already move each other's messages, so asking one to drain
            // needs no more than that.
            logger.notice(
                "admin request from a peer",
                metadata: [
                    "cluster.peer": "\(LinkHandshake.quoted(hello.node.name))",
                    "admin.action": "\(LinkHandshake.quoted(action))",
                ]
            )
            admin.requestHandler?(action)
        case .replication(let payload):
            replicationHandler?(hello.node, payload)
        case .forward(let envelope):
            // The hot path: straight to the router, no directive array.
            router?.apply(.deliverForwarded(envelope))
        case .sequenced(let seq, .forward(let envelope)?):
            // The same hot path, numbered: processed once each, in order.
            let sessions = instance.sessions
            switch sessions.sequencedArrived(
                seq,
                bytes: envelope.body.readableBytes,
                from: hello.node,
                link: link.number
            )
            {
            case .process?:
                router?.apply(.deliverForwarded(envelope))
                if let ack = sessions.acknowledgementIfDue(for: hello.node) { link.send(ack) }
            case .duplicate?, nil:
                break
            case .hole?:
                // The instance reads the hole again and says what to do.
                perform(instance.received(message, from: hello.node, peerEpoch: hello.epoch, now: .now()))
            }
        default:
            perform(instance.received(message, from: hello.node, peerEpoch: hello.epoch, now: .now()))
        }
    }

    // MARK: - From the local router

    /// Local subscriptions changed; peers hear of it when the aggregate changes.
    public func interestChanged(_ destination: Destination, delta: Int) {
        eventLoop.assertInEventLoop()
        guard let delta = instance.interestChanged(destination, by: delta) else { return }
        for link in links.values { link.send(delta) }
    }

    /// Sends a topic message once to each peer with a matching subscription.
    public func forward(_ message: MessageEnvelope) {
        eventLoop.assertInEventLoop()
        guard case .topic(let key) = message.destination else { return }
        topicScratch.removeAll(keepingCapacity: true)
        instance.interest.remote.peers(forTopic: key, into: &topicScratch)
        guard !topicScratch.isEmpty else { return }
        // Encoded once, whatever the number of peers and their links' versions.
        let body = LinkMessage.forwardBody(message)
        let sessions = instance.sessions
        sequencedScratch.removeAll(keepingCapacity: true)
        for peer in topicScratch {
            // A peer whose link numbers its entries, or that has no link and is within its
            // grace: its session holds the message until the peer says it processed it.
            if sessions.sequences(peer) {
                sequencedScratch.append(peer)
            } else if let link = links[peer] {
                // Wire version 2: what the link can't take is lost.
                if link.sendForward(body: body, limit: settings.maxLinkBufferedBytes) {
                    metrics.messageForwarded()
                } else {
                    metrics.forwardDroppedBackpressure()
                }
            } else {
                metrics.forwardDroppedNoLink()
            }
        }
        guard !sequencedScratch.isEmpty else { return }
        let outcome = sessions.append(forward: body, to: sequencedScratch)
        metrics.messagesForwarded(outcome.held)
        if outcome.effectsWaiting { perform(instance.sessionEffects(now: .now())) }
        for peer in sequencedScratch { pump(peer) }
    }

    /// Passes ownership of a queue message to a peer with consumers, chosen in proportion to
    /// their consumer counts. With no such peer reachable, the message stays here.
    public func handOff(queue: String, _ message: MessageEnvelope, redelivered: Bool, hops: UInt8) {
        eventLoop.assertInEventLoop()
        perform(instance.handOff(queue: queue, message, redelivered: redelivered, hops: hops))
    }

    // MARK: - For the durable queues

    /// This node and the members up now (alive or suspect), in node id order.
    public var liveNodes: [NodeID] {
        eventLoop.assertInEventLoop()
        return ([settings.node] + instance.membership.liveMembers).sorted { $0.name < $1.name }
    }

    /// Members declared dead and still remembered (`tombstoneRetention`, a minute): with
    /// ``liveNodes``, the cluster as this node last saw it whole.
    public var deadNodes: [NodeID] {
        eventLoop.assertInEventLoop()
        return instance.membership.deadMembers.map(\.node).sorted { $0.name < $1.name }
    }

    /// The consumers of the queue `name` on each linked peer.
    public func queueConsumers(_ name: String) -> [NodeID: Int] {
        eventLoop.assertInEventLoop()
        return instance.interest.remote.consumers(ofQueue: name).filter { links[$0.key] != nil }
    }

    /// The link up to `peer` now, by its number (unique for this process: a link that went
    /// down and came back has a new one); `nil` when none is up.
    public func linkNumber(to peer: NodeID) -> UInt64? {
        eventLoop.assertInEventLoop()
        return links[peer]?.number
    }

    /// Calls `handler` (on this loop) with every ``LinkMessage/replication(_:)`` a peer sends.
    public func onReplication(_ handler: @escaping (NodeID, ByteBuffer) -> Void) {
        eventLoop.assertInEventLoop()
        replicationHandler = handler
    }

    /// Sends the durable queues' `payload` to `peer` over its link, if one of wire version 4 or
    /// later is up. Unsequenced: what a link loses, Raft sends again.
    /// - Returns: whether it was sent.
    @discardableResult
    public func sendReplication(_ payload: ByteBuffer, to peer: NodeID) -> Bool {
        eventLoop.assertInEventLoop()
        guard let link = links[peer], let version = link.wireVersion, version >= 4 else { return false }
        link.send(.replication(payload))
        return true
    }

    /// Runs `body` once every live peer acknowledged this node's current interest version.
    public func afterInterestPropagated(_ body: @escaping () -> Void) {
        eventLoop.assertInEventLoop()
        instance.waitForPropagation(body, now: .now())?()
    }
}
