import BrokerShell
import Gossip
import NIOCore
import StompRouting
import WebSocketIO

/// Every setting of the node, in the order `--help` and the README list them. A new setting
/// is added here and read in ``NodeConfiguration`` or ``ClusterConfiguration``; its flag,
/// environment variable, config-file key, documentation and validation follow.
///
/// Defaults come from the modules' own settings types where they have one, so the table
/// documents what the code does.
enum SettingsTable {
    static let all: [Setting] = node + auth + limits + timeouts + heartbeats + data + admin + cluster

    private static let io = WebSocketIOConfiguration()
    private static let session = SessionStateMachine.Settings()
    private static let router = Router.Settings(messageIDPrefix: "")
    private static let durable = DurableQueues.Settings(directory: "data")
    private static let link = ClusterSettings(
        clusterName: "",
        secret: [],
        node: NodeID(""),
        epoch: 0,
        host: "",
        port: 0,
        seeds: []
    )

    private static let node: [Setting] = [
        Setting("host", .text, default: .value(io.host), "Address the client listeners bind."),
        Setting(
            "ws.port",
            .port,
            default: .port(io.webSocketPort),
            "STOMP over WebSocket port; negative turns it off."
        ),
        Setting("ws.path", .path, default: .value(io.webSocketPath), "WebSocket upgrade path."),
        Setting(
            "ws.allowed-origins",
            .list,
            default: .value("*"),
            "Browser origins (scheme://host[:port]) allowed to open WebSocket connections, comma-separated; * for any. Others get 403; clients that send no Origin are not affected."
        ),
        Setting("stomp.port", .port, default: .port(io.stompPort), "STOMP over TCP port; negative turns it off."),
        Setting(
            "tls.cert",
            .path,
            default: .none,
            "PEM certificate chain; with tls.key, turns on the two TLS listeners."
        ),
        Setting("tls.key", .path, default: .none, "PEM private key of tls.cert."),
        Setting("wss.port", .port, default: .port(io.secureWebSocketPort), "wss:// port when TLS is configured."),
        Setting(
            "stomps.port",
            .port,
            default: .port(io.secureStompPort),
            "STOMP over TLS port when TLS is configured."
        ),
        Setting(
            "node.id",
            .text,
            default: .computed("the host name"),
            "This node's name, unique in the cluster; in session and message ids."
        ),
        Setting("event-loops", .count(minimum: 1), default: .computed("one per core"), "I/O threads."),
        Setting(
            "log.level",
            .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]),
            default: .value("info"),
            "Least severe level logged."
        ),
    ]

    private static let auth: [Setting] = [
        Setting(
            "auth.users-file",
            .path,
            default: .none,
            "JSON users file: logins, scrypt password hashes (cluster-node hash-password) and read/write destination patterns; re-read on SIGHUP and POST /v1/auth/reload."
        ),
        Setting(
            "auth.failure-delay-ms",
            .milliseconds(minimum: 0),
            default: .milliseconds(io.failedLoginDelay),
            "How long a refused login waits for its ERROR. An address with 10 failed logins in a minute is refused at once until the minute is over."
        ),
        Setting(
            "auth.anonymous",
            .choice(["on", "loopback", "off"]),
            default: .value("loopback"),
            "Clients that CONNECT without a login: accepted from anywhere, from this machine only, or refused. An anonymous client may read and write everything."
        ),
        Setting(
            "auth.jwt-keys",
            .path,
            default: .none,
            "JSON Web Key Set (HS256/384/512 oct, RS/PS, ES256/384/512, EdDSA keys; kid names each) whose tokens are accepted as passcodes; re-read on SIGHUP and POST /v1/auth/reload."
        ),
        Setting("auth.jwt-audience", .text, default: .none, "When set, a token's aud claim must name it."),
        Setting(
            "auth.jwt-scope-prefix",
            .text,
            default: .value("stomp."),
            "Prefix of the token scopes that grant permissions: PREFIXread:PATTERN and PREFIXwrite:PATTERN."
        ),
        Setting(
            "auth.jwt-leeway-ms",
            .milliseconds(minimum: 0),
            default: .value("30000"),
            "Clock skew allowed on a token's exp and nbf; a connection ends this long after its token's exp."
        ),
    ]

    private static let limits: [Setting] = [
        Setting(
            "limits.frame-size",
            .count(minimum: 1),
            default: .value(io.frameLimits.maxFrameSize),
            flag: "max-frame-size",
            "Bytes of a frame: command, headers and body."
        ),
        Setting(
            "limits.body-size",
            .count(minimum: 1),
            default: .value(io.frameLimits.maxBodySize),
            flag: "max-body-size",
            "Bytes of a frame body."
        ),
        Setting(
            "limits.header-count",
            .count(minimum: 1),
            default: .value(io.frameLimits.maxHeaderCount),
            flag: "max-header-count",
            "Headers in one frame."
        ),
        Setting(
            "limits.header-line-length",
            .count(minimum: 1),
            default: .value(io.frameLimits.maxHeaderLineLength),
            flag: "max-header-line-length",
            "Bytes of one header line."
        ),
        Setting(
            "limits.header-bytes",
            .count(minimum: 1),
            default: .value(io.frameLimits.maxHeaderBytes),
            flag: "max-header-bytes",
            "Bytes of a frame's command and header lines together."
        ),
        Setting(
            "limits.websocket-message-size",
            .count(minimum: 1),
            default: .computed("frame size + 1024"),
            flag: "max-websocket-message-size",
            "Bytes of a reassembled WebSocket message (larger: close 1009)."
        ),
        Setting(
            "limits.subscriptions",
            .count(minimum: 1),
            default: .value(session.maxSubscriptions),
            flag: "max-subscriptions",
            "Subscriptions per connection."
        ),
        Setting(
            "limits.connections",
            .count(minimum: 1),
            default: .value(io.maxConnections),
            flag: "max-connections",
            "Client connections per node, counted from CONNECT."
        ),
        Setting(
            "limits.pending-connections",
            .count(minimum: 1),
            default: .value(io.maxPendingConnections),
            flag: "max-pending-connections",
            "Connections still in TLS, WebSocket upgrade or CONNECT; beyond it new sockets are closed at once."
        ),
        Setting(
            "limits.pending-logins",
            .count(minimum: 1),
            default: .value(AccessControl.defaultMaxPendingLogins),
            flag: "max-pending-logins",
            "Password checks (a scrypt hash each, on worker threads) waiting or running at once; beyond it a CONNECT with a password gets ERROR 'server busy'."
        ),
        Setting(
            "limits.connections-per-ip",
            .count(minimum: 0),
            default: .value(io.maxConnectionsPerAddress),
            flag: "max-connections-per-ip",
            "Connections, pending or connected, from one remote address; 0 for no limit."
        ),
        Setting(
            "limits.unacked",
            .count(minimum: 1),
            default: .value(session.maxUnacked),
            flag: "max-unacked",
            "Unacknowledged messages per subscription: default and ceiling of prefetch-count."
        ),
        Setting(
            "limits.unacked-bytes",
            .count(minimum: 1),
            default: .value(router.maxUnackedBytes),
            flag: "max-unacked-bytes",
            "Bytes of one connection's unacknowledged deliveries."
        ),
        Setting(
            "limits.queue-depth",
            .count(minimum: 1),
            default: .value(router.maxQueueDepth),
            flag: "max-queue-depth",
            "Messages a queue holds for absent consumers."
        ),
        Setting(
            "limits.queue-bytes",
            .count(minimum: 1),
            default: .value(router.maxQueueBytes),
            flag: "max-queue-bytes",
            "Bytes all queues of the node hold together."
        ),
        Setting(
            "limits.queues",
            .count(minimum: 1),
            default: .value(router.maxQueues),
            flag: "max-queues",
            "Queues the node holds."
        ),
        Setting(
            "limits.temp-queues",
            .count(minimum: 1),
            default: .value(router.maxTemporaryQueuesPerConnection),
            flag: "max-temp-queues",
            "Temporary reply queues (reply-to:/temp-queue/NAME) one connection holds."
        ),
        Setting(
            "limits.transaction-bytes",
            .count(minimum: 1),
            default: .value(session.maxTransactionBytes),
            flag: "max-transaction-bytes",
            "Bytes one connection's open transactions hold until COMMIT."
        ),
        Setting(
            "limits.destination-length",
            .count(minimum: 1),
            default: .value(session.maxDestinationLength),
            flag: "max-destination-length",
            "Bytes of a destination."
        ),
        Setting(
            "limits.destination-words",
            .count(minimum: 1),
            default: .value(session.maxDestinationWords),
            flag: "max-destination-words",
            "Dot-separated words of a topic name or pattern."
        ),
        Setting(
            "limits.outbound-bytes",
            .count(minimum: 1),
            default: .value(io.maxOutboundBytes),
            flag: "max-outbound-bytes",
            "Bytes waiting to be sent to one client before it counts as a slow consumer."
        ),
        Setting(
            "limits.durable-writes-in-flight",
            .count(minimum: 1),
            default: .value(io.maxDurableWritesInFlight),
            flag: "max-durable-writes-in-flight",
            "Persistent SENDs and ACKs of persistent messages one client may have waiting for their quorum; at that many the node stops reading it until half have ended."
        ),
        Setting(
            "limits.node-outbound-bytes",
            .count(minimum: 1),
            default: .value(io.maxNodeOutboundBytes),
            flag: "max-node-outbound-bytes",
            "Bytes waiting for all clients together (see Bounds)."
        ),
        Setting(
            "limits.node-inbound-bytes",
            .count(minimum: 1),
            default: .value(io.maxNodeInboundBytes),
            flag: "max-node-inbound-bytes",
            "Bytes of frames still arriving from all clients together (see Bounds)."
        ),
    ]

    private static let timeouts: [Setting] = [
        Setting(
            "timeouts.upgrade-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(io.upgradeTimeout),
            flag: "upgrade-timeout-ms",
            "From accepting a WebSocket connection to its upgrade request."
        ),
        Setting(
            "timeouts.tls-handshake-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(io.tlsHandshakeTimeout),
            flag: "tls-handshake-timeout-ms",
            "Time a TLS handshake may take."
        ),
        Setting(
            "timeouts.connect-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(io.connectTimeout),
            flag: "connect-timeout-ms",
            "From connecting (or upgrading) to CONNECT."
        ),
    ]

    private static let data: [Setting] = [
        Setting(
            "data.dir",
            .path,
            default: .value(durable.directory),
            "Directory of the durable queues' log (persistent messages to /queue/), relative to the working directory; created if missing. One node per directory."
        ),
        Setting(
            "data.max-bytes",
            .count(minimum: 1 << 20),
            default: .value(String(durable.log.maxBytes)),
            "Bytes the durable log may hold; persistent SENDs past it get an ERROR until consumers catch up."
        ),
        Setting(
            "data.segment-bytes",
            .count(minimum: 64 << 10),
            default: .value(String(durable.log.segmentBytes)),
            "Bytes per log segment file: the unit in which acknowledged messages' space is given back."
        ),
        Setting(
            "data.min-free-bytes",
            .count(minimum: 0),
            default: .value(String(durable.minFreeBytes)),
            "Free bytes the data dir's file system keeps: persistent SENDs get an ERROR below it."
        ),
        Setting(
            "replication.factor",
            .count(minimum: 1),
            default: .value(String(durable.replicationFactor)),
            "Replicas of each durable queue (the cluster's size when smaller): a persistent SEND's RECEIPT waits until a majority of them hold it on disk."
        ),
        Setting(
            "replication.send-timeout-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(durable.sendTimeout),
            "How long a persistent SEND (or an ACK of a persistent message) may wait to be durable before its client gets an ERROR."
        ),
        Setting(
            "replication.replace-after-ms",
            .milliseconds(minimum: 0),
            default: .milliseconds(durable.replaceAfter ?? .zero),
            "How long a durable queue's replica may be away (its node dead or cut off) before the next node placement ranks takes its place; 0 never replaces one."
        ),
    ]

    private static let heartbeats: [Setting] = [
        Setting(
            "heartbeat.send-ms",
            .milliseconds(minimum: 0),
            default: .milliseconds(session.heartbeatSend),
            "Fastest server heart-beat offered to clients; 0 for none."
        ),
        Setting(
            "heartbeat.receive-ms",
            .milliseconds(minimum: 0),
            default: .milliseconds(session.heartbeatReceive),
            "Client heart-beat asked for; 0 for none."
        ),
        Setting(
            "heartbeat.grace",
            .number(minimum: 1),
            default: .value("\(session.heartbeatGraceFactor)"),
            "Silence allowed, as a multiple of the client's heart-beat interval."
        ),
    ]

    private static let admin: [Setting] = [
        Setting("admin.host", .text, default: .value("127.0.0.1"), "Address of the admin API (health, metrics, /v1)."),
        Setting("admin.port", .port, default: .value("8222"), "Port of the admin API; negative turns it off."),
        Setting(
            "admin.advertise",
            .text,
            default: .computed("the host of cluster.advertise and the admin port"),
            "host:port where other members and clusterctl reach this node's admin API; gossiped to the cluster."
        ),
        Setting(
            "admin.token",
            .text,
            default: .none,
            secret: true,
            "Bearer token the admin API requires (all but /healthz and /readyz); required beyond loopback."
        ),
        Setting("admin.token-file", .path, default: .none, "File holding the admin API's bearer token."),
        Setting(
            "admin.allowed-origins",
            .list,
            default: .none,
            "Browser origins allowed to call the admin API, comma-separated; a request with any other Origin header gets 403, so no web page can drive it cross-site."
        ),
        Setting(
            "admin.max-page-size",
            .count(minimum: 1),
            default: .value("1000"),
            "Most connections or subscriptions one admin API answer lists (limit=); larger pages get 400, so a node with 100,000 connections never builds one huge answer."
        ),
        Setting(
            "admin.stats-samples",
            .count(minimum: 2),
            default: .value("300"),
            "Samples of the node's counters kept for /v1/stats, the console's charts and clusterctl top; fixed memory (about 60 bytes each)."
        ),
        Setting(
            "admin.stats-interval-ms",
            .milliseconds(minimum: 100),
            default: .value("1000"),
            "Time between samples of /v1/stats; with admin.stats-samples it sets how many minutes the history covers."
        ),
        Setting(
            "drain.lb-delay-ms",
            .milliseconds(minimum: 0),
            default: .value("2000"),
            "Pause between turning not-ready and telling clients to go, when draining."
        ),
        Setting(
            "drain.clients-per-second",
            .count(minimum: 1),
            default: .value("1000"),
            "Clients disconnected per second when draining."
        ),
    ]

    private static let cluster: [Setting] = [
        Setting("cluster.port", .port, default: .value("7946"), "Cluster link port; negative turns clustering off."),
        Setting("cluster.host", .text, default: .value("0.0.0.0"), "Address the cluster link binds."),
        Setting(
            "cluster.advertise",
            .text,
            default: .computed("the host name (or a specific cluster.host) and the cluster port"),
            "host:port peers dial to reach this node."
        ),
        Setting(
            "cluster.seeds",
            .list,
            default: .none,
            flag: "seeds",
            "Comma-separated host:port of members to join through; a name may resolve to several addresses."
        ),
        Setting(
            "cluster.min-members",
            .count(minimum: 1),
            default: .computed("2 with seeds, else 1"),
            "Members, this node included, linked before the node first reports ready. 1 lets the first node of a new cluster start alone."
        ),
        Setting(
            "cluster.name",
            .text,
            default: .value("stomp-cluster"),
            "Nodes only link with nodes of the same cluster name."
        ),
        Setting(
            "cluster.secret",
            .text,
            default: .none,
            secret: true,
            "Shared cluster secret, 16 bytes or more; clustering is on once it is set. Prefer cluster.secret-file."
        ),
        Setting("cluster.secret-file", .path, default: .none, "File holding the cluster secret."),
        Setting(
            "cluster.tls.cert",
            .path,
            default: .none,
            "PEM certificate for mutual TLS on cluster links; needs a subjectAltName DNS entry equal to the node id, and peers' certificates must name the ids they claim."
        ),
        Setting("cluster.tls.key", .path, default: .none, "PEM private key for mutual TLS on cluster links."),
        Setting(
            "cluster.tls.ca",
            .path,
            default: .none,
            "PEM CA certificates that peers' link certificates must chain to."
        ),
        Setting(
            "cluster.probe-interval-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(link.membership.probeInterval),
            flag: "probe-interval-ms",
            "SWIM protocol period."
        ),
        Setting(
            "cluster.probe-timeout-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(link.membership.probeTimeout),
            flag: "probe-timeout-ms",
            "SWIM direct probe timeout (stretched by local health)."
        ),
        Setting(
            "cluster.suspicion-timeout-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(link.membership.suspicionTimeout),
            flag: "suspicion-timeout-ms",
            "Time a suspect has to refute before it is declared dead."
        ),
        Setting(
            "cluster.interest-ack-timeout-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(link.interestAckTimeout),
            flag: "interest-ack-timeout-ms",
            "Longest wait of a SUBSCRIBE's RECEIPT for peers to acknowledge it."
        ),
        Setting(
            "cluster.indirect-probe-timeout-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(link.membership.indirectProbeTimeout),
            flag: "indirect-probe-timeout-ms",
            "Time indirect probes get."
        ),
        Setting(
            "cluster.indirect-probes",
            .count(minimum: 0),
            default: .value(link.membership.indirectProbeCount),
            flag: "indirect-probes",
            "Members asked to probe one that missed a direct probe."
        ),
        Setting(
            "cluster.link-heartbeat-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(link.heartbeatInterval),
            flag: "link-heartbeat-ms",
            "Heart-beat on an idle link; keep it below the probe timeout."
        ),
        Setting(
            "cluster.link-timeout-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(link.linkTimeout),
            flag: "link-timeout-ms",
            "A link silent this long is closed and redialled."
        ),
        Setting(
            "cluster.digest-interval-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(link.digestInterval),
            flag: "digest-interval-ms",
            "Interval of interest digests that repair missed updates."
        ),
        Setting(
            "cluster.outage-grace-ms",
            .milliseconds(minimum: 0),
            default: .milliseconds(link.outageGrace),
            flag: "outage-grace-ms",
            "Topic messages for an unreachable peer are held this long; then dropped, and its subscribers told."
        ),
        Setting(
            "cluster.outbox-bytes",
            .count(minimum: 0),
            default: .value(link.outboxBytes),
            flag: "outbox-bytes",
            "Bytes held for one peer; past them its messages are dropped, and its subscribers told."
        ),
        Setting(
            "cluster.outbox-node-bytes",
            .count(minimum: 0),
            default: .value(link.outboxNodeBytes),
            flag: "outbox-node-bytes",
            "Bytes held for all peers; past them the peer holding most loses what was held first."
        ),
        Setting(
            "cluster.compression-threshold",
            .count(minimum: 0),
            default: .value(link.compressionThreshold),
            flag: "compression-threshold",
            "Link batches smaller than this many bytes are not compressed."
        ),
        Setting(
            "cluster.handshake-timeout-ms",
            .milliseconds(minimum: 1),
            default: .milliseconds(link.handshakeTimeout),
            flag: "link-handshake-timeout-ms",
            "A link that hasn't proved the secret both ways by then is closed."
        ),
        Setting(
            "cluster.handshake-frame-size",
            .count(minimum: 1_024),
            default: .value(link.handshakeFrameSize),
            flag: "link-handshake-frame-size",
            "Largest link frame accepted before the peer proved the secret."
        ),
    ]

    /// Looks a setting up by key; reading a key the table lacks is a programming error.
    static func setting(_ key: String) -> Setting {
        guard let setting = byKey[key] else { preconditionFailure("no setting \(key) in SettingsTable") }
        return setting
    }

    private static let byKey = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })
}

extension Setting.Default {
    static func value(_ value: Int) -> Self { .value(String(value)) }

    /// A listener's port, or -1 when it is off by default.
    static func port(_ port: Int?) -> Self { .value(String(port ?? -1)) }

    static func milliseconds(_ amount: TimeAmount) -> Self { .value(String(amount.nanoseconds / 1_000_000)) }
}
