import NIOSSL

extension LinkCertificateCheck {
    /// The subjectAltName DNS entries of a certificate, the names ``refusal(dnsNames:claimed:)``
    /// compares a claimed node id with. IP addresses, URIs and e-mail addresses in the
    /// extension are left out: a node id is checked against DNS names only.
    ///
    /// - Parameter certificate: a peer's certificate (after TLS verified its chain) or this
    ///   node's own.
    /// - Returns: the DNS names, in the certificate's order; empty without the extension.
    public static func dnsNames(of certificate: NIOSSLCertificate) -> [String] {
        certificate._subjectAlternativeNames().compactMap { name in
            name.nameType == .dnsName ? String(decoding: name.contents, as: UTF8.self) : nil
        }
    }
}
