/// The JSON documents of `/v1/...` (see `docs/ADMIN-API.md`).
enum AdminModels {
    struct Node: Codable, Sendable {
        var id: String
        var version: String
        var phase: String
        var uptimeSeconds: Double
        var ports: [String: Int]
        var connections: Int
        var subscriptions: Int
        var messagesPublished: Int
        var messagesDelivered: Int
        var cluster: Cluster?

        struct Cluster: Codable, Sendable {
            var name: String
            var epoch: UInt64
            var incarnation: UInt64
            var localHealth: Int
            var joined: Bool
            var members: [String: Int]
        }
    }

    struct Member: Codable, Sendable {
        var node: String
        var address: String
        var status: String
        var incarnation: UInt64
        var epoch: UInt64
        var isSelf: Bool
    }

    struct Link: Codable, Sendable {
        var peer: String
        var address: String
        var outbound: Bool
        var framesSent: Int
        var framesReceived: Int
        var rawBytesSent: Int
        var wireBytesSent: Int
        var rawBytesReceived: Int
        var wireBytesReceived: Int
    }

    struct InterestEntry: Codable, Sendable {
        var kind: String
        var name: String
        var count: Int
    }

    struct InterestOrigin: Codable, Sendable {
        var origin: String
        var epoch: UInt64
        var version: UInt64
        var entries: [InterestEntry]
    }

    struct Interest: Codable, Sendable {
        var local: InterestOrigin
        var peers: [InterestOrigin]
    }

    struct Route: Codable, Sendable {
        var destination: String
        var localSubscribers: Bool
        var peers: [RouteTarget]
    }

    struct RouteTarget: Codable, Sendable {
        var node: String
        var reason: String
    }

    struct Subscription: Codable, Sendable {
        var id: String
        var destination: String
        var ack: String
        var unacked: Int
    }

    struct Connection: Codable, Sendable {
        var id: UInt64
        var version: String
        var subscriptions: [Subscription]
    }

    struct Queue: Codable, Sendable {
        var name: String
        var localConsumers: Int
        var remoteConsumers: Int
        var pending: Int
        var unacked: Int
    }

    struct Connections: Codable, Sendable {
        var connections: [Connection]
        var queues: [Queue]
    }

    struct Action: Codable, Sendable {
        var action: String
        var status: String
    }

    struct Failure: Codable, Sendable {
        var error: String
    }
}
