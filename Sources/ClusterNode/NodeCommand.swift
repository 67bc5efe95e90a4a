import ArgumentParser
import FoundationEssentials
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `cluster-node`: one node of the broker.
///
/// Its settings are listed once, in ``SettingsTable``; this command only gathers them from
/// the flags, the environment and the config file (``SettingSources``) and refuses anything
/// that names no setting.
@main
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster-node",
        abstract: "A clustered STOMP broker node serving STOMP over WebSocket and TCP.",
        discussion: SettingsDocument.help
    )

    @Option(help: "JSON configuration file; flags and environment variables override it.")
    var config: String?

    @Option(help: "After binding, write the bound ports as JSON to this file (for tests and tools).")
    var portsFile: String?

    @Option(help: "Print the table of settings (markdown or json) and exit.")
    var printSettings: SettingsDocument.Format?

    /// Every `--flag VALUE` of a setting, checked against the table by ``SettingSources``.
    @Argument(parsing: .allUnrecognized, help: .hidden)
    var settingArguments: [String] = []

    func run() async throws {
        if settingArguments == [HashPasswordCommand.name] {
            let status = try HashPasswordCommand.run()
            if status != 0 { throw ExitCode(status) }
            return
        }
        if let printSettings {
            print(SettingsDocument.render(printSettings), terminator: "")
            return
        }
        let configuration: NodeConfiguration
        do {
            let file = try config.map { path in
                guard let contents = ClusterConfiguration.readFile(path) else {
                    throw SettingsError(description: "cannot read config file \(path)")
                }
                return try ConfigFile(path: path, contents: Array(contents.utf8))
            }
            let sources = try SettingSources(
                flags: settingArguments,
                environment: ProcessInfo.processInfo.environment,
                file: file
            )
            configuration = try NodeConfiguration(Settings(sources))
        } catch let error as SettingsError {
            // One line that names the source, the key and the value; no usage text around it.
            writeUnbuffered("cluster-node: \(error)\n", to: STDERR_FILENO)
            throw ExitCode.validationFailure
        }

        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = configuration.logLevel
            return handler
        }
        let logger = Logger(label: "cluster-node")

        // Every counter and gauge of every module lands in one registry, served at /metrics.
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let node = NodeService(configuration: configuration, portsFile: portsFile, registry: registry, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                // The node also ends on its own after an admin-requested drain: that is a normal exit.
                services: [.init(service: node, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}

extension SettingsDocument.Format: ExpressibleByArgument {}
