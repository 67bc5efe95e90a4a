@testable import Gossip
import NIOCore
import Testing

@Suite("Link handshake")
struct LinkHandshakeTests {
    static let secret = Array("correct horse battery staple".utf8)

    static func identity(_ name: String, cluster: String = "prod", epoch: UInt64 = 1, secret: [UInt8] = secret) -> LinkHandshake.Identity {
        LinkHandshake.Identity(clusterName: cluster, node: NodeID(name), epoch: epoch, address: "\(name):7946", secret: secret)
    }

    /// One side of a link: `dialer` says whether it opened the connection.
    static func handshake(_ identity: LinkHandshake.Identity, nonce: [UInt8], dialer: Bool) -> LinkHandshake {
        LinkHandshake(identity: identity, nonce: nonce, role: dialer ? .dialer : .listener)
    }

    static func nonce(_ seed: UInt64) -> [UInt8] {
        var random = SplitMix64(seed: seed)
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    static func helloOf(_ handshake: LinkHandshake) -> LinkHello {
        guard case .hello(let hello) = handshake.hello else { fatalError("a handshake's hello is a .hello") }
        return hello
    }

    /// The proof a side sends: the dialler after reading the listener's hello.
    static func proof(_ step: LinkHandshake.Step, sourceLocation: SourceLocation = #_sourceLocation) -> LinkMessage? {
        guard case .send(let message) = step, case .proof = message else {
            Issue.record("expected a proof, got \(step)", sourceLocation: sourceLocation)
            return nil
        }
        return message
    }

    static func isRefusal(_ step: LinkHandshake.Step, containing text: String) -> Bool {
        guard case .refuse(let reason) = step else { return false }
        return reason.localizedCaseInsensitiveContains(text)
    }

    /// The listener's answer to a valid dialler proof: its own proof, and the link is up.
    static func answer(_ step: LinkHandshake.Step, sourceLocation: SourceLocation = #_sourceLocation) -> (LinkMessage, LinkHello)? {
        guard case .sendAndEstablish(let message, let hello, version: _) = step, case .proof = message else {
            Issue.record("expected the listener's proof with the link up, got \(step)", sourceLocation: sourceLocation)
            return nil
        }
        return (message, hello)
    }

    @Test func sameSecretAndClusterEstablishBothWays() throws {
        var a = Self.handshake(Self.identity("a", epoch: 10), nonce: Self.nonce(1), dialer: false)
        var b = Self.handshake(Self.identity("b", epoch: 20), nonce: Self.nonce(2), dialer: true)
        let helloA = Self.helloOf(a), helloB = Self.helloOf(b)
        #expect(helloA.node == NodeID("a") && helloA.epoch == 10 && helloA.address == "a:7946" && helloA.clusterName == "prod")
        #expect(helloA.nonce == Self.nonce(1))

        // The listener waits for the dialler to prove itself first.
        #expect(a.received(b.hello) == .wait)
        let proofB = try #require(Self.proof(b.received(a.hello)))
        let (proofA, peerOfA) = try #require(Self.answer(a.received(proofB)))
        #expect(peerOfA == helloB)
        #expect(proofA != proofB)
        #expect(b.received(proofA) == .established(helloA, version: 1))
    }

    @Test func theProofDoesNotContainTheSecret() throws {
        let a = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        var b = Self.handshake(Self.identity("b"), nonce: Self.nonce(2), dialer: true)
        let proof = try #require(Self.proof(b.received(a.hello)))
        var bytes = ByteBuffer()
        proof.encode(into: &bytes)
        b.hello.encode(into: &bytes)
        let wire = bytes.readableBytesView
        #expect(wire.firstRange(of: Self.secret) == nil)
    }

    @Test func wrongSecretIsRefusedOnBothSides() throws {
        // A dialler with the wrong secret: the listener refuses it and never proves itself.
        var a = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        var b = Self.handshake(Self.identity("b", secret: Array("wrong".utf8)), nonce: Self.nonce(2), dialer: true)
        #expect(a.received(b.hello) == .wait)
        let proofB = try #require(Self.proof(b.received(a.hello)))
        #expect(Self.isRefusal(a.received(proofB), containing: "authentication"))

        // A listener with the wrong secret: the dialler refuses its answer.
        var c = Self.handshake(Self.identity("c", secret: Array("wrong".utf8)), nonce: Self.nonce(3), dialer: false)
        var d = Self.handshake(Self.identity("d"), nonce: Self.nonce(4), dialer: true)
        _ = c.received(d.hello)
        let proofD = try #require(Self.proof(d.received(c.hello)))
        // c can't verify d (their secrets differ), so it refuses too; a forged answer fails at d.
        #expect(Self.isRefusal(c.received(proofD), containing: "authentication"))
        var forged = Self.handshake(Self.identity("c", secret: Array("wrong".utf8)), nonce: Self.nonce(3), dialer: true)
        let forgedProof = try #require(Self.proof(forged.received(d.hello)))
        #expect(Self.isRefusal(d.received(forgedProof), containing: "authentication"))
    }

    @Test func otherClusterIsRefused() {
        var a = Self.handshake(Self.identity("a", cluster: "prod"), nonce: Self.nonce(1), dialer: false)
        var b = Self.handshake(Self.identity("b", cluster: "staging"), nonce: Self.nonce(2), dialer: true)
        let step = a.received(b.hello)
        #expect(Self.isRefusal(step, containing: "cluster"))
        #expect(Self.isRefusal(step, containing: "staging"))
        #expect(Self.isRefusal(b.received(a.hello), containing: "cluster"))
    }

    @Test func ownNodeIdIsASelfConnection() {
        var a = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        // Its own hello coming back (it dialled itself through a seed address).
        #expect(a.received(a.hello) == .selfConnection)
        var a2 = Self.handshake(Self.identity("a", epoch: 2), nonce: Self.nonce(3), dialer: false)
        #expect(a2.received(Self.handshake(Self.identity("a", epoch: 1), nonce: Self.nonce(4), dialer: false).hello) == .selfConnection)
    }

    @Test func aProofReplayedOnAnotherLinkFails() throws {
        // A genuine handshake, b dialling a, recorded.
        var a = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        var b = Self.handshake(Self.identity("b"), nonce: Self.nonce(2), dialer: true)
        let recordedHelloB = b.hello
        _ = a.received(recordedHelloB)
        let recordedProofB = try #require(Self.proof(b.received(a.hello)))
        _ = try #require(Self.answer(a.received(recordedProofB)))

        // An impostor replays b's hello and proof to a's next link, which has a fresh nonce.
        var a2 = Self.handshake(Self.identity("a"), nonce: Self.nonce(3), dialer: false)
        #expect(a2.received(recordedHelloB) == .wait)
        #expect(Self.isRefusal(a2.received(recordedProofB), containing: "authentication"))

        // Nor does a proof made by another member of the cluster pass for b's.
        var a3 = Self.handshake(Self.identity("a"), nonce: Self.nonce(4), dialer: false)
        var c = Self.handshake(Self.identity("c"), nonce: Self.nonce(2), dialer: true)
        let proofC = try #require(Self.proof(c.received(a3.hello)))
        _ = a3.received(recordedHelloB)
        #expect(Self.isRefusal(a3.received(proofC), containing: "authentication"))
    }

    /// An attacker without the secret connects to two members, a and b, and tries to use b
    /// as an oracle for the proof a expects. Listeners never prove themselves to an unproven
    /// dialler, and a listener's proof never passes for a dialler's, so it gets nothing.
    @Test func aProofRelayedFromAnotherLinkDoesNotAuthenticateTheRelay() throws {
        var a = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        let helloA = Self.helloOf(a)
        var b = Self.handshake(Self.identity("b"), nonce: Self.nonce(2), dialer: false)
        let helloB = Self.helloOf(b)
        // Told a's nonce as the attacker's own, b (a listener) just waits for a proof.
        var claimingA = helloA
        claimingA.address = "attacker:1"
        #expect(b.received(.hello(claimingA)) == .wait)
        // b's proof as a dialler (from some genuine link of b's to a) is bound to that role and
        // that link's nonces; offering a proof computed the way a listener would, or any
        // other, fails.
        var claimingB = helloB
        claimingB.address = "attacker:2"
        #expect(a.received(.hello(claimingB)) == .wait)
        var bAsListenerElsewhere = Self.handshake(Self.identity("b"), nonce: Self.nonce(2), dialer: false)
        var genuineDialer = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: true)
        _ = bAsListenerElsewhere.received(genuineDialer.hello)
        let dialerProof = try #require(Self.proof(genuineDialer.received(bAsListenerElsewhere.hello)))
        let (listenerProofOfB, _) = try #require(Self.answer(bAsListenerElsewhere.received(dialerProof)))
        let step = a.received(listenerProofOfB)
        #expect(Self.isRefusal(step, containing: "authentication"), "a accepted a relayed proof: \(step)")
    }

    @Test func nonOverlappingVersionsAreRefused() {
        var a = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        var future = Self.helloOf(Self.handshake(Self.identity("b"), nonce: Self.nonce(2), dialer: true))
        future.minVersion = 5
        future.maxVersion = 6
        #expect(Self.isRefusal(a.received(.hello(future)), containing: "version"))
    }

    @Test func aNewerPeerOverlappingOneVersionSettlesOnIt() throws {
        var a = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        var b = Self.handshake(Self.identity("b"), nonce: Self.nonce(2), dialer: true)
        var newer = Self.helloOf(b)
        newer.maxVersion = 2
        #expect(a.received(.hello(newer)) == .wait)
        let proofB = try #require(Self.proof(b.received(a.hello)))
        guard case .sendAndEstablish(_, let peer, let version) = a.received(proofB) else {
            Issue.record("the link did not come up")
            return
        }
        #expect(peer == newer && version == 1)
    }

    @Test func shortNonceIsRefused() {
        var a = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        let b = Self.handshake(Self.identity("b"), nonce: [1, 2, 3], dialer: true)
        #expect(Self.isRefusal(a.received(b.hello), containing: "nonce"))
    }

    @Test func outOfOrderAndRefusalMessagesEndTheHandshake() throws {
        var a = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        #expect(Self.isRefusal(a.received(.proof(Self.nonce(9))), containing: "unexpected"))

        var a2 = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        #expect(Self.isRefusal(a2.received(.refuse("go away")), containing: "go away"))

        var a3 = Self.handshake(Self.identity("a"), nonce: Self.nonce(1), dialer: false)
        let b = Self.handshake(Self.identity("b"), nonce: Self.nonce(2), dialer: true)
        #expect(a3.received(b.hello) == .wait)
        #expect(Self.isRefusal(a3.received(.heartbeat), containing: "unexpected"))
        // Once refused, nothing more is accepted.
        #expect(Self.isRefusal(a3.received(b.hello), containing: "unexpected"))
    }
}

@Suite("Peer text in logs")
struct LinkHandshakeLogSafetyTests {
    @Test func plainIdsAndAddressesStayAsTheyAre() {
        for text in ["n1", "node-a.internal", "10.0.0.1:7946", "[::1]:7946", "nœud-ü", "ノード"] {
            #expect(LinkHandshake.quoted(text) == text)
        }
    }

    @Test func newlinesCannotForgeLogLines() {
        let forged = "x'\n2026-01-01 info cluster-node: link up cluster.peer=n1"
        let quoted = LinkHandshake.quoted(forged)
        #expect(!quoted.contains("\n"))
        #expect(quoted == "\"x'\\n2026-01-01 info cluster-node: link up cluster.peer=n1\"")
        #expect(LinkHandshake.quoted("a\r\nb\tc") == "\"a\\r\\nb\\tc\"")
    }

    @Test func controlAndFormatCharactersAreEscaped() {
        #expect(LinkHandshake.quoted("\u{0}\u{7}\u{7F}") == "\"\\u{0}\\u{7}\\u{7F}\"")
        // ANSI colour and cursor movement: no ESC reaches the terminal.
        let ansi = LinkHandshake.quoted("\u{1B}[31mred\u{1B}[0m\u{1B}[2K\u{9B}1A")
        #expect(!ansi.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x9B })
        #expect(ansi == "\"\\u{1B}[31mred\\u{1B}[0m\\u{1B}[2K\\u{9B}1A\"")
        // A bidirectional override would make the line read differently from what it says.
        #expect(LinkHandshake.quoted("n1\u{202E}evil") == "\"n1\\u{202E}evil\"")
        // Quotes and backslashes can't close the quoting early.
        #expect(LinkHandshake.quoted("a\" b=\\") == "\"a\\\" b=\\\\\"")
        #expect(LinkHandshake.quoted("") == "\"\"")
        #expect(LinkHandshake.quoted("two words") == "\"two words\"")
    }

    @Test func longTextIsCut() {
        let long = LinkHandshake.quoted(String(repeating: "a", count: 10_000))
        #expect(long == "\"" + String(repeating: "a", count: 128) + "\"…")
        // Escapes make a cut text longer, never unbounded.
        let escapes = LinkHandshake.quoted(String(repeating: "\u{1B}", count: 10_000))
        #expect(escapes.count <= 2 + 128 * "\\u{1B}".count + 1)
        // One character may hold thousands of combining marks: the bound is on scalars.
        let zalgo = LinkHandshake.quoted("a" + String(repeating: "\u{301}", count: 10_000))
        #expect(zalgo.unicodeScalars.count <= 131)
        // Exactly at the limit, a plain text is left alone.
        #expect(LinkHandshake.quoted(String(repeating: "b", count: 128)) == String(repeating: "b", count: 128))
    }
}
