import NIOCore
import NIOSSL

/// Everything a node needs to take part in a cluster. Each knob has a default fit for a
/// cluster of a few to a few hundred nodes on one network.
public struct ClusterSettings: Sendable {
    /// Nodes of different clusters refuse each other's links.
    public var clusterName: String
    /// The shared secret each link proves knowledge of (never sent, never logged).
    public var secret: [UInt8]
    /// This node's id, unique in the cluster.
    public var node: NodeID
    /// This boot of the node: later boots win over earlier ones of the same id.
    public var epoch: UInt64
    /// Where the link listener binds.
    public var host: String
    public var port: Int
    /// `host:port` peers dial to reach this node; defaults to the bound address.
    public var advertisedAddress: String?
    /// `host:port` entries to join through. A host may resolve to several addresses (a
    /// Kubernetes headless service); each is tried.
    public var seeds: [String]

    public var membership = MembershipInstance.Settings()
    /// How often the shell runs the protocol clock: probes, timeouts, reconnects.
    public var tickInterval: TimeAmount = .milliseconds(100)
    /// A link with nothing else to send sends a heart-beat this often. Anything arriving
    /// from a member answers a probe of it, and probes wait behind a busy link's backlog, so
    /// this stays below the probe timeout: a live peer is then always heard from in time.
    public var heartbeatInterval: TimeAmount = .milliseconds(200)
    /// A link that hears nothing for this long is closed and redialled. Liveness of the
    /// member itself is SWIM's business; this only recycles dead TCP connections.
    public var linkTimeout: TimeAmount = .seconds(10)
    /// Batches smaller than this are sent uncompressed.
    public var compressionThreshold: Int = 512
    /// Unsent bytes above which a link counts as congested: its peer is behind, and this
    /// node's publishers pause until the link drains to half of it (see ``FlowControl``).
    public var linkHighWaterBytes: Int = 2 * 1_048_576
    /// The most bytes a link may hold unsent before forwarded messages to it are dropped
    /// (and counted): a stalled peer must not exhaust this node's memory. Publishers pause
    /// long before this, at ``linkHighWaterBytes``; what arrives while they are pausing is
    /// what this leaves room for.
    public var maxLinkBufferedBytes: Int = 64 * 1_048_576

    /// How long a peer may stay unreachable (suspect, dead, or without a link) while the
    /// topic messages for its subscribers wait for it (`cluster.outage-grace-ms`). Within it
    /// a stalled node, a dropped link or a short partition loses nothing; past it, what was
    /// held is dropped and the peer's subscribers it concerns are told when it is back.
    public var outageGrace: TimeAmount = .seconds(30)
    /// Bytes held for one peer before they are dropped (`cluster.outbox-bytes`).
    public var outboxBytes: Int = 64 * 1_048_576
    /// Bytes held for all peers together (`cluster.outbox-node-bytes`): past it, the peer
    /// holding the most loses what was held for it first.
    public var outboxNodeBytes: Int = 256 * 1_048_576

    var sessions: PeerSessions.Settings {
        PeerSessions.Settings(peerBytes: outboxBytes, nodeBytes: outboxNodeBytes, outageGrace: outageGrace)
    }

    var linkWaterMark: ChannelOptions.Types.WriteBufferWaterMark {
        let high = max(min(linkHighWaterBytes, maxLinkBufferedBytes), 2)
        return .init(low: high / 2, high: high)
    }
    /// How long a SUBSCRIBE's receipt waits for every live peer to acknowledge the interest.
    /// Members, this node included, it must have linked to before it first reports itself
    /// joined (ready); from then on it only needs every live member linked. 1 lets the first
    /// node of a new cluster start alone.
    public var minimumMembers: Int = 1
    public var interestAckTimeout: TimeAmount = .seconds(2)
    /// How often each link exchanges interest digests, repairing anything missed.
    public var digestInterval: TimeAmount = .seconds(5)
    /// Reconnection backoff: doubles from the minimum to the maximum, with full jitter.
    public var reconnectBackoffMinimum: TimeAmount = .milliseconds(100)
    public var reconnectBackoffMaximum: TimeAmount = .seconds(5)
    /// How long a dial may take.
    public var connectTimeout: TimeAmount = .seconds(2)
    /// How long a link's handshake may take, from the TCP (or TLS) connection to proof of
    /// the secret both ways. Anyone can open a connection to the link port; one that never
    /// proves itself is closed after this.
    public var handshakeTimeout: TimeAmount = .seconds(5)
    /// The largest link frame accepted before the peer has proved the secret. Hellos and
    /// proofs are a few hundred bytes; a stranger must not make the node buffer megabytes.
    public var handshakeFrameSize: Int = 16 * 1_024
    /// The largest link frame accepted from a proven peer. Senders cut batches at 256 KiB, so
    /// only a single larger message makes a larger frame.
    public var maxLinkFrameSize: Int = 64 * 1_048_576
    /// Mutual TLS for links: both contexts present together, or neither.
    public var tls: TLS?

    public struct TLS: Sendable {
        public var server: NIOSSLContext
        public var client: NIOSSLContext

        public init(server: NIOSSLContext, client: NIOSSLContext) {
            self.server = server
            self.client = client
        }
    }

    public init(
        clusterName: String,
        secret: [UInt8],
        node: NodeID,
        epoch: UInt64,
        host: String,
        port: Int,
        seeds: [String]
    ) {
        self.clusterName = clusterName
        self.secret = secret
        self.node = node
        self.epoch = epoch
        self.host = host
        self.port = port
        self.seeds = seeds
    }
}

extension ClusterSettings: CustomStringConvertible {
    /// Everything but the secret, which must never reach a log.
    public var description: String {
        "ClusterSettings(cluster: \(clusterName), node: \(node), epoch: \(epoch), listen: \(host):\(port), "
            + "advertise: \(advertisedAddress ?? "bound address"), seeds: \(seeds), tls: \(tls != nil), secret: <redacted>)"
    }
}
