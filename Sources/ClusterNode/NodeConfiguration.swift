import BrokerShell
import Gossip
import Logging
import NIOCore
import Replication
import StompRouting
import WebSocketIO

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A node's settings, resolved once at start-up and validated before anything binds.
/// ``SettingsTable`` lists every key with its flag, environment variable and default.
struct NodeConfiguration: Sendable {
    var nodeID: String
    /// This boot of the node, in wall-clock milliseconds: tells it from earlier boots of the
    /// same id, in message-ids and in the cluster.
    var bootEpoch: UInt64
    /// `nil` when clustering is off (no secret configured).
    var cluster: ClusterSettings?
    var admin: AdminSettings
    var drain: DrainSettings
    var auth: AuthSettings

    /// Who may connect (see ``AccessControl``).
    struct AuthSettings: Sendable {
        var usersFile: String?
        var anonymous: AccessControl.AnonymousAccess
        /// The JSON Web Key Set whose tokens are accepted as passcodes.
        var tokenKeysFile: String?
        var tokenPolicy: TokenPolicy
        /// Password checks waiting or running at once.
        var maxPendingLogins: Int
    }

    /// The admin API's listener.
    struct AdminSettings: Sendable {
        var host: String
        /// `nil` turns the admin API off.
        var port: Int?
        /// `host:port` where others reach it; gossiped so that any node can name it.
        var advertisedAddress: String?
        /// Required on every request but `/healthz` and `/readyz` when set; must be set when the
        /// API listens beyond loopback.
        var token: String?
        /// Browser origins that may call it; a request with another `Origin` is refused.
        var allowedOrigins = OriginPolicy([])
        /// The most items one listing answers (`admin.max-page-size`).
        var maxPageSize = 1_000
        /// Samples of the counters kept for `/v1/stats` (`admin.stats-samples`).
        var statsSamples = 300
        /// Time between those samples (`admin.stats-interval-ms`).
        var statsInterval = TimeAmount.seconds(1)

        /// Bound to loopback only: then a request must also name loopback in `Host`, so a
        /// web page can't reach it through DNS rebinding.
        var isLoopbackOnly: Bool { ["127.0.0.1", "::1", "localhost"].contains(host) }
    }

    /// How a drain paces itself.
    struct DrainSettings: Sendable {
        /// Between turning not-ready and telling clients to go: the time a load balancer needs to
        /// stop routing new clients here (a couple of health-check intervals).
        var loadBalancerDelay: TimeAmount
        /// Clients let go per second, so their reconnects don't arrive at the other nodes at once.
        var clientsPerSecond: Int
    }
    var eventLoops: Int
    var logLevel: Logger.Level
    var io: WebSocketIOConfiguration
    var router: Router.Settings
    var durable: DurableQueues.Settings

    init(_ settings: Settings) throws {
        nodeID = try settings.string("node.id") ?? Self.hostName()
        eventLoops = try settings.int("event-loops") ?? System.coreCount
        // The table's choices are exactly Logger.Level's raw values.
        logLevel = Logger.Level(rawValue: try settings.requiredString("log.level")) ?? .info

        var io = WebSocketIOConfiguration()
        io.host = try settings.requiredString("host")
        io.webSocketPort = try settings.port("ws.port")
        io.webSocketPath = try settings.requiredString("ws.path")
        guard io.webSocketPath.hasPrefix("/") else {
            throw SettingsError(description: "ws.path must start with '/', not '\(io.webSocketPath)'")
        }
        io.allowedOrigins = OriginPolicy(try settings.list("ws.allowed-origins"))
        io.stompPort = try settings.port("stomp.port")
        io.secureWebSocketPort = try settings.port("wss.port")
        io.secureStompPort = try settings.port("stomps.port")
        switch (try settings.string("tls.cert"), try settings.string("tls.key")) {
        case (let cert?, let key?):
            io.tls = .init(certificateChainPath: cert, privateKeyPath: key)
        case (nil, nil):
            io.tls = nil
        default:
            throw SettingsError(description: "tls.cert and tls.key must be given together")
        }

        io.frameLimits = StompFrameDecoder.Limits(
            maxFrameSize: try settings.requiredInt("limits.frame-size"),
            maxBodySize: try settings.requiredInt("limits.body-size"),
            maxHeaderCount: try settings.requiredInt("limits.header-count"),
            maxHeaderLineLength: try settings.requiredInt("limits.header-line-length"),
            maxHeaderBytes: try settings.requiredInt("limits.header-bytes")
        )
        io.maxWebSocketMessageSize =
            try settings.int("limits.websocket-message-size") ?? io.frameLimits.maxFrameSize + 1_024
        io.maxConnections = try settings.requiredInt("limits.connections")
        io.maxPendingConnections = try settings.requiredInt("limits.pending-connections")
        io.maxConnectionsPerAddress = try settings.requiredInt("limits.connections-per-ip")
        io.maxOutboundBytes = try settings.requiredInt("limits.outbound-bytes")
        io.maxNodeOutboundBytes = try settings.requiredInt("limits.node-outbound-bytes")
        io.maxDurableWritesInFlight = try settings.requiredInt("limits.durable-writes-in-flight")
        io.maxNodeInboundBytes = try settings.requiredInt("limits.node-inbound-bytes")
        io.upgradeTimeout = try settings.milliseconds("timeouts.upgrade-ms")
        io.tlsHandshakeTimeout = try settings.milliseconds("timeouts.tls-handshake-ms")
        io.connectTimeout = try settings.milliseconds("timeouts.connect-ms")
        io.failedLoginDelay = try settings.milliseconds("auth.failure-delay-ms")

        var session = io.session
        session.maxSubscriptions = try settings.requiredInt("limits.subscriptions")
        session.maxUnacked = try settings.requiredInt("limits.unacked")
        session.maxTransactionBytes = try settings.requiredInt("limits.transaction-bytes")
        session.maxDestinationLength = try settings.requiredInt("limits.destination-length")
        session.maxDestinationWords = try settings.requiredInt("limits.destination-words")
        session.heartbeatSend = try settings.milliseconds("heartbeat.send-ms")
        session.heartbeatReceive = try settings.milliseconds("heartbeat.receive-ms")
        session.heartbeatGraceFactor = try settings.double("heartbeat.grace")
        session.serverName = "cluster-node/\(NodeVersion.current)"
        io.session = session
        io.sessionIDPrefix = nodeID + "-"
        self.io = io

        // message-ids name the node and this boot, so they stay unique across the cluster and
        // across restarts of the same node.
        bootEpoch = UInt64(Self.wallClockMilliseconds())
        let boot = String(bootEpoch, radix: 36)
        router = Router.Settings(
            messageIDPrefix: "\(nodeID)-\(boot)-",
            maxQueueDepth: try settings.requiredInt("limits.queue-depth"),
            maxQueueBytes: try settings.requiredInt("limits.queue-bytes"),
            maxQueues: try settings.requiredInt("limits.queues"),
            maxUnackedBytes: try settings.requiredInt("limits.unacked-bytes"),
            maxTemporaryQueuesPerConnection: try settings.requiredInt("limits.temp-queues")
        )
        router.durableQueues = true
        cluster = try ClusterConfiguration.read(settings, node: nodeID, epoch: bootEpoch)
        durable = DurableQueues.Settings(
            directory: try settings.requiredString("data.dir"),
            log: WriteAheadLog.Settings(
                segmentBytes: try settings.requiredInt("data.segment-bytes"),
                maxBytes: Int64(try settings.requiredInt("data.max-bytes"))
            ),
            sendTimeout: try settings.milliseconds("replication.send-timeout-ms"),
            maxQueues: router.maxQueues,
            minFreeBytes: Int64(try settings.requiredInt("data.min-free-bytes")),
            replicationFactor: try settings.requiredInt("replication.factor"),
            replaceAfter: try settings.milliseconds("replication.replace-after-ms")
        )
        // 0: a replica away is never replaced.
        if durable.replaceAfter == .zero { durable.replaceAfter = nil }

        var admin = AdminSettings(
            host: try settings.requiredString("admin.host"),
            port: try settings.port("admin.port")
        )
        admin.token = try ClusterConfiguration.readSecret(settings, value: "admin.token", file: "admin.token-file")
        admin.allowedOrigins = OriginPolicy(try settings.list("admin.allowed-origins"))
        admin.maxPageSize = try settings.requiredInt("admin.max-page-size")
        admin.statsSamples = try settings.requiredInt("admin.stats-samples")
        admin.statsInterval = try settings.milliseconds("admin.stats-interval-ms")
        if admin.port != nil, !admin.isLoopbackOnly, admin.token == nil {
            throw SettingsError(
                description:
                    "the admin API listens beyond loopback (admin.host \(admin.host)): set admin.token or admin.token-file"
            )
        }
        admin.advertisedAddress = try settings.string("admin.advertise")
        self.admin = admin
        auth = AuthSettings(
            usersFile: try settings.string("auth.users-file"),
            // The table's choices are exactly AnonymousAccess's raw values.
            anonymous: AccessControl.AnonymousAccess(rawValue: try settings.requiredString("auth.anonymous"))
                ?? .loopback,
            tokenKeysFile: try settings.string("auth.jwt-keys"),
            tokenPolicy: TokenPolicy(
                audience: try settings.string("auth.jwt-audience"),
                scopePrefix: try settings.requiredString("auth.jwt-scope-prefix"),
                leeway: .nanoseconds(try settings.milliseconds("auth.jwt-leeway-ms").nanoseconds)
            ),
            maxPendingLogins: try settings.requiredInt("limits.pending-logins")
        )
        drain = DrainSettings(
            loadBalancerDelay: try settings.milliseconds("drain.lb-delay-ms"),
            clientsPerSecond: try settings.requiredInt("drain.clients-per-second")
        )
    }

    /// Where other members and clusterctl reach the admin API once it is bound on `port`:
    /// `admin.advertise` when given, else the admin host when it is a specific address, else
    /// the host peers dial for the cluster link (this node's name on the network).
    func adminAddress(boundPort port: Int) -> String {
        if let advertised = admin.advertisedAddress { return advertised }
        var host = admin.host
        if ["0.0.0.0", "::"].contains(host) {
            host =
                cluster?.advertisedAddress.flatMap { address in
                    address.lastIndex(of: ":").map { String(address[..<$0]) }
                } ?? Self.hostName()
        }
        return host.contains(":") && !host.hasPrefix("[") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "node" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "node" : name
    }

    private static func wallClockMilliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1_000 + Int64(time.tv_nsec) / 1_000_000
    }
}

enum NodeVersion {
    static let current = "0.1.0"
}
