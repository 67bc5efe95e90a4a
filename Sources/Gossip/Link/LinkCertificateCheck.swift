/// With mutual TLS on links, whose certificate may claim which node.
///
/// The TLS handshake only proves that the peer holds a certificate the cluster's CA signed.
/// Without more, any node's certificate would do for any node id, so a node whose key leaked
/// (or a test node signed by the same CA) could join under another member's name and take
/// over its links. The peer's certificate must therefore carry a subjectAltName DNS entry
/// equal to the node id its hello claims.
///
/// The comparison is exact but for ASCII case, as DNS compares names: `Node-1` matches
/// `node-1`. There are no wildcards: `*.nodes.example` names no node, since a node id is a
/// name, not a domain, and a wildcard would let one certificate be every node again.
///
/// Pure: the shell reads the names out of the peer's certificate (NIOSSL's
/// `_subjectAlternativeNames()`) and ``LinkHandshake`` applies this check at the point where
/// the claimed id is known.
public enum LinkCertificateCheck {
    /// Whether a certificate with these DNS names may claim to be `node`.
    ///
    /// - Parameters:
    ///   - dnsNames: the subjectAltName DNS entries of the peer's verified certificate.
    ///   - node: the node id the peer claims in its hello.
    /// - Returns: `nil` when one of the names equals the id; otherwise the reason for the
    ///   node's log, with the peer-supplied parts quoted and bounded.
    public static func refusal(dnsNames: [String], claimed node: NodeID) -> String? {
        let wanted = asciiLowercased(node.name)
        if !wanted.isEmpty, dnsNames.contains(where: { asciiLowercased($0) == wanted }) { return nil }
        let shown = dnsNames.prefix(8).map(LinkHandshake.quoted).joined(separator: ", ")
        let names =
            dnsNames.isEmpty ? "it has no DNS names" : "its DNS names: " + shown + (dnsNames.count > 8 ? ", ..." : "")
        return "certificate does not name node \(LinkHandshake.quoted(node.name)) (\(names))"
    }

    /// Lower-cases A to Z only: DNS names are compared that way (RFC 4343), and a Unicode
    /// case mapping could make two different ids equal.
    private static func asciiLowercased(_ text: String) -> [UInt8] {
        text.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    }
}
