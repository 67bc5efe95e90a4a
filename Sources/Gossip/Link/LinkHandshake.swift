import Crypto
import NIOCore

/// The opening of a link, without I/O: both sides send a ``LinkHello`` with a fresh nonce,
/// then prove knowledge of the cluster secret with an HMAC over the other side's nonce, so
/// the secret never crosses the wire and a recorded proof is useless on another link.
///
/// A peer from another cluster, with an incompatible wire version, with this node's own id,
/// or without a valid proof is refused.
public struct LinkHandshake {
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
        /// The peer proved itself; the link is up at this wire version.
        case established(LinkHello, version: UInt16)
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
    private var state = State.awaitingHello

    /// - Parameters:
    ///   - identity: this node.
    ///   - nonce: 32 fresh random bytes (injected so tests are deterministic).
    public init(identity: Identity, nonce: [UInt8]) {
        self.identity = identity
        self.nonce = nonce
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
                return .refuse("cluster name '\(peer.clusterName)' does not match '\(identity.clusterName)'")
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
            return .send(.proof(Self.proof(secret: SymmetricKey(data: identity.secret), receiverNonce: peer.nonce, sender: identity.node, senderNonce: nonce, cluster: identity.clusterName)))

        case (.awaitingProof(let peer, let version), .proof(let mac)):
            state = .done
            let expected = Self.proofInput(receiverNonce: nonce, sender: peer.node, senderNonce: peer.nonce, cluster: identity.clusterName)
            guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: expected, using: SymmetricKey(data: identity.secret)) else {
                return .refuse("authentication failed: the peer does not know the cluster secret")
            }
            return .established(peer, version: version)

        case (_, .refuse(let reason)):
            state = .done
            return .refuse("refused by peer: \(reason)")

        default:
            state = .done
            return .refuse("unexpected message during handshake")
        }
    }

    static func proof(secret: SymmetricKey, receiverNonce: [UInt8], sender: NodeID, senderNonce: [UInt8], cluster: String) -> [UInt8] {
        let input = proofInput(receiverNonce: receiverNonce, sender: sender, senderNonce: senderNonce, cluster: cluster)
        return Array(HMAC<SHA256>.authenticationCode(for: input, using: secret))
    }

    private static func proofInput(receiverNonce: [UInt8], sender: NodeID, senderNonce: [UInt8], cluster: String) -> [UInt8] {
        var input = receiverNonce
        input.append(0)
        input.append(contentsOf: Array(sender.name.utf8))
        input.append(0)
        input.append(contentsOf: senderNonce)
        input.append(0)
        input.append(contentsOf: Array(cluster.utf8))
        return input
    }
}

extension LinkHandshake.Identity: CustomStringConvertible {
    public var description: String { "Identity(cluster: \(clusterName), node: \(node), epoch: \(epoch), secret: <redacted>)" }
}
