import Gossip
import NIOCore
import NIOSSL
import StompRouting

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the `cluster.*` settings. Clustering is off until a secret is configured: links
/// between nodes carry every message, so they are never opened unauthenticated.
enum ClusterConfiguration {
    static func read(_ settings: Settings, node: String, epoch: UInt64) throws -> ClusterSettings? {
        let secret = try readSecret(settings, value: "cluster.secret", file: "cluster.secret-file")
        guard let port = try settings.port("cluster.port"), let secret else {
            // Clustering is off. A cluster setting given anyway is a node that was meant to
            // join and would run alone, ready, without a word: refuse it.
            let switches: Set = ["cluster.port", "cluster.secret", "cluster.secret-file"]
            if let given = SettingsTable.all.first(where: {
                $0.key.hasPrefix("cluster.") && !switches.contains($0.key) && settings.isGiven($0.key)
            }) {
                throw SettingsError(
                    description: "\(given.key) is set but clustering is off: "
                        + (secret == nil ? "set cluster.secret or cluster.secret-file" : "cluster.port is negative")
                )
            }
            return nil
        }
        guard secret.utf8.count >= 16 else {
            throw SettingsError(description: "the cluster secret must be at least 16 bytes")
        }

        let host = try settings.requiredString("cluster.host")
        var cluster = ClusterSettings(
            clusterName: try settings.requiredString("cluster.name"),
            secret: Array(secret.utf8),
            node: NodeID(node),
            epoch: epoch,
            host: host,
            port: port,
            seeds: try settings.list("cluster.seeds")
        )
        // With seeds, "ready" waits for one peer: a node that found nobody is a cluster of one
        // that a load balancer must not send clients to.
        cluster.minimumMembers = try settings.int("cluster.min-members") ?? (cluster.seeds.isEmpty ? 1 : 2)
        if let advertised = try settings.string("cluster.advertise") {
            cluster.advertisedAddress = advertised
        } else if host == "0.0.0.0" || host == "::" {
            // Peers can't dial a wildcard address; the host name is what a StatefulSet pod or a
            // compose service is reachable by.
            cluster.advertisedAddress = port == 0 ? nil : "\(NodeConfiguration.hostName()):\(port)"
        }
        cluster.membership.probeInterval = try settings.milliseconds("cluster.probe-interval-ms")
        cluster.membership.probeTimeout = try settings.milliseconds("cluster.probe-timeout-ms")
        cluster.membership.suspicionTimeout = try settings.milliseconds("cluster.suspicion-timeout-ms")
        cluster.membership.indirectProbeTimeout = try settings.milliseconds("cluster.indirect-probe-timeout-ms")
        cluster.membership.indirectProbeCount = try settings.requiredInt("cluster.indirect-probes")
        cluster.interestAckTimeout = try settings.milliseconds("cluster.interest-ack-timeout-ms")
        cluster.heartbeatInterval = try settings.milliseconds("cluster.link-heartbeat-ms")
        cluster.linkTimeout = try settings.milliseconds("cluster.link-timeout-ms")
        cluster.digestInterval = try settings.milliseconds("cluster.digest-interval-ms")
        cluster.handshakeTimeout = try settings.milliseconds("cluster.handshake-timeout-ms")
        cluster.handshakeFrameSize = try settings.requiredInt("cluster.handshake-frame-size")
        cluster.compressionThreshold = try settings.requiredInt("cluster.compression-threshold")
        cluster.outageGrace = try settings.milliseconds("cluster.outage-grace-ms")
        cluster.outboxBytes = try settings.requiredInt("cluster.outbox-bytes")
        cluster.outboxNodeBytes = try settings.requiredInt("cluster.outbox-node-bytes")
        cluster.tls = try tls(settings, node: NodeID(node))
        return cluster
    }

    /// Mutual TLS: each side presents its certificate and verifies the other's against the CA.
    /// Peers are addressed by IP as often as by name, so TLS checks the chain, not the host
    /// name; the link's handshake then checks that the peer's certificate names the node id
    /// it claims (a subjectAltName DNS entry, `LinkCertificateCheck`). This node's own
    /// certificate must name its id too, or every peer would refuse it: that is checked here,
    /// at start-up.
    private static func tls(_ settings: Settings, node: NodeID) throws -> ClusterSettings.TLS? {
        let cert = try settings.string("cluster.tls.cert")
        let key = try settings.string("cluster.tls.key")
        let ca = try settings.string("cluster.tls.ca")
        guard cert != nil || key != nil || ca != nil else { return nil }
        guard let cert, let key, let ca else {
            throw SettingsError(
                description: "cluster.tls.cert, cluster.tls.key and cluster.tls.ca must be given together"
            )
        }
        let certificates = try NIOSSLCertificate.fromPEMFile(cert)
        guard let leaf = certificates.first else {
            throw SettingsError(description: "cluster.tls.cert \(cert) holds no certificate")
        }
        if let reason = LinkCertificateCheck.refusal(dnsNames: LinkCertificateCheck.dnsNames(of: leaf), claimed: node) {
            throw SettingsError(
                description: "cluster.tls.cert \(cert): \(reason); peers would refuse this node's links: "
                    + "give it subjectAltName DNS:\(node.name)"
            )
        }
        let chain = certificates.map { NIOSSLCertificateSource.certificate($0) }
        let privateKey = NIOSSLPrivateKeySource.privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        let roots = NIOSSLTrustRoots.certificates(try NIOSSLCertificate.fromPEMFile(ca))
        var server = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: chain,
            privateKey: privateKey,
            trustRoots: roots
        )
        server.certificateVerification = .noHostnameVerification
        server.minimumTLSVersion = .tlsv12
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv12
        client.certificateChain = chain
        client.privateKey = privateKey
        client.trustRoots = roots
        client.certificateVerification = .noHostnameVerification
        return ClusterSettings.TLS(
            server: try NIOSSLContext(configuration: server),
            client: try NIOSSLContext(configuration: client)
        )
    }

    /// A secret given either as a value or as a file holding it, never both: which one wins
    /// would be a guess. A file written by `echo` ends in a newline that isn't the secret's.
    static func readSecret(_ settings: Settings, value: String, file: String) throws -> String? {
        let direct = try settings.string(value)
        guard let path = try settings.string(file) else { return direct }
        guard direct == nil else { throw SettingsError(description: "\(value) and \(file) are both set; give one") }
        guard let text = readFile(path) else { throw SettingsError(description: "cannot read \(file) \(path)") }
        let secret = String(text.trimming(" \t\r\n"))
        guard !secret.isEmpty else { throw SettingsError(description: "\(file) \(path) holds nothing") }
        return secret
    }

    static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
