import Gossip

/// The fixed cluster the link targets and the seed generator share: the handshake's proofs
/// depend on the secret and both nonces, so seeds that get past authentication can only be
/// made with the same values the fuzz target uses.
public enum FuzzCluster {
    public static let secret = Array("fuzzing-only cluster secret, 32b".utf8)
    /// The side the fuzz target runs.
    public static let local = LinkHandshake.Identity(
        clusterName: "fuzz",
        node: NodeID("local"),
        epoch: 1,
        address: "10.0.0.1:7946",
        secret: secret
    )
    /// The side the input speaks for, in the seeds.
    public static let peer = LinkHandshake.Identity(
        clusterName: "fuzz",
        node: NodeID("peer"),
        epoch: 2,
        address: "10.0.0.2:7946",
        secret: secret
    )
    public static let localNonce = [UInt8](repeating: 0x11, count: 32)
    public static let peerNonce = [UInt8](repeating: 0x22, count: 32)

    /// The handshake's roles, chosen by the first byte of a handshake input.
    ///
    /// - Parameter byte: the input's first byte; its low bit picks the role.
    /// - Returns: the local side's role.
    public static func localRole(_ byte: UInt8) -> LinkHandshake.Role {
        byte & 1 == 0 ? .dialer : .listener
    }
}
