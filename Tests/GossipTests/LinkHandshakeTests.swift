import NIOCore
import Testing

@testable import Gossip

/// The handshake of wire version 2: the dialler says hello, the listener challenges, the
/// dialler proves, and only then does the listener say who it is and prove itself.
@Suite("Link handshake")
struct LinkHandshakeTests {
    static let secret = Array("correct horse battery staple".utf8)

    static func identity(
        _ name: String,
        cluster: String = "prod",
        epoch: UInt64 = 1,
        secret: [UInt8] = secret
    ) -> LinkHandshake.Identity {
        LinkHandshake.Identity(
            clusterName: cluster,
            node: NodeID(name),
            epoch: epoch,
            address: "\(name):7946",
            secret: secret
        )
    }

    static func dialer(_ identity: LinkHandshake.Identity, nonce seed: UInt64) -> LinkHandshake {
        LinkHandshake(identity: identity, nonce: nonce(seed), role: .dialer)
    }

    static func listener(_ identity: LinkHandshake.Identity, nonce seed: UInt64) -> LinkHandshake {
        LinkHandshake(identity: identity, nonce: nonce(seed), role: .listener)
    }

    static func nonce(_ seed: UInt64) -> [UInt8] {
        var random = SplitMix64(seed: seed)
        return (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    static func helloOf(_ handshake: LinkHandshake) -> LinkHello {
        guard case .hello(let hello) = handshake.hello else { fatalError("a handshake's hello is a .hello") }
        return hello
    }

    static func bytes(_ messages: [LinkMessage]) -> [UInt8] {
        var buffer = ByteBuffer()
        for message in messages { message.encode(into: &buffer) }
        return Array(buffer.readableBytesView)
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, haystack.count >= needle.count else { return false }
        return (0...(haystack.count - needle.count)).contains { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }

    /// The single message of a `.send` step.
    static func sent(_ step: LinkHandshake.Step, sourceLocation: SourceLocation = #_sourceLocation) -> LinkMessage? {
        guard case .send(let message) = step else {
            Issue.record("expected a message to send, got \(step)", sourceLocation: sourceLocation)
            return nil
        }
        return message
    }

    static func refusal(_ step: LinkHandshake.Step) -> LinkHandshake.Refusal? {
        guard case .refuse(let refusal) = step else { return nil }
        return refusal
    }

    /// Refused with a log reason containing `text`.
    static func isRefusal(_ step: LinkHandshake.Step, containing text: String) -> Bool {
        refusal(step)?.reason.localizedCaseInsensitiveContains(text) ?? false
    }

    /// Refused with `text` in the log and only the generic text for the peer.
    static func isSilentRefusal(_ step: LinkHandshake.Step, containing text: String) -> Bool {
        guard let refusal = refusal(step) else { return false }
        return refusal.reason.localizedCaseInsensitiveContains(text) && refusal.told == LinkHandshake.genericRefusal
    }

    /// Runs a dialler and a listener up to the listener's answer to the dialler's proof.
    ///
    /// - Returns: the dialler's proof and the listener's answer to it.
    static func upToTheDialersProof(
        _ dialer: inout LinkHandshake,
        _ listener: inout LinkHandshake,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (proof: LinkMessage, answer: LinkHandshake.Step) {
        let opening = try #require(dialer.opening, sourceLocation: sourceLocation)
        let challenge = try #require(
            sent(listener.received(opening), sourceLocation: sourceLocation),
            sourceLocation: sourceLocation
        )
        let proof = try #require(
            sent(dialer.received(challenge), sourceLocation: sourceLocation),
            sourceLocation: sourceLocation
        )
        return (proof, listener.received(proof))
    }

    // MARK: - The good path

    @Test func aGoodHandshakeEstablishesBothSides() throws {
        var listener = Self.listener(Self.identity("a", epoch: 10), nonce: 1)
        var dialer = Self.dialer(Self.identity("b", epoch: 20), nonce: 2)
        let helloA = Self.helloOf(listener)
        let helloB = Self.helloOf(dialer)
        #expect(
            helloA.node == NodeID("a") && helloA.epoch == 10 && helloA.address == "a:7946"
                && helloA.clusterName == "prod"
        )
        #expect(
            helloA.nonce == Self.nonce(1) && helloA.minVersion == 2
                && helloA.maxVersion == LinkHandshake.supportedVersions.upperBound
        )

        // The dialler speaks first; the listener says nothing until spoken to.
        #expect(listener.opening == nil)
        #expect(dialer.opening == .hello(helloB))

        let challenge = try #require(Self.sent(listener.received(.hello(helloB))))
        #expect(
            challenge
                == .challenge(
                    minVersion: 2,
                    maxVersion: LinkHandshake.supportedVersions.upperBound,
                    nonce: Self.nonce(1)
                )
        )
        let proofB = try #require(Self.sent(dialer.received(challenge)))
        guard case .proof(let macB) = proofB else {
            Issue.record("the dialler answers a challenge with a proof, not \(proofB)")
            return
        }
        #expect(macB.count == 32)

        guard case .sendAndEstablish(let answer, let peerOfA, let versionOfA) = listener.received(proofB) else {
            Issue.record("the listener did not accept a good proof")
            return
        }
        #expect(peerOfA == helloB && versionOfA == LinkHandshake.supportedVersions.upperBound)
        #expect(answer.count == 2 && answer.first == .hello(helloA))
        guard answer.count == 2, case .proof(let macA) = answer[1] else {
            Issue.record("the listener's answer is its hello and its proof, not \(answer)")
            return
        }
        #expect(macA != macB)

        #expect(dialer.received(answer[0]) == .wait)
        #expect(dialer.received(answer[1]) == .established(helloA, version: LinkHandshake.supportedVersions.upperBound))
    }

    @Test func theProofsDoNotContainTheSecret() throws {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        let (proof, answer) = try Self.upToTheDialersProof(&dialer, &listener)
        guard case .sendAndEstablish(let replies, _, _) = answer else {
            Issue.record("no answer: \(answer)")
            return
        }
        let wire = Self.bytes([dialer.hello, proof] + replies)
        #expect(!Self.contains(wire, Self.secret))
    }

    // MARK: - The listener reveals nothing

    @Test func theListenersFirstMessageRevealsNothingAboutIt() throws {
        let epoch: UInt64 = 0x1122_3344_5566_7788
        let identity = LinkHandshake.Identity(
            clusterName: "prod-cluster-eu",
            node: NodeID("listener-node-7"),
            epoch: epoch,
            address: "10.1.2.3:7946",
            secret: Self.secret
        )
        var listener = LinkHandshake(identity: identity, nonce: Self.nonce(1), role: .listener)
        let dialer = Self.dialer(Self.identity("b", cluster: "prod-cluster-eu"), nonce: 2)
        let challenge = try #require(Self.sent(listener.received(dialer.hello)))
        let wire = Self.bytes([challenge])
        for revealing in [
            Array("listener-node-7".utf8), Array("prod-cluster-eu".utf8), Array("10.1.2.3".utf8),
            withUnsafeBytes(of: epoch.bigEndian, Array.init),
        ] {
            #expect(!Self.contains(wire, revealing), "the challenge reveals \(revealing)")
        }
        // Versions (u16, u16) and the nonce with its length: nothing else.
        #expect(wire.count == 1 + 4 + 2 + 2 + 4 + 32)
    }

    @Test func aWrongSecretIsRefusedWithAGenericTextAndAPreciseLogReason() throws {
        // A dialler with the wrong secret: the listener refuses it and never says who it is.
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        var dialer = Self.dialer(Self.identity("b", secret: Array("wrong".utf8)), nonce: 2)
        let (_, answer) = try Self.upToTheDialersProof(&dialer, &listener)
        let refusal = try #require(Self.refusal(answer))
        #expect(refusal.told == LinkHandshake.genericRefusal)
        #expect(refusal.reason.contains("does not know the cluster secret"))
        #expect(refusal.reason.contains("claims node b"))
        let told = Array((refusal.told ?? "").utf8)
        #expect(!Self.contains(told, Array("prod".utf8)) && !Self.contains(told, Array("a:7946".utf8)))

        // A listener that answers with the right nonce but without the secret: the dialler
        // refuses its proof.
        var genuine = Self.listener(Self.identity("c"), nonce: 3)
        var dialer2 = Self.dialer(Self.identity("d"), nonce: 4)
        _ = try Self.upToTheDialersProof(&dialer2, &genuine)
        #expect(dialer2.received(genuine.hello) == .wait)
        let forged = dialer2.received(.proof([UInt8](repeating: 0, count: 32)))
        #expect(Self.isRefusal(forged, containing: "the listener does not know the cluster secret"))
    }

    @Test func aWrongClusterNameGetsTheGenericRefusalOnlyAfterTheProof() throws {
        var listener = Self.listener(Self.identity("a", cluster: "prod"), nonce: 1)
        var dialer = Self.dialer(Self.identity("b", cluster: "staging"), nonce: 2)
        // Challenged like anyone, so the moment of refusal tells nothing either.
        let (_, answer) = try Self.upToTheDialersProof(&dialer, &listener)
        #expect(Self.isSilentRefusal(answer, containing: "cluster name staging does not match prod"))

        // The dialler, who has said who it is already, checks the listener's cluster too.
        var otherListener = Self.listener(Self.identity("c", cluster: "prod"), nonce: 3)
        var dialer2 = Self.dialer(Self.identity("d", cluster: "prod"), nonce: 4)
        _ = try Self.upToTheDialersProof(&dialer2, &otherListener)
        var hello = Self.helloOf(otherListener)
        hello.clusterName = "staging"
        #expect(Self.isRefusal(dialer2.received(.hello(hello)), containing: "cluster name staging does not match prod"))
    }

    @Test func refusalsOfStrangersAllReadAlike() throws {
        /// What a dialler `b` is told by a listener `a`.
        func told(_ dialerIdentity: LinkHandshake.Identity, certificateNames: [String]? = nil) throws -> String? {
            var listener = Self.listener(Self.identity("a"), nonce: 1)
            listener.peerCertificateNames = certificateNames
            var dialer = Self.dialer(dialerIdentity, nonce: 2)
            return try #require(Self.refusal(Self.upToTheDialersProof(&dialer, &listener).answer)).told
        }
        let wrongSecret = try told(Self.identity("b", secret: Array("wrong".utf8)))
        let wrongCluster = try told(Self.identity("b", cluster: "other"))
        let wrongCertificate = try told(Self.identity("b"), certificateNames: ["c"])
        #expect(
            [wrongSecret, wrongCluster, wrongCertificate] == Array(repeating: LinkHandshake.genericRefusal, count: 3)
        )
    }

    // MARK: - Replays and relays

    @Test func aDialersProofReplayedOnAnotherLinkFails() throws {
        // A genuine handshake, b dialling a, recorded.
        var a = Self.listener(Self.identity("a"), nonce: 1)
        var b = Self.dialer(Self.identity("b"), nonce: 2)
        let recordedHello = try #require(b.opening)
        let (recordedProof, answer) = try Self.upToTheDialersProof(&b, &a)
        guard case .sendAndEstablish = answer else {
            Issue.record("the recorded handshake failed: \(answer)")
            return
        }

        // An impostor replays b's hello and proof to a's next link, whose challenge is fresh.
        var a2 = Self.listener(Self.identity("a"), nonce: 3)
        #expect(
            Self.sent(a2.received(recordedHello))
                == .challenge(
                    minVersion: 2,
                    maxVersion: LinkHandshake.supportedVersions.upperBound,
                    nonce: Self.nonce(3)
                )
        )
        #expect(Self.isSilentRefusal(a2.received(recordedProof), containing: "does not know the cluster secret"))
    }

    /// A listener's proof never passes for a dialler's, even over the same nonces: an impostor
    /// dialling a with b's name can't use a proof b made as a listener.
    @Test func aListenersProofDoesNotPassForADialers() throws {
        // A genuine link on which b listened: its proof is over (listener, b, nonce 2, a, nonce 1).
        var b = Self.listener(Self.identity("b"), nonce: 2)
        var genuineA = Self.dialer(Self.identity("a"), nonce: 1)
        let (_, answer) = try Self.upToTheDialersProof(&genuineA, &b)
        guard case .sendAndEstablish(let replies, _, _) = answer, let listenerProof = replies.last else {
            Issue.record("the genuine handshake failed: \(answer)")
            return
        }

        // The impostor dials a as b with b's nonce; a's challenge happens to carry nonce 1.
        var a = Self.listener(Self.identity("a"), nonce: 1)
        var claimingB = Self.helloOf(b)
        claimingB.address = "attacker:1"
        _ = try #require(Self.sent(a.received(.hello(claimingB))))
        #expect(Self.isSilentRefusal(a.received(listenerProof), containing: "does not know the cluster secret"))

        // The inputs differ by role and by layout, whatever the nonces.
        let n = Self.nonce(5)
        #expect(
            LinkHandshake.dialerProofInput(cluster: "prod", dialer: NodeID("b"), dialerNonce: n, listenerNonce: n)
                != LinkHandshake.listenerProofInput(
                    cluster: "prod",
                    listener: NodeID("b"),
                    listenerNonce: n,
                    dialer: NodeID("b"),
                    dialerNonce: n
                )
        )
    }

    /// A listener that reflects the dialler's own proof back as its own gets nowhere.
    @Test func aDialersProofReflectedBackIsNotAListenersProof() throws {
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        let challengeNonce = Self.nonce(9)
        let proof = try #require(
            Self.sent(
                dialer.received(
                    .challenge(
                        minVersion: 2,
                        maxVersion: LinkHandshake.supportedVersions.upperBound,
                        nonce: challengeNonce
                    )
                )
            )
        )
        var reflected = Self.helloOf(dialer)
        reflected.node = NodeID("c")
        reflected.nonce = challengeNonce
        #expect(dialer.received(.hello(reflected)) == .wait)
        #expect(Self.isRefusal(dialer.received(proof), containing: "the listener does not know the cluster secret"))
    }

    @Test func aHelloWhoseNonceIsNotTheChallengesIsRefused() throws {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        _ = try Self.upToTheDialersProof(&dialer, &listener)
        var hello = Self.helloOf(listener)
        hello.nonce = Self.nonce(7)
        #expect(Self.isRefusal(dialer.received(.hello(hello)), containing: "nonce of its challenge"))
    }

    // MARK: - Versions

    @Test func aVersionOneDialerIsRefusedWithNoCommonWireVersion() {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        var hello = Self.helloOf(Self.dialer(Self.identity("b"), nonce: 2))
        hello.minVersion = 1
        hello.maxVersion = 1
        let refusal = Self.refusal(listener.received(.hello(hello)))
        #expect(
            refusal?.reason == "no common wire version: peer speaks 1...1, this node \(LinkHandshake.supportedVersions)"
        )
        // Version numbers identify no one: the peer hears the same.
        #expect(refusal?.told == refusal?.reason)
    }

    @Test func aVersionOneListenerIsRefusedWithNoCommonWireVersion() {
        // A version-1 listener says hello at once instead of challenging.
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        var hello = Self.helloOf(Self.listener(Self.identity("a"), nonce: 1))
        hello.minVersion = 1
        hello.maxVersion = 1
        #expect(Self.isRefusal(dialer.received(.hello(hello)), containing: "no common wire version: peer speaks 1...1"))

        // And a challenge offering only version 1 (or only later ones) is refused the same way.
        var dialer2 = Self.dialer(Self.identity("b"), nonce: 2)
        #expect(
            Self.isRefusal(
                dialer2.received(.challenge(minVersion: 1, maxVersion: 1, nonce: Self.nonce(1))),
                containing: "no common wire version"
            )
        )
        var dialer3 = Self.dialer(Self.identity("b"), nonce: 2)
        #expect(
            Self.isRefusal(
                dialer3.received(.challenge(minVersion: 5, maxVersion: 6, nonce: Self.nonce(1))),
                containing: "no common wire version"
            )
        )
    }

    @Test func aNewerPeerOverlappingOneVersionSettlesOnIt() throws {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        var newer = Self.helloOf(dialer)
        newer.minVersion = LinkHandshake.supportedVersions.upperBound
        newer.maxVersion = LinkHandshake.supportedVersions.upperBound + 1
        let challenge = try #require(Self.sent(listener.received(.hello(newer))))
        let proof = try #require(Self.sent(dialer.received(challenge)))
        guard case .sendAndEstablish(_, let peer, let version) = listener.received(proof) else {
            Issue.record("the link did not come up")
            return
        }
        #expect(peer == newer && version == LinkHandshake.supportedVersions.upperBound)
    }

    /// Runs a whole handshake between a dialler and a listener that offer these versions.
    ///
    /// - Returns: the versions the dialler's and the listener's links came up at, in that order.
    static func settle(
        dialer dialerVersions: ClosedRange<UInt16>,
        listener listenerVersions: ClosedRange<UInt16>,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> [UInt16] {
        var listener = LinkHandshake(
            identity: identity("a"),
            nonce: nonce(1),
            role: .listener,
            versions: listenerVersions
        )
        var dialer = LinkHandshake(identity: identity("b"), nonce: nonce(2), role: .dialer, versions: dialerVersions)
        let (_, answer) = try upToTheDialersProof(&dialer, &listener, sourceLocation: sourceLocation)
        guard case .sendAndEstablish(let replies, _, let listenerVersion) = answer, replies.count == 2 else {
            Issue.record("the listener did not accept the proof: \(answer)", sourceLocation: sourceLocation)
            return []
        }
        #expect(dialer.received(replies[0]) == .wait, sourceLocation: sourceLocation)
        guard case .established(_, let dialerVersion) = dialer.received(replies[1]) else {
            Issue.record("the dialler did not accept the listener's proof", sourceLocation: sourceLocation)
            return []
        }
        return [dialerVersion, listenerVersion]
    }

    @Test func nodesOfTwoToThreeAndOfTwoSettleOnTwoWhicheverDials() throws {
        #expect(try Self.settle(dialer: 2...3, listener: 2...2) == [2, 2])
        #expect(try Self.settle(dialer: 2...2, listener: 2...3) == [2, 2])
    }

    @Test func nodesOfTwoToThreeSettleOnThree() throws {
        #expect(try Self.settle(dialer: 2...3, listener: 2...3) == [3, 3])
    }

    @Test func nodesOfThisBuildSettleOnFourAndWithANodeOfThreeOnThree() throws {
        #expect(try Self.settle(dialer: 2...4, listener: 2...4) == [4, 4])
        #expect(try Self.settle(dialer: 2...4, listener: 2...3) == [3, 3])
    }

    @Test func rangesWithNoVersionInCommonAreStillRefusedOnBothSides() throws {
        var listener = LinkHandshake(identity: Self.identity("a"), nonce: Self.nonce(1), role: .listener)
        let dialer = LinkHandshake(identity: Self.identity("b"), nonce: Self.nonce(2), role: .dialer, versions: 5...6)
        #expect(
            Self.refusal(listener.received(try #require(dialer.opening)))?.reason
                == "no common wire version: peer speaks 5...6, this node \(LinkHandshake.supportedVersions)"
        )
        var newer = LinkHandshake(identity: Self.identity("b"), nonce: Self.nonce(2), role: .dialer, versions: 5...6)
        #expect(
            Self.refusal(newer.received(.challenge(minVersion: 2, maxVersion: 2, nonce: Self.nonce(1))))?.reason
                == "no common wire version: peer speaks 2...2, this node 5...6"
        )
    }

    @Test func theListenersHelloMustNameItsChallengesVersions() throws {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        _ = try Self.upToTheDialersProof(&dialer, &listener)
        var hello = Self.helloOf(listener)
        hello.maxVersion = LinkHandshake.supportedVersions.upperBound + 1
        #expect(Self.isRefusal(dialer.received(.hello(hello)), containing: "other wire versions"))
    }

    @Test func shortNoncesAreRefusedBothWays() {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        let shortDialer = LinkHandshake(identity: Self.identity("b"), nonce: [1, 2, 3], role: .dialer)
        #expect(Self.isRefusal(listener.received(shortDialer.hello), containing: "nonce too short"))

        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        #expect(
            Self.isRefusal(
                dialer.received(.challenge(minVersion: 2, maxVersion: 2, nonce: [1, 2, 3])),
                containing: "nonce too short"
            )
        )
    }

    // MARK: - Order

    @Test func unexpectedMessageOrdersAreRefused() throws {
        // A listener: anything but a hello first.
        for first: LinkMessage in [
            .proof(Self.nonce(9)), .challenge(minVersion: 2, maxVersion: 2, nonce: Self.nonce(9)), .heartbeat,
            .members([]),
        ] {
            var listener = Self.listener(Self.identity("a"), nonce: 1)
            let refusal = Self.refusal(listener.received(first))
            #expect(refusal?.reason.contains("unexpected") == true, "\(first)")
            #expect(refusal?.told == "unexpected message during handshake")
        }
        // A listener that challenged: a second hello, a challenge or a heartbeat instead of a proof.
        for second: LinkMessage in [
            Self.dialer(Self.identity("b"), nonce: 2).hello,
            .challenge(minVersion: 2, maxVersion: 2, nonce: Self.nonce(9)), .heartbeat,
        ] {
            var listener = Self.listener(Self.identity("a"), nonce: 1)
            _ = try #require(Self.sent(listener.received(Self.dialer(Self.identity("b"), nonce: 2).hello)))
            #expect(Self.isRefusal(listener.received(second), containing: "unexpected"), "\(second)")
        }
        // A dialler: a proof before the challenge; a proof or a second challenge before the hello.
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        #expect(Self.isRefusal(dialer.received(.proof(Self.nonce(9))), containing: "unexpected"))
        for second: LinkMessage in [
            .proof(Self.nonce(9)), .challenge(minVersion: 2, maxVersion: 2, nonce: Self.nonce(9)),
        ] {
            var dialer = Self.dialer(Self.identity("b"), nonce: 2)
            _ = try #require(Self.sent(dialer.received(.challenge(minVersion: 2, maxVersion: 2, nonce: Self.nonce(1)))))
            #expect(Self.isRefusal(dialer.received(second), containing: "unexpected"), "\(second)")
        }
        // Once ended, nothing more is accepted.
        var ended = Self.listener(Self.identity("a"), nonce: 1)
        _ = ended.received(.heartbeat)
        #expect(
            Self.isRefusal(
                ended.received(Self.dialer(Self.identity("b"), nonce: 2).hello),
                containing: "after the handshake ended"
            )
        )
    }

    @Test func aPeersRefusalEndsTheHandshakeQuotedAndUnanswered() {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        let refusal = Self.refusal(listener.received(.refuse("go away\nforged line")))
        #expect(refusal?.reason == "refused by peer: \"go away\\nforged line\"")
        #expect(refusal?.told == nil)
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        #expect(
            Self.refusal(dialer.received(.refuse("authentication failed")))?.reason
                == "refused by peer: \"authentication failed\""
        )
    }

    // MARK: - Self-connections

    @Test func aNodeThatDialsItselfFindsOutAfterTheProofs() throws {
        var listener = Self.listener(Self.identity("a", epoch: 2), nonce: 1)
        var dialer = Self.dialer(Self.identity("a", epoch: 2), nonce: 2)
        let (_, answer) = try Self.upToTheDialersProof(&dialer, &listener)
        // The listener proves itself and closes: no link.
        guard case .selfConnection(let replies) = answer else {
            Issue.record("expected the listener to see itself, got \(answer)")
            return
        }
        #expect(replies.count == 2 && replies.first == listener.hello)
        // The dialler recognises its own id, once the proof shows it is really itself.
        #expect(dialer.received(replies[0]) == .wait)
        #expect(dialer.received(replies[1]) == .selfConnection(send: []))
    }

    @Test func aStrangerClaimingTheListenersIdGetsNothing() throws {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        var impostor = Self.dialer(Self.identity("a", secret: Array("wrong".utf8)), nonce: 2)
        let (_, answer) = try Self.upToTheDialersProof(&impostor, &listener)
        #expect(Self.isSilentRefusal(answer, containing: "does not know the cluster secret"))
    }

    // MARK: - Certificates

    @Test func withTLSTheListenerChecksTheDialersCertificateBeforeItSpeaks() throws {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        listener.peerCertificateNames = ["c", "b.example"]
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        let (_, answer) = try Self.upToTheDialersProof(&dialer, &listener)
        #expect(Self.isSilentRefusal(answer, containing: "certificate does not name node b"))

        var listener2 = Self.listener(Self.identity("a"), nonce: 1)
        listener2.peerCertificateNames = ["c", "B"]
        var dialer2 = Self.dialer(Self.identity("b"), nonce: 2)
        guard case .sendAndEstablish = try Self.upToTheDialersProof(&dialer2, &listener2).answer else {
            Issue.record("a certificate naming the dialler was refused")
            return
        }
    }

    @Test func withTLSTheDialerChecksTheListenersCertificate() throws {
        var listener = Self.listener(Self.identity("a"), nonce: 1)
        var dialer = Self.dialer(Self.identity("b"), nonce: 2)
        dialer.peerCertificateNames = ["b"]
        guard case .sendAndEstablish(let replies, _, _) = try Self.upToTheDialersProof(&dialer, &listener).answer else {
            Issue.record("the listener refused")
            return
        }
        let step = dialer.received(replies[0])
        #expect(Self.isRefusal(step, containing: "certificate does not name node a"))
        // The dialler has said who it is already: the listener may hear why.
        #expect(Self.refusal(step)?.told == Self.refusal(step)?.reason)

        var listener2 = Self.listener(Self.identity("a"), nonce: 1)
        var dialer2 = Self.dialer(Self.identity("b"), nonce: 2)
        dialer2.peerCertificateNames = ["a"]
        guard
            case .sendAndEstablish(let replies2, let peer, _) = try Self.upToTheDialersProof(&dialer2, &listener2)
                .answer
        else {
            Issue.record("the listener refused")
            return
        }
        #expect(peer.node == NodeID("b"))
        #expect(dialer2.received(replies2[0]) == .wait)
        #expect(
            dialer2.received(replies2[1])
                == .established(Self.helloOf(listener2), version: LinkHandshake.supportedVersions.upperBound)
        )
    }
}

@Suite("Link certificate check")
struct LinkCertificateCheckTests {
    @Test(arguments: [
        (["n1"], "n1"),
        (["other", "n1"], "n1"),
        (["N1"], "n1"),
        (["node-a.internal"], "NODE-A.internal"),
    ])
    func aNameEqualToTheIdPasses(names: [String], id: String) {
        #expect(LinkCertificateCheck.refusal(dnsNames: names, claimed: NodeID(id)) == nil)
    }

    @Test(arguments: [
        ([], "n1"),
        (["n10"], "n1"),
        (["n1.example"], "n1"),
        (["xn1"], "n1"),
        (["*"], "n1"),
        (["*.example"], "n1.example"),
        (["n1."], "n1"),
        ([""], ""),
        // Case-insensitive for ASCII only: a Unicode case mapping could make ids collide.
        (["ü"], "Ü"),
    ])
    func anyOtherNameIsRefused(names: [String], id: String) {
        let reason = LinkCertificateCheck.refusal(dnsNames: names, claimed: NodeID(id))
        #expect(reason?.hasPrefix("certificate does not name node ") == true)
    }

    @Test func theReasonQuotesWhatItShows() throws {
        let reason = try #require(
            LinkCertificateCheck.refusal(dnsNames: ["evil\nline", "b"], claimed: NodeID("a\u{1B}[31m"))
        )
        #expect(!reason.contains("\n") && !reason.contains("\u{1B}"))
        #expect(reason == "certificate does not name node \"a\\u{1B}[31m\" (its DNS names: \"evil\\nline\", b)")
        #expect(
            LinkCertificateCheck.refusal(dnsNames: [], claimed: NodeID("a"))
                == "certificate does not name node a (it has no DNS names)"
        )
        let many = (0..<20).map { "n\($0)" }
        #expect(LinkCertificateCheck.refusal(dnsNames: many, claimed: NodeID("x"))?.hasSuffix("n7, ...)") == true)
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
