import FuzzLinkSupport
import Gossip
import NIOCore

/// libFuzzer entry point: the opening of a link, as the side that authenticates a stranger.
///
/// The first byte picks the local role (dialler or listener); the rest is what the peer
/// sends, read as link frames. Messages go to ``LinkHandshake`` until it establishes the
/// link, refuses it or finds it is a self-connection. Checked on the way:
///
/// - a listener reveals nothing before the peer proved the secret: all it sends is its
///   challenge, and its refusals name neither its cluster, id nor address;
/// - a link is established (or a self-connection recognised) only on the proof an honest
///   peer with the secret computes, with another node of the same cluster at a supported
///   version.
///
/// - Parameters:
///   - data: the input.
///   - size: its length in bytes.
/// - Returns: 0, as libFuzzer requires; a bug traps instead.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let role = FuzzCluster.localRole(data[0])
    var handshake = LinkHandshake(identity: FuzzCluster.local, nonce: FuzzCluster.localNonce, role: role)
    precondition((handshake.opening != nil) == (role == .dialer), "only the dialler speaks first")
    var stream = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1))
    var sentProof: [UInt8]?
    var peerHello: LinkHello?
    LinkStream.forEachFrame(in: &stream) { _, messages in
        for message in messages {
            if case .hello(let hello) = message { peerHello = hello }
            switch handshake.received(message) {
            case .send(let reply):
                switch (role, reply) {
                case (.dialer, .proof(let mac)):
                    sentProof = mac
                case (.listener, .challenge(_, _, let nonce)):
                    precondition(nonce == FuzzCluster.localNonce, "a challenge with another nonce")
                default:
                    preconditionFailure("the \(role) sent \(reply) during the handshake")
                }
            case .wait:
                break
            case .established(let peer, let version):
                checkEstablished(peer: peer, version: version, proof: message, role: role, localProof: sentProof)
                return false
            case .sendAndEstablish(let replies, let peer, let version):
                precondition(replies.first == handshake.hello, "the listener's answer does not start with its hello")
                checkEstablished(peer: peer, version: version, proof: message, role: role, localProof: sentProof)
                return false
            case .selfConnection:
                guard let peerHello else { preconditionFailure("a self-connection without a hello") }
                precondition(peerHello.node == FuzzCluster.local.node, "a self-connection with \(peerHello.node)")
                precondition(
                    honestProof(of: peerHello, role: role, localProof: sentProof) == macOf(message),
                    "a self-connection on a proof an honest peer would not send"
                )
                return false
            case .refuse(let refusal):
                if role == .listener, let told = refusal.told {
                    for revealing in [
                        FuzzCluster.local.clusterName, FuzzCluster.local.node.name, FuzzCluster.local.address,
                    ] {
                        precondition(!told.contains(revealing), "the listener's refusal \(told) reveals \(revealing)")
                    }
                }
                return false
            }
        }
        return true
    }
    return 0
}

private func macOf(_ message: LinkMessage) -> [UInt8]? {
    guard case .proof(let mac) = message else { return nil }
    return mac
}

/// Traps unless an honest peer, knowing the secret, would have sent exactly `proof`.
private func checkEstablished(
    peer: LinkHello,
    version: UInt16,
    proof: LinkMessage,
    role: LinkHandshake.Role,
    localProof: [UInt8]?
) {
    precondition(peer.clusterName == FuzzCluster.local.clusterName, "established with cluster '\(peer.clusterName)'")
    precondition(peer.node != FuzzCluster.local.node, "established with itself")
    precondition(LinkHandshake.supportedVersions.contains(version), "established at unsupported version \(version)")
    precondition(peer.nonce.count >= 16, "established with a \(peer.nonce.count)-byte nonce")
    guard let mac = macOf(proof) else { preconditionFailure("established on \(proof), not on a proof") }
    precondition(
        mac == honestProof(of: peer, role: role, localProof: localProof),
        "established on a proof an honest peer would not send"
    )
}

/// The proof an honest peer that said `peer` in its hello sends the local side.
private func honestProof(of peer: LinkHello, role: LinkHandshake.Role, localProof: [UInt8]?) -> [UInt8] {
    let identity = LinkHandshake.Identity(
        clusterName: peer.clusterName,
        node: peer.node,
        epoch: peer.epoch,
        address: peer.address,
        secret: FuzzCluster.secret
    )
    let local = LinkHandshake(identity: FuzzCluster.local, nonce: FuzzCluster.localNonce, role: role)
    switch role {
    case .listener:
        // The peer dialled: its proof answers the local challenge.
        var honest = LinkHandshake(identity: identity, nonce: peer.nonce, role: .dialer)
        let challenge = LinkMessage.challenge(
            minVersion: LinkHandshake.supportedVersions.lowerBound,
            maxVersion: LinkHandshake.supportedVersions.upperBound,
            nonce: FuzzCluster.localNonce
        )
        guard case .send(.proof(let mac)) = honest.received(challenge) else {
            preconditionFailure("an honest dialler does not answer the challenge")
        }
        return mac
    case .dialer:
        // The peer listened: it proves itself only once the local proof checked out.
        var honest = LinkHandshake(identity: identity, nonce: peer.nonce, role: .listener)
        guard case .send(.challenge) = honest.received(local.hello), let localProof else {
            preconditionFailure("an honest listener does not challenge the local hello, or no local proof was sent")
        }
        switch honest.received(.proof(localProof)) {
        case .sendAndEstablish(let replies, _, _), .selfConnection(let replies):
            guard let mac = replies.last.flatMap(macOf) else {
                preconditionFailure("an honest listener's answer ends without a proof")
            }
            return mac
        case let step:
            preconditionFailure("the dialler's own proof does not convince an honest listener: \(step)")
        }
    }
}
