import FuzzLinkSupport
import Gossip
import NIOCore

/// Link byte streams made by the real encoder: every message type, framed raw and
/// LZ4-compressed, and handshakes that succeed (with proofs computed from the shared
/// secret) or fail in each way.
enum LinkSeeds {
    /// Frames `messages` as one batch; compressed when the batch is at least `threshold` bytes
    /// and LZ4 makes it smaller.
    static func frame(_ messages: [LinkMessage], compressionThreshold: Int = .max) -> [UInt8] {
        var payload = ByteBuffer()
        for message in messages {
            message.encode(into: &payload)
        }
        var wire = ByteBuffer()
        LinkFrame.encode(payload, compressionThreshold: compressionThreshold, into: &wire)
        return Array(wire.readableBytesView)
    }

    static let peerHello = LinkHandshake(identity: FuzzCluster.peer, nonce: FuzzCluster.peerNonce, role: .listener).hello

    static let members = [
        MemberUpdate(node: NodeID("peer"), epoch: 2, address: "10.0.0.2:7946", incarnation: 1, status: .alive),
        MemberUpdate(node: NodeID("third"), epoch: 7, address: "10.0.0.3:7946", incarnation: 4, status: .suspect),
        MemberUpdate(node: NodeID("gone"), epoch: 3, address: "10.0.0.4:7946", incarnation: 9, status: .dead),
    ]

    static let body = LinkMessageBody(
        destination: "/topic/prices.eur",
        messageID: "n1-1-42",
        headers: [("content-type", "text/plain"), ("x-trace", "abc")],
        body: ByteBuffer(string: String(repeating: "1.08 ", count: 200))
    )

    static let frames: [(String, [UInt8])] = [
        ("control", frame([.heartbeat, .ping(sequence: 1, gossip: members), .ack(sequence: 1, gossip: []), .pingRequest(sequence: 2, target: NodeID("third"), gossip: members)])),
        ("handshake-messages", frame([peerHello, .proof([UInt8](repeating: 7, count: 32)), .refuse("no")])),
        ("members", frame([.members(members)])),
        (
            "interest",
            frame([
                .interestDelta(epoch: 2, version: 5, changes: [(.topic("prices.*"), 1), (.queue("jobs"), -1)]),
                .interestSnapshot(epoch: 2, version: 6, entries: [(.topic("#"), 3), (.queue("jobs"), 2)]),
                .interestAck(epoch: 1, version: 9),
                .interestDigest(epoch: 2, version: 6, yourEpoch: 1, yourVersion: 9),
            ])
        ),
        ("forward-raw", frame([.forward(body)])),
        ("forward-compressed", frame([.forward(body), .forward(body)], compressionThreshold: 64)),
        ("handoff-compressed", frame([.handoff(id: 3, queue: "jobs", message: body, redelivered: true, hops: 1), .handoffAck(id: 2)], compressionThreshold: 64)),
        ("two-frames", frame([.heartbeat]) + frame([.members(members), .forward(body)], compressionThreshold: 64)),
    ]

    // MARK: - Handshakes

    /// The local side dials, so the peer listens: its hello, then its proof once it checked
    /// the local one.
    static func dialerSucceeds() -> [UInt8] {
        var local = LinkHandshake(identity: FuzzCluster.local, nonce: FuzzCluster.localNonce, role: .dialer)
        var peer = LinkHandshake(identity: FuzzCluster.peer, nonce: FuzzCluster.peerNonce, role: .listener)
        guard case .wait = peer.received(local.hello),
            case .send(let localProof) = local.received(peer.hello),
            case .sendAndEstablish(let peerProof, _, _) = peer.received(localProof)
        else { fatalError("the seed handshake did not complete") }
        return [0] + frame([peer.hello]) + frame([peerProof, .heartbeat])
    }

    /// The local side listens, so the peer dials: hello and proof together.
    static func listenerSucceeds() -> [UInt8] {
        let local = LinkHandshake(identity: FuzzCluster.local, nonce: FuzzCluster.localNonce, role: .listener)
        var peer = LinkHandshake(identity: FuzzCluster.peer, nonce: FuzzCluster.peerNonce, role: .dialer)
        guard case .send(let peerProof) = peer.received(local.hello) else { fatalError("the seed handshake did not complete") }
        return [1] + frame([peer.hello, peerProof])
    }

    static func hello(_ change: (inout LinkHello) -> Void) -> LinkMessage {
        guard case .hello(var hello) = peerHello else { fatalError("a hello is a hello") }
        change(&hello)
        return .hello(hello)
    }

    static let handshakes: [(String, [UInt8])] = [
        ("dialer-succeeds", dialerSucceeds()),
        ("listener-succeeds", listenerSucceeds()),
        ("wrong-proof", [1] + frame([peerHello, .proof([UInt8](repeating: 0, count: 32))])),
        ("other-cluster", [0] + frame([hello { $0.clusterName = "other" }])),
        ("itself", [0] + frame([hello { $0.node = FuzzCluster.local.node }])),
        ("no-common-version", [1] + frame([hello { $0.minVersion = 2; $0.maxVersion = 9 }])),
        ("short-nonce", [0] + frame([hello { $0.nonce = [1, 2, 3] }])),
        ("refused", [0] + frame([.refuse("go away")])),
        ("proof-first", [1] + frame([.proof([1])])),
    ]
}
