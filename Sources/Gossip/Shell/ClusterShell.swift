import BrokerShell
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import StompRouting

/// The networking around the cluster's state machines: link listener and dialler, the
/// protocol clock, and the glue between membership, interest and the local router.
///
/// Confined to one event loop, the router's, so that matching a publish against peers'
/// interest and writing to links need no locks and no hops: links are bootstrapped on that
/// loop too. `@unchecked Sendable` because of that confinement; every entry point asserts it.
public final class ClusterShell: ClusterSeam, @unchecked Sendable {
    public let settings: ClusterSettings
    public let eventLoop: any EventLoop
    let metrics = ClusterMetrics()
    private let logger: Logger
    /// The local router's end of the seam (on this loop). Weak: the broker holds this shell.
    private weak var router: (any RouterClusterInput)?
    /// The node's back-pressure, which links pause for and report congestion to.
    let flowControl: FlowControl?

    private var membership: MembershipInstance
    private var localInterest: LocalInterest
    private let remoteInterest = InterestTable()
    /// Established links, one per peer.
    private var links: [NodeID: LinkChannelHandler] = [:]
    /// Every open link handler, established or still in its handshake.
    private var openLinks: [ObjectIdentifier: LinkChannelHandler] = [:]
    /// Whom to dial when, and which of two links to a peer stays.
    private var linkPolicy: LinkPolicy
    private var lastDigest: NIODeadline = .now()
    /// Per peer, its boot and the highest version of this node's interest it acknowledged.
    private var acknowledged: [NodeID: (peerEpoch: UInt64, version: UInt64)] = [:]
    private var waitingForPropagation: [(version: UInt64, since: NIODeadline, body: () -> Void)] = []
    /// Queue messages handed to peers and not acknowledged yet.
    private var handoffs = QueueHandoffs()
    private var topicScratch = Set<NodeID>()
    private var listener: (any Channel)?
    private var clock: RepeatedTask?
    private var leaving = false
    /// Whether the node has once linked to `settings.minimumMembers - 1` peers with their
    /// interest: the start of "joined". Never reset, so a node that lost its peers later
    /// stays in service for the clients it has.
    private var hasFormed = false
    /// This node's admin API address, told to every peer.
    private var adminAddress = ""
    /// Peers' admin API addresses, as they told them; an entry goes when its member leaves.
    private var peerAdminAddresses: [NodeID: String] = [:]
    /// Runs an operator's request that arrived from another member ("drain", "leave").
    private var adminRequestHandler: (@Sendable (String) -> Void)?

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
        self.membership = MembershipInstance(
            node: settings.node,
            epoch: settings.epoch,
            address: settings.advertisedAddress ?? "\(settings.host):\(settings.port)",
            settings: settings.membership
        )
        self.localInterest = LocalInterest(epoch: settings.epoch)
        self.linkPolicy = LinkPolicy(
            settings: LinkPolicy.Settings(
                backoffMinimum: settings.reconnectBackoffMinimum,
                backoffMaximum: settings.reconnectBackoffMaximum
            ),
            now: .now()
        )
    }

    // MARK: - Lifecycle

    /// Binds the link listener and starts the protocol clock.
    ///
    /// - Returns: the bound port.
    public func start() async throws -> Int {
        let bootstrap = ServerBootstrap(group: eventLoop)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: settings.linkWaterMark)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls = settings.tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.server))
                    }
                    try channel.pipeline.syncOperations.addHandler(makeLinkHandler(outbound: false, address: nil))
                }
            }
        let channel = try await bootstrap.bind(host: settings.host, port: settings.port).get()
        let port = channel.localAddress?.port ?? settings.port
        try await eventLoop.submit { [self] in
            listener = channel
            if settings.advertisedAddress == nil {
                membership = MembershipInstance(
                    node: settings.node,
                    epoch: settings.epoch,
                    address: "\(settings.host):\(port)",
                    settings: settings.membership
                )
            }
            linkPolicy.noteOwnAddress(membership.address)
            clock = eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: settings.tickInterval) { [self] _ in
                tick()
            }
        }.get()
        logger.info(
            "cluster link listening",
            metadata: ["net.address": "\(settings.host):\(port)", "cluster.name": "\(settings.clusterName)"]
        )
        return port
    }

    /// Hands every queue message this node holds to peers (preferring those with consumers)
    /// and waits, bounded, until they have acknowledged taking them.
    ///
    /// - Returns: the messages still unacknowledged when the wait ended.
    public func evacuate(timeout: TimeAmount = .seconds(5)) async -> Int {
        try? await eventLoop.submit { [self] in
            handoffs.evacuating = true
            router?.apply(.evacuate)
        }.get()
        let deadline = NIODeadline.now() + timeout
        while NIODeadline.now() < deadline {
            let remaining = (try? await eventLoop.submit { [self] in handoffs.pendingCount }.get()) ?? 0
            if remaining == 0 { return 0 }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return (try? await eventLoop.submit { [self] in handoffs.pendingCount }.get()) ?? 0
    }

    /// Leaves the cluster gracefully: peers hear of it at once and stop routing here.
    public func leave() async {
        try? await eventLoop.submit { [self] in
            leaving = true
            clock?.cancel()
            perform(membership.leave())
            for link in openLinks.values { link.flushBatches() }
        }.get()
        // Let the announcement reach the wire before the links close.
        try? await Task.sleep(for: .milliseconds(100))
        try? await eventLoop.submit { [self] in
            for link in openLinks.values { link.close() }
            listener?.close(promise: nil)
        }.get()
    }

    // MARK: - The protocol clock

    private func tick() {
        guard !leaving else { return }
        let now = NIODeadline.now()
        for (peer, link) in links {
            // A link this node stopped reading (flow control) may hold the answer unread: its
            // peer is not to blame for that.
            membership.heard(from: peer, at: link.isPausedForFlowControl ? now : link.lastReceived)
        }
        perform(membership.tick(now: now))
        keepLinksAlive(now: now)
        dialMissingPeers(now: now)
        if now - lastDigest >= settings.digestInterval {
            lastDigest = now
            sendDigests()
        }
        releasePropagationWaiters(now: now)
        noteFormation()
    }

    /// Latches ``hasFormed`` once enough peers are linked and their interest is held.
    private func noteFormation() {
        guard !hasFormed else { return }
        let linked = links.keys.filter { remoteInterest.version(of: $0) != nil }.count
        if linked + 1 >= settings.minimumMembers { hasFormed = true }
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

    private func perform(_ directives: [MembershipInstance.Directive]) {
        for directive in directives {
            switch directive {
            case .send(let message, let peer):
                links[peer]?.send(message)
            case .broadcast(let message):
                for link in links.values { link.send(message) }
            case .connect(let peer, let address):
                if links[peer] == nil { dial(address, now: .now(), force: true) }
            case .statusChanged(let update, let previous):
                memberChanged(update, previous: previous)
            }
        }
    }

    private func memberChanged(_ update: MemberUpdate, previous: MemberUpdate.Status?) {
        logger.info(
            "member \(update.status)",
            metadata: [
                "cluster.peer": "\(LinkHandshake.quoted(update.node.name))",
                "cluster.incarnation": "\(update.incarnation)",
                "cluster.previous": "\(previous.map { "\($0)" } ?? "unknown")",
            ]
        )
        guard update.status >= .dead else { return }
        peerAdminAddresses[update.node] = nil
        // Its interest goes, so nothing more is routed there; its queue messages in flight
        // come back to this node.
        let entries = remoteInterest.entriesByOrigin[update.node]?.entries.count ?? 0
        for queue in remoteInterest.remove(update.node) { announceRemoteConsumers(queue) }
        logger.info(
            "dropped interest of departed member",
            metadata: [
                "cluster.peer": "\(LinkHandshake.quoted(update.node.name))", "cluster.interest.entries": "\(entries)",
            ]
        )
        acknowledged[update.node] = nil
        links.removeValue(forKey: update.node)?.close()
        reclaimHandoffs(to: update.node)
        releasePropagationWaiters(now: .now())
    }

    // MARK: - Dialling

    private func dialMissingPeers(now: NIODeadline) {
        for peer in membership.liveMembers where links[peer] == nil {
            if let address = membership.status(of: peer)?.address { dial(address, now: now, force: false) }
        }
        // A member declared dead may have been cut off rather than killed: try it now and then,
        // so both halves of a healed partition find each other (it refutes with a higher
        // incarnation once the link is up).
        if linkPolicy.deadRedialDue(now: now) {
            for member in membership.deadMembers where links[member.node] == nil {
                dial(member.address, now: now, force: false)
            }
        }
        // Seeds are how a node finds the cluster; while it has no peer at all, keep trying them.
        if !settings.seeds.isEmpty, linkPolicy.seedsDue(now: now, linked: !links.isEmpty) {
            SeedResolver.resolve(settings.seeds, on: eventLoop).whenSuccess { [self] addresses in
                let linked = Set(openLinks.values.compactMap(\.dialedAddress)).union(
                    links.values.compactMap(\.peer?.address)
                )
                for address in addresses where !linked.contains(address) {
                    dial(address, now: .now(), force: false)
                }
            }
        }
    }

    private func dial(_ address: String, now: NIODeadline, force: Bool) {
        guard !leaving, let (host, port) = SeedResolver.split(address),
            linkPolicy.startDial(address, now: now, force: force)
        else { return }
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(settings.connectTimeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: settings.linkWaterMark)
        bootstrap = bootstrap.channelInitializer { [self] channel in
            channel.eventLoop.makeCompletedFuture {
                if let tls = settings.tls {
                    try channel.pipeline.syncOperations.addHandler(
                        try NIOSSLClientHandler(context: tls.client, serverHostname: nil)
                    )
                }
                try channel.pipeline.syncOperations.addHandler(makeLinkHandler(outbound: true, address: address))
            }
        }
        bootstrap.connect(host: host, port: port).whenComplete { [self] result in
            linkPolicy.dialEnded(address, failed: (try? result.get()) == nil, now: .now())
            if case .failure(let error) = result {
                // The address may come from a peer's gossip, and NIO's connect errors name it.
                logger.debug(
                    "dial failed",
                    metadata: [
                        "net.address": "\(LinkHandshake.quoted(address))",
                        "error": "\(LinkHandshake.quoted("\(error)"))",
                    ]
                )
            }
        }
    }

    private func makeLinkHandler(outbound: Bool, address: String?) -> LinkChannelHandler {
        var generator = SystemRandomNumberGenerator()
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let identity = LinkHandshake.Identity(
            clusterName: settings.clusterName,
            node: settings.node,
            epoch: settings.epoch,
            address: membership.address,
            secret: settings.secret
        )
        let link = LinkChannelHandler(
            events: self,
            handshake: LinkHandshake(identity: identity, nonce: nonce, role: outbound ? .dialer : .listener),
            isOutbound: outbound,
            dialedAddress: address,
            configuration: LinkHandlerConfiguration(settings),
            metrics: metrics,
            flowControl: flowControl
        )
        return link
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
            links[peer.node] = nil
            existing.close()
        }
        links[peer.node] = link
        if acknowledged[peer.node]?.peerEpoch != peer.epoch { acknowledged[peer.node] = nil }
        logger.info(
            "link up",
            metadata: [
                "cluster.peer": "\(LinkHandshake.quoted(peer.node.name))",
                "net.address": "\(LinkHandshake.quoted(peer.address))",
                "link.outbound": "\(link.isOutbound)",
                "link.wire_version": "\(version)",
            ]
        )
        perform(membership.linkEstablished(node: peer.node, epoch: peer.epoch, address: peer.address, now: .now()))
        // A link that (re)connects starts from a full snapshot of this node's interest.
        link.send(
            .interestSnapshot(
                epoch: localInterest.epoch,
                version: localInterest.version,
                entries: localInterest.snapshot
            )
        )
        link.send(.nodeInfo(adminAddress: adminAddress))
    }

    func linkClosed(_ link: LinkChannelHandler) {
        openLinks[ObjectIdentifier(link)] = nil
        guard let peer = link.peer?.node, links[peer] === link else {
            if let address = link.dialedAddress, link.peer == nil {
                linkPolicy.linkClosedBeforeHandshake(dialedAddress: address, now: .now())
            }
            return
        }
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
        reclaimHandoffs(to: peer)
        if !leaving { perform(membership.linkClosed(node: peer, now: .now())) }
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

    // MARK: - Messages from peers

    func received(_ message: LinkMessage, on link: LinkChannelHandler) {
        guard let peer = link.peer?.node, links[peer] === link else { return }
        let now = NIODeadline.now()
        switch message {
        case .ping, .ack, .pingRequest, .members:
            perform(membership.received(message, from: peer, now: now))

        case .interestDelta(let epoch, let version, let changes):
            answer(
                remoteInterest.applyDelta(from: peer, epoch: epoch, version: version, changes: changes),
                epoch: epoch,
                to: link,
                peer: peer
            )

        case .interestSnapshot(let epoch, let version, let entries):
            answer(
                remoteInterest.applySnapshot(from: peer, epoch: epoch, version: version, entries: entries),
                epoch: epoch,
                to: link,
                peer: peer
            )

        case .interestAck(let epoch, let version):
            guard epoch == localInterest.epoch, let peerEpoch = link.peer?.epoch else { break }
            let previous = acknowledged[peer]?.version ?? 0
            acknowledged[peer] = (peerEpoch, max(previous, version))
            releasePropagationWaiters(now: now)

        case .interestDigest(let epoch, let version, let yourEpoch, let yourVersion):
            // The peer holds an older view of this node's interest: send it all.
            if yourEpoch != localInterest.epoch || yourVersion != localInterest.version {
                link.send(
                    .interestSnapshot(
                        epoch: localInterest.epoch,
                        version: localInterest.version,
                        entries: localInterest.snapshot
                    )
                )
            }
            // This node holds an older view of the peer's: its digest of us will make it resend.
            if let held = remoteInterest.version(of: peer), held.epoch == epoch, held.version == version { break }
            link.send(digest(for: peer))

        case .forward(let envelope):
            router?.apply(.deliverForwarded(envelope))

        case .handoff(let id, let queue, let envelope, let redelivered, let hops):
            router?.apply(
                .acceptHandoff(
                    queue: queue,
                    envelope,
                    redelivered: redelivered,
                    hops: QueueHandoffs.hopsOnArrival(hops)
                )
            )
            link.send(.handoffAck(id: id))

        case .handoffAck(let id):
            handoffs.acknowledged(id)

        case .nodeInfo(let address):
            // Shown to operators and dialled by clusterctl: only a plausible host:port is kept.
            let plausible =
                address.utf8.count <= 300 && address.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
                && SeedResolver.split(address) != nil
            peerAdminAddresses[peer] = plausible ? address : nil

        case .adminRequest(let action):
            // The peer proved the cluster secret, and its admin API accepted the operator's
            // token; members may already move each other's messages, so asking one to drain
            // needs no more than that.
            logger.notice(
                "admin request from a peer",
                metadata: [
                    "cluster.peer": "\(LinkHandshake.quoted(peer.name))",
                    "admin.action": "\(LinkHandshake.quoted(action))",
                ]
            )
            adminRequestHandler?(action)

        case .heartbeat, .hello, .challenge, .proof, .refuse:
            break
        }
    }

    private func answer(_ outcome: InterestTable.Outcome, epoch: UInt64, to link: LinkChannelHandler, peer: NodeID) {
        switch outcome {
        case .applied(let version, let queues):
            link.send(.interestAck(epoch: epoch, version: version))
            for queue in queues { announceRemoteConsumers(queue) }
        case .duplicate(let version):
            link.send(.interestAck(epoch: epoch, version: version))
        case .gap:
            link.send(digest(for: peer))
        case .stale:
            break
        }
    }

    private func digest(for peer: NodeID) -> LinkMessage {
        let held = remoteInterest.version(of: peer)
        return .interestDigest(
            epoch: localInterest.epoch,
            version: localInterest.version,
            yourEpoch: held?.epoch ?? 0,
            yourVersion: held?.version ?? 0
        )
    }

    private func sendDigests() {
        for (peer, link) in links { link.send(digest(for: peer)) }
    }

    private func announceRemoteConsumers(_ queue: String) {
        let total = remoteInterest.consumers(ofQueue: queue).values.reduce(0, +)
        router?.apply(.remoteQueueConsumers(queue: queue, count: total))
    }

    // MARK: - From the local router

    /// Local subscriptions changed; peers hear of it when the aggregate changes.
    public func interestChanged(_ destination: Destination, delta: Int) {
        eventLoop.assertInEventLoop()
        guard let (version, change) = localInterest.adjust(destination, by: delta) else { return }
        for link in links.values {
            link.send(.interestDelta(epoch: localInterest.epoch, version: version, changes: [change]))
        }
    }

    /// Sends a topic message once to each peer with a matching subscription.
    public func forward(_ message: MessageEnvelope) {
        eventLoop.assertInEventLoop()
        guard case .topic(let key) = message.destination else { return }
        topicScratch.removeAll(keepingCapacity: true)
        remoteInterest.peers(forTopic: key, into: &topicScratch)
        guard !topicScratch.isEmpty else { return }
        // Encoded once, whatever the number of peers. Every link speaks the one version this
        // build supports; once links of two versions may differ in a forward's layout, this
        // encodes once per version (``LinkChannelHandler/wireVersion``).
        var bytes = ByteBuffer()
        LinkMessage.forward(message).encode(into: &bytes)
        for peer in topicScratch {
            guard let link = links[peer] else {
                metrics.forwardDroppedNoLink()
                continue
            }
            if link.sendEncoded(bytes, limit: settings.maxLinkBufferedBytes) {
                metrics.messageForwarded()
            } else {
                metrics.forwardDroppedBackpressure()
            }
        }
    }

    /// Passes ownership of a queue message to a peer with consumers, chosen in proportion to
    /// their consumer counts. With no such peer reachable, the message stays here.
    public func handOff(queue: String, _ message: MessageEnvelope, redelivered: Bool, hops: UInt8) {
        eventLoop.assertInEventLoop()
        let decision = handoffs.handOff(
            queue: queue,
            message,
            redelivered: redelivered,
            hops: hops,
            consumers: remoteInterest.consumers(ofQueue: queue).filter { links[$0.key] != nil },
            linkedPeers: links.keys
        )
        switch decision {
        case .send(let id, let peer):
            links[peer]?.send(.handoff(id: id, queue: queue, message: message, redelivered: redelivered, hops: hops))
            metrics.queueHandedOff()
        case .keepHere:
            router?.apply(.acceptHandoff(queue: queue, message, redelivered: redelivered, hops: .max))
        }
    }

    /// Messages handed to a peer that went away before acknowledging them are this node's
    /// again, in the order they were handed over.
    private func reclaimHandoffs(to peer: NodeID) {
        for handoff in handoffs.reclaim(from: peer) {
            router?.apply(
                .acceptHandoff(
                    queue: handoff.queue,
                    handoff.message,
                    redelivered: handoff.redelivered,
                    hops: handoff.hops
                )
            )
        }
    }

    // MARK: - Subscribe receipts

    /// Runs `body` once every live peer acknowledged this node's current interest version.
    public func afterInterestPropagated(_ body: @escaping () -> Void) {
        eventLoop.assertInEventLoop()
        let version = localInterest.version
        if isPropagated(version) {
            body()
            return
        }
        waitingForPropagation.append((version, .now(), body))
    }

    private func isPropagated(_ version: UInt64) -> Bool {
        membership.liveMembers.allSatisfy { (acknowledged[$0]?.version ?? 0) >= version }
    }

    private func releasePropagationWaiters(now: NIODeadline) {
        guard !waitingForPropagation.isEmpty else { return }
        var still: [(version: UInt64, since: NIODeadline, body: () -> Void)] = []
        for waiter in waitingForPropagation {
            if isPropagated(waiter.version) {
                metrics.interestPropagated(after: (now - waiter.since).nanoseconds)
                waiter.body()
            } else if now - waiter.since >= settings.interestAckTimeout {
                metrics.interestAckTimedOut()
                logger.warning("interest not acknowledged by every peer in time; answering the SUBSCRIBE anyway")
                waiter.body()
            } else {
                still.append(waiter)
            }
        }
        waitingForPropagation = still
    }

    // MARK: - Operators

    /// Sets this node's admin API address and tells every peer.
    public func advertiseAdminAddress(_ address: String) async {
        try? await eventLoop.submit { [self] in
            adminAddress = address
            for link in links.values { link.send(.nodeInfo(adminAddress: address)) }
        }.get()
    }

    /// What to do when a peer passes on an operator's request for this node.
    public func onAdminRequest(_ handler: @escaping @Sendable (String) -> Void) {
        eventLoop.execute { [self] in adminRequestHandler = handler }
    }

    /// Passes an operator's request to a member over its link.
    ///
    /// - Returns: whether a link to that member was up to carry it.
    public func requestAdminAction(_ action: String, of member: NodeID) async -> Bool {
        (try? await eventLoop.submit { [self] () -> Bool in
            guard let link = links[member] else { return false }
            link.send(.adminRequest(action: action))
            link.flushBatches()
            return true
        }.get()) ?? false
    }

    // MARK: - Status

    /// A snapshot of the cluster as this node sees it.
    public struct Status: Sendable {
        public struct Link: Sendable {
            public var peer: NodeID
            public var address: String
            public var outbound: Bool
            /// The wire version the link's handshake settled on.
            public var wireVersion: UInt16
            public var counters: LinkCounters
        }

        public struct Interest: Sendable {
            public var origin: NodeID
            public var epoch: UInt64
            public var version: UInt64
            public var entries: [(Destination, Int)]
        }

        public var node: NodeID
        public var epoch: UInt64
        public var incarnation: UInt64
        public var localHealth: Int
        public var members: [MemberUpdate]
        public var links: [Link]
        public var localInterest: Interest
        public var remoteInterest: [Interest]
        /// Joined: linked to enough members once (``ClusterSettings/minimumMembers``), and
        /// now to every live member, holding its interest snapshot.
        public var isJoined: Bool
        /// Why the node isn't joined yet, for `/readyz` and clusterctl; `nil` when it is.
        public var notJoinedReason: String?
        /// Members' admin API addresses, this node's included, as far as they are known.
        public var adminAddresses: [NodeID: String]
    }

    public func status() async -> Status? {
        try? await eventLoop.submit { [self] in
            noteFormation()
            let reason = notJoinedReason()
            var adminAddresses = peerAdminAddresses
            if !adminAddress.isEmpty { adminAddresses[settings.node] = adminAddress }
            return Status(
                node: settings.node,
                epoch: settings.epoch,
                incarnation: membership.incarnation,
                localHealth: membership.localHealth,
                members: membership.allMembers,
                links: links.values.compactMap { link in
                    guard let peer = link.peer, let wireVersion = link.wireVersion else { return nil }
                    return Status.Link(
                        peer: peer.node,
                        address: peer.address,
                        outbound: link.isOutbound,
                        wireVersion: wireVersion,
                        counters: link.counters
                    )
                }.sorted { $0.peer < $1.peer },
                localInterest: Status.Interest(
                    origin: settings.node,
                    epoch: localInterest.epoch,
                    version: localInterest.version,
                    entries: localInterest.snapshot
                ),
                remoteInterest: remoteInterest.entriesByOrigin.map { origin, held in
                    Status.Interest(
                        origin: origin,
                        epoch: held.epoch,
                        version: held.version,
                        entries: held.entries.map { ($0.key, $0.value) }
                    )
                }.sorted { $0.origin < $1.origin },
                isJoined: reason == nil,
                notJoinedReason: reason,
                adminAddresses: adminAddresses
            )
        }.get()
    }

    private func notJoinedReason() -> String? {
        let holding = Set(links.keys.filter { remoteInterest.version(of: $0) != nil })
        if !hasFormed {
            let seeds =
                settings.seeds.isEmpty ? "no seeds configured" : "seeds " + settings.seeds.joined(separator: ",")
            return
                "waiting for members: linked to \(holding.count) of the \(settings.minimumMembers - 1) peer(s) cluster.min-members=\(settings.minimumMembers) asks for (\(seeds))"
        }
        // Member ids come from peers' gossip: shown to operators, so quoted like in the logs.
        let missing = membership.liveMembers.filter { !holding.contains($0) }.map { LinkHandshake.quoted($0.name) }
            .sorted()
        guard !missing.isEmpty else { return nil }
        return "not yet linked to live member(s) \(missing.joined(separator: ", ")) with their interest"
    }

    /// Which peers would receive a message for `destination` (the admin API's "why").
    public func routing(for destination: Destination) async -> [NodeID: String] {
        (try? await eventLoop.submit { [self] () -> [NodeID: String] in
            switch destination {
            case .topic(let key):
                var peers = Set<NodeID>()
                remoteInterest.peers(forTopic: key, into: &peers)
                var reasons: [NodeID: String] = [:]
                for peer in peers {
                    let patterns =
                        remoteInterest.entriesByOrigin[peer]?.entries.keys.compactMap { entry -> String? in
                            if case .topic(let pattern) = entry, TopicTrie<Int>.matches(pattern: pattern, key: key) {
                                return pattern
                            }
                            return nil
                        } ?? []
                    reasons[peer] = "subscribed to " + patterns.sorted().map { "/topic/" + $0 }.joined(separator: ", ")
                }
                return reasons
            case .queue(let name):
                return remoteInterest.consumers(ofQueue: name).mapValues { "\($0) consumer(s) of /queue/\(name)" }
            }
        }.get()) ?? [:]
    }
}
