import FuzzLinkSupport
import Gossip
import NIOCore

/// libFuzzer entry point: the opening of a link, as the side that authenticates a stranger.
///
/// The first byte picks the local role (dialler or listener); the rest is what the peer
/// sends, read as link frames. Messages go to ``LinkHandshake`` until it establishes the
/// link or refuses it. An established link is then checked against what only the secret
/// can produce: the peer's proof must be the one an honest peer with the secret computes,
/// and the peer must be another node of the same cluster at a supported version.
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
    let hello = handshake.hello
    var stream = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1))
    var sentProof: [UInt8]?
    LinkStream.forEachFrame(in: &stream) { _, messages in
        for message in messages {
            switch handshake.received(message) {
            case .send(let reply):
                if case .proof(let mac) = reply { sentProof = mac }
            case .wait:
                break
            case .established(let peer, let version), .sendAndEstablish(_, let peer, let version):
                checkEstablished(peer: peer, version: version, proof: message, role: role, localHello: hello, localProof: sentProof)
                return false
            case .refuse, .selfConnection:
                return false
            }
        }
        return true
    }
    return 0
}

/// Traps unless an honest peer, knowing the secret, would have sent exactly `proof`.
private func checkEstablished(peer: LinkHello, version: UInt16, proof: LinkMessage, role: LinkHandshake.Role, localHello: LinkMessage, localProof: [UInt8]?) {
    precondition(peer.clusterName == FuzzCluster.local.clusterName, "established with cluster '\(peer.clusterName)'")
    precondition(peer.node != FuzzCluster.local.node, "established with itself")
    precondition(LinkHandshake.supportedVersions.contains(version), "established at unsupported version \(version)")
    precondition(peer.nonce.count >= 16, "established with a \(peer.nonce.count)-byte nonce")
    guard case .proof(let mac) = proof else { preconditionFailure("established on \(proof), not on a proof") }

    let identity = LinkHandshake.Identity(clusterName: peer.clusterName, node: peer.node, epoch: peer.epoch, address: peer.address, secret: FuzzCluster.secret)
    var honest = LinkHandshake(identity: identity, nonce: peer.nonce, role: role == .dialer ? .listener : .dialer)
    var expected: [UInt8]?
    switch (role, honest.received(localHello)) {
    case (.listener, .send(.proof(let honestMac))):
        expected = honestMac
    case (.dialer, .wait):
        // A listener proves itself only after the dialler's proof checked out.
        guard let localProof, case .sendAndEstablish(.proof(let honestMac), _, _) = honest.received(.proof(localProof)) else {
            preconditionFailure("the dialler's own proof does not convince an honest listener")
        }
        expected = honestMac
    case (_, let step):
        preconditionFailure("an honest peer answers the local hello with \(step)")
    }
    precondition(mac == expected, "established on a proof an honest peer would not send")
}
