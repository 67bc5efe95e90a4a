import Configuration
import Gossip
import Logging
import NIOCore
import StompRouting
import WebSocketIO

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A node's settings, resolved once at start-up and validated before anything binds.
///
/// Keys (flag / environment variable / JSON path), with their defaults:
///
/// | key | default |
/// | --- | --- |
/// | `host` | `0.0.0.0` |
/// | `ws.port`, `ws.path` | `15674`, `/ws` |
/// | `stomp.port` | `61613` |
/// | `tls.cert`, `tls.key` | none; when both are set, `wss.port` (15673) and `stomps.port` (61614) listen too |
/// | `node.id` | the host name |
/// | `event-loops` | one per core |
/// | `log.level` | `info` |
/// | `limits.frame-size`, `limits.body-size` | 1 MiB + 64 KiB, 1 MiB |
/// | `limits.header-count`, `limits.header-line-length` | 64, 8192 |
/// | `limits.websocket-message-size` | frame size + 1 KiB |
/// | `limits.subscriptions`, `limits.connections` | 1024, 100000 |
/// | `limits.unacked`, `limits.unacked-bytes` | 1000, 16 MiB (per connection) |
/// | `limits.queue-depth`, `limits.queue-bytes`, `limits.queues` | 10000, 256 MiB (all queues), 10000 |
/// | `limits.transaction-bytes` | 16 MiB (per connection) |
/// | `limits.destination-length`, `limits.destination-words` | 1024, 64 |
/// | `limits.outbound-bytes`, `limits.node-outbound-bytes` | 8 MiB, 512 MiB |
/// | `limits.pending-connections`, `limits.connections-per-ip` | 1000, 0 (no limit) |
/// | `timeouts.upgrade-ms`, `timeouts.tls-handshake-ms`, `timeouts.connect-ms` | 10000, 10000, 10000 |
/// | `heartbeat.send-ms`, `heartbeat.receive-ms`, `heartbeat.grace` | 10000, 10000, 1.5 |
///
/// | `admin.host`, `admin.port`, `admin.token` or `admin.token-file` | `127.0.0.1`, `8222`, none (required beyond loopback) |
/// | `drain.lb-delay-ms`, `drain.clients-per-second` | 2000, 1000 |
///
/// A negative port turns that listener off.
struct NodeConfiguration: Sendable {
    var nodeID: String
    /// This boot of the node, in wall-clock milliseconds: tells it from earlier boots of the
    /// same id, in message-ids and in the cluster.
    var bootEpoch: UInt64
    /// `nil` when clustering is off (no secret configured).
    var cluster: ClusterSettings?
    var admin: AdminSettings
    var drain: DrainSettings

    /// The admin API's listener.
    struct AdminSettings: Sendable {
        var host = "127.0.0.1"
        /// `nil` turns the admin API off.
        var port: Int? = 8222
        /// Required on every request but `/healthz` and `/readyz` when set; must be set when the
        /// API listens beyond loopback.
        var token: String?
    }

    /// How a drain paces itself.
    struct DrainSettings: Sendable {
        /// Between turning not-ready and telling clients to go: the time a load balancer needs to
        /// stop routing new clients here (a couple of health-check intervals).
        var loadBalancerDelay: TimeAmount = .seconds(2)
        /// Clients let go per second, so their reconnects don't arrive at the other nodes at once.
        var clientsPerSecond = 1_000
    }
    var eventLoops: Int
    var logLevel: Logger.Level
    var io: WebSocketIOConfiguration
    var router: Router.Settings

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    init(reader: ConfigReader) throws {
        let defaults = WebSocketIOConfiguration()
        var io = defaults

        nodeID = reader.string(forKey: "node.id", default: Self.hostName())
        eventLoops = reader.int(forKey: "event-loops", default: System.coreCount)
        let level = reader.string(forKey: "log.level", default: "info")
        guard let logLevel = Logger.Level(rawValue: level.lowercased()) else {
            throw Invalid(description: "log.level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), not '\(level)'")
        }
        self.logLevel = logLevel

        func port(_ key: ConfigKey, _ fallback: Int?) throws -> Int? {
            let value = reader.int(forKey: key, default: fallback ?? -1)
            guard value <= 65_535 else { throw Invalid(description: "\(key) must be a port number, not \(value)") }
            return value < 0 ? nil : value
        }
        func positive(_ key: ConfigKey, _ fallback: Int) throws -> Int {
            let value = reader.int(forKey: key, default: fallback)
            guard value > 0 else { throw Invalid(description: "\(key) must be positive, not \(value)") }
            return value
        }
        func milliseconds(_ key: ConfigKey, _ fallback: TimeAmount) throws -> TimeAmount {
            .milliseconds(Int64(try positive(key, Int(fallback.nanoseconds / 1_000_000))))
        }

        io.host = reader.string(forKey: "host", default: defaults.host)
        io.webSocketPort = try port("ws.port", defaults.webSocketPort)
        io.webSocketPath = reader.string(forKey: "ws.path", default: defaults.webSocketPath)
        guard io.webSocketPath.hasPrefix("/") else { throw Invalid(description: "ws.path must start with '/'") }
        io.stompPort = try port("stomp.port", defaults.stompPort)
        io.secureWebSocketPort = try port("wss.port", defaults.secureWebSocketPort)
        io.secureStompPort = try port("stomps.port", defaults.secureStompPort)
        switch (reader.string(forKey: "tls.cert"), reader.string(forKey: "tls.key")) {
        case (let cert?, let key?):
            io.tls = .init(certificateChainPath: cert, privateKeyPath: key)
        case (nil, nil):
            io.tls = nil
        default:
            throw Invalid(description: "tls.cert and tls.key must be given together")
        }

        io.frameLimits = StompFrameDecoder.Limits(
            maxFrameSize: try positive("limits.frame-size", defaults.frameLimits.maxFrameSize),
            maxBodySize: try positive("limits.body-size", defaults.frameLimits.maxBodySize),
            maxHeaderCount: try positive("limits.header-count", defaults.frameLimits.maxHeaderCount),
            maxHeaderLineLength: try positive("limits.header-line-length", defaults.frameLimits.maxHeaderLineLength)
        )
        io.maxWebSocketMessageSize = try positive("limits.websocket-message-size", io.frameLimits.maxFrameSize + 1_024)
        io.maxConnections = try positive("limits.connections", defaults.maxConnections)
        io.maxPendingConnections = try positive("limits.pending-connections", defaults.maxPendingConnections)
        io.maxConnectionsPerAddress = reader.int(forKey: "limits.connections-per-ip", default: defaults.maxConnectionsPerAddress)
        guard io.maxConnectionsPerAddress >= 0 else { throw Invalid(description: "limits.connections-per-ip may not be negative (0 turns it off)") }
        io.maxOutboundBytes = try positive("limits.outbound-bytes", defaults.maxOutboundBytes)
        io.maxNodeOutboundBytes = try positive("limits.node-outbound-bytes", defaults.maxNodeOutboundBytes)
        io.upgradeTimeout = try milliseconds("timeouts.upgrade-ms", defaults.upgradeTimeout)
        io.tlsHandshakeTimeout = try milliseconds("timeouts.tls-handshake-ms", defaults.tlsHandshakeTimeout)
        io.connectTimeout = try milliseconds("timeouts.connect-ms", defaults.connectTimeout)

        var session = defaults.session
        session.maxSubscriptions = try positive("limits.subscriptions", session.maxSubscriptions)
        session.maxUnacked = try positive("limits.unacked", session.maxUnacked)
        session.maxTransactionBytes = try positive("limits.transaction-bytes", session.maxTransactionBytes)
        session.maxDestinationLength = try positive("limits.destination-length", session.maxDestinationLength)
        session.maxDestinationWords = try positive("limits.destination-words", session.maxDestinationWords)
        let send = reader.int(forKey: "heartbeat.send-ms", default: Int(session.heartbeatSend.nanoseconds / 1_000_000))
        let receive = reader.int(forKey: "heartbeat.receive-ms", default: Int(session.heartbeatReceive.nanoseconds / 1_000_000))
        guard send >= 0, receive >= 0 else { throw Invalid(description: "heart-beat intervals may not be negative") }
        session.heartbeatSend = .milliseconds(Int64(send))
        session.heartbeatReceive = .milliseconds(Int64(receive))
        session.heartbeatGraceFactor = reader.double(forKey: "heartbeat.grace", default: session.heartbeatGraceFactor)
        guard session.heartbeatGraceFactor >= 1 else { throw Invalid(description: "heartbeat.grace must be at least 1") }
        session.serverName = "cluster-node/\(NodeVersion.current)"
        io.session = session
        io.sessionIDPrefix = nodeID + "-"
        self.io = io

        // message-ids name the node and this boot, so they stay unique across the cluster and
        // across restarts of the same node.
        bootEpoch = UInt64(Self.wallClockMilliseconds())
        let boot = String(bootEpoch, radix: 36)
        let routerDefaults = Router.Settings(messageIDPrefix: "")
        router = Router.Settings(
            messageIDPrefix: "\(nodeID)-\(boot)-",
            maxQueueDepth: try positive("limits.queue-depth", routerDefaults.maxQueueDepth),
            maxQueueBytes: try positive("limits.queue-bytes", routerDefaults.maxQueueBytes),
            maxQueues: try positive("limits.queues", routerDefaults.maxQueues),
            maxUnackedBytes: try positive("limits.unacked-bytes", routerDefaults.maxUnackedBytes)
        )
        guard eventLoops > 0 else { throw Invalid(description: "event-loops must be positive") }
        cluster = try ClusterConfiguration.read(reader, node: nodeID, epoch: bootEpoch)

        var admin = AdminSettings()
        admin.host = reader.string(forKey: "admin.host", default: admin.host)
        admin.port = try port("admin.port", admin.port)
        admin.token = reader.string(forKey: "admin.token", isSecret: true)
        if admin.token == nil, let path = reader.string(forKey: "admin.token-file") {
            guard let text = ClusterConfiguration.readFile(path) else { throw Invalid(description: "cannot read admin.token-file \(path)") }
            admin.token = String(text.trimming(" \t\r\n"))
        }
        let loopback = ["127.0.0.1", "::1", "localhost"]
        if admin.port != nil, !loopback.contains(admin.host), admin.token == nil {
            throw Invalid(description: "the admin API listens beyond loopback (admin.host \(admin.host)): set admin.token")
        }
        self.admin = admin
        var drain = DrainSettings()
        let delay = reader.int(forKey: "drain.lb-delay-ms", default: Int(drain.loadBalancerDelay.nanoseconds / 1_000_000))
        guard delay >= 0 else { throw Invalid(description: "drain.lb-delay-ms may not be negative") }
        drain.loadBalancerDelay = .milliseconds(Int64(delay))
        drain.clientsPerSecond = try positive("drain.clients-per-second", drain.clientsPerSecond)
        self.drain = drain
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
