import Foundation
import Gossip
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import StompRouting
import Synchronization
import Testing

/// Real links between cluster shells on 127.0.0.1: the handshake driven by
/// `LinkChannelHandler` over sockets, not only as a state machine.
@Suite("Link handshake over loopback", .serialized)
struct LinkLoopbackTests {
    static let secret = Array("loopback-test-secret-0123456789".utf8)

    /// Every log line of one shell, for checks on what it said.
    final class LogCapture: Sendable {
        private let lines = Mutex<[String]>([])

        var all: [String] { lines.withLock { $0 } }

        func logger(_ label: String) -> Logger {
            Logger(label: label) { _ in Handler(capture: self) }
        }

        struct Handler: LogHandler {
            let capture: LogCapture
            var metadata: Logger.Metadata = [:]
            var logLevel: Logger.Level = .trace

            subscript(metadataKey key: String) -> Logger.Metadata.Value? {
                get { metadata[key] }
                set { metadata[key] = newValue }
            }

            func log(event: LogEvent) {
                let fields = (event.metadata ?? [:]).merging(metadata) { new, _ in new }.sorted { $0.key < $1.key }
                let line = "\(event.message) " + fields.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                capture.lines.withLock { $0.append(line) }
            }
        }
    }

    static func shell(
        _ name: String,
        port: Int = 0,
        seeds: [String] = [],
        secret: [UInt8] = secret,
        advertise: String? = nil,
        log: LogCapture,
        router: any RouterClusterInput = ClosureRouter.discarding
    ) -> ClusterShell {
        var settings = ClusterSettings(
            clusterName: "loop",
            secret: secret,
            node: NodeID(name),
            epoch: 1,
            host: "127.0.0.1",
            port: port,
            seeds: seeds
        )
        settings.advertisedAddress = advertise
        // Generous: under a loaded machine (CI runs these under ThreadSanitizer, beside the
        // simulations) a handshake on loopback has taken tens of seconds. No test here is
        // about the timeout.
        settings.handshakeTimeout = .seconds(60)
        return ClusterShell(
            settings: settings,
            eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
            logger: log.logger(name),
            router: router
        )
    }

    /// Polls `condition` every 20 ms for at most `seconds`.
    static func eventually(within seconds: Int = 10, _ condition: () async -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return await condition()
    }

    @Test func twoShellsLink() async throws {
        let logA = LogCapture()
        let logB = LogCapture()
        let a = Self.shell("a", log: logA)
        let portA = try await a.start()
        let b = Self.shell("b", seeds: ["127.0.0.1:\(portA)"], log: logB)
        _ = try await b.start()
        let linked = try await Self.eventually {
            let peersOfA = await a.status()?.links.map(\.peer)
            let peersOfB = await b.status()?.links.map(\.peer)
            return peersOfA == [NodeID("b")] && peersOfB == [NodeID("a")]
        }
        #expect(linked, "a: \(logA.all)\nb: \(logB.all)")
        #expect(await b.status()?.links.first?.outbound == true)
        // Both run this build: the link speaks its one version, and each end recorded it.
        #expect(await a.status()?.links.first?.wireVersion == LinkHandshake.supportedVersions.upperBound)
        #expect(await b.status()?.links.first?.wireVersion == LinkHandshake.supportedVersions.upperBound)
        #expect(!(logA.all + logB.all).contains { $0.contains("link refused") })
        await b.leave()
        await a.leave()
    }

    @Test func aWrongSecretIsRefusedGenericallyAndLoggedPrecisely() async throws {
        let logA = LogCapture()
        let logC = LogCapture()
        let a = Self.shell("a", log: logA)
        let portA = try await a.start()
        let c = Self.shell(
            "c",
            seeds: ["127.0.0.1:\(portA)"],
            secret: Array("another-secret-0123456789".utf8),
            log: logC
        )
        _ = try await c.start()
        let refused = try await Self.eventually {
            logA.all.contains {
                $0.contains("link refused") && $0.contains("the dialler does not know the cluster secret")
                    && $0.contains("claims node c")
            }
                && logC.all.contains {
                    $0.contains("link refused") && $0.contains("refused by peer: \"authentication failed\"")
                }
        }
        #expect(refused, "a: \(logA.all)\nc: \(logC.all)")
        #expect(await a.status()?.links.isEmpty == true)
        await c.leave()
        await a.leave()
    }

    @Test func aShellThatDialsItselfStaysQuiet() async throws {
        // A free port, so the seed can name the shell by another address than it advertises.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(
            host: "127.0.0.1",
            port: 0
        ).get()
        let port = try #require(probe.localAddress?.port)
        try await probe.close()
        let log = LogCapture()
        let a = Self.shell("a", port: port, seeds: ["127.0.0.1:\(port)"], advertise: "localhost:\(port)", log: log)
        _ = try await a.start()
        // Seeds are retried every second while a shell has no peer: give it a few rounds.
        try await Task.sleep(for: .milliseconds(2_500))
        #expect(await a.status()?.links.isEmpty == true)
        #expect(!log.all.contains { $0.contains("link refused") || $0.contains("link up") }, "\(log.all)")
        // Both ends of the handshake saw it, and the dialler remembered the address: dialled once.
        let noticed = log.all.filter { $0.contains("link reached this node itself") }
        #expect(
            noticed.filter { $0.contains("link.outbound=true") && $0.contains("net.address=127.0.0.1:\(port)") }.count
                == 1,
            "\(log.all)"
        )
        #expect(noticed.filter { $0.contains("link.outbound=false") }.count == 1, "\(log.all)")
        await a.leave()
    }
}

// MARK: - Mutual TLS

/// Links with mutual TLS whose certificates, made at test time with the openssl CLI, name
/// (or don't) the node ids their holders claim.
@Suite("Link mutual TLS over loopback", .serialized)
struct LinkTLSLoopbackTests {
    /// A throwaway CA in a temporary directory, and certificates it signs.
    final class PKI {
        let directory: String

        init() throws {
            directory =
                FileManager.default.temporaryDirectory.appendingPathComponent(
                    "link-tls-\(UInt64.random(in: 0...UInt64.max))"
                ).path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try openssl(
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                "\(directory)/ca.key",
                "-out",
                "\(directory)/ca.pem"
            )
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        private func openssl(_ arguments: String...) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl"] + arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw PKIError(description: "openssl \(arguments.joined(separator: " ")) failed")
            }
        }

        struct PKIError: Error, CustomStringConvertible { var description: String }

        /// Mutual TLS contexts, built the way the node builds them, with a certificate whose
        /// subjectAltName holds these DNS names.
        func tls(_ file: String, dnsNames: [String]) throws -> ClusterSettings.TLS {
            let base = "\(directory)/\(file)"
            try openssl(
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=\(file)",
                "-keyout",
                "\(base).key",
                "-out",
                "\(base).csr"
            )
            let sans = (dnsNames.map { "DNS:\($0)" } + ["IP:127.0.0.1"]).joined(separator: ",")
            try
                "subjectAltName=\(sans)\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
                .write(toFile: "\(base).ext", atomically: true, encoding: .utf8)
            try openssl(
                "x509",
                "-req",
                "-in",
                "\(base).csr",
                "-CA",
                "\(directory)/ca.pem",
                "-CAkey",
                "\(directory)/ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "\(base).ext",
                "-out",
                "\(base).pem"
            )
            let chain = try NIOSSLCertificate.fromPEMFile("\(base).pem").map { NIOSSLCertificateSource.certificate($0) }
            let key = NIOSSLPrivateKeySource.privateKey(try NIOSSLPrivateKey(file: "\(base).key", format: .pem))
            let roots = NIOSSLTrustRoots.certificates(try NIOSSLCertificate.fromPEMFile("\(directory)/ca.pem"))
            var server = TLSConfiguration.makeServerConfigurationWithMTLS(
                certificateChain: chain,
                privateKey: key,
                trustRoots: roots
            )
            server.certificateVerification = .noHostnameVerification
            var client = TLSConfiguration.makeClientConfiguration()
            client.certificateChain = chain
            client.privateKey = key
            client.trustRoots = roots
            client.certificateVerification = .noHostnameVerification
            return ClusterSettings.TLS(
                server: try NIOSSLContext(configuration: server),
                client: try NIOSSLContext(configuration: client)
            )
        }
    }

    static func shell(
        _ name: String,
        seeds: [String] = [],
        tls: ClusterSettings.TLS,
        log: LinkLoopbackTests.LogCapture
    ) -> ClusterShell {
        var settings = ClusterSettings(
            clusterName: "loop",
            secret: LinkLoopbackTests.secret,
            node: NodeID(name),
            epoch: 1,
            host: "127.0.0.1",
            port: 0,
            seeds: seeds
        )
        settings.tls = tls
        // Generous: under a loaded machine (CI runs these under ThreadSanitizer, beside the
        // simulations) a handshake on loopback has taken tens of seconds. No test here is
        // about the timeout.
        settings.handshakeTimeout = .seconds(60)
        return ClusterShell(
            settings: settings,
            eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
            logger: log.logger(name),
            router: ClosureRouter.discarding
        )
    }

    @Test func certificatesNamingTheirNodesLink() async throws {
        let pki = try PKI()
        let logA = LinkLoopbackTests.LogCapture()
        let logB = LinkLoopbackTests.LogCapture()
        let a = Self.shell("a", tls: try pki.tls("a", dnsNames: ["a"]), log: logA)
        let portA = try await a.start()
        let b = Self.shell(
            "b",
            seeds: ["127.0.0.1:\(portA)"],
            tls: try pki.tls("b", dnsNames: ["other", "B"]),
            log: logB
        )
        _ = try await b.start()
        let linked = try await LinkLoopbackTests.eventually {
            let peersOfA = await a.status()?.links.map(\.peer)
            let peersOfB = await b.status()?.links.map(\.peer)
            return peersOfA == [NodeID("b")] && peersOfB == [NodeID("a")]
        }
        #expect(linked, "a: \(logA.all)\nb: \(logB.all)")
        await b.leave()
        await a.leave()
    }

    @Test func theListenerRefusesADialerWhoseCertificateNamesAnotherNode() async throws {
        let pki = try PKI()
        let logA = LinkLoopbackTests.LogCapture()
        let logC = LinkLoopbackTests.LogCapture()
        let a = Self.shell("a", tls: try pki.tls("a", dnsNames: ["a"]), log: logA)
        let portA = try await a.start()
        // Signed by the cluster's CA and holding the secret, but its certificate is x's.
        let c = Self.shell("c", seeds: ["127.0.0.1:\(portA)"], tls: try pki.tls("c", dnsNames: ["x"]), log: logC)
        _ = try await c.start()
        let refused = try await LinkLoopbackTests.eventually {
            logA.all.contains {
                $0.contains("link refused") && $0.contains("certificate does not name node c (its DNS names: x)")
            }
                && logC.all.contains {
                    $0.contains("link refused") && $0.contains("refused by peer: \"authentication failed\"")
                }
        }
        #expect(refused, "a: \(logA.all)\nc: \(logC.all)")
        #expect(await a.status()?.links.isEmpty == true)
        await c.leave()
        await a.leave()
    }

    @Test func theDialerRefusesAListenerWhoseCertificateNamesAnotherNode() async throws {
        let pki = try PKI()
        let logD = LinkLoopbackTests.LogCapture()
        let logB = LinkLoopbackTests.LogCapture()
        let d = Self.shell("d", tls: try pki.tls("d", dnsNames: ["x"]), log: logD)
        let portD = try await d.start()
        let b = Self.shell("b", seeds: ["127.0.0.1:\(portD)"], tls: try pki.tls("b", dnsNames: ["b"]), log: logB)
        _ = try await b.start()
        let refused = try await LinkLoopbackTests.eventually {
            logB.all.contains {
                $0.contains("link refused") && $0.contains("certificate does not name node d (its DNS names: x)")
            }
        }
        #expect(refused, "b: \(logB.all)\nd: \(logD.all)")
        #expect(await b.status()?.links.isEmpty == true)
        await b.leave()
        await d.leave()
    }
}

/// The router's end of the seam as a closure. The shell holds its router weakly (in a node,
/// the broker owns the shell), so a test keeps the one it passes alive.
final class ClosureRouter: RouterClusterInput {
    /// For tests that look at links and membership only.
    static let discarding = ClosureRouter { _ in }

    private let body: @Sendable (RouterClusterOperation) -> Void

    init(_ body: @escaping @Sendable (RouterClusterOperation) -> Void) {
        self.body = body
    }

    func apply(_ operation: RouterClusterOperation) { body(operation) }
}
