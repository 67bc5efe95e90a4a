import AdminSchema
import BrokerShell
import CoreMetrics
import Crypto
import FoundationEssentials
import Gossip
import NIOCore
import NIOHTTP1
import Prometheus
import StompRouting
import WebSocketIO

/// The routes of the admin API. `/healthz` and `/readyz` are open (load balancers and
/// Kubernetes probe them); everything else needs the bearer token when one is configured.
final class AdminAPI: Sendable {
    struct Actions: Sendable {
        /// Starts the drain protocol; returns at once.
        var drain: @Sendable () -> Void
        /// Leaves the cluster and stops, without draining.
        var leave: @Sendable () -> Void
        /// Re-reads the users file; returns how many users it holds.
        var reloadCredentials: @Sendable () async throws -> String
    }

    private let nodeID: String
    private let clusterName: String?
    /// The `Authorization` header a request must carry.
    private let expectedAuthorization: [UInt8]?
    private let allowedOrigins: OriginPolicy
    private let loopbackOnly: Bool
    private let broker: Broker
    private let cluster: ClusterShell?
    private let server: StompServer
    private let state: NodeState
    private let registry: PrometheusCollectorRegistry
    private let actions: Actions
    private let stats: StatsHistory
    /// The most items a listing answers at once (`admin.max-page-size`).
    private let maxPageSize: Int
    private let gauges = SnapshotGauges()
    private let refusedPages = CoreMetrics.Counter(
        label: "admin_requests_refused_total",
        dimensions: [("reason", "page_size")]
    )

    init(
        nodeID: String,
        clusterName: String?,
        token: String?,
        allowedOrigins: OriginPolicy,
        loopbackOnly: Bool,
        broker: Broker,
        cluster: ClusterShell?,
        server: StompServer,
        state: NodeState,
        registry: PrometheusCollectorRegistry,
        stats: StatsHistory,
        maxPageSize: Int,
        actions: Actions
    ) {
        self.nodeID = nodeID
        self.clusterName = clusterName
        self.expectedAuthorization = token.map { Array("Bearer \($0)".utf8) }
        self.allowedOrigins = allowedOrigins
        self.loopbackOnly = loopbackOnly
        self.broker = broker
        self.cluster = cluster
        self.server = server
        self.state = state
        self.registry = registry
        self.actions = actions
        self.stats = stats
        self.maxPageSize = maxPageSize
    }

    func respond(to request: AdminRequest) async -> AdminResponse {
        switch (request.method, request.path) {
        case (.GET, "/healthz"):
            return .text(.ok, "ok\n")
        case (.GET, "/readyz"):
            return await readiness()
        default:
            break
        }
        if let refusal = refuseBrowsers(request) { return refusal }
        // The console's page holds no data, so it loads without the token; every request it
        // then makes for data carries the token the operator types in.
        if request.method == .GET, request.path == "/" || request.path == "/index.html" {
            return AdminResponse(
                status: .ok,
                contentType: "text/html; charset=utf-8",
                body: ByteBuffer(bytes: PackageResources.console_html)
            )
        }
        if let expectedAuthorization {
            let given = Array((request.headers.first(name: "Authorization") ?? "").utf8)
            // Digests compare in constant time, and hashing hides the length: the time taken
            // tells nothing of the token.
            guard SHA256.hash(data: given) == SHA256.hash(data: expectedAuthorization) else {
                return json(.unauthorized, AdminModels.Failure(error: "a bearer token is required"))
            }
        }
        switch (request.method, request.path) {
        case (.GET, "/metrics"):
            await gauges.refresh(broker: broker, server: server, cluster: cluster)
            return AdminResponse(
                status: .ok,
                contentType: "text/plain; version=0.0.4; charset=utf-8",
                body: ByteBuffer(bytes: registry.emitToBuffer())
            )
        case (.GET, "/v1/node"):
            return json(.ok, await node())
        case (.GET, "/v1/members"):
            return await paged(request) { await self.members($0) }
        case (.GET, "/v1/links"):
            return json(.ok, await links())
        case (.GET, "/v1/interest"):
            if let destination = request.query["destination"] {
                return await route(destination)
            }
            return await paged(request) { await self.interest($0) }
        case (.GET, "/v1/connections"):
            return await paged(request) { await self.connections($0) }
        case (.GET, "/v1/queues"):
            return await paged(request) { await self.queues($0) }
        case (.GET, "/v1/durable-queues"):
            return await paged(request) { await self.durableQueues($0) }
        case (.GET, "/v1/subscriptions"):
            return await paged(request) { await self.subscriptions($0) }
        case (.GET, "/v1/stats"):
            return json(.ok, stats.stats(node: nodeID))
        case (.POST, "/v1/drain"):
            actions.drain()
            return json(.accepted, AdminModels.Action(action: "drain", status: "draining"))
        case (.POST, "/v1/leave"):
            actions.leave()
            return json(.accepted, AdminModels.Action(action: "leave", status: "leaving"))
        case (.POST, "/v1/auth/reload"):
            do {
                let loaded = try await actions.reloadCredentials()
                return json(.ok, AdminModels.Action(action: "reload", status: loaded))
            } catch {
                return json(
                    .unprocessableEntity,
                    AdminModels.Failure(error: "credentials not reloaded, the users and keys before stay: \(error)")
                )
            }
        case (.POST, let path) where path.hasPrefix("/v1/members/"):
            return await memberAction(path.dropFirst("/v1/members/".count))
        case (_, "/healthz"), (_, "/readyz"), (_, "/metrics"), (_, "/v1/node"), (_, "/v1/members"), (_, "/v1/links"),
            (_, "/v1/interest"),
            (_, "/v1/connections"), (_, "/v1/queues"), (_, "/v1/durable-queues"), (_, "/v1/subscriptions"),
            (_, "/v1/stats"), (_, "/v1/drain"),
            (_, "/v1/leave"),
            (_, "/v1/auth/reload"):
            return json(
                .methodNotAllowed,
                AdminModels.Failure(error: "\(request.method) is not allowed on \(request.path)")
            )
        default:
            return json(.notFound, AdminModels.Failure(error: "no such endpoint: \(request.path)"))
        }
    }

    // MARK: - Browsers

    /// A web page in an operator's browser must not drive the API: a "simple" cross-site POST
    /// needs no preflight, and DNS rebinding lets a page reach loopback under its own name.
    /// Browsers name the page's origin in `Origin` and the name they resolved in `Host`.
    private func refuseBrowsers(_ request: AdminRequest) -> AdminResponse? {
        if let origin = request.headers.first(name: "Origin"), !allowedOrigins.allows(origin),
            !Self.isSameOrigin(origin, host: request.headers.first(name: "Host"))
        {
            return json(
                .forbidden,
                AdminModels.Failure(
                    error: "requests from web pages are refused; allow an origin with admin.allowed-origins"
                )
            )
        }
        if loopbackOnly, let host = request.headers.first(name: "Host"), !Self.namesLoopback(host) {
            return json(
                .forbidden,
                AdminModels.Failure(
                    error:
                        "the admin API listens on loopback; Host must name this machine (localhost, 127.0.0.1 or [::1])"
                )
            )
        }
        return nil
    }

    /// The console's own page: `Origin` names the host the request went to. A page of
    /// another site can only pass this through DNS rebinding, which the loopback `Host`
    /// check and the token stop.
    static func isSameOrigin(_ origin: String, host: String?) -> Bool {
        guard let host else { return false }
        let origin = origin.lowercased()
        return origin == "http://" + host.lowercased() || origin == "https://" + host.lowercased()
    }

    /// `Host` without its port is one of loopback's names.
    static func namesLoopback(_ host: String) -> Bool {
        var name = Substring(host.lowercased())
        if name.hasPrefix("["), let close = name.firstIndex(of: "]") {
            name = name[name.index(after: name.startIndex)..<close]
        } else if name.filter({ $0 == ":" }).count == 1, let colon = name.firstIndex(of: ":") {
            name = name[..<colon]
        }
        return ["localhost", "127.0.0.1", "::1"].contains(name)
    }

    // MARK: - Health

    /// Ready: serving, and (in a cluster) linked to every live member with its interest held,
    /// so a client that lands here sees the whole cluster's subscriptions.
    private func readiness() async -> AdminResponse {
        switch state.current {
        case .starting: return .text(.serviceUnavailable, "starting\n")
        case .draining: return .text(.serviceUnavailable, "draining\n")
        case .stopped: return .text(.serviceUnavailable, "stopped\n")
        case .running: break
        }
        if let cluster, let status = await cluster.status(), let reason = status.notJoinedReason {
            return .text(.serviceUnavailable, "joining the cluster: \(reason)\n")
        }
        return .text(.ok, "ready\n")
    }

    // MARK: - Actions on members by name

    /// `POST /v1/members/NODE/drain` or `.../leave`: on this node itself, or passed to the
    /// member over its link, so an operator names a member to any node.
    private func memberAction(_ rest: Substring) async -> AdminResponse {
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, let action = ["drain", "leave"].first(where: { $0 == parts[1] })
        else {
            return json(
                .notFound,
                AdminModels.Failure(error: "expected POST /v1/members/NODE/drain or /v1/members/NODE/leave")
            )
        }
        let member = String(parts[0])
        let status = action == "drain" ? "draining" : "leaving"
        if member == nodeID {
            action == "drain" ? actions.drain() : actions.leave()
            return json(.accepted, AdminModels.Action(action: action, status: status))
        }
        // The other member's own API may want a token this node's doesn't: only a node that
        // has one itself passes requests on, so a local process on a host without a token can
        // stop that host's node, never its peers.
        guard expectedAuthorization != nil else {
            return json(
                .forbidden,
                AdminModels.Failure(
                    error:
                        "\(nodeID) has no admin token, so it acts on itself only; set admin.token on the nodes to drain or stop another member through this one"
                )
            )
        }
        guard let cluster, let view = await cluster.status(),
            let known = view.members.first(where: { $0.node.name == member })
        else {
            return json(
                .notFound,
                AdminModels.Failure(error: "no member named \(member) in this node's view of the cluster")
            )
        }
        guard await cluster.requestAdminAction(action, of: known.node) else {
            return json(
                .conflict,
                AdminModels.Failure(
                    error: "\(member) is \(known.status) and not linked to \(nodeID): ask a node that reaches it"
                )
            )
        }
        return json(.accepted, AdminModels.Action(action: action, status: "\(status) (asked through \(nodeID))"))
    }

    // MARK: - Documents

    private func node() async -> AdminModels.Node {
        let counts = await broker.routerCounts()
        var clusterInfo: AdminModels.Node.Cluster?
        if let cluster, let status = await cluster.status() {
            var byStatus: [String: Int] = [:]
            for member in status.members { byStatus["\(member.status)", default: 0] += 1 }
            clusterInfo = .init(
                name: clusterName ?? "",
                epoch: status.epoch,
                incarnation: status.incarnation,
                localHealth: status.localHealth,
                joined: status.isJoined,
                notJoinedReason: status.notJoinedReason,
                members: byStatus
            )
        }
        let uptime = ContinuousClock.now - state.startedAt
        return AdminModels.Node(
            id: nodeID,
            version: NodeVersion.current,
            phase: state.current.rawValue,
            uptimeSeconds: Double(uptime.components.seconds) + Double(uptime.components.attoseconds) / 1e18,
            ports: state.boundPorts,
            connections: server.openConnections,
            subscriptions: counts.subscriptions,
            messagesPublished: broker.messagesPublished,
            messagesDelivered: broker.messagesDelivered,
            maxPageSize: maxPageSize,
            cluster: clusterInfo
        )
    }

    private func members(_ page: PageRequest) async -> AdminModels.Page<AdminModels.Member> {
        guard let members = await cluster?.memberPage(offset: page.offset, limit: page.limit) else {
            return page.answer(total: 0, items: [])
        }
        return page.answer(
            total: members.total,
            items: members.members.map {
                let session = members.sessions[$0.node]
                return AdminModels.Member(
                    node: $0.node.name,
                    address: $0.address,
                    status: "\($0.status)",
                    incarnation: $0.incarnation,
                    epoch: $0.epoch,
                    isSelf: $0.node == members.node,
                    admin: members.adminAddresses[$0.node],
                    reachable: session?.reachable,
                    heldBytes: session?.heldBytes,
                    heldMessages: session?.heldMessages,
                    outageSeconds: session?.outage.map { Double($0.nanoseconds) / 1e9 }
                )
            }
        )
    }

    private func links() async -> [AdminModels.Link] {
        guard let status = await cluster?.status() else { return [] }
        return status.links.map {
            AdminModels.Link(
                peer: $0.peer.name,
                address: $0.address,
                outbound: $0.outbound,
                framesSent: $0.counters.framesSent,
                framesReceived: $0.counters.framesReceived,
                rawBytesSent: $0.counters.rawBytesSent,
                wireBytesSent: $0.counters.wireBytesSent,
                rawBytesReceived: $0.counters.rawBytesReceived,
                wireBytesReceived: $0.counters.wireBytesReceived,
                wireVersion: $0.wireVersion
            )
        }
    }

    private func interest(_ page: PageRequest) async -> AdminModels.Interest {
        guard let cluster, let interest = await cluster.interestPage(offset: page.offset, limit: page.limit) else {
            // Without a cluster, the destinations local clients subscribe to.
            let destinations = await broker.destinationPage(offset: page.offset, limit: page.limit)
            let local = AdminModels.InterestOrigin(
                origin: nodeID,
                epoch: 0,
                version: 0,
                entries: destinations.items.map { Self.entry($0.destination, count: $0.count) },
                total: destinations.total
            )
            return AdminModels.Interest(
                local: local,
                peers: [],
                offset: page.offset,
                limit: page.limit,
                total: destinations.total
            )
        }
        return AdminModels.Interest(
            local: Self.origin(interest.local),
            peers: interest.peers.map(Self.origin),
            offset: page.offset,
            limit: page.limit,
            total: interest.total
        )
    }

    private static func origin(_ interest: InterestPage.Origin) -> AdminModels.InterestOrigin {
        AdminModels.InterestOrigin(
            origin: interest.origin.name,
            epoch: interest.epoch,
            version: interest.version,
            entries: interest.entries.map { entry($0.destination, count: $0.count) },
            total: interest.total
        )
    }

    private static func entry(_ destination: Destination, count: Int) -> AdminModels.InterestEntry {
        switch destination {
        case .topic: .init(kind: "topic", name: destination.description, count: count)
        case .queue: .init(kind: "queue", name: destination.description, count: count)
        }
    }

    /// Which nodes would receive a message for one destination, and why.
    private func route(_ text: String) async -> AdminResponse {
        guard let destination = try? Destination(parsing: text) else {
            return json(
                .badRequest,
                AdminModels.Failure(error: "'\(text)' is not a /topic/, /queue/ or /exchange/ destination")
            )
        }
        // The router's own match (the topic index, or the queue's consumers): what a publish
        // would find, without listing any subscription.
        let local = await broker.hasLocalSubscriber(for: destination)
        let peers = await cluster?.routing(for: destination) ?? [:]
        return json(
            .ok,
            AdminModels.Route(
                destination: destination.description,
                localSubscribers: local,
                peers: peers.map { AdminModels.RouteTarget(node: $0.key.name, reason: $0.value) }.sorted {
                    $0.node < $1.node
                }
            )
        )
    }

    /// Answers one page of a listing, or 400 naming `admin.max-page-size` for a page too large.
    private func paged<Document: Encodable>(
        _ request: AdminRequest,
        _ document: (PageRequest) async -> Document
    ) async -> AdminResponse {
        switch PageRequest.parse(request.query, maximum: maxPageSize) {
        case .success(let page):
            return json(.ok, await document(page))
        case .failure(let refusal):
            refusedPages.increment()
            return json(.badRequest, AdminModels.Failure(error: "\(refusal)"))
        }
    }

    private func subscriptions(_ page: PageRequest) async -> AdminModels.Page<AdminModels.SubscriptionRow> {
        let rows = await broker.subscriptionPage(offset: page.offset, limit: page.limit)
        return page.answer(
            total: rows.total,
            items: rows.items.map {
                AdminModels.SubscriptionRow(
                    connection: $0.connection.rawValue,
                    subscription: Self.subscription($0.subscription)
                )
            }
        )
    }

    private func connections(_ page: PageRequest) async -> AdminModels.Connections {
        let connections = await broker.connectionPage(offset: page.offset, limit: page.limit)
        // The first page of the queues, for readers from before /v1/queues.
        let queues = await broker.queuePage(offset: 0, limit: page.limit)
        return AdminModels.Connections(
            connections: connections.items.map { connection in
                AdminModels.Connection(
                    id: connection.id.rawValue,
                    version: connection.version,
                    subscriptions: connection.subscriptions.map(Self.subscription)
                )
            },
            queues: queues.items.map(Self.queue),
            offset: page.offset,
            limit: page.limit,
            total: connections.total,
            queuesTotal: queues.total
        )
    }

    private func queues(_ page: PageRequest) async -> AdminModels.Page<AdminModels.Queue> {
        let queues = await broker.queuePage(offset: page.offset, limit: page.limit)
        return page.answer(total: queues.total, items: queues.items.map(Self.queue))
    }

    private func durableQueues(_ page: PageRequest) async -> AdminModels.Page<AdminModels.DurableQueue> {
        let queues = await broker.durableQueuePage(offset: page.offset, limit: page.limit)
        return page.answer(
            total: queues.total,
            items: queues.items.map {
                AdminModels.DurableQueue(
                    name: $0.name,
                    role: $0.role,
                    leader: $0.leader,
                    term: $0.term,
                    replicas: $0.replicas,
                    learners: $0.learners,
                    commitIndex: $0.commitIndex,
                    lastIndex: $0.lastIndex,
                    lag: $0.lag,
                    messages: $0.messages,
                    ready: $0.ready,
                    unacked: $0.unacked,
                    bytes: $0.bytes,
                    problem: $0.problem
                )
            }
        )
    }

    private static func subscription(_ row: RouterSnapshot.Subscription) -> AdminModels.Subscription {
        AdminModels.Subscription(id: row.id, destination: row.destination, ack: row.ackMode, unacked: row.unacked)
    }

    private static func queue(_ row: RouterSnapshot.Queue) -> AdminModels.Queue {
        AdminModels.Queue(
            name: row.name,
            localConsumers: row.localConsumers,
            remoteConsumers: row.remoteConsumers,
            pending: row.pending,
            unacked: row.unacked
        )
    }

    private func json(_ status: HTTPResponseStatus, _ value: some Encodable) -> AdminResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        var body = ByteBuffer(bytes: data)
        body.writeString("\n")
        return AdminResponse(status: status, contentType: "application/json", body: body)
    }
}

/// Gauges that are read off snapshots when `/metrics` is scraped, rather than kept up to
/// date on the message path.
private final class SnapshotGauges: Sendable {
    private let subscriptions = CoreMetrics.Gauge(label: "stomp_subscriptions")
    private let pending = CoreMetrics.Gauge(label: "stomp_queue_messages_pending")
    private let unacked = CoreMetrics.Gauge(label: "stomp_messages_unacked")
    private let queuedBytes = CoreMetrics.Gauge(label: "stomp_queued_bytes")
    private let queues = CoreMetrics.Gauge(label: "stomp_queues")
    private let outboundBytes = CoreMetrics.Gauge(label: "stomp_outbound_bytes")
    private let inboundBytes = CoreMetrics.Gauge(label: "stomp_inbound_bytes")
    private let interestEntries = CoreMetrics.Gauge(label: "cluster_interest_entries")
    private let linksUp = CoreMetrics.Gauge(label: "cluster_links")
    private let members: [String: CoreMetrics.Gauge] = Dictionary(
        uniqueKeysWithValues: ["alive", "suspect", "dead", "left"].map {
            ($0, CoreMetrics.Gauge(label: "cluster_members", dimensions: [("state", $0)]))
        }
    )

    func refresh(broker: Broker, server: StompServer, cluster: ClusterShell?) async {
        let router = await broker.routerCounts()
        let queueUse = await broker.queueUse()
        queuedBytes.record(queueUse.bytes)
        queues.record(queueUse.queues)
        outboundBytes.record(server.unwrittenBytes)
        inboundBytes.record(server.unfinishedInboundBytes)
        subscriptions.record(router.subscriptions)
        pending.record(router.pending)
        unacked.record(router.unacked)
        guard let cluster, let status = await cluster.status() else { return }
        interestEntries.record(status.remoteInterestEntries)
        linksUp.record(status.links.count)
        var counts: [String: Int] = ["alive": 0, "suspect": 0, "dead": 0, "left": 0]
        for member in status.members where member.node != status.node { counts["\(member.status)", default: 0] += 1 }
        for (state, gauge) in members { gauge.record(counts[state] ?? 0) }
    }
}
