import Gossip
import Logging
import NIOCore
import NIOPosix
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
        _ name: String, port: Int = 0, seeds: [String] = [], secret: [UInt8] = secret, advertise: String? = nil, log: LogCapture
    ) -> ClusterShell {
        var settings = ClusterSettings(clusterName: "loop", secret: secret, node: NodeID(name), epoch: 1, host: "127.0.0.1", port: port, seeds: seeds)
        settings.advertisedAddress = advertise
        settings.handshakeTimeout = .seconds(2)
        return ClusterShell(settings: settings, eventLoop: MultiThreadedEventLoopGroup.singleton.next(), logger: log.logger(name)) { _ in }
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
        let logA = LogCapture(), logB = LogCapture()
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
        #expect(!(logA.all + logB.all).contains { $0.contains("link refused") })
        await b.leave()
        await a.leave()
    }

    @Test func aWrongSecretIsRefusedGenericallyAndLoggedPrecisely() async throws {
        let logA = LogCapture(), logC = LogCapture()
        let a = Self.shell("a", log: logA)
        let portA = try await a.start()
        let c = Self.shell("c", seeds: ["127.0.0.1:\(portA)"], secret: Array("another-secret-0123456789".utf8), log: logC)
        _ = try await c.start()
        let refused = try await Self.eventually {
            logA.all.contains { $0.contains("link refused") && $0.contains("the dialler does not know the cluster secret") && $0.contains("claims node c") }
                && logC.all.contains { $0.contains("link refused") && $0.contains("refused by peer: \"authentication failed\"") }
        }
        #expect(refused, "a: \(logA.all)\nc: \(logC.all)")
        #expect(await a.status()?.links.isEmpty == true)
        await c.leave()
        await a.leave()
    }

    @Test func aShellThatDialsItselfStaysQuiet() async throws {
        // A free port, so the seed can name the shell by another address than it advertises.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
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
        #expect(noticed.filter { $0.contains("link.outbound=true") && $0.contains("net.address=127.0.0.1:\(port)") }.count == 1, "\(log.all)")
        #expect(noticed.filter { $0.contains("link.outbound=false") }.count == 1, "\(log.all)")
        await a.leave()
    }
}
