import Configuration
import Gossip
import NIOCore
import NIOSSL
import StompRouting

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads the `cluster.*` keys. Clustering is off until a secret is configured: links between
/// nodes carry every message, so they are never opened unauthenticated.
///
/// | key | default |
/// | --- | --- |
/// | `cluster.port`, `cluster.host` | `7946`, `0.0.0.0` |
/// | `cluster.advertise` | host name (or `cluster.host` when specific) and the bound port |
/// | `cluster.seeds` | none (comma-separated `host:port`) |
/// | `cluster.name` | `stomp-cluster` |
/// | `cluster.secret` or `cluster.secret-file` | none: clustering off |
/// | `cluster.tls.cert`, `cluster.tls.key`, `cluster.tls.ca` | none: mutual TLS off |
/// | `cluster.probe-interval-ms`, `cluster.probe-timeout-ms`, `cluster.suspicion-timeout-ms` | 1000, 400, 2000 |
/// | `cluster.interest-ack-timeout-ms` | 2000 |
/// | `cluster.indirect-probe-timeout-ms`, `cluster.indirect-probes` | 600, 3 |
/// | `cluster.link-heartbeat-ms`, `cluster.link-timeout-ms`, `cluster.digest-interval-ms` | 200, 10000, 5000 |
/// | `cluster.compression-threshold` | 512 |
/// | `cluster.handshake-timeout-ms`, `cluster.handshake-frame-size` | 5000, 16384 |
enum ClusterConfiguration {
    static func read(_ reader: ConfigReader, node: String, epoch: UInt64) throws -> ClusterSettings? {
        let port = reader.int(forKey: "cluster.port", default: 7946)
        guard port >= 0 else { return nil }
        guard port <= 65_535 else { throw NodeConfiguration.Invalid(description: "cluster.port must be a port number") }

        var secret = reader.string(forKey: "cluster.secret", isSecret: true)
        if secret == nil, let path = reader.string(forKey: "cluster.secret-file") {
            guard let text = readFile(path) else { throw NodeConfiguration.Invalid(description: "cannot read cluster.secret-file \(path)") }
            secret = String(text.trimming(" \t\r\n"))
        }
        guard let secret else { return nil }
        guard secret.utf8.count >= 16 else {
            throw NodeConfiguration.Invalid(description: "the cluster secret must be at least 16 bytes")
        }

        let host = reader.string(forKey: "cluster.host", default: "0.0.0.0")
        let seeds = (reader.string(forKey: "cluster.seeds") ?? "")
            .split(separator: ",")
            .map { String($0.trimming(" ")) }
            .filter { !$0.isEmpty }
        var settings = ClusterSettings(
            clusterName: reader.string(forKey: "cluster.name", default: "stomp-cluster"),
            secret: Array(secret.utf8),
            node: NodeID(node),
            epoch: epoch,
            host: host,
            port: port,
            seeds: seeds
        )
        if let advertised = reader.string(forKey: "cluster.advertise") {
            settings.advertisedAddress = advertised
        } else if host == "0.0.0.0" || host == "::" {
            // Peers can't dial a wildcard address; the host name is what a StatefulSet pod or a
            // compose service is reachable by.
            settings.advertisedAddress = port == 0 ? nil : "\(NodeConfiguration.hostName()):\(port)"
        }
        func milliseconds(_ key: ConfigKey, _ fallback: TimeAmount) throws -> TimeAmount {
            let value = reader.int(forKey: key, default: Int(fallback.nanoseconds / 1_000_000))
            guard value > 0 else { throw NodeConfiguration.Invalid(description: "\(key) must be positive") }
            return .milliseconds(Int64(value))
        }
        settings.membership.probeInterval = try milliseconds("cluster.probe-interval-ms", settings.membership.probeInterval)
        settings.membership.probeTimeout = try milliseconds("cluster.probe-timeout-ms", settings.membership.probeTimeout)
        settings.membership.suspicionTimeout = try milliseconds("cluster.suspicion-timeout-ms", settings.membership.suspicionTimeout)
        settings.interestAckTimeout = try milliseconds("cluster.interest-ack-timeout-ms", settings.interestAckTimeout)
        settings.membership.indirectProbeTimeout = try milliseconds("cluster.indirect-probe-timeout-ms", settings.membership.indirectProbeTimeout)
        settings.heartbeatInterval = try milliseconds("cluster.link-heartbeat-ms", settings.heartbeatInterval)
        settings.linkTimeout = try milliseconds("cluster.link-timeout-ms", settings.linkTimeout)
        settings.digestInterval = try milliseconds("cluster.digest-interval-ms", settings.digestInterval)
        settings.handshakeTimeout = try milliseconds("cluster.handshake-timeout-ms", settings.handshakeTimeout)
        settings.handshakeFrameSize = reader.int(forKey: "cluster.handshake-frame-size", default: settings.handshakeFrameSize)
        guard settings.handshakeFrameSize >= 1_024 else {
            throw NodeConfiguration.Invalid(description: "cluster.handshake-frame-size must be at least 1024: a hello must fit")
        }
        settings.membership.indirectProbeCount = reader.int(forKey: "cluster.indirect-probes", default: settings.membership.indirectProbeCount)
        settings.compressionThreshold = reader.int(forKey: "cluster.compression-threshold", default: settings.compressionThreshold)
        guard settings.membership.indirectProbeCount >= 0, settings.compressionThreshold >= 0 else {
            throw NodeConfiguration.Invalid(description: "cluster.indirect-probes and cluster.compression-threshold may not be negative")
        }
        settings.tls = try tls(reader)
        return settings
    }

    /// Mutual TLS: each side presents its certificate and verifies the other's against the CA.
    /// Peers are addressed by IP as often as by name, so the chain is checked, not the name.
    private static func tls(_ reader: ConfigReader) throws -> ClusterSettings.TLS? {
        let cert = reader.string(forKey: "cluster.tls.cert")
        let key = reader.string(forKey: "cluster.tls.key")
        let ca = reader.string(forKey: "cluster.tls.ca")
        guard cert != nil || key != nil || ca != nil else { return nil }
        guard let cert, let key, let ca else {
            throw NodeConfiguration.Invalid(description: "cluster.tls.cert, cluster.tls.key and cluster.tls.ca must be given together")
        }
        let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
        let privateKey = NIOSSLPrivateKeySource.privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        let roots = NIOSSLTrustRoots.certificates(try NIOSSLCertificate.fromPEMFile(ca))
        var server = TLSConfiguration.makeServerConfigurationWithMTLS(certificateChain: chain, privateKey: privateKey, trustRoots: roots)
        server.certificateVerification = .noHostnameVerification
        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = chain
        client.privateKey = privateKey
        client.trustRoots = roots
        client.certificateVerification = .noHostnameVerification
        return ClusterSettings.TLS(server: try NIOSSLContext(configuration: server), client: try NIOSSLContext(configuration: client))
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
