import Gossip
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import StompRouting
import WebSocketIO

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a node from start to graceful shutdown.
///
/// On SIGTERM or SIGINT (through the service group's graceful shutdown), the listeners close
/// first so no client arrives mid-shutdown; then every connected client gets an ERROR saying
/// the node is shutting down and is closed; then the event loops stop.
struct NodeService: Service, CustomStringConvertible {
    let configuration: NodeConfiguration
    let portsFile: String?
    let logger: Logger

    init(configuration: NodeConfiguration, portsFile: String?, logger: Logger) throws {
        self.configuration = configuration
        self.portsFile = portsFile
        var logger = logger
        logger[metadataKey: "cluster.node"] = "\(configuration.nodeID)"
        self.logger = logger
    }

    /// ServiceLifecycle logs its services; this keeps the configuration (and its secret) out.
    var description: String { "NodeService(node: \(configuration.nodeID))" }

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoops)
        let broker = Broker(settings: configuration.router, eventLoop: group.next(), logger: logger)
        let server = try StompServer(configuration: configuration.io, broker: broker, group: group, logger: logger)

        var cluster: ClusterShell?
        if let settings = configuration.cluster {
            let shell = ClusterShell(settings: settings, eventLoop: broker.eventLoop, logger: logger) { [broker] operation in
                broker.apply(operation)
            }
            broker.attach(cluster: ClusterBridge(shell: shell))
            cluster = shell
        } else {
            logger.info("clustering is off: set a cluster secret (cluster.secret or cluster.secret-file) to join a cluster")
        }

        do {
            let clusterPort = try await cluster?.start()
            let ports = try await server.start()
            if let portsFile { try Self.write(ports, cluster: clusterPort, to: portsFile) }
            logger.info("node started", metadata: ["node.version": "\(NodeVersion.current)", "event-loops": "\(configuration.eventLoops)"])

            // Returns when the service group starts its graceful shutdown.
            try? await gracefulShutdown()

            logger.info("shutting down")
            await server.closeListeners()
            await broker.shutdown(
                reason: StompProtocolError(.shuttingDown, "node is shutting down", detail: "This node is shutting down; reconnect to another node.")
            )
            await cluster?.leave()
            // Give clients a moment to receive their ERROR and close before the loops stop;
            // a WebSocket close handshake waits at most 2 s for the peer.
            for _ in 0..<150 where server.openConnections > 0 {
                try? await Task.sleep(for: .milliseconds(20))
            }
        } catch {
            await server.closeListeners()
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
        logger.info("stopped")
    }

    /// Writes the bound ports atomically, so a reader never sees a partial file.
    private static func write(_ ports: StompServer.BoundPorts, cluster: Int?, to path: String) throws {
        var fields: [String] = []
        if let port = cluster { fields.append("\"cluster\": \(port)") }
        if let port = ports.ws { fields.append("\"ws\": \(port)") }
        if let port = ports.stomp { fields.append("\"stomp\": \(port)") }
        if let port = ports.wss { fields.append("\"wss\": \(port)") }
        if let port = ports.stomps { fields.append("\"stomps\": \(port)") }
        let json = "{" + fields.joined(separator: ", ") + "}\n"
        let temporary = path + ".tmp"
        guard let file = fopen(temporary, "w") else { throw PortsFileError(path: temporary) }
        fputs(json, file)
        fclose(file)
        guard rename(temporary, path) == 0 else { throw PortsFileError(path: path) }
    }

    struct PortsFileError: Error, CustomStringConvertible {
        var path: String
        var description: String { "cannot write the ports file \(path)" }
    }
}

/// Connects the broker's cluster seam to the cluster shell; both run on the same loop.
final class ClusterBridge: BrokerClusterDelegate {
    let shell: ClusterShell

    init(shell: ClusterShell) {
        self.shell = shell
    }

    func interestChanged(_ destination: Destination, delta: Int) { shell.interestChanged(destination, delta: delta) }
    func forward(_ message: MessageEnvelope) { shell.forward(message) }
    func handOff(queue: String, _ message: MessageEnvelope, redelivered: Bool, hops: UInt8) {
        shell.handOff(queue: queue, message, redelivered: redelivered, hops: hops)
    }
    func afterInterestPropagated(_ body: @escaping () -> Void) { shell.afterInterestPropagated(body) }
}
