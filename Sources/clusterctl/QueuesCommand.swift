import AdminSchema
import ArgumentParser

/// `clusterctl queues`: each durable queue as its leader sees it.
struct Queues: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "The durable queues: each one's leader, replicas and how far each lags, messages ready and unacknowledged, bytes."
    )

    @OptionGroup var options: NodeOptions

    func run() async throws {
        try await reporting {
            // Every replica knows its queues; the leader knows the lag. Ask the nodes given and
            // every live member at the admin address it told the cluster, one at a time (a
            // handful of small requests; see `Status` on task groups of large results).
            var clients = options.clients
            var reached = false
            for client in options.clients {
                guard let members = try? await client.members() else { continue }
                let known = Set(clients.map(\.baseURL))
                clients += members.filter { $0.status == "alive" || $0.status == "suspect" }
                    .compactMap { options.client(for: $0) }
                    .filter { !known.contains($0.baseURL) }
                reached = true
                break
            }
            var queues: [String: AdminModels.DurableQueue] = [:]
            for client in clients {
                guard let held = try? await Self.durableQueues(of: client) else { continue }
                reached = true
                for queue in held where queues[queue.name] == nil || queue.role == "leader" {
                    queues[queue.name] = queue
                }
            }
            guard reached else {
                throw AdminClient.Failure(
                    description: "no node answered: \(options.urls.joined(separator: ", "))",
                    exitCode: 2
                )
            }
            let rows = queues.values.sorted { $0.name < $1.name }
            if options.json { return Output.json(rows) }
            Output.table(
                [
                    "QUEUE", "LEADER", "TERM", "REPLICAS", "LEARNERS", "LAG", "MESSAGES", "READY", "UNACKED", "BYTES",
                    "PROBLEM",
                ],
                rows.map { queue in
                    let lag =
                        queue.lag.isEmpty
                        ? "-"
                        : queue.lag.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }
                            .joined(separator: ",")
                    return [
                        queue.name, queue.leader ?? "none", String(queue.term), queue.replicas.joined(separator: ","),
                        queue.learners.isEmpty ? "-" : queue.learners.joined(separator: ","), lag,
                        String(queue.messages), String(queue.ready), String(queue.unacked), String(queue.bytes),
                        queue.problem ?? "-",
                    ]
                }
            )
        }
    }

    /// Every durable queue a node holds, a page at a time.
    private static func durableQueues(of client: AdminClient) async throws -> [AdminModels.DurableQueue] {
        var queues: [AdminModels.DurableQueue] = []
        while true {
            let page: AdminModels.Page<AdminModels.DurableQueue> = try await client.get(
                "/v1/durable-queues?offset=\(queues.count)"
            )
            queues += page.items
            if page.items.isEmpty || queues.count >= page.total { return queues }
        }
    }
}
