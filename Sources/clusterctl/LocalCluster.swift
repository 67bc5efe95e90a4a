import ArgumentParser
import Foundation

/// `clusterctl local up|down`: a cluster of real node processes on this machine, for
/// development.
struct Local: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start or stop a local cluster of real cluster-node processes.",
        subcommands: [Up.self, Down.self]
    )

    /// What `up` leaves behind for `down` and for the user.
    struct State: Codable {
        struct Node: Codable {
            var id: String
            var pid: Int32
            var ws: Int
            var stomp: Int
            var admin: Int
            var cluster: Int
            var log: String
        }

        var nodes: [Node]
    }

    static func defaultDirectory() -> String {
        (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/clusterctl-local"
    }

    struct Up: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start N nodes on loopback, linked into one cluster.")

        @Option(help: "How many nodes.")
        var nodes = 3

        @Option(help: "Folder for logs, the secret and the state file.")
        var dir = Local.defaultDirectory()

        @Option(help: "The cluster-node executable (default: next to clusterctl).")
        var binary: String?

        @Option(help: "First port: node i uses base+10i (WebSocket), +1 (STOMP), +2 (admin), +3 (cluster).")
        var basePort = 25_000

        func run() async throws {
            let statePath = dir + "/state.json"
            guard !FileManager.default.fileExists(atPath: statePath) else {
                throw ValidationError("a local cluster is already up (\(statePath)); run `clusterctl local down` first")
            }
            guard nodes >= 1 else { throw ValidationError("--nodes must be at least 1") }
            let executable =
                binary
                ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
                .deletingLastPathComponent().appendingPathComponent("cluster-node").path
            guard FileManager.default.isExecutableFile(atPath: executable) else {
                throw ValidationError("cannot find cluster-node at \(executable); pass --binary")
            }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let secretPath = dir + "/secret"
            let secret = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            FileManager.default.createFile(
                atPath: secretPath,
                contents: Data(secret.utf8),
                attributes: [.posixPermissions: 0o600]
            )

            var state = State(nodes: [])
            let seed = "127.0.0.1:\(basePort + 3)"
            for index in 0..<nodes {
                let base = basePort + 10 * index
                let id = "n\(index + 1)"
                let log = dir + "/\(id).log"
                FileManager.default.createFile(atPath: log, contents: nil)
                let process = Process()
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = [
                    "--node-id", id, "--host", "127.0.0.1",
                    "--ws-port", String(base), "--stomp-port", String(base + 1), "--admin-port", String(base + 2),
                    "--cluster-host", "127.0.0.1", "--cluster-port", String(base + 3), "--seeds", seed,
                    "--cluster-secret-file", secretPath,
                ]
                // n1 is the first node of a new cluster: it may be ready alone, so that
                // `--nodes 1` works; the others are ready once linked to it.
                if index == 0 { process.arguments! += ["--cluster-min-members", "1"] }
                let handle = FileHandle(forWritingAtPath: log)
                process.standardOutput = handle
                process.standardError = handle
                process.standardInput = FileHandle.nullDevice
                try process.run()
                state.nodes.append(
                    .init(
                        id: id,
                        pid: process.processIdentifier,
                        ws: base,
                        stomp: base + 1,
                        admin: base + 2,
                        cluster: base + 3,
                        log: log
                    )
                )
            }
            try JSONEncoder().encode(state).write(to: URL(fileURLWithPath: statePath))

            // Wait, bounded, until every node answers /readyz.
            let deadline = ContinuousClock.now + .seconds(30)
            for node in state.nodes {
                let client = AdminClient(baseURL: "http://127.0.0.1:\(node.admin)", token: nil)
                while (try? await client.text("/readyz")) == nil {
                    guard ContinuousClock.now < deadline else {
                        throw ValidationError("\(node.id) did not become ready; see \(node.log)")
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            Output.table(
                ["NODE", "WEBSOCKET", "STOMP", "ADMIN", "PID", "LOG"],
                state.nodes.map {
                    [
                        "\($0.id)", "ws://127.0.0.1:\($0.ws)/ws", "127.0.0.1:\($0.stomp)",
                        "http://127.0.0.1:\($0.admin)", String($0.pid), $0.log,
                    ]
                }
            )
            print(
                "\nexport CLUSTERCTL_NODE=\(state.nodes.map { "http://127.0.0.1:\($0.admin)" }.joined(separator: ","))"
            )
        }
    }

    struct Down: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the local cluster that `up` started.")

        @Option(help: "The folder `up` used.")
        var dir = Local.defaultDirectory()

        func run() async throws {
            let statePath = dir + "/state.json"
            guard let data = FileManager.default.contents(atPath: statePath) else {
                throw ValidationError("no local cluster is up (\(statePath) is missing)")
            }
            let state = try JSONDecoder().decode(State.self, from: data)
            for node in state.nodes { kill(node.pid, SIGTERM) }
            let deadline = ContinuousClock.now + .seconds(15)
            for node in state.nodes {
                while kill(node.pid, 0) == 0, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                if kill(node.pid, 0) == 0 { kill(node.pid, SIGKILL) }
                print("\(node.id) stopped")
            }
            try FileManager.default.removeItem(atPath: statePath)
        }
    }
}
