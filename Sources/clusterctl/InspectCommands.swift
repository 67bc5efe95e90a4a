import AdminSchema
import ArgumentParser
import Foundation

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One screen: the cluster's nodes, their state, connections, message rates, and anything unhealthy."
    )

    @OptionGroup var options: NodeOptions

    struct Row: Codable {
        var url: String
        var node: AdminModels.Node?
        var publishedPerSecond: Double?
        var deliveredPerSecond: Double?
        var error: String?
    }

    func run() async throws {
        try await reporting {
            // Two samples a second apart give rates from the nodes' counters; every node is
            // asked at once, so one unreachable node costs one timeout, not one per node.
            // Besides the nodes given, every live member is asked at the admin address it
            // told the cluster, so one URL is enough to see the whole cluster.
            let given = options.clients
            var first = await Self.sample(given)
            let reachable = given.first { if case .success? = first[$0.baseURL] { true } else { false } }
            let members = (try? await reachable?.members()) ?? []
            let known = Set(first.values.compactMap { try? $0.get().id })
            let others =
                members
                .filter { !known.contains($0.node) && ($0.status == "alive" || $0.status == "suspect") }
                .compactMap { options.client(for: $0) }
            first.merge(await Self.sample(others)) { old, _ in old }
            let clients = given + others
            try await Task.sleep(for: .seconds(1))
            let second = await Self.sample(clients)
            let rows: [Row] = clients.map { client in
                switch second[client.baseURL] {
                case .success(let node)?:
                    var row = Row(url: client.baseURL, node: node)
                    if case .success(let before)? = first[client.baseURL] {
                        row.publishedPerSecond = Double(node.messagesPublished - before.messagesPublished)
                        row.deliveredPerSecond = Double(node.messagesDelivered - before.messagesDelivered)
                    }
                    return row
                case .failure(let error)?:
                    return Row(url: client.baseURL, error: "\(error)")
                case nil:
                    return Row(url: client.baseURL, error: "no answer")
                }
            }
            if options.json {
                Output.json(["nodes": rows.map(AnyEncodable.init), "members": members.map(AnyEncodable.init)])
                return
            }
            Output.table(
                ["NODE", "PHASE", "CLUSTER", "CONNECTIONS", "SUBSCRIPTIONS", "PUBLISHED/s", "DELIVERED/s", "UPTIME"],
                rows.map { row in
                    guard let node = row.node else { return [row.url, "unreachable", "-", "-", "-", "-", "-", "-"] }
                    return [
                        node.id, node.phase, node.cluster.map { $0.joined ? "joined" : "joining" } ?? "off",
                        String(node.connections), String(node.subscriptions),
                        row.publishedPerSecond.map { String(Int($0)) } ?? "-",
                        row.deliveredPerSecond.map { String(Int($0)) } ?? "-",
                        "\(Int(node.uptimeSeconds))s",
                    ]
                }
            )
            if !members.isEmpty {
                print("")
                Output.table(
                    ["MEMBER", "STATUS", "REACH", "HELD", "ADDRESS", "ADMIN"],
                    members.map {
                        [
                            $0.node + ($0.isSelf ? " (self)" : ""), $0.status, $0.reachability, $0.held, $0.address,
                            $0.admin ?? "-",
                        ]
                    }
                )
            }
            var problems: [String] = []
            let gossiped = Set(others.map(\.baseURL))
            for row in rows {
                // A member found through gossip may be out of this machine's reach (a pod
                // address seen from outside); its membership status says whether it is well.
                if let error = row.error, !gossiped.contains(row.url) { problems.append(error) }
                guard let node = row.node else { continue }
                if node.phase != "running" { problems.append("\(node.id) is \(node.phase)") }
                if let cluster = node.cluster, !cluster.joined {
                    problems.append(
                        "\(node.id) has not joined: \(cluster.notJoinedReason ?? "not linked to every live member yet")"
                    )
                }
                if let cluster = node.cluster, cluster.localHealth > 0 {
                    problems.append("\(node.id) reports local health \(cluster.localHealth) (its probes are slow)")
                }
            }
            for member in members where member.status == "suspect" || member.status == "dead" {
                problems.append("member \(member.node) is \(member.status)")
            }
            for member in members where member.reachable == false && member.status == "alive" {
                problems.append("member \(member.node) is unreachable from the node asked (\(member.held) held for it)")
            }
            print("")
            print(problems.isEmpty ? "healthy" : "unhealthy:\n" + problems.map { "  - " + $0 }.joined(separator: "\n"))
            if !problems.isEmpty { throw ExitCode(1) }
        }
    }
}

extension Status {
    /// One node's answer to `GET /v1/node`, as a child task of `sample` returns it.
    ///
    /// A named struct on purpose, not a `(String, Result<Node, any Error>)` tuple: with the
    /// Swift 6.3.1 toolchain, an optimized (`-c release`) build hands the parent garbage when a
    /// task group's child result is a tuple holding a value this large and the child suspended
    /// before returning (the parent then hashes a torn URL: "no answer", or a segfault in
    /// `Dictionary`/`tuple_initializeWithCopy`). Debug builds are unaffected. A nominal type
    /// does not take that path; `Tests/EndToEnd/test_admin.py` runs the release binary to
    /// keep it that way.
    struct Sample: Sendable {
        var url: String
        var result: Result<AdminModels.Node, any Error>
    }

    static func sample(_ clients: [AdminClient]) async -> [String: Result<AdminModels.Node, any Error>] {
        await withTaskGroup(of: Sample.self) { group in
            for client in clients {
                group.addTask {
                    do {
                        return Sample(url: client.baseURL, result: .success(try await client.get("/v1/node")))
                    } catch {
                        return Sample(url: client.baseURL, result: .failure(error))
                    }
                }
            }
            var results: [String: Result<AdminModels.Node, any Error>] = [:]
            for await sample in group { results[sample.url] = sample.result }
            return results
        }
    }
}

struct Members: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The members as the node sees them, with state and incarnation."
    )

    @OptionGroup var options: NodeOptions

    func run() async throws {
        try await reporting {
            let members = try await options.client.members()
            if options.json { return Output.json(members) }
            Output.table(
                ["MEMBER", "STATUS", "REACH", "HELD", "INCARNATION", "EPOCH", "ADDRESS", "ADMIN"],
                members.map {
                    [
                        $0.node + ($0.isSelf ? " (self)" : ""), $0.status, $0.reachability, $0.held,
                        String($0.incarnation), String($0.epoch), $0.address, $0.admin ?? "-",
                    ]
                }
            )
        }
    }
}

struct Interest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interest by origin, or which nodes would receive a message to a destination and why."
    )

    @OptionGroup var options: NodeOptions

    @Option(help: "A destination such as /topic/prices.eur or /queue/jobs.")
    var destination: String?

    func run() async throws {
        try await reporting {
            if let destination {
                let encoded =
                    destination.addingPercentEncoding(
                        withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+#"))
                    ) ?? destination
                let route: AdminModels.Route = try await options.client.get("/v1/interest?destination=\(encoded)")
                if options.json { return Output.json(route) }
                print("\(route.destination): local subscribers \(route.localSubscribers ? "yes" : "no")")
                if route.peers.isEmpty {
                    print("no peer would receive it")
                } else {
                    Output.table(["NODE", "WHY"], route.peers.map { [$0.node, $0.reason] })
                }
                return
            }
            let interest: AdminModels.Interest = try await options.client.get("/v1/interest")
            if options.json { return Output.json(interest) }
            var rows: [[String]] = []
            for origin in [interest.local] + interest.peers {
                for entry in origin.entries {
                    rows.append([origin.origin, "\(origin.epoch)/\(origin.version)", entry.name, String(entry.count)])
                }
                if origin.entries.isEmpty {
                    rows.append([origin.origin, "\(origin.epoch)/\(origin.version)", "-", "-"])
                }
            }
            Output.table(["ORIGIN", "EPOCH/VERSION", "DESTINATION", "COUNT"], rows)
            let shown = ([interest.local] + interest.peers).reduce(0) { $0 + $1.entries.count }
            if let total = interest.total, total > shown {
                print("(\(shown) of \(total) entries; the node answers a page at a time)")
            }
        }
    }
}

struct Connections: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The node's client connections, their subscriptions, and its queues."
    )

    @OptionGroup var options: NodeOptions

    func run() async throws {
        try await reporting {
            let connections: AdminModels.Connections = try await options.client.get("/v1/connections")
            if options.json { return Output.json(connections) }
            var rows: [[String]] = []
            for connection in connections.connections {
                if connection.subscriptions.isEmpty {
                    rows.append([String(connection.id), connection.version, "-", "-", "-", "-"])
                }
                for subscription in connection.subscriptions {
                    rows.append([
                        String(connection.id), connection.version, subscription.id, subscription.destination,
                        subscription.ack, String(subscription.unacked),
                    ])
                }
            }
            Output.table(["CONNECTION", "VERSION", "SUBSCRIPTION", "DESTINATION", "ACK", "UNACKED"], rows)
            if let total = connections.total, total > connections.connections.count {
                print("(\(connections.connections.count) of \(total) connections; the node answers a page at a time)")
            }
            if let total = connections.queuesTotal, total > connections.queues.count {
                print("(\(connections.queues.count) of \(total) queues; /v1/queues pages through them)")
            }
            if !connections.queues.isEmpty {
                print("")
                Output.table(
                    ["QUEUE", "LOCAL CONSUMERS", "REMOTE CONSUMERS", "PENDING", "UNACKED"],
                    connections.queues.map {
                        [
                            $0.name, String($0.localConsumers), String($0.remoteConsumers), String($0.pending),
                            String($0.unacked),
                        ]
                    }
                )
            }
        }
    }
}

struct Drain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drain a node: not ready, clients moved elsewhere, queue messages handed to peers, leave, exit."
    )

    @OptionGroup var action: MemberAction

    func run() async throws {
        try await action.perform("drain", saying: "draining")
    }
}

struct Leave: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a node leave the cluster and stop at once, without pacing its clients."
    )

    @OptionGroup var action: MemberAction

    func run() async throws {
        try await action.perform("leave", saying: "leaving")
    }
}

/// The target of an action on one member: its name, asked through any node, or its own
/// admin URL.
struct MemberAction: ParsableArguments {
    @Argument(help: "The member's name (asked through --node), or its admin API URL.")
    var target: String

    @OptionGroup var options: NodeOptions

    func perform(_ action: String, saying outcome: String) async throws {
        try await reporting {
            if target.contains("://") || target.contains(":") || target.contains("/") {
                try await options.client(forURL: target).post("/v1/\(action)")
                return print("\(target): \(outcome)")
            }
            // Through the first node that answers: a name means "wherever it runs".
            var lastFailure: AdminClient.Failure?
            for client in options.clients {
                do {
                    try await client.post("/v1/members/\(target)/\(action)")
                    return print("\(target): \(outcome) (asked through \(client.baseURL))")
                } catch let failure as AdminClient.Failure where failure.exitCode == 2 {
                    lastFailure = failure
                }
            }
            if let lastFailure { throw lastFailure }
        }
    }
}

/// Encodes any Encodable value, for mixed JSON documents.
struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}

extension AdminModels.Member {
    /// "reachable", "unreachable 12s" (the outage so far), or "-" for the node itself.
    var reachability: String {
        switch reachable {
        case true?: return "reachable"
        case false?: return "unreachable" + (outageSeconds.map { " \(Int($0))s" } ?? "")
        case nil: return "-"
        }
    }

    /// What the node asked holds for this member: bytes and messages, or "-".
    var held: String {
        guard let heldBytes, let heldMessages else { return "-" }
        return "\(heldBytes) B / \(heldMessages) msgs"
    }
}
