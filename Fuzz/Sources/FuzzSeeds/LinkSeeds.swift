import FuzzLinkSupport
import Gossip
import NIOCore
import StompRouting

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

    /// The peer's hello, as the dialler's first message (a listener sends the same after the
    /// dialler's proof, with its challenge's nonce).
    static let peerHello = LinkHandshake(identity: FuzzCluster.peer, nonce: FuzzCluster.peerNonce, role: .dialer).hello

    static let peerChallenge = LinkMessage.challenge(
        minVersion: LinkHandshake.supportedVersions.lowerBound,
        maxVersion: LinkHandshake.supportedVersions.upperBound,
        nonce: FuzzCluster.peerNonce
    )

    static let members = [
        MemberUpdate(node: NodeID("peer"), epoch: 2, address: "10.0.0.2:7946", incarnation: 1, status: .alive),
        MemberUpdate(node: NodeID("third"), epoch: 7, address: "10.0.0.3:7946", incarnation: 4, status: .suspect),
        MemberUpdate(node: NodeID("gone"), epoch: 3, address: "10.0.0.4:7946", incarnation: 9, status: .dead),
    ]

    static let body = MessageEnvelope(
        destination: .topic("prices.eur"),
        messageID: "n1-1-42",
        headers: ["content-type": "text/plain", "x-trace": "abc"],
        body: ByteBuffer(string: String(repeating: "1.08 ", count: 200))
    )

    static let frames: [(String, [UInt8])] = [
        (
            "control",
            frame([
                .heartbeat, .ping(sequence: 1, gossip: members), .ack(sequence: 1, gossip: []),
                .pingRequest(sequence: 2, target: NodeID("third"), gossip: members),
            ])
        ),
        (
            "handshake-messages",
            frame([peerHello, peerChallenge, .proof([UInt8](repeating: 7, count: 32)), .refuse("no")])
        ),
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
        (
            "handoff-compressed",
            frame(
                [.handoff(id: 3, queue: "jobs", message: body, redelivered: true, hops: 1), .handoffAck(id: 2)],
                compressionThreshold: 64
            )
        ),
        ("two-frames", frame([.heartbeat]) + frame([.members(members), .forward(body)], compressionThreshold: 64)),
    ]

    // MARK: - Handshakes

    /// The local side dials, so the peer listens: its challenge, then (once it checked the
    /// local proof) its hello and its proof.
    static func dialerSucceeds() -> [UInt8] {
        let (challenge, answer) = dialerHandshake()
        return [0] + frame([challenge]) + frame(answer + [.heartbeat])
    }

    /// The local side listens, so the peer dials: its hello, then its proof over the local
    /// challenge (whose nonce is fixed, so the proof can be made ahead).
    static func listenerSucceeds() -> [UInt8] {
        let (opening, proof) = dialledBy(FuzzCluster.peer)
        return [1] + frame([opening]) + frame([proof])
    }

    /// A node dialling itself: the local listener hears its own hello and proof.
    static func listenerSeesItself() -> [UInt8] {
        let (opening, proof) = dialledBy(FuzzCluster.local)
        return [1] + frame([opening, proof])
    }

    /// What `dialer` sends the local listener: its hello, and its proof over the challenge.
    private static func dialledBy(_ dialer: LinkHandshake.Identity) -> (opening: LinkMessage, proof: LinkMessage) {
        var local = LinkHandshake(identity: FuzzCluster.local, nonce: FuzzCluster.localNonce, role: .listener)
        var peer = LinkHandshake(identity: dialer, nonce: FuzzCluster.peerNonce, role: .dialer)
        guard let opening = peer.opening,
            case .send(let challenge) = local.received(opening),
            case .send(let proof) = peer.received(challenge)
        else { fatalError("the seed handshake did not complete") }
        return (opening, proof)
    }

    /// A node dialling itself: the local dialler hears its own listener's answer.
    static func dialerSeesItself() -> [UInt8] {
        var local = LinkHandshake(identity: FuzzCluster.local, nonce: FuzzCluster.localNonce, role: .dialer)
        var itself = LinkHandshake(identity: FuzzCluster.local, nonce: FuzzCluster.peerNonce, role: .listener)
        guard let opening = local.opening,
            case .send(let challenge) = itself.received(opening),
            case .send(let localProof) = local.received(challenge),
            case .selfConnection(let answer) = itself.received(localProof)
        else { fatalError("the seed handshake did not complete") }
        return [0] + frame([challenge]) + frame(answer)
    }

    /// The local dialler's proof, as the seeds' listener answers it, for seeds that go wrong
    /// after it.
    static func listenerAnswer() -> [LinkMessage] {
        dialerHandshake().answer
    }

    /// What the seeds' listener sends a local dialler: its challenge, then its answer to the
    /// local proof.
    private static func dialerHandshake() -> (challenge: LinkMessage, answer: [LinkMessage]) {
        var local = LinkHandshake(identity: FuzzCluster.local, nonce: FuzzCluster.localNonce, role: .dialer)
        var peer = LinkHandshake(identity: FuzzCluster.peer, nonce: FuzzCluster.peerNonce, role: .listener)
        guard let opening = local.opening,
            case .send(let challenge) = peer.received(opening),
            case .send(let localProof) = local.received(challenge),
            case .sendAndEstablish(let answer, _, _) = peer.received(localProof)
        else { fatalError("the seed handshake did not complete") }
        return (challenge, answer)
    }

    static func hello(_ change: (inout LinkHello) -> Void) -> LinkMessage {
        guard case .hello(var hello) = peerHello else { fatalError("a hello is a hello") }
        change(&hello)
        return .hello(hello)
    }

    static let handshakes: [(String, [UInt8])] = [
        ("dialer-succeeds", dialerSucceeds()),
        ("listener-succeeds", listenerSucceeds()),
        ("dialer-sees-itself", dialerSeesItself()),
        ("listener-sees-itself", listenerSeesItself()),
        ("wrong-proof", [1] + frame([peerHello, .proof([UInt8](repeating: 0, count: 32))])),
        (
            "listener-wrong-proof",
            [0] + frame([peerChallenge]) + frame([listenerAnswer()[0], .proof([UInt8](repeating: 0, count: 32))])
        ),
        ("other-cluster", [1] + frame([hello { $0.clusterName = "other" }, .proof([UInt8](repeating: 0, count: 32))])),
        ("listener-other-cluster", [0] + frame([peerChallenge, hello { $0.clusterName = "other" }])),
        (
            "hello-nonce-is-not-the-challenges",
            [0] + frame([peerChallenge, hello { $0.nonce = [UInt8](repeating: 0x33, count: 32) }])
        ),
        (
            "version-1-listener",
            [0]
                + frame([
                    hello {
                        $0.minVersion = 1
                        $0.maxVersion = 1
                    }
                ])
        ),
        (
            "version-1-dialer",
            [1]
                + frame([
                    hello {
                        $0.minVersion = 1
                        $0.maxVersion = 1
                    }
                ])
        ),
        (
            "no-common-version",
            [1]
                + frame([
                    hello {
                        $0.minVersion = 3
                        $0.maxVersion = 9
                    }
                ])
        ),
        (
            "challenge-no-common-version",
            [0] + frame([.challenge(minVersion: 3, maxVersion: 9, nonce: FuzzCluster.peerNonce)])
        ),
        ("short-nonce", [1] + frame([hello { $0.nonce = [1, 2, 3] }])),
        ("short-challenge-nonce", [0] + frame([.challenge(minVersion: 2, maxVersion: 2, nonce: [1, 2, 3])])),
        ("refused", [0] + frame([.refuse("go away")])),
        ("proof-first", [1] + frame([.proof([1])])),
        ("challenge-to-a-listener", [1] + frame([peerChallenge])),
    ]
}
