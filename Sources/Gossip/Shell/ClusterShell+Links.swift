import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// Starting and leaving, and the links' sockets: the listener, whom to dial when, and the
/// handlers each link gets.
extension ClusterShell {
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
            if settings.advertisedAddress == nil { instance.advertise(address: "\(settings.host):\(port)") }
            linkPolicy.noteOwnAddress(instance.membership.address)
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
            instance.evacuating = true
            router?.apply(.evacuate)
        }.get()
        let deadline = NIODeadline.now() + timeout
        while NIODeadline.now() < deadline {
            let remaining = (try? await eventLoop.submit { [self] in instance.pendingHandoffs }.get()) ?? 0
            if remaining == 0 { return 0 }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return (try? await eventLoop.submit { [self] in instance.pendingHandoffs }.get()) ?? 0
    }

    /// Leaves the cluster gracefully: peers hear of it at once and stop routing here.
    public func leave() async {
        try? await eventLoop.submit { [self] in
            leaving = true
            clock?.cancel()
            perform(instance.leave(now: .now()))
            for link in openLinks.values { link.flushBatches() }
        }.get()
        // Let the announcement reach the wire before the links close.
        try? await Task.sleep(for: .milliseconds(100))
        try? await eventLoop.submit { [self] in
            for link in openLinks.values { link.close() }
            listener?.close(promise: nil)
        }.get()
    }

    // MARK: - Dialling

    func dialMissingPeers(now: NIODeadline) {
        for peer in instance.membership.liveMembers where links[peer] == nil {
            if let address = instance.membership.status(of: peer)?.address { dial(address, now: now, force: false) }
        }
        // A member declared dead may have been cut off rather than killed: try it now and then,
        // so both halves of a healed partition find each other (it refutes with a higher
        // incarnation once the link is up).
        if linkPolicy.deadRedialDue(now: now) {
            for member in instance.membership.deadMembers where links[member.node] == nil {
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

    func dial(_ address: String, now: NIODeadline, force: Bool) {
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

    func makeLinkHandler(outbound: Bool, address: String?) -> LinkChannelHandler {
        var generator = SystemRandomNumberGenerator()
        let nonce = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let identity = LinkHandshake.Identity(
            clusterName: settings.clusterName,
            node: settings.node,
            epoch: settings.epoch,
            address: instance.membership.address,
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

}
