import ArgumentParser
import Configuration
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// `cluster-node`: one node of the broker.
///
/// Every setting comes, in this order of precedence, from a flag, from an environment
/// variable (`CLUSTER_NODE_` + the key in upper case with `_` for `.` and `-`, e.g.
/// `CLUSTER_NODE_WS_PORT`), from the JSON file given by `--config`, or from its default.
/// ``NodeConfiguration`` lists the keys.
@main
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster-node",
        abstract: "A clustered STOMP broker node serving STOMP over WebSocket and TCP."
    )

    @Option(help: "JSON configuration file; flags and environment variables override it.")
    var config: String?

    @Option(help: "Address the client listeners bind. (key: host, default 0.0.0.0)")
    var host: String?
    @Option(help: "STOMP over WebSocket port; negative turns it off. (key: ws.port, default 15674)")
    var wsPort: Int?
    @Option(help: "WebSocket upgrade path. (key: ws.path, default /ws)")
    var wsPath: String?
    @Option(help: "STOMP over TCP port; negative turns it off. (key: stomp.port, default 61613)")
    var stompPort: Int?
    @Option(help: "Port for wss:// when TLS is configured. (key: wss.port, default 15673)")
    var wssPort: Int?
    @Option(help: "Port for STOMP over TLS when TLS is configured. (key: stomps.port, default 61614)")
    var stompsPort: Int?
    @Option(help: "PEM certificate chain for the TLS listeners. (key: tls.cert)")
    var tlsCert: String?
    @Option(help: "PEM private key for the TLS listeners. (key: tls.key)")
    var tlsKey: String?
    @Option(help: "This node's id, unique in the cluster. (key: node.id, default: the host name)")
    var nodeId: String?
    @Option(help: "Event loop threads. (key: event-loops, default: one per core)")
    var eventLoops: Int?
    @Option(help: "trace, debug, info, notice, warning, error or critical. (key: log.level, default info)")
    var logLevel: String?
    @Option(help: "After binding, write the bound ports as JSON to this file (for tests and tools).")
    var portsFile: String?

    @Option(help: "Cluster link port; negative turns clustering off. (key: cluster.port, default 7946)")
    var clusterPort: Int?
    @Option(help: "Address the cluster link binds. (key: cluster.host, default 0.0.0.0)")
    var clusterHost: String?
    @Option(help: "host:port peers dial to reach this node. (key: cluster.advertise, default: host name and cluster port)")
    var clusterAdvertise: String?
    @Option(help: "Comma-separated host:port seeds to join through; a name may resolve to several addresses. (key: cluster.seeds)")
    var seeds: String?
    @Option(help: "Nodes only link with nodes of the same cluster name. (key: cluster.name, default stomp-cluster)")
    var clusterName: String?
    @Option(help: "Shared cluster secret; prefer --cluster-secret-file or the environment. Clustering is on once a secret is set. (key: cluster.secret)")
    var clusterSecret: String?
    @Option(help: "File holding the cluster secret. (key: cluster.secret-file)")
    var clusterSecretFile: String?
    @Option(help: "PEM certificate for mutual TLS on cluster links. (key: cluster.tls.cert)")
    var clusterTlsCert: String?
    @Option(help: "PEM private key for mutual TLS on cluster links. (key: cluster.tls.key)")
    var clusterTlsKey: String?
    @Option(help: "PEM CA certificates that peers' link certificates must chain to. (key: cluster.tls.ca)")
    var clusterTlsCa: String?
    @Option(help: "SWIM protocol period in ms. (key: cluster.probe-interval-ms, default 1000)")
    var probeIntervalMs: Int?
    @Option(help: "SWIM direct probe timeout in ms. (key: cluster.probe-timeout-ms, default 400)")
    var probeTimeoutMs: Int?
    @Option(help: "SWIM suspicion timeout in ms before a suspect is declared dead. (key: cluster.suspicion-timeout-ms, default 2000)")
    var suspicionTimeoutMs: Int?
    @Option(help: "Longest wait, in ms, for peers to acknowledge a subscription before its RECEIPT. (key: cluster.interest-ack-timeout-ms, default 2000)")
    var interestAckTimeoutMs: Int?
    @Option(help: "SWIM indirect probe timeout in ms. (key: cluster.indirect-probe-timeout-ms, default 600)")
    var indirectProbeTimeoutMs: Int?
    @Option(help: "Members asked to probe a target that missed a direct probe. (key: cluster.indirect-probes, default 3)")
    var indirectProbes: Int?
    @Option(help: "Heart-beat interval of idle links in ms; keep it below the probe timeout. (key: cluster.link-heartbeat-ms, default 200)")
    var linkHeartbeatMs: Int?
    @Option(help: "A link silent for this many ms is closed and redialled. (key: cluster.link-timeout-ms, default 10000)")
    var linkTimeoutMs: Int?
    @Option(help: "Interval of interest digests that repair missed updates, in ms. (key: cluster.digest-interval-ms, default 5000)")
    var digestIntervalMs: Int?
    @Option(help: "A link whose handshake takes longer than this many ms is closed. (key: cluster.handshake-timeout-ms, default 5000)")
    var linkHandshakeTimeoutMs: Int?
    @Option(help: "Largest link frame in bytes before the peer has proved the secret. (key: cluster.handshake-frame-size, default 16384)")
    var linkHandshakeFrameSize: Int?
    @Option(help: "Link batches smaller than this many bytes are not compressed. (key: cluster.compression-threshold, default 512)")
    var compressionThreshold: Int?

    @Option(help: "Address of the admin API (health, metrics, /v1). (key: admin.host, default 127.0.0.1)")
    var adminHost: String?
    @Option(help: "Port of the admin API; negative turns it off. (key: admin.port, default 8222)")
    var adminPort: Int?
    @Option(help: "Bearer token the admin API requires (all but /healthz and /readyz); required beyond loopback. (key: admin.token)")
    var adminToken: String?
    @Option(help: "File holding the admin API's bearer token. (key: admin.token-file)")
    var adminTokenFile: String?
    @Option(help: "Pause in ms between turning not-ready and disconnecting clients when draining. (key: drain.lb-delay-ms, default 2000)")
    var drainLbDelayMs: Int?
    @Option(help: "Clients disconnected per second when draining. (key: drain.clients-per-second, default 1000)")
    var drainClientsPerSecond: Int?

    @Option(help: "Largest frame in bytes: command, headers and body. (key: limits.frame-size)")
    var maxFrameSize: Int?
    @Option(help: "Largest frame body in bytes. (key: limits.body-size)")
    var maxBodySize: Int?
    @Option(help: "Most headers in one frame. (key: limits.header-count)")
    var maxHeaderCount: Int?
    @Option(help: "Longest header line in bytes. (key: limits.header-line-length)")
    var maxHeaderLineLength: Int?
    @Option(help: "Largest WebSocket message in bytes, after reassembly. (key: limits.websocket-message-size)")
    var maxWebsocketMessageSize: Int?
    @Option(help: "Subscriptions per connection. (key: limits.subscriptions)")
    var maxSubscriptions: Int?
    @Option(help: "Client connections per node, counted from CONNECT. (key: limits.connections)")
    var maxConnections: Int?
    @Option(help: "Connections still in TLS, upgrade or CONNECT, per node. (key: limits.pending-connections, default 1000)")
    var maxPendingConnections: Int?
    @Option(help: "Connections from one remote address; 0 for no limit. (key: limits.connections-per-ip, default 0)")
    var maxConnectionsPerIp: Int?
    @Option(help: "Bytes of one connection's unacknowledged deliveries. (key: limits.unacked-bytes, default 16 MiB)")
    var maxUnackedBytes: Int?
    @Option(help: "Bytes held by all queues of the node. (key: limits.queue-bytes, default 256 MiB)")
    var maxQueueBytes: Int?
    @Option(help: "Queues the node holds. (key: limits.queues, default 10000)")
    var maxQueues: Int?
    @Option(help: "Bytes held by one connection's open transactions. (key: limits.transaction-bytes, default 16 MiB)")
    var maxTransactionBytes: Int?
    @Option(help: "Bytes of a destination. (key: limits.destination-length, default 1024)")
    var maxDestinationLength: Int?
    @Option(help: "Dot-separated words of a topic name or pattern. (key: limits.destination-words, default 64)")
    var maxDestinationWords: Int?
    @Option(help: "Unwritten bytes over all client connections. (key: limits.node-outbound-bytes, default 512 MiB)")
    var maxNodeOutboundBytes: Int?
    @Option(help: "Time from accepting a WebSocket connection to its upgrade request, in ms. (key: timeouts.upgrade-ms, default 10000)")
    var upgradeTimeoutMs: Int?
    @Option(help: "Time a TLS handshake may take, in ms. (key: timeouts.tls-handshake-ms, default 10000)")
    var tlsHandshakeTimeoutMs: Int?
    @Option(help: "Time from connecting (or upgrading) to CONNECT, in ms. (key: timeouts.connect-ms, default 10000)")
    var connectTimeoutMs: Int?
    @Option(help: "Unacknowledged messages per subscription: default and ceiling of prefetch-count. (key: limits.unacked)")
    var maxUnacked: Int?
    @Option(help: "Messages a queue holds while no consumer can take them. (key: limits.queue-depth)")
    var maxQueueDepth: Int?
    @Option(help: "Bytes waiting to be sent to one client before it counts as a slow consumer. (key: limits.outbound-bytes)")
    var maxOutboundBytes: Int?
    @Option(help: "Server heart-beat interval offered to clients, in ms; 0 for none. (key: heartbeat.send-ms)")
    var heartbeatSendMs: Int?
    @Option(help: "Client heart-beat interval asked for, in ms; 0 for none. (key: heartbeat.receive-ms)")
    var heartbeatReceiveMs: Int?
    @Option(help: "A client is dropped after its heart-beat interval times this passes in silence. (key: heartbeat.grace)")
    var heartbeatGrace: Double?

    /// The flags given, as configuration keys, so that they take precedence over the other
    /// sources in one ``ConfigReader``.
    private var flagValues: [AbsoluteConfigKey: ConfigValue] {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        func put(_ key: AbsoluteConfigKey, _ content: ConfigContent?) {
            if let content { values[key] = ConfigValue(content, isSecret: key == "cluster.secret" || key == "admin.token") }
        }
        put("host", host.map(ConfigContent.string))
        put("ws.port", wsPort.map(ConfigContent.int))
        put("ws.path", wsPath.map(ConfigContent.string))
        put("stomp.port", stompPort.map(ConfigContent.int))
        put("wss.port", wssPort.map(ConfigContent.int))
        put("stomps.port", stompsPort.map(ConfigContent.int))
        put("tls.cert", tlsCert.map(ConfigContent.string))
        put("tls.key", tlsKey.map(ConfigContent.string))
        put("node.id", nodeId.map(ConfigContent.string))
        put("event-loops", eventLoops.map(ConfigContent.int))
        put("log.level", logLevel.map(ConfigContent.string))
        put("limits.frame-size", maxFrameSize.map(ConfigContent.int))
        put("limits.body-size", maxBodySize.map(ConfigContent.int))
        put("limits.header-count", maxHeaderCount.map(ConfigContent.int))
        put("limits.header-line-length", maxHeaderLineLength.map(ConfigContent.int))
        put("limits.websocket-message-size", maxWebsocketMessageSize.map(ConfigContent.int))
        put("limits.subscriptions", maxSubscriptions.map(ConfigContent.int))
        put("limits.connections", maxConnections.map(ConfigContent.int))
        put("limits.pending-connections", maxPendingConnections.map(ConfigContent.int))
        put("limits.connections-per-ip", maxConnectionsPerIp.map(ConfigContent.int))
        put("limits.unacked-bytes", maxUnackedBytes.map(ConfigContent.int))
        put("limits.queue-bytes", maxQueueBytes.map(ConfigContent.int))
        put("limits.queues", maxQueues.map(ConfigContent.int))
        put("limits.transaction-bytes", maxTransactionBytes.map(ConfigContent.int))
        put("limits.destination-length", maxDestinationLength.map(ConfigContent.int))
        put("limits.destination-words", maxDestinationWords.map(ConfigContent.int))
        put("limits.node-outbound-bytes", maxNodeOutboundBytes.map(ConfigContent.int))
        put("timeouts.upgrade-ms", upgradeTimeoutMs.map(ConfigContent.int))
        put("timeouts.tls-handshake-ms", tlsHandshakeTimeoutMs.map(ConfigContent.int))
        put("timeouts.connect-ms", connectTimeoutMs.map(ConfigContent.int))
        put("limits.unacked", maxUnacked.map(ConfigContent.int))
        put("limits.queue-depth", maxQueueDepth.map(ConfigContent.int))
        put("limits.outbound-bytes", maxOutboundBytes.map(ConfigContent.int))
        put("heartbeat.send-ms", heartbeatSendMs.map(ConfigContent.int))
        put("heartbeat.receive-ms", heartbeatReceiveMs.map(ConfigContent.int))
        put("heartbeat.grace", heartbeatGrace.map(ConfigContent.double))
        put("admin.host", adminHost.map(ConfigContent.string))
        put("admin.port", adminPort.map(ConfigContent.int))
        put("admin.token", adminToken.map(ConfigContent.string))
        put("admin.token-file", adminTokenFile.map(ConfigContent.string))
        put("drain.lb-delay-ms", drainLbDelayMs.map(ConfigContent.int))
        put("drain.clients-per-second", drainClientsPerSecond.map(ConfigContent.int))
        put("cluster.port", clusterPort.map(ConfigContent.int))
        put("cluster.host", clusterHost.map(ConfigContent.string))
        put("cluster.advertise", clusterAdvertise.map(ConfigContent.string))
        put("cluster.seeds", seeds.map(ConfigContent.string))
        put("cluster.name", clusterName.map(ConfigContent.string))
        put("cluster.secret", clusterSecret.map(ConfigContent.string))
        put("cluster.secret-file", clusterSecretFile.map(ConfigContent.string))
        put("cluster.tls.cert", clusterTlsCert.map(ConfigContent.string))
        put("cluster.tls.key", clusterTlsKey.map(ConfigContent.string))
        put("cluster.tls.ca", clusterTlsCa.map(ConfigContent.string))
        put("cluster.probe-interval-ms", probeIntervalMs.map(ConfigContent.int))
        put("cluster.probe-timeout-ms", probeTimeoutMs.map(ConfigContent.int))
        put("cluster.suspicion-timeout-ms", suspicionTimeoutMs.map(ConfigContent.int))
        put("cluster.interest-ack-timeout-ms", interestAckTimeoutMs.map(ConfigContent.int))
        put("cluster.indirect-probe-timeout-ms", indirectProbeTimeoutMs.map(ConfigContent.int))
        put("cluster.indirect-probes", indirectProbes.map(ConfigContent.int))
        put("cluster.link-heartbeat-ms", linkHeartbeatMs.map(ConfigContent.int))
        put("cluster.link-timeout-ms", linkTimeoutMs.map(ConfigContent.int))
        put("cluster.digest-interval-ms", digestIntervalMs.map(ConfigContent.int))
        put("cluster.handshake-timeout-ms", linkHandshakeTimeoutMs.map(ConfigContent.int))
        put("cluster.handshake-frame-size", linkHandshakeFrameSize.map(ConfigContent.int))
        put("cluster.compression-threshold", compressionThreshold.map(ConfigContent.int))
        return values
    }

    func run() async throws {
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "flags", values: flagValues),
            EnvironmentVariablesProvider().prefixKeys(with: "cluster-node"),
        ]
        if let config {
            providers.append(try await FileProvider<JSONSnapshot>(filePath: .init(config)))
        }
        let configuration = try NodeConfiguration(reader: ConfigReader(providers: providers))

        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = configuration.logLevel
            return handler
        }
        let logger = Logger(label: "cluster-node")

        // Every counter and gauge of every module lands in one registry, served at /metrics.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let node = NodeService(configuration: configuration, portsFile: portsFile, registry: registry, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                // The node also ends on its own after an admin-requested drain: that is a normal exit.
                services: [.init(service: node, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}
