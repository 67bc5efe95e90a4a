import Crypto
import NIOCore

/// The opening of a link, without I/O (wire version 2).
///
/// ```
/// dialler                                         listener
///   hello (cluster, id, epoch, address, nonce D) ->
///                                               <- challenge (versions, nonce L)
///   proof  MAC(dialler role, cluster, id, D, L)  ->
///                                 (checks it; only now says who it is)
///                                               <- hello (cluster, id, epoch, address, nonce L)
///                                               <- proof MAC(listener role, cluster, id, L, dialler id, D)
/// ```
///
/// The secret never crosses the wire: each side proves knowledge of it with an HMAC over
/// both nonces, the ids known at that point and the prover's role, so a recorded proof is
/// useless on another link (the other side's nonce is fresh) and a listener's proof never
/// passes for a dialler's.
///
/// **The listener reveals nothing before the dialler has proved the secret.** Anyone can open
/// a TCP connection to the cluster port. The dialler chose to dial, so it says who it is first;
/// the listener's challenge carries only its wire versions and a nonce. Its cluster name,
/// node id, boot epoch and address come with its hello, after the dialler's proof checked
/// out. Refusals before that point are just as silent: a wrong cluster name, a bad proof or a
/// certificate that names another node are all answered with the same
/// ``genericRefusal``, and the cluster name is checked only when the proof arrives, so a
/// stranger can't even tell a wrong cluster name from a wrong secret by the moment it is
/// refused. The precise reason goes to the listener's own log (``Refusal/reason``). A
/// version mismatch names version numbers, which identify no one.
///
/// **No member can be used as an oracle.** A listener proves itself only to a dialler that
/// proved itself first, and a proof is bound to its role, so an impostor dialling two members
/// can't get one to produce the proof the other expects. (A man in the middle of a link can
/// relay a genuine member's proof, as with any challenge-response without channel binding:
/// mutual TLS, whose certificates must name the node they claim, closes that.)
///
/// **Self-connections.** A node may list itself as a seed. Its listener can't tell its own
/// hello from another's without revealing something, so the handshake runs as with anyone:
/// once the listener has verified a proof from a dialler claiming its own id, it sends its
/// hello and proof and closes, and the dialler, on that proof, reports
/// ``Step/selfConnection(send:)`` so the shell stops dialling that address.
///
/// **Mutual TLS.** With ``peerCertificateNames`` set, the peer's certificate must name the
/// node id it claims (``LinkCertificateCheck``): the listener checks it before it reveals its
/// hello, the dialler when the listener's hello arrives.
///
/// Version 1 sent both hellos at once; a node of version 1 and one of version 2 refuse each
/// other with "no common wire version" (see `WIRE-FORMAT.md`).
public struct LinkHandshake {
    /// Which side of the TCP connection this is.
    public enum Role: UInt8, Sendable {
        case dialer = 1
        case listener = 2
    }

    /// This node's side of the handshake.
    public struct Identity: Sendable {
        public var clusterName: String
        public var node: NodeID
        public var epoch: UInt64
        public var address: String
        /// The cluster secret's bytes (kept as bytes: `SymmetricKey` is not `Sendable`).
        public var secret: [UInt8]

        public init(clusterName: String, node: NodeID, epoch: UInt64, address: String, secret: [UInt8]) {
            self.clusterName = clusterName
            self.node = node
            self.epoch = epoch
            self.address = address
            self.secret = secret
        }
    }

    /// Versions of the wire format this build speaks. Version 2 changed the handshake's order
    /// (the listener answers a hello with a challenge), so it can't speak version 1. Version 3
    /// adds the resumable sessions (numbered forwards, resume, received, gap); a link to a
    /// node of version 2 carries forwards unnumbered, as that node sends them.
    public static let supportedVersions: ClosedRange<UInt16> = 2...4

    /// The versions this side offers: ``supportedVersions`` except in tests that play a node
    /// of another version.
    public let versions: ClosedRange<UInt16>

    /// What a listener tells a dialler it refuses before the dialler proved itself, whatever
    /// the reason: a wrong cluster name, a wrong secret or a certificate naming another node.
    /// One text for all, so the refusal tells a stranger nothing.
    public static let genericRefusal = "authentication failed"

    /// Why a handshake ended, said twice: precisely for this node's log, and as much as the
    /// peer may know for the `refuse` message.
    public struct Refusal: Sendable, Equatable {
        /// For this node's log. Every part that came from the peer is quoted and bounded
        /// (``LinkHandshake/quoted(_:)``).
        public var reason: String
        /// The text of the `refuse` message to send, or `nil` to send none (the peer refused
        /// first).
        public var told: String?

        public init(reason: String, told: String?) {
            self.reason = reason
            self.told = told
        }

        /// A refusal whose reason the peer may hear as it is.
        static func open(_ reason: String) -> Refusal { Refusal(reason: reason, told: reason) }

        /// A listener's refusal of a dialler that hasn't proved itself: the log gets the reason,
        /// the peer ``LinkHandshake/genericRefusal``.
        static func silent(_ reason: String) -> Refusal { Refusal(reason: reason, told: LinkHandshake.genericRefusal) }
    }

    /// What the handshake asks its driver to do.
    public enum Step: Sendable, Equatable {
        /// Send this and keep waiting: the listener's challenge, or the dialler's proof.
        case send(LinkMessage)
        /// Keep waiting.
        case wait
        /// The listener proved itself: the dialler's link is up at this wire version.
        case established(LinkHello, version: UInt16)
        /// The dialler proved itself: the listener sends these (its hello and its proof), and
        /// its link is up at this wire version.
        case sendAndEstablish([LinkMessage], LinkHello, version: UInt16)
        /// Send ``Refusal/told`` (if any) in a `refuse`, log ``Refusal/reason``, and close.
        case refuse(Refusal)
        /// The link was to this node itself (it lists itself as a seed): send these (the
        /// listener's hello and proof, for the dialler to recognise itself; nothing on the
        /// dialler's side) and close quietly.
        case selfConnection(send: [LinkMessage])
    }

    private enum State {
        /// Dialler: sent its hello, waits for the listener's challenge.
        case awaitingChallenge
        /// Dialler: proved itself; waits for the listener's hello, which must carry the
        /// challenge's nonce and versions.
        case awaitingListenerHello(nonce: [UInt8], minVersion: UInt16, maxVersion: UInt16, version: UInt16)
        /// Dialler: has the listener's hello; waits for its proof.
        case awaitingListenerProof(LinkHello, version: UInt16)
        /// Listener: waits for the dialler's hello.
        case awaitingDialerHello
        /// Listener: challenged the dialler; waits for its proof.
        case awaitingDialerProof(LinkHello, version: UInt16)
        /// Established, refused or a self-connection: nothing more is accepted.
        case done
    }

    private let identity: Identity
    private let nonce: [UInt8]
    private let role: Role
    private var state: State

    /// With mutual TLS, the subjectAltName DNS entries of the peer's verified certificate;
    /// `nil` without TLS. Set by the shell before the first message is handed in; the peer's
    /// claimed node id must be one of them (``LinkCertificateCheck``).
    public var peerCertificateNames: [String]?

    /// - Parameters:
    ///   - identity: this node.
    ///   - nonce: 32 fresh random bytes (injected so tests are deterministic). The listener
    ///     sends it in its challenge, the dialler in its hello.
    ///   - role: whether this side dialled.
    ///   - versions: the wire versions to offer; the link uses the highest both sides speak.
    public init(
        identity: Identity,
        nonce: [UInt8],
        role: Role,
        versions: ClosedRange<UInt16> = supportedVersions
    ) {
        self.identity = identity
        self.nonce = nonce
        self.role = role
        self.versions = versions
        self.state = role == .dialer ? .awaitingChallenge : .awaitingDialerHello
    }

    /// This node's hello: the dialler's first message, the listener's once the dialler proved
    /// itself.
    public var hello: LinkMessage {
        .hello(
            LinkHello(
                minVersion: versions.lowerBound,
                maxVersion: versions.upperBound,
                capabilities: 0,
                clusterName: identity.clusterName,
                node: identity.node,
                epoch: identity.epoch,
                address: identity.address,
                nonce: nonce
            )
        )
    }

    /// What to send as soon as the connection is open: the dialler's hello; nothing for a
    /// listener, which speaks only when spoken to.
    public var opening: LinkMessage? {
        role == .dialer ? hello : nil
    }

    // MARK: - Events

    /// A message arrived before the link was established.
    ///
    /// - Parameter message: the peer's message.
    /// - Returns: what to do.
    public mutating func received(_ message: LinkMessage) -> Step {
        switch (state, message) {
        case (.awaitingDialerHello, .hello(let peer)):
            return dialerHelloReceived(peer)

        case (.awaitingDialerProof(let peer, let version), .proof(let mac)):
            state = .done
            return dialerProofReceived(mac, peer: peer, version: version)

        case (.awaitingChallenge, .challenge(let minVersion, let maxVersion, let challengeNonce)):
            return challengeReceived(minVersion: minVersion, maxVersion: maxVersion, nonce: challengeNonce)

        case (.awaitingChallenge, .hello(let peer)):
            // A version-1 listener says hello at once instead of challenging.
            state = .done
            guard commonVersion(peer.minVersion, peer.maxVersion) != nil else {
                return .refuse(noCommonVersion(peer.minVersion, peer.maxVersion))
            }
            return .refuse(.open("unexpected hello before the listener's challenge"))

        case (.awaitingListenerHello(let expectedNonce, let minVersion, let maxVersion, let version), .hello(let peer)):
            return listenerHelloReceived(
                peer,
                nonce: expectedNonce,
                minVersion: minVersion,
                maxVersion: maxVersion,
                version: version
            )

        case (.awaitingListenerProof(let peer, let version), .proof(let mac)):
            state = .done
            let expected = Self.listenerProofInput(
                cluster: identity.clusterName,
                listener: peer.node,
                listenerNonce: peer.nonce,
                dialer: identity.node,
                dialerNonce: nonce
            )
            guard isValid(mac, for: expected) else {
                return .refuse(.open("authentication failed: the listener does not know the cluster secret"))
            }
            return peer.node == identity.node ? .selfConnection(send: []) : .established(peer, version: version)

        case (.done, _):
            return .refuse(.open("unexpected \(message.typeCode) after the handshake ended"))

        case (_, .refuse(let reason)):
            state = .done
            return .refuse(Refusal(reason: "refused by peer: \(Self.quoted(reason))", told: nil))

        default:
            state = .done
            return .refuse(
                Refusal(
                    reason: "unexpected \(message.typeCode) during handshake",
                    told: "unexpected message during handshake"
                )
            )
        }
    }

    /// The listener reads the dialler's hello. Nothing is checked here that would tell the
    /// dialler anything about this node: the cluster name waits for the proof.
    private mutating func dialerHelloReceived(_ peer: LinkHello) -> Step {
        guard let version = commonVersion(peer.minVersion, peer.maxVersion) else {
            state = .done
            return .refuse(noCommonVersion(peer.minVersion, peer.maxVersion))
        }
        guard peer.nonce.count >= Self.minimumNonceLength else {
            state = .done
            return .refuse(.open("nonce too short"))
        }
        state = .awaitingDialerProof(peer, version: version)
        return .send(
            .challenge(
                minVersion: versions.lowerBound,
                maxVersion: versions.upperBound,
                nonce: nonce
            )
        )
    }

    /// The listener checks the dialler's proof and, only if it holds, says who it is.
    private func dialerProofReceived(_ mac: [UInt8], peer: LinkHello, version: UInt16) -> Step {
        let claims = "(the dialler claims node \(Self.quoted(peer.node.name)))"
        guard peer.clusterName == identity.clusterName else {
            return .refuse(
                .silent(
                    "cluster name \(Self.quoted(peer.clusterName)) does not match \(Self.quoted(identity.clusterName)) \(claims)"
                )
            )
        }
        let expected = Self.dialerProofInput(
            cluster: identity.clusterName,
            dialer: peer.node,
            dialerNonce: peer.nonce,
            listenerNonce: nonce
        )
        guard isValid(mac, for: expected) else {
            return .refuse(.silent("authentication failed: the dialler does not know the cluster secret \(claims)"))
        }
        if let names = peerCertificateNames,
            let reason = LinkCertificateCheck.refusal(dnsNames: names, claimed: peer.node)
        {
            return .refuse(.silent(reason))
        }
        let input = Self.listenerProofInput(
            cluster: identity.clusterName,
            listener: identity.node,
            listenerNonce: nonce,
            dialer: peer.node,
            dialerNonce: peer.nonce
        )
        let answer = [hello, .proof(authenticationCode(for: input))]
        return peer.node == identity.node
            ? .selfConnection(send: answer) : .sendAndEstablish(answer, peer, version: version)
    }

    /// The dialler answers the listener's challenge with its proof.
    private mutating func challengeReceived(
        minVersion: UInt16,
        maxVersion: UInt16,
        nonce challengeNonce: [UInt8]
    ) -> Step {
        guard let version = commonVersion(minVersion, maxVersion) else {
            state = .done
            return .refuse(noCommonVersion(minVersion, maxVersion))
        }
        guard challengeNonce.count >= Self.minimumNonceLength else {
            state = .done
            return .refuse(.open("nonce too short"))
        }
        state = .awaitingListenerHello(
            nonce: challengeNonce,
            minVersion: minVersion,
            maxVersion: maxVersion,
            version: version
        )
        let input = Self.dialerProofInput(
            cluster: identity.clusterName,
            dialer: identity.node,
            dialerNonce: nonce,
            listenerNonce: challengeNonce
        )
        return .send(.proof(authenticationCode(for: input)))
    }

    /// The dialler reads the listener's hello; its proof follows.
    private mutating func listenerHelloReceived(
        _ peer: LinkHello,
        nonce expected: [UInt8],
        minVersion: UInt16,
        maxVersion: UInt16,
        version: UInt16
    ) -> Step {
        state = .done
        guard peer.nonce == expected else {
            return .refuse(.open("the listener's hello does not carry the nonce of its challenge"))
        }
        guard peer.minVersion == minVersion, peer.maxVersion == maxVersion else {
            return .refuse(.open("the listener's hello names other wire versions than its challenge"))
        }
        guard peer.clusterName == identity.clusterName else {
            return .refuse(
                .open(
                    "cluster name \(Self.quoted(peer.clusterName)) does not match \(Self.quoted(identity.clusterName))"
                )
            )
        }
        if let names = peerCertificateNames,
            let reason = LinkCertificateCheck.refusal(dnsNames: names, claimed: peer.node)
        {
            return .refuse(.open(reason))
        }
        state = .awaitingListenerProof(peer, version: version)
        return .wait
    }

    // MARK: - Versions and proofs

    /// Nonces shorter than this are refused: 16 bytes are enough that a nonce never repeats.
    static let minimumNonceLength = 16

    /// The highest version both speak, if any. Both sides compute it from the same two ranges
    /// (the listener's challenge repeats its range, its hello must too), so they agree.
    private func commonVersion(_ minVersion: UInt16, _ maxVersion: UInt16) -> UInt16? {
        let common = min(maxVersion, versions.upperBound)
        return common >= max(minVersion, versions.lowerBound) ? common : nil
    }

    private func noCommonVersion(_ minVersion: UInt16, _ maxVersion: UInt16) -> Refusal {
        .open("no common wire version: peer speaks \(minVersion)...\(maxVersion), this node \(versions)")
    }

    private func authenticationCode(for input: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: identity.secret)))
    }

    /// Compares in constant time (swift-crypto's check).
    private func isValid(_ mac: [UInt8], for input: [UInt8]) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: input, using: SymmetricKey(data: identity.secret))
    }

    /// What the dialler's proof authenticates. The listener's id is not known to the dialler
    /// yet, so it isn't in it; the listener's fresh nonce binds the proof to this link.
    static func dialerProofInput(
        cluster: String,
        dialer: NodeID,
        dialerNonce: [UInt8],
        listenerNonce: [UInt8]
    ) -> [UInt8] {
        proofInput(role: .dialer, fields: [Array(cluster.utf8), Array(dialer.name.utf8), dialerNonce, listenerNonce])
    }

    /// What the listener's proof authenticates: both ids and both nonces.
    static func listenerProofInput(
        cluster: String,
        listener: NodeID,
        listenerNonce: [UInt8],
        dialer: NodeID,
        dialerNonce: [UInt8]
    ) -> [UInt8] {
        proofInput(
            role: .listener,
            fields: [
                Array(cluster.utf8), Array(listener.name.utf8), listenerNonce, Array(dialer.name.utf8), dialerNonce,
            ]
        )
    }

    /// A label, the prover's role, then each field length-prefixed so no two different inputs
    /// encode alike. The label changed with version 2, so a version-1 proof never verifies.
    private static func proofInput(role: Role, fields: [[UInt8]]) -> [UInt8] {
        var input = Array("stomp-cluster link proof v2".utf8)
        input.append(role.rawValue)
        for field in fields {
            let count = UInt32(field.count)
            input.append(contentsOf: [
                UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF),
            ])
            input.append(contentsOf: field)
        }
        return input
    }
}

extension LinkHandshake.Identity: CustomStringConvertible {
    public var description: String {
        "Identity(cluster: \(clusterName), node: \(node), epoch: \(epoch), secret: <redacted>)"
    }
}

// MARK: - Peer text in logs

extension LinkHandshake {
    /// The most Unicode scalars of a peer string a log line shows. Scalars, not characters:
    /// one character may hold any number of combining marks.
    static let quotedLimit = 128

    /// A string from a peer, fit for a log line or a metric label: the one helper every
    /// peer-supplied string goes through in `Gossip` (ids, cluster names, addresses, refuse
    /// texts, admin actions, error descriptions).
    ///
    /// A plain string (at most ``quotedLimit`` scalars, all letters, digits, marks,
    /// punctuation or symbols: no space, quote, backslash, control or format character) comes
    /// back as it is, so `cluster.peer=n1` stays greppable. Anything else comes back cut to
    /// ``quotedLimit`` scalars, in double quotes, with quotes and backslashes escaped, `\n`,
    /// `\r` and `\t` for those, and every other control, format (such as a bidirectional
    /// override), separator or unassigned scalar written as `\u{1B}`, the way
    /// `String(reflecting:)` writes them; `…` follows the closing quote when the text was cut.
    /// So it can't forge a log line, colour a terminal or fill a disk.
    ///
    /// - Parameter text: what the peer sent.
    /// - Returns: the text to log.
    public static func quoted(_ text: String) -> String {
        let scalars = text.unicodeScalars
        var plain = !scalars.isEmpty
        var count = 0
        for scalar in scalars {
            count += 1
            if count > quotedLimit || !isPlain(scalar) {
                plain = false
                break
            }
        }
        if plain { return text }
        var quoted = "\""
        count = 0
        for scalar in scalars {
            count += 1
            if count > quotedLimit {
                quoted += "\"…"
                return quoted
            }
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\t": quoted += "\\t"
            case " ": quoted += " "
            default:
                if isPlain(scalar) {
                    quoted.unicodeScalars.append(scalar)
                } else {
                    quoted += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                }
            }
        }
        return quoted + "\""
    }

    private static func isPlain(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII {
            return scalar.value > 0x20 && scalar.value < 0x7F && scalar != "\"" && scalar != "\\"
        }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
            .nonspacingMark, .spacingMark, .enclosingMark,
            .decimalNumber, .letterNumber, .otherNumber,
            .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation,
            .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
            return true
        default:
            // Controls, format characters (bidirectional overrides), separators, surrogates,
            // private use and unassigned code points.
            return false
        }
    }
}
