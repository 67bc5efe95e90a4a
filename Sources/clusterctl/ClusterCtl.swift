import AdminSchema
import ArgumentParser
import Foundation

/// `clusterctl`: administers a cluster through any node's admin API.
@main
struct ClusterCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clusterctl",
        abstract:
            "Administer a stomp-cluster: status, top, members, interest, connections, drain, leave, pub, sub, local clusters.",
        subcommands: [
            Status.self, Members.self, Interest.self, Connections.self, Queues.self, Drain.self, Leave.self, Pub.self,
            Sub.self,
            Top.self, Bench.self, Local.self,
        ]
    )
}

/// How to reach a node's admin API, shared by every command.
struct NodeOptions: ParsableArguments {
    @Option(
        name: .long,
        help: "Admin API URL of a node (repeat for several; env CLUSTERCTL_NODE, default http://127.0.0.1:8222)."
    )
    var node: [String] = []

    @Option(help: "Bearer token for the admin API (env CLUSTERCTL_TOKEN).")
    var token: String?

    @Flag(help: "Print JSON instead of tables.")
    var json = false

    @Option(help: "Seconds to wait for a node's answer.")
    var timeout: Double = 3

    var urls: [String] {
        if !node.isEmpty { return node }
        if let fromEnvironment = ProcessInfo.processInfo.environment["CLUSTERCTL_NODE"], !fromEnvironment.isEmpty {
            return fromEnvironment.split(separator: ",").map(String.init)
        }
        return ["http://127.0.0.1:8222"]
    }

    var clients: [AdminClient] { urls.map(client(forURL:)) }

    func client(forURL url: String) -> AdminClient {
        AdminClient(
            baseURL: url,
            token: token ?? ProcessInfo.processInfo.environment["CLUSTERCTL_TOKEN"],
            timeout: .milliseconds(Int64(timeout * 1_000))
        )
    }

    /// A member's own admin API, at the address it told the cluster, with the same token (a
    /// cluster's nodes share one) and the scheme of the first `--node`, so a token meant for
    /// https never travels in clear.
    func client(for member: AdminModels.Member) -> AdminClient? {
        let scheme = urls.first?.hasPrefix("https://") == true ? "https://" : "http://"
        return member.admin.map { client(forURL: scheme + $0) }
    }

    var client: AdminClient { clients[0] }
}

/// Runs a command body, turning failures into a message on stderr and the failure's exit code.
func reporting(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as AdminClient.Failure {
        FileHandle.standardError.write(Data("clusterctl: \(failure.description)\n".utf8))
        throw ExitCode(failure.exitCode)
    } catch let failure where failure is StompClientError || failure is StompEndpoint.Invalid {
        // Both describe themselves in a sentence: a bad --url, a refused upgrade, an ERROR frame.
        FileHandle.standardError.write(Data("clusterctl: \(failure)\n".utf8))
        throw ExitCode(4)
    }
}
