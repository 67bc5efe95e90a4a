import BrokerShell
import Gossip
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import StompRouting
import Synchronization
import UnixSignals
import WebSocketIO

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a node from start to exit.
///
/// It ends by draining, whether asked by SIGTERM/SIGINT (the service group's graceful
/// shutdown) or by `POST /v1/drain`: `/readyz` turns not-ready at once and the client
/// listeners close (new connections are refused); after a pause for the load balancer to
/// notice, clients get an ERROR saying the node is shutting down, at a bounded rate with
/// jitter; the queue messages this node holds go to peers; the node leaves the cluster and
/// the process exits 0.
struct NodeService: Service, CustomStringConvertible {
    let configuration: NodeConfiguration
    let portsFile: String?
    let registry: PrometheusCollectorRegistry
    let logger: Logger
    private let drainRequest = DrainRequest()

    init(configuration: NodeConfiguration, portsFile: String?, registry: PrometheusCollectorRegistry, logger: Logger) {
        self.configuration = configuration
        self.portsFile = portsFile
        self.registry = registry
        var logger = logger
        logger[metadataKey: "cluster.node"] = "\(configuration.nodeID)"
        self.logger = logger
    }

    /// ServiceLifecycle logs its services; this keeps the configuration (and its secret) out.
    var description: String { "NodeService(node: \(configuration.nodeID))" }

    func run() async throws {
        // The users file is read before anything binds: a node doesn't start with fewer users
        // than its operator wrote.
        let access = try await AccessControl(
            anonymous: configuration.auth.anonymous,
            usersFile: configuration.auth.usersFile,
            tokenKeysFile: configuration.auth.tokenKeysFile,
            tokenPolicy: configuration.auth.tokenPolicy,
            maxPendingLogins: configuration.auth.maxPendingLogins,
            logger: logger
        )
        logger.info("clients accepted", metadata: ["auth": "\(access.summary)"])
        var io = configuration.io
        io.authenticator = access
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoops)
        LimitMetrics.record(configuration)
        let state = NodeState()
        let broker = Broker(settings: configuration.router, eventLoop: group.next(), logger: logger)
        // Read back before any client connects; a corrupt log stops the node here, naming the file.
        let durable: DurableQueues
        do {
            durable = try DurableQueues(
                settings: configuration.durable,
                node: configuration.nodeID,
                eventLoop: broker.eventLoop,
                logger: logger
            )
        } catch {
            logger.critical(
                "cannot start: the durable log can't be trusted",
                metadata: ["data.dir": "\(configuration.durable.directory)", "error": "\(error)"]
            )
            try? await group.shutdownGracefully()
            throw error
        }
        let server = try StompServer(configuration: io, broker: broker, group: group, logger: logger)
        let cluster = makeCluster(broker: broker)
        try await broker.eventLoop.submit {
            broker.attach(durable: durable)
            if let cluster {
                durable.attach(link: ClusterReplicationLink(shell: cluster))
                cluster.onReplication { peer, payload in durable.received(payload, from: peer.name) }
            }
            durable.start()
        }.get()
        let stats = StatsHistory(
            capacity: configuration.admin.statsSamples,
            interval: .nanoseconds(configuration.admin.statsInterval.nanoseconds),
            startedAt: state.startedAt
        )
        let sampling = Task { await stats.run(broker: broker, server: server, cluster: cluster) }
        defer { sampling.cancel() }
        let admin = AdminServer(
            api: AdminAPI(
                nodeID: configuration.nodeID,
                clusterName: configuration.cluster?.clusterName,
                token: configuration.admin.token,
                allowedOrigins: configuration.admin.allowedOrigins,
                loopbackOnly: configuration.admin.isLoopbackOnly,
                broker: broker,
                cluster: cluster,
                server: server,
                state: state,
                registry: registry,
                stats: stats,
                maxPageSize: configuration.admin.maxPageSize,
                actions: .init(
                    drain: { [drainRequest] in drainRequest.request(.drain) },
                    leave: { [drainRequest] in drainRequest.request(.leave) },
                    reloadCredentials: { try await access.reload() }
                )
            ),
            logger: logger
        )
        var adminChannel: (any Channel)?
        do {
            let clusterPort = try await cluster?.start()
            let ports = try await server.start()
            var adminPort: Int?
            if let port = configuration.admin.port {
                let (channel, bound) = try await admin.start(host: configuration.admin.host, port: port, group: group)
                adminChannel = channel
                adminPort = bound
                await cluster?.advertiseAdminAddress(configuration.adminAddress(boundPort: bound))
            }
            state.record(ports, cluster: clusterPort, admin: adminPort)
            if let portsFile { try Self.write(state.boundPorts, to: portsFile) }
            state.enter(.running)
            logger.info(
                "node started",
                metadata: ["node.version": "\(NodeVersion.current)", "event-loops": "\(configuration.eventLoops)"]
            )

            let reloads = Task { await reloadCredentialsOnHangup(access) }
            defer { reloads.cancel() }
            let how = await waitForEnd()
            _ = state.beginDrain()
            await drain(how: how, server: server, broker: broker, cluster: cluster, durable: durable)
        } catch {
            await server.closeListeners()
            try? await adminChannel?.close()
            try? await group.shutdownGracefully()
            throw error
        }
        state.enter(.stopped)
        try? await adminChannel?.close()
        // What was appended is on disk before the process ends.
        try? await broker.eventLoop.submit { durable.close() }.get()
        try await group.shutdownGracefully()
        logger.info("stopped")
    }

    private func makeCluster(broker: Broker) -> ClusterShell? {
        guard let settings = configuration.cluster else {
            logger.info(
                "clustering is off: set a cluster secret (cluster.secret or cluster.secret-file) to join a cluster"
            )
            return nil
        }
        let shell = ClusterShell(
            settings: settings,
            eventLoop: broker.eventLoop,
            logger: logger,
            flowControl: broker.flowControl,
            router: broker
        )
        broker.attach(cluster: shell)
        // `clusterctl drain NODE` through another member arrives over the link.
        shell.onAdminRequest { [drainRequest, logger] action in
            switch action {
            case "drain": drainRequest.request(.drain)
            case "leave": drainRequest.request(.leave)
            default:
                logger.warning(
                    "unknown admin request from a peer ignored",
                    metadata: ["admin.action": "\(LinkHandshake.quoted(action))"]
                )
            }
        }
        return shell
    }

    /// SIGHUP re-reads the users file and the token keys, as nginx and RabbitMQ's plugins do; connected clients
    /// stay and follow the new permissions from their next frame.
    private func reloadCredentialsOnHangup(_ access: AccessControl) async {
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
            do {
                _ = try await access.reload()
            } catch {
                logger.error(
                    "credentials not reloaded; the users and keys before stay",
                    metadata: ["error": "\(error)"]
                )
            }
        }
    }

    /// Waits for a signal (through the service group) or an admin request to end.
    private func waitForEnd() async -> DrainRequest.Kind {
        await withTaskGroup(of: DrainRequest.Kind.self) { group in
            group.addTask {
                try? await gracefulShutdown()
                return .drain
            }
            group.addTask { await drainRequest.wait() as DrainRequest.Kind }
            let first = await group.next() ?? .drain
            group.cancelAll()
            return first
        }
    }

    private func drain(
        how: DrainRequest.Kind,
        server: StompServer,
        broker: Broker,
        cluster: ClusterShell?,
        durable: DurableQueues
    ) async {
        let settings = configuration.drain
        logger.info("draining", metadata: ["drain.kind": "\(how)"])
        await server.closeListeners()
        if how == .drain, server.openConnections > 0, settings.loadBalancerDelay > .zero {
            // Readiness already says no; give the load balancer time to stop sending clients here.
            try? await Task.sleep(for: .nanoseconds(settings.loadBalancerDelay.nanoseconds))
        }
        await broker.shutdown(
            reason: StompProtocolError(
                .shuttingDown,
                "node is shutting down",
                detail: "This node is shutting down; reconnect to another node."
            ),
            clientsPerSecond: how == .drain ? settings.clientsPerSecond : nil
        )
        // Clients' unacknowledged queue messages are back in their queues once their
        // connections close.
        for _ in 0..<150 where server.openConnections > 0 {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if let cluster {
            // The durable queues led here move to a follower first: their clients on other
            // nodes go on without waiting for an election. Bounded: 3 s at most.
            for _ in 0..<30 {
                let leading = (try? await broker.eventLoop.submit { durable.handOverLeadership() }.get()) ?? 0
                if leading == 0 { break }
                try? await Task.sleep(for: .milliseconds(100))
            }
            let left = await cluster.evacuate()
            if left > 0 {
                logger.warning("queue messages not taken by a peer before leaving", metadata: ["count": "\(left)"])
            }
            await cluster.leave()
        }
    }

    /// Writes the bound ports atomically, so a reader never sees a partial file.
    private static func write(_ ports: [String: Int], to path: String) throws {
        let json =
            "{" + ports.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value)" }.joined(separator: ", ") + "}\n"
        let temporary = path + ".tmp"
        guard let file = fopen(temporary, "w") else { throw PortsFileError(path: temporary) }
        fputs(json, file)
        fclose(file)
        guard rename(temporary, path) == 0 else { throw PortsFileError(path: path) }
    }

    struct PortsFileError: Error, CustomStringConvertible {
        var path: String
        var description: String { "cannot write the ports file \(path)" }
    }
}

/// A request to end the node that arrives through the admin API, awaited by the service.
final class DrainRequest: Sendable {
    enum Kind: Sendable {
        /// The whole protocol, with the pause for the load balancer and paced disconnects.
        case drain
        /// Leave the cluster and stop now.
        case leave
    }

    private let state = Mutex<(kind: Kind?, waiter: CheckedContinuation<Kind, Never>?)>((nil, nil))

    func request(_ kind: Kind) {
        let waiter = state.withLock { state -> CheckedContinuation<Kind, Never>? in
            guard state.kind == nil else { return nil }
            state.kind = kind
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: kind)
    }

    func wait() async {
        _ = await wait() as Kind
    }

    func wait() async -> Kind {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Kind? in
                    if let kind = state.kind { return kind }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            // Cancelled when the node ends for another reason: let the waiter go.
            let waiter = state.withLock { state -> CheckedContinuation<Kind, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: .drain)
        }
    }
}
