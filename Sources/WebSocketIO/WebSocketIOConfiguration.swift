import NIOCore
import StompRouting

/// Everything the client-facing listeners of a node need: where to listen, TLS, and the
/// limits that protect the node from any one client.
public struct WebSocketIOConfiguration: Sendable {
    /// Certificate and key for `wss://` and STOMP over TLS, as PEM files.
    public struct TLSFiles: Sendable, Equatable {
        public var certificateChainPath: String
        public var privateKeyPath: String

        public init(certificateChainPath: String, privateKeyPath: String) {
            self.certificateChainPath = certificateChainPath
            self.privateKeyPath = privateKeyPath
        }
    }

    /// The address every client listener binds.
    public var host: String = "0.0.0.0"
    /// STOMP over WebSocket; `nil` turns it off. 15674 is RabbitMQ Web-STOMP's port, so
    /// clients move over unchanged.
    public var webSocketPort: Int? = 15674
    /// STOMP over plain TCP; `nil` turns it off.
    public var stompPort: Int? = 61613
    /// The HTTP path that upgrades to WebSocket.
    public var webSocketPath: String = "/ws"
    /// Browser origins allowed to upgrade; others get 403.
    public var allowedOrigins: OriginPolicy = .any
    /// TLS material. When set, the TLS listeners below start as well.
    public var tls: TLSFiles?
    /// `wss://` when ``tls`` is set (RabbitMQ Web-STOMP's TLS port).
    public var secureWebSocketPort: Int? = 15673
    /// STOMP over TLS when ``tls`` is set.
    public var secureStompPort: Int? = 61614

    /// The largest WebSocket message, after reassembling fragments. Larger ones close the
    /// connection with status 1009.
    public var maxWebSocketMessageSize: Int = StompFrameDecoder.Limits().maxFrameSize + 1_024
    /// Bytes that may wait in a connection's outbound buffer. A client that lets more pile up
    /// is a slow consumer: it gets an ERROR and is disconnected, so it can't exhaust memory.
    /// Room for a few of the largest frames, so that a client reading a burst of them at
    /// line speed isn't taken for slow.
    public var maxOutboundBytes: Int = 16 * 1_048_576
    /// Durable writes (persistent SENDs, ACKs of persistent messages) one connection may have
    /// waiting for their quorum; at that many it stops being read until half have ended. Each
    /// holds memory until it ends, so a client may not pipeline them without bound.
    public var maxDurableWritesInFlight: Int = 1_024
    /// Client connections this node serves at once (counted from CONNECT); more are refused
    /// with an ERROR.
    public var maxConnections: Int = 100_000
    /// Connections still in their handshakes (TLS, WebSocket upgrade, CONNECT) at once.
    /// Counted apart from ``maxConnections`` and smaller, so that sockets that never speak
    /// can't keep real clients out; beyond it, new sockets are closed as soon as accepted.
    public var maxPendingConnections: Int = 1_000
    /// Connections, pending or connected, from one remote address; 0 for no limit. Off by
    /// default because clients behind one load balancer or NAT share an address.
    public var maxConnectionsPerAddress: Int = 0
    /// Bytes handed to client sockets and not yet written, over all clients of the node.
    public var maxNodeOutboundBytes: Int = 512 * 1_048_576
    /// Bytes of frames still arriving (partial frames, and frames waiting for a login check),
    /// over all clients of the node.
    public var maxNodeInboundBytes: Int = 256 * 1_048_576
    /// From accepting a WebSocket connection to a complete upgrade request.
    public var upgradeTimeout: TimeAmount = .seconds(10)
    /// For the TLS handshake of a connection to a TLS listener.
    public var tlsHandshakeTimeout: TimeAmount = .seconds(10)
    /// From accepting (or upgrading) a connection to its CONNECT frame.
    public var connectTimeout: TimeAmount = .seconds(10)

    public var frameLimits = StompFrameDecoder.Limits()
    public var session = SessionStateMachine.Settings()
    /// How long a refused login waits for its ERROR.
    public var failedLoginDelay: TimeAmount = .milliseconds(500)
    /// Decides CONNECTs; `nil` lets every client in as anonymous with every permission. When
    /// set, the sessions ask it (``SessionAuthentication/external``).
    public var authenticator: (any ClientAuthenticator)? {
        didSet { session.authentication = authenticator == nil ? .none : .external }
    }
    /// Prefix of each CONNECTED `session` header, naming the node.
    public var sessionIDPrefix: String = ""

    public init() {}
}

/// The WebSocket subprotocols of STOMP, best first.
enum StompSubprotocol {
    static let supported = ["v12.stomp", "v11.stomp", "v10.stomp"]

    /// The best protocol the client offered, or `nil` if it offered none we know; such a
    /// client is served STOMP all the same, as RabbitMQ does.
    static func choose(from offered: [String]) -> String? {
        let offered = Set(offered.map { $0.trimming(" \t").lowercased() })
        return supported.first { offered.contains($0) }
    }
}
