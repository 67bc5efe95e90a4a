/// Rows of the router's state, for the admin API, which asks for one page at a time.
public enum RouterSnapshot {
    public struct Subscription: Sendable, Equatable {
        public var id: String
        public var destination: String
        public var ackMode: String
        public var unacked: Int
    }

    public struct Connection: Sendable, Equatable {
        public var id: ConnectionID
        public var version: String
        public var subscriptions: [Subscription]
    }

    /// A subscription with the connection that holds it.
    public struct SubscriptionRow: Sendable, Equatable {
        public var connection: ConnectionID
        public var subscription: Subscription
    }

    public struct Queue: Sendable, Equatable {
        public var name: String
        public var localConsumers: Int
        public var remoteConsumers: Int
        /// Messages waiting for a consumer.
        public var pending: Int
        /// Messages delivered and not yet acknowledged.
        public var unacked: Int
    }

    /// One page of a listing: at most `limit` items from `offset`, and how many there are in all.
    public struct Page<Item: Sendable>: Sendable {
        public var total: Int
        public var items: [Item]

        public init(total: Int, items: [Item]) {
            self.total = total
            self.items = items
        }

        /// Nothing: a router that could not be reached.
        public static var empty: Page { Page(total: 0, items: []) }
    }
}

// Each page costs one pass over integer ids and counts (or over the queue names the router
// already holds), a selection of the page's keys (``PageSelection``), and the rows of that page
// only: at 100,000 connections a page of 50 builds 50 rows, not 100,000.
extension Router {
    /// One page of the connections, in id order, each with all its subscriptions.
    ///
    /// - Parameters:
    ///   - offset: how many connections come before the page.
    ///   - limit: the most connections the page holds.
    /// - Returns: the page and the number of connections.
    public func connectionPage(offset: Int, limit: Int) -> RouterSnapshot.Page<RouterSnapshot.Connection> {
        let keys = connectionWeights.map { (key: $0.key, weight: 1) }
        let (picked, total) = PageSelection.page(of: keys, offset: offset, limit: limit)
        let items = picked.compactMap { picked -> RouterSnapshot.Connection? in
            let id = ConnectionID(picked.key)
            guard let view = connectionView(id) else { return nil }
            return RouterSnapshot.Connection(
                id: id,
                version: view.version.headerValue,
                subscriptions: view.subscriptions.map(Self.row)
            )
        }
        return RouterSnapshot.Page(total: total, items: items)
    }

    /// One page of the subscriptions of all connections, ordered by connection id and then by
    /// subscription id, so that consecutive pages neither repeat nor skip one.
    ///
    /// - Parameters:
    ///   - offset: how many subscriptions come before the page.
    ///   - limit: the most subscriptions the page holds.
    /// - Returns: the page and the number of subscriptions.
    public func subscriptionPage(offset: Int, limit: Int) -> RouterSnapshot.Page<RouterSnapshot.SubscriptionRow> {
        // A connection weighs its subscription count: the selection finds the few connections
        // the page cuts through, and where in the first one the page begins.
        let (picked, total) = PageSelection.page(of: connectionWeights, offset: offset, limit: limit)
        var items: [RouterSnapshot.SubscriptionRow] = []
        items.reserveCapacity(min(limit, total))
        for connection in picked {
            let id = ConnectionID(connection.key)
            guard let view = connectionView(id) else { continue }
            let skip = max(offset - connection.start, 0)
            for subscription in view.subscriptions.dropFirst(skip).prefix(limit - items.count) {
                items.append(RouterSnapshot.SubscriptionRow(connection: id, subscription: Self.row(subscription)))
            }
        }
        return RouterSnapshot.Page(total: total, items: items)
    }

    /// One page of the queues held here or consumed elsewhere, in name order.
    ///
    /// - Parameters:
    ///   - offset: how many queues come before the page.
    ///   - limit: the most queues the page holds.
    /// - Returns: the page and the number of queues.
    public func queuePage(offset: Int, limit: Int) -> RouterSnapshot.Page<RouterSnapshot.Queue> {
        let keys = queueNames.map { (key: $0, weight: 1) }
        let (picked, total) = PageSelection.page(of: keys, offset: offset, limit: limit)
        let items = picked.map { picked in
            let view = queueView(picked.key)
            return RouterSnapshot.Queue(
                name: picked.key,
                localConsumers: view.consumers,
                remoteConsumers: view.remote,
                pending: view.pending,
                unacked: view.unacked
            )
        }
        return RouterSnapshot.Page(total: total, items: items)
    }

    private static func row(
        _ subscription: (id: String, destination: Destination, ackMode: AckMode, unacked: Int)
    ) -> RouterSnapshot.Subscription {
        RouterSnapshot.Subscription(
            id: subscription.id,
            destination: subscription.destination.description,
            ackMode: subscription.ackMode.rawValue,
            unacked: subscription.unacked
        )
    }
}
