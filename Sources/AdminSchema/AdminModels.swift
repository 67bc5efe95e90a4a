/// The JSON documents of the admin API's `/v1/...` endpoints (see `docs/ADMIN-API.md`),
/// shared by the node that writes them and `clusterctl`, which reads them.
public enum AdminModels {
    public struct Node: Codable, Sendable {
        public var id: String
        public var version: String
        public var phase: String
        public var uptimeSeconds: Double
        public var ports: [String: Int]
        public var connections: Int
        public var subscriptions: Int
        public var messagesPublished: Int
        public var messagesDelivered: Int
        /// The longest page a listing answers (`admin.max-page-size`). Optional only so that a
        /// client reads a node from before the field.
        public var maxPageSize: Int?
        public var cluster: Cluster?

        public struct Cluster: Codable, Sendable {
            public var name: String
            public var epoch: UInt64
            public var incarnation: UInt64
            public var localHealth: Int
            public var joined: Bool
            /// Why the node hasn't joined yet (and so isn't ready); absent once it has.
            public var notJoinedReason: String?
            public var members: [String: Int]

            public init(
                name: String,
                epoch: UInt64,
                incarnation: UInt64,
                localHealth: Int,
                joined: Bool,
                notJoinedReason: String?,
                members: [String: Int]
            ) {
                self.name = name
                self.epoch = epoch
                self.incarnation = incarnation
                self.localHealth = localHealth
                self.joined = joined
                self.notJoinedReason = notJoinedReason
                self.members = members
            }
        }

        public init(
            id: String,
            version: String,
            phase: String,
            uptimeSeconds: Double,
            ports: [String: Int],
            connections: Int,
            subscriptions: Int,
            messagesPublished: Int,
            messagesDelivered: Int,
            maxPageSize: Int?,
            cluster: Cluster?

        ) {
            self.id = id
            self.version = version
            self.phase = phase
            self.uptimeSeconds = uptimeSeconds
            self.ports = ports
            self.connections = connections
            self.subscriptions = subscriptions
            self.messagesPublished = messagesPublished
            self.messagesDelivered = messagesDelivered
            self.maxPageSize = maxPageSize
            self.cluster = cluster
        }
    }

    public struct Member: Codable, Sendable {
        public var node: String
        public var address: String
        public var status: String
        public var incarnation: UInt64
        public var epoch: UInt64
        public var isSelf: Bool
        /// `host:port` of the member's admin API, as it told the cluster; absent until known.
        public var admin: String?
        /// Whether this node reaches the member (alive and linked); absent for itself, for a
        /// member it never linked to, and from nodes before sessions.
        public var reachable: Bool?
        /// Bytes and topic messages this node holds for the member until it acknowledges
        /// them (`cluster.outbox-bytes` bounds them); absent as `reachable` is.
        public var heldBytes: Int?
        public var heldMessages: Int?
        /// Seconds since the member became unreachable, while it is.
        public var outageSeconds: Double?

        public init(
            node: String,
            address: String,
            status: String,
            incarnation: UInt64,
            epoch: UInt64,
            isSelf: Bool,
            admin: String?,
            reachable: Bool? = nil,
            heldBytes: Int? = nil,
            heldMessages: Int? = nil,
            outageSeconds: Double? = nil
        ) {
            self.reachable = reachable
            self.heldBytes = heldBytes
            self.heldMessages = heldMessages
            self.outageSeconds = outageSeconds
            self.node = node
            self.address = address
            self.admin = admin
            self.status = status
            self.incarnation = incarnation
            self.epoch = epoch
            self.isSelf = isSelf
        }
    }

    public struct Link: Codable, Sendable {
        public var peer: String
        public var address: String
        public var outbound: Bool
        /// The link wire version the handshake settled on. Optional only so that a client
        /// reads a node from before the field.
        public var wireVersion: UInt16?
        public var framesSent: Int
        public var framesReceived: Int
        public var rawBytesSent: Int
        public var wireBytesSent: Int
        public var rawBytesReceived: Int
        public var wireBytesReceived: Int

        public init(
            peer: String,
            address: String,
            outbound: Bool,
            framesSent: Int,
            framesReceived: Int,
            rawBytesSent: Int,
            wireBytesSent: Int,
            rawBytesReceived: Int,
            wireBytesReceived: Int,
            wireVersion: UInt16?
        ) {
            self.peer = peer
            self.address = address
            self.outbound = outbound
            self.wireVersion = wireVersion
            self.framesSent = framesSent
            self.framesReceived = framesReceived
            self.rawBytesSent = rawBytesSent
            self.wireBytesSent = wireBytesSent
            self.rawBytesReceived = rawBytesReceived
            self.wireBytesReceived = wireBytesReceived
        }
    }

    public struct InterestEntry: Codable, Sendable {
        public var kind: String
        public var name: String
        public var count: Int

        public init(kind: String, name: String, count: Int) {
            self.kind = kind
            self.name = name
            self.count = count
        }
    }

    public struct InterestOrigin: Codable, Sendable {
        public var origin: String
        public var epoch: UInt64
        public var version: UInt64
        /// The origin's entries on this page.
        public var entries: [InterestEntry]
        /// The origin's entries in all. Optional only so that a client reads a node from
        /// before pagination (whose `entries` were all of them).
        public var total: Int?

        public init(origin: String, epoch: UInt64, version: UInt64, entries: [InterestEntry], total: Int?) {
            self.origin = origin
            self.epoch = epoch
            self.version = version
            self.entries = entries
            self.total = total
        }
    }

    /// `GET /v1/interest?offset=&limit=`: one page of the interest entries, counted over this
    /// node's own (`local`, always present) and then each peer's in node order. A peer appears
    /// in `peers` when some of its entries are on the page.
    public struct Interest: Codable, Sendable {
        public var local: InterestOrigin
        public var peers: [InterestOrigin]
        /// Where the page starts, how long it may be, and how many entries there are over all
        /// origins. Optional only so that a client reads a node from before pagination.
        public var offset: Int?
        public var limit: Int?
        public var total: Int?

        public init(local: InterestOrigin, peers: [InterestOrigin], offset: Int?, limit: Int?, total: Int?) {
            self.local = local
            self.peers = peers
            self.offset = offset
            self.limit = limit
            self.total = total
        }
    }

    public struct Route: Codable, Sendable {
        public var destination: String
        public var localSubscribers: Bool
        public var peers: [RouteTarget]

        public init(destination: String, localSubscribers: Bool, peers: [RouteTarget]) {
            self.destination = destination
            self.localSubscribers = localSubscribers
            self.peers = peers
        }
    }

    public struct RouteTarget: Codable, Sendable {
        public var node: String
        public var reason: String

        public init(node: String, reason: String) {
            self.node = node
            self.reason = reason
        }
    }

    public struct Subscription: Codable, Sendable {
        public var id: String
        public var destination: String
        public var ack: String
        public var unacked: Int

        public init(id: String, destination: String, ack: String, unacked: Int) {
            self.id = id
            self.destination = destination
            self.ack = ack
            self.unacked = unacked
        }
    }

    public struct Connection: Codable, Sendable {
        public var id: UInt64
        public var version: String
        public var subscriptions: [Subscription]

        public init(id: UInt64, version: String, subscriptions: [Subscription]) {
            self.id = id
            self.version = version
            self.subscriptions = subscriptions
        }
    }

    public struct Queue: Codable, Sendable {
        public var name: String
        public var localConsumers: Int
        public var remoteConsumers: Int
        public var pending: Int
        public var unacked: Int

        public init(name: String, localConsumers: Int, remoteConsumers: Int, pending: Int, unacked: Int) {
            self.name = name
            self.localConsumers = localConsumers
            self.remoteConsumers = remoteConsumers
            self.pending = pending
            self.unacked = unacked
        }
    }

    /// A durable queue as one of its replicas sees it (`GET /v1/durable-queues`).
    public struct DurableQueue: Codable, Sendable {
        public var name: String
        /// `leader`, `follower`, `preCandidate` or `candidate`.
        public var role: String
        public var leader: String?
        public var term: UInt64
        /// The voters.
        public var replicas: [String]
        /// Replicas catching up before they vote (a newcomer, or a replacement).
        public var learners: [String]
        public var commitIndex: UInt64
        public var lastIndex: UInt64
        /// On the leader: entries each other replica does not hold yet.
        public var lag: [String: UInt64]
        /// Not yet acknowledged: ready and unacknowledged together.
        public var messages: Int
        public var ready: Int
        public var unacked: Int
        public var bytes: Int
        /// Why the queue takes no writes, if it doesn't.
        public var problem: String?

        public init(
            name: String,
            role: String,
            leader: String?,
            term: UInt64,
            replicas: [String],
            learners: [String],
            commitIndex: UInt64,
            lastIndex: UInt64,
            lag: [String: UInt64],
            messages: Int,
            ready: Int,
            unacked: Int,
            bytes: Int,
            problem: String?
        ) {
            self.name = name
            self.role = role
            self.leader = leader
            self.term = term
            self.replicas = replicas
            self.learners = learners
            self.commitIndex = commitIndex
            self.lastIndex = lastIndex
            self.lag = lag
            self.messages = messages
            self.ready = ready
            self.unacked = unacked
            self.bytes = bytes
            self.problem = problem
        }

        private enum CodingKeys: String, CodingKey {
            case name, role, leader, term, replicas, learners, commitIndex, lastIndex, lag, messages, ready, unacked
            case bytes, problem
        }

        /// A node of an earlier build sends no `learners`.
        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            role = try container.decode(String.self, forKey: .role)
            leader = try container.decodeIfPresent(String.self, forKey: .leader)
            term = try container.decode(UInt64.self, forKey: .term)
            replicas = try container.decode([String].self, forKey: .replicas)
            learners = try container.decodeIfPresent([String].self, forKey: .learners) ?? []
            commitIndex = try container.decode(UInt64.self, forKey: .commitIndex)
            lastIndex = try container.decode(UInt64.self, forKey: .lastIndex)
            lag = try container.decode([String: UInt64].self, forKey: .lag)
            messages = try container.decode(Int.self, forKey: .messages)
            ready = try container.decode(Int.self, forKey: .ready)
            unacked = try container.decode(Int.self, forKey: .unacked)
            bytes = try container.decode(Int.self, forKey: .bytes)
            problem = try container.decodeIfPresent(String.self, forKey: .problem)
        }
    }

    /// `GET /v1/connections?offset=&limit=`: one page of the connections, and the first page
    /// of the queues (`GET /v1/queues` pages through them all).
    public struct Connections: Codable, Sendable {
        public var connections: [Connection]
        /// The first `limit` queues by name: kept here for readers from before `/v1/queues`.
        public var queues: [Queue]
        /// Where the page starts, how long it may be, and how many connections there are in
        /// all. Optional only so that a client reads a node from before pagination.
        public var offset: Int?
        public var limit: Int?
        public var total: Int?
        /// How many queues there are in all; absent from a node from before pagination,
        /// whose `queues` were all of them.
        public var queuesTotal: Int?

        public init(
            connections: [Connection],
            queues: [Queue],
            offset: Int?,
            limit: Int?,
            total: Int?,
            queuesTotal: Int?
        ) {
            self.connections = connections
            self.queues = queues
            self.offset = offset
            self.limit = limit
            self.total = total
            self.queuesTotal = queuesTotal
        }
    }

    /// A row of `GET /v1/subscriptions`: a subscription and the connection that holds it.
    public struct SubscriptionRow: Codable, Sendable {
        public var connection: UInt64
        public var subscription: Subscription

        public init(connection: UInt64, subscription: Subscription) {
            self.connection = connection
            self.subscription = subscription
        }
    }

    public struct Action: Codable, Sendable {
        public var action: String
        public var status: String

        public init(action: String, status: String) {
            self.action = action
            self.status = status
        }
    }

    public struct Failure: Codable, Sendable {
        public var error: String

        public init(error: String) {
            self.error = error
        }
    }
}
