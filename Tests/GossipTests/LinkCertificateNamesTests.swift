import Gossip
import NIOSSL
import Testing

/// Reading a certificate's DNS names with NIOSSL, the input of ``LinkCertificateCheck``.
///
/// The two certificates are public test certificates (no key is kept), made once with
/// `openssl req -x509 -newkey ec ... -addext subjectAltName=...`.
@Suite("Link certificate names")
struct LinkCertificateNamesTests {
    /// CN=not-a-node; subjectAltName DNS:n1, IP:127.0.0.1, DNS:Node-2.example,
    /// URI:spiffe://cluster/n3, email:ops@example.com.
    static let withNames = """
        -----BEGIN CERTIFICATE-----
        MIIBzzCCAXSgAwIBAgIUcU+eisAWjcbSpXyIhRcHMwYfhecwCgYIKoZIzj0EAwIw
        FTETMBEGA1UEAwwKbm90LWEtbm9kZTAgFw0yNjExMzAwNTM3MDVaGA8yMTI2MTEw
        NjA1MzcwNVowFTETMBEGA1UEAwwKbm90LWEtbm9kZTBZMBMGByqGSM49AgEGCCqG
        SM49AwEHA0IABLXBIMq3HnkFfvsWqzALNvbUZyluKkeaI00M+dqwCXhNcqhi4r+1
        xDy8ASCxjUQQJzN03ijRRuvOVkAuDRWZ93WjgZ8wgZwwHQYDVR0OBBYEFAv0Pqp+
        KMjoAk1LSaEFY+pZDZk5MB8GA1UdIwQYMBaAFAv0Pqp+KMjoAk1LSaEFY+pZDZk5
        MA8GA1UdEwEB/wQFMAMBAf8wSQYDVR0RBEIwQIICbjGHBH8AAAGCDk5vZGUtMi5l
        eGFtcGxlhhNzcGlmZmU6Ly9jbHVzdGVyL24zgQ9vcHNAZXhhbXBsZS5jb20wCgYI
        KoZIzj0EAwIDSQAwRgIhAKmR1sUzyUU6v5g65U9v4Mdj+jErC/QDwKxvKnpinkxh
        AiEAq7nROnKgp2MXGS81YR60QgxiwAiE+Xr0+jN9wdmUsCU=
        -----END CERTIFICATE-----
        """

    /// CN=n1 and no subjectAltName extension.
    static let commonNameOnly = """
        -----BEGIN CERTIFICATE-----
        MIIBcTCCARegAwIBAgIUOPbpfuQ3uGTMLITPkD4+l84HkUEwCgYIKoZIzj0EAwIw
        DTELMAkGA1UEAwwCbjEwIBcNMjYxMTMwMDUzNzA1WhgPMjEyNjExMDYwNTM3MDVa
        MA0xCzAJBgNVBAMMAm4xMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEonPCn+we
        L1CXWXkQMjYTdr8/TS2snHZHvU3cHV0uBqpvD75kQFe+4XRv69xmWUFdr/0RI05z
        UZZGEcojVw0bOKNTMFEwHQYDVR0OBBYEFJax/NS596PUf/qg70Y2/oW4nzHEMB8G
        A1UdIwQYMBaAFJax/NS596PUf/qg70Y2/oW4nzHEMA8GA1UdEwEB/wQFMAMBAf8w
        CgYIKoZIzj0EAwIDSAAwRQIhAOLd2Q1ZuVyAuLdHDLgYaEpN5ycsuuuwKvJZaNJM
        bwYyAiBRL7yWUVDMvY8mhpSRzl9pqQPLha6ufJFjk02xc2vgtA==
        -----END CERTIFICATE-----
        """

    @Test func onlyDNSNamesAreRead() throws {
        let certificate = try NIOSSLCertificate(bytes: Array(Self.withNames.utf8), format: .pem)
        #expect(LinkCertificateCheck.dnsNames(of: certificate) == ["n1", "Node-2.example"])
        let names = LinkCertificateCheck.dnsNames(of: certificate)
        #expect(LinkCertificateCheck.refusal(dnsNames: names, claimed: NodeID("n1")) == nil)
        #expect(LinkCertificateCheck.refusal(dnsNames: names, claimed: NodeID("node-2.example")) == nil)
        // Neither the IP address, the URI nor the common name names a node.
        #expect(LinkCertificateCheck.refusal(dnsNames: names, claimed: NodeID("127.0.0.1")) != nil)
        #expect(LinkCertificateCheck.refusal(dnsNames: names, claimed: NodeID("n3")) != nil)
        #expect(LinkCertificateCheck.refusal(dnsNames: names, claimed: NodeID("not-a-node")) != nil)
    }

    @Test func aCommonNameIsNotAName() throws {
        let certificate = try NIOSSLCertificate(bytes: Array(Self.commonNameOnly.utf8), format: .pem)
        #expect(LinkCertificateCheck.dnsNames(of: certificate).isEmpty)
        #expect(
            LinkCertificateCheck.refusal(dnsNames: [], claimed: NodeID("n1"))
                == "certificate does not name node n1 (it has no DNS names)"
        )
    }
}
