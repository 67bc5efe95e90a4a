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

extension LinkHandshake {
    /// A string from a peer that hasn't proved anything yet, fit for a log line: bounded, in
    /// quotes, with control characters and quotes escaped, so it can't forge log lines.
    static func quoted(_ text: String) -> String {
        String(reflecting: String(text.prefix(128)))
    }
}
