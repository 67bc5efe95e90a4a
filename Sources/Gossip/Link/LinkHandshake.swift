import Crypto
import NIOCore

/// The opening of a link, without I/O: both sides send a ``LinkHello`` with a fresh nonce,
/// then prove knowledge of the cluster secret with an HMAC over both nonces, both node ids
/// and the prover's role, so the secret never crosses the wire and a recorded proof is
/// useless on another link.
///
/// The dialler proves itself first; the listener answers with its own proof only once the
/// dialler's checked out. Together with the role inside the MAC, that keeps a member from
/// serving as an oracle: an impostor who dials two members can't get one of them to produce
/// the proof the other expects, because listeners never prove to someone unproven and a
/// listener's proof never passes for a dialler's.
///
/// A peer from another cluster, with an incompatible wire version, with this node's own id,
/// or without a valid proof is refused.
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

    /// Versions of the wire format this build speaks.
    public static let supportedVersions: ClosedRange<UInt16> = 1...1

    public enum Step: Sendable, Equatable {
        /// Send this and keep waiting.
        case send(LinkMessage)
        /// Keep waiting.
        case wait
        /// The peer proved itself; the link is up at this wire version.
        case established(LinkHello, version: UInt16)
        /// The peer (the dialler) proved itself: send this proof in return, and the link is up.
        case sendAndEstablish(LinkMessage, LinkHello, version: UInt16)
        /// Refuse with this reason and close.
        case refuse(String)
        /// The link was to this node itself (it lists itself as a seed): close quietly.
        case selfConnection
    }

    private enum State {
        case awaitingHello
        case awaitingProof(LinkHello, version: UInt16)
        case done
    }

    private let identity: Identity
    private let nonce: [UInt8]
    private let role: Role
    private var state = State.awaitingHello

    /// - Parameters:
    ///   - identity: this node.
    ///   - nonce: 32 fresh random bytes (injected so tests are deterministic).
    ///   - role: whether this side dialled.
    public init(identity: Identity, nonce: [UInt8], role: Role) {
        self.identity = identity
        self.nonce = nonce
        self.role = role
    }

    /// The first message, sent as soon as the connection is open.
    public var hello: LinkMessage {
        .hello(
            LinkHello(
                minVersion: Self.supportedVersions.lowerBound,
                maxVersion: Self.supportedVersions.upperBound,
                capabilities: 0,
                clusterName: identity.clusterName,
                node: identity.node,
                epoch: identity.epoch,
                address: identity.address,
                nonce: nonce
            )
        )
    }

    /// A message arrived before the link was established.
    public mutating func received(_ message: LinkMessage) -> Step {
        switch (state, message) {
        case (.awaitingHello, .hello(let peer)):
            guard peer.clusterName == identity.clusterName else {
                state = .done
                return .refuse("cluster name \(Self.quoted(peer.clusterName)) does not match \(Self.quoted(identity.clusterName))")
            }
            guard peer.node != identity.node else {
                state = .done
                return .selfConnection
            }
            let common = min(peer.maxVersion, Self.supportedVersions.upperBound)
            guard common >= max(peer.minVersion, Self.supportedVersions.lowerBound) else {
                state = .done
                return .refuse("no common wire version: peer speaks \(peer.minVersion)...\(peer.maxVersion), this node \(Self.supportedVersions)")
            }
            guard peer.nonce.count >= 16 else {
                state = .done
                return .refuse("nonce too short")
            }
            state = .awaitingProof(peer, version: common)
            // Only the dialler proves itself before seeing the other side's proof.
            return role == .dialer ? .send(.proof(myProof(to: peer))) : .wait

        case (.awaitingProof(let peer, let version), .proof(let mac)):
            state = .done
            let peerRole: Role = role == .dialer ? .listener : .dialer
            let expected = Self.proofInput(
                role: peerRole, prover: peer.node, proverNonce: peer.nonce, verifier: identity.node, verifierNonce: nonce, cluster: identity.clusterName
            )
            guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: expected, using: SymmetricKey(data: identity.secret)) else {
                return .refuse("authentication failed: the peer does not know the cluster secret")
            }
            return role == .dialer ? .established(peer, version: version) : .sendAndEstablish(.proof(myProof(to: peer)), peer, version: version)

        case (_, .refuse(let reason)):
            state = .done
            return .refuse("refused by peer: \(Self.quoted(reason))")

        default:
            state = .done
            return .refuse("unexpected message during handshake")
        }
    }

    private func myProof(to peer: LinkHello) -> [UInt8] {
        let input = Self.proofInput(
            role: role, prover: identity.node, proverNonce: nonce, verifier: peer.node, verifierNonce: peer.nonce, cluster: identity.clusterName
        )
        return Array(HMAC<SHA256>.authenticationCode(for: input, using: SymmetricKey(data: identity.secret)))
    }

    /// What a proof authenticates: a label, the prover's role, both ids and both nonces, each
    /// length-prefixed so no two different inputs can encode alike.
    static func proofInput(role: Role, prover: NodeID, proverNonce: [UInt8], verifier: NodeID, verifierNonce: [UInt8], cluster: String) -> [UInt8] {
        var input = Array("stomp-cluster link proof v1".utf8)
        input.append(role.rawValue)
        for field in [Array(cluster.utf8), Array(prover.name.utf8), proverNonce, Array(verifier.name.utf8), verifierNonce] {
            let count = UInt32(field.count)
            input.append(contentsOf: [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)])
            input.append(contentsOf: field)
        }
        return input
    }
}

extension LinkHandshake.Identity: CustomStringConvertible {
    public var description: String { "Identity(cluster: \(clusterName), node: \(node), epoch: \(epoch), secret: <redacted>)" }
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
