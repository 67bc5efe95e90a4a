/// What the router holds at one moment, for the admin API.
public struct RouterSnapshot: Sendable {
    public struct Subscription: Sendable {
        public var id: String
        public var destination: String
        public var ackMode: String
        public var unacked: Int
    }

    public struct Connection: Sendable {
        public var id: ConnectionID
        public var version: String
        public var subscriptions: [Subscription]
    }

    public struct Queue: Sendable {
        public var name: String
        public var localConsumers: Int
        public var remoteConsumers: Int
        /// Messages waiting for a consumer.
        public var pending: Int
        /// Messages delivered and not yet acknowledged.
        public var unacked: Int
    }

    public var connections: [Connection]
    public var queues: [Queue]
    public var topicSubscriptions: Int

    /// Nothing: a router that holds no state, or one that could not be reached.
    public static let empty = RouterSnapshot(connections: [], queues: [], topicSubscriptions: 0)
}

extension Router {
    /// A copy of the router's state; costs time linear in its size, so it is for the admin
    /// API, not for the message path.
    public func snapshot() -> RouterSnapshot {
        var unackedByQueue: [String: Int] = [:]
        let connections = connectionStates.map { id, version, subscriptions in
            RouterSnapshot.Connection(
                id: id,
                version: version.headerValue,
                subscriptions: subscriptions.map { subscription in
                    if case .queue(let name) = subscription.destination {
                        unackedByQueue[name, default: 0] += subscription.unacked
                    }
                    return RouterSnapshot.Subscription(
                        id: subscription.id,
                        destination: subscription.destination.description,
                        ackMode: subscription.ackMode.rawValue,
                        unacked: subscription.unacked
                    )
                }.sorted { $0.id < $1.id }
            )
        }.sorted { $0.id.rawValue < $1.id.rawValue }
        let queues = queueStates.map { name, consumers, pending, remote in
            RouterSnapshot.Queue(
                name: name,
                localConsumers: consumers,
                remoteConsumers: remote,
                pending: pending,
                unacked: unackedByQueue[name] ?? 0
            )
        }.sorted { $0.name < $1.name }
        return RouterSnapshot(connections: connections, queues: queues, topicSubscriptions: topicSubscriptionCount)
    }
}
