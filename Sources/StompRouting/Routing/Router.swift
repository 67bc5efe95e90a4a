import DequeModule
import NIOCore

/// The local router: destinations, subscriptions, queues and unacknowledged deliveries of
/// one node.
///
/// Sans-IO and single-threaded: the shell feeds it one ``RouterOperation`` at a time, in the
/// order each connection's frames arrived, and carries out the ``RouterOutput``s it returns.
/// Because every operation of a connection passes through here in order, a receipt emitted
/// after an operation means that operation, and every earlier one, has taken effect.
///
/// A class, because its indexes hold references (subscriptions shared by the match cache,
/// messages shared by their deliveries) that a copy would share rather than duplicate. It is
/// confined to one thread: the broker's event loop, or a test.
public final class Router {
    /// The router's knobs. Each bound ends in a clear ERROR rather than unbounded memory.
    public struct Settings: Sendable {
        /// Prefix of every message-id this node assigns. It names the node and its boot, so ids
        /// stay unique across a cluster and across restarts.
        public var messageIDPrefix: String
        /// Messages a queue holds while it has no consumer with room for them. A SEND beyond
        /// this gets an ERROR: refusing is visible to the publisher, dropping would not be.
        public var maxQueueDepth: Int
        /// Bytes all queues of the node hold together while no consumer can take them. Depth
        /// alone would let 10,000 messages of a megabyte each through.
        public var maxQueueBytes: Int
        /// Queues the node holds at once. Every name a client sends to makes one, so without a
        /// bound a stranger could make millions.
        public var maxQueues: Int
        /// Bytes of one connection's deliveries awaiting ACK, over all its subscriptions. A
        /// queue consumer at the limit gets no more until it acknowledges; a topic subscriber
        /// at the limit is let go, as at its `prefetch-count`.
        public var maxUnackedBytes: Int
        /// How many times a queue message may be handed from node to node before it is held
        /// where it is. Hand-offs follow other nodes' interest, which can be stale for a moment;
        /// the bound keeps two nodes from passing a message back and forth.
        public var maxHandoffHops: UInt8
        /// Temporary reply queues (`reply-to:/temp-queue/NAME`) one connection may hold. Each
        /// is a queue and a subscription, so a stranger naming a new one per SEND would
        /// otherwise grow both without end.
        public var maxTemporaryQueuesPerConnection: Int
        /// Whether `persistent:true` SENDs to a queue go to the durable queues
        /// (``RouterOutput/durable(_:holding:)``); without, they take the in-memory path.
        public var durableQueues: Bool

        public init(
            messageIDPrefix: String,
            maxQueueDepth: Int = 10_000,
            maxQueueBytes: Int = 256 * 1_048_576,
            maxQueues: Int = 10_000,
            maxUnackedBytes: Int = 16 * 1_048_576,
            maxHandoffHops: UInt8 = 3,
            maxTemporaryQueuesPerConnection: Int = 100,
            durableQueues: Bool = false
        ) {
            self.messageIDPrefix = messageIDPrefix
            self.maxQueueDepth = maxQueueDepth
            self.maxQueueBytes = maxQueueBytes
            self.maxQueues = maxQueues
            self.maxUnackedBytes = maxUnackedBytes
            self.maxHandoffHops = maxHandoffHops
            self.maxTemporaryQueuesPerConnection = maxTemporaryQueuesPerConnection
            self.durableQueues = durableQueues
        }
    }

    /// A delivery awaiting ACK or NACK.
    private struct Unacked {
        var tag: UInt64
        var message: RoutedMessage
        /// Its id in its durable queue, which keeps it until it is settled or given back.
        var durableID: UInt64?
    }

    /// Bytes of a connection's deliveries awaiting ACK, shared by its subscriptions so that a
    /// delivery checks its connection's budget without a lookup.
    private final class UnackedBudget {
        let limit: Int
        var bytes = 0

        init(limit: Int) {
            self.limit = limit
        }
    }

    /// One subscription of one connection.
    private final class Subscription {
        let key: SubscriptionKey
        let request: SubscribeRequest
        let version: StompVersion
        let budget: UnackedBudget
        /// Deliveries in the order they were sent, oldest first, so cumulative ACKs and
        /// in-order individual ACKs touch the front only.
        var unacked = Deque<Unacked>()

        init(key: SubscriptionKey, request: SubscribeRequest, version: StompVersion, budget: UnackedBudget) {
            self.key = key
            self.request = request
            self.version = version
            self.budget = budget
        }

        var hasRoom: Bool {
            request.ackMode == .auto || (unacked.count < request.prefetch && budget.bytes < budget.limit)
        }

        /// Why a subscription without room has none: the error a topic subscriber gets.
        var noRoomError: StompProtocolError {
            if unacked.count >= request.prefetch {
                return StompProtocolError(
                    .unackedLimit,
                    "too many unacknowledged messages",
                    detail: "Subscription '\(key.id)' reached its limit of \(request.prefetch) unacknowledged messages."
                )
            }
            return StompProtocolError(
                .unackedBytesLimit,
                "unacknowledged bytes budget exceeded",
                detail:
                    "This connection's unacknowledged deliveries reached \(budget.limit) bytes (limits.unacked-bytes)."
            )
        }
    }

    private struct SubscriptionKey: Hashable {
        var connection: ConnectionID
        var id: String
    }

    private struct ConnectionState {
        var version: StompVersion
        var unacked: UnackedBudget
        var subscriptions: [String: Subscription] = [:]
        /// `ack` header value -> subscription id, for 1.2 ACK/NACK frames.
        var ackIndex: [String: String] = [:]
    }

    private struct PendingMessage {
        var message: RoutedMessage
        var redelivered: Bool
        /// Nodes this message has already been handed through.
        var hops: UInt8 = 0
        /// Its id in its durable queue: it is never handed off, only given back.
        var durableID: UInt64?
    }

    /// A queue's consumers (served round robin) and the messages none of them could take yet.
    private struct QueueState {
        var consumers: [SubscriptionKey] = []
        var nextConsumer = 0
        var pending = Deque<PendingMessage>()
        /// How many of `pending` belong to a durable queue, so that a queue without them
        /// never scans for them.
        var durablePending = 0

        var isUnused: Bool { consumers.isEmpty && pending.isEmpty }

        mutating func removeFirstPending() -> PendingMessage? {
            guard let first = pending.popFirst() else { return nil }
            if first.durableID != nil { durablePending -= 1 }
            return first
        }

        mutating func insertPending(_ messages: [PendingMessage], at index: Int) {
            pending.insert(contentsOf: messages, at: index)
            durablePending += messages.reduce(0) { $0 + ($1.durableID == nil ? 0 : 1) }
        }
    }

    public let settings: Settings
    private var connections: [ConnectionID: ConnectionState] = [:]
    private var topics = TopicTrie<SubscriptionKey>()
    private var queues: [String: QueueState] = [:]
    /// Bytes of every message waiting in a queue, for ``Settings/maxQueueBytes``.
    public private(set) var queuedBytes = 0
    /// Consumers of each queue on other nodes, as the cluster reports them.
    private var remoteQueueConsumers: [String: Int] = [:]
    private var nextMessageNumber: UInt64 = 0
    private var nextDeliveryTag: UInt64 = 0
    /// Reused by topic lookups so that a publish allocates no set of its own.
    private var matchScratch = Set<SubscriptionKey>()
    /// The subscriptions each recently published routing key matched. Any change to topic
    /// subscriptions empties it, so it never holds a stale or closed subscription; it is also
    /// bounded, so a stream of one-off keys can't grow it without limit.
    private var matchCache: [String: [Subscription]] = [:]
    private static let matchCacheLimit = 10_000
    private var temporaryQueues: TemporaryQueues
    /// The queues of durable topic subscriptions that this node leads, by the pattern each is
    /// bound to: the topic messages this node delivers are enqueued in those they match.
    private let durableBindings = TopicTrie<String>()
    private var boundPatterns: [String: String] = [:]
    /// Reused by the look-up of durable bindings.
    private var boundScratch = Set<String>()

    /// - Parameters:
    ///   - random: names temporary reply queues; a seeded one makes tests repeat.
    public init(settings: Settings, random: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.settings = settings
        self.temporaryQueues = TemporaryQueues(
            limitPerConnection: settings.maxTemporaryQueuesPerConnection,
            random: random
        )
    }

    /// Open connections, for observability.
    public var connectionCount: Int { connections.count }
    /// Subscriptions over all connections.
    public var subscriptionCount: Int { connections.values.reduce(0) { $0 + $1.subscriptions.count } }
    /// Messages waiting in a queue for a consumer.
    public func pendingCount(queue name: String) -> Int { queues[name]?.pending.count ?? 0 }
    /// Queues held now: those with consumers or waiting messages.
    public var queueCount: Int { queues.count }
    /// Temporary reply queues held, over all connections.
    public var temporaryQueueCount: Int { temporaryQueues.count }

    // MARK: - Views for the admin API's pages

    // RouterSnapshot.swift pages through these. Each is either one cheap pass that copies
    // integers and references to strings already held, or a look-up of one item: the text of
    // an item is built only for the items on a page.

    /// Every connection's id with its number of subscriptions.
    var connectionWeights: [(key: UInt64, weight: Int)] {
        connections.map { (key: $0.key.rawValue, weight: $0.value.subscriptions.count) }
    }

    /// One connection's version and subscriptions, in subscription id order.
    func connectionView(
        _ id: ConnectionID
    ) -> (
        version: StompVersion, subscriptions: [(id: String, destination: Destination, ackMode: AckMode, unacked: Int)]
    )? {
        guard let state = connections[id] else { return nil }
        let subscriptions = state.subscriptions.values.map {
            (id: $0.key.id, destination: $0.request.destination, ackMode: $0.request.ackMode, unacked: $0.unacked.count)
        }
        return (state.version, subscriptions.sorted { $0.id < $1.id })
    }

    /// The names of every queue held here or consumed on other nodes.
    var queueNames: [String] {
        var names = Array(queues.keys)
        names.reserveCapacity(queues.count + remoteQueueConsumers.count)
        for name in remoteQueueConsumers.keys where queues[name] == nil { names.append(name) }
        return names
    }

    /// One queue's consumers here and elsewhere, its waiting messages, and the deliveries its
    /// local consumers have not acknowledged yet.
    func queueView(_ name: String) -> (consumers: Int, pending: Int, remote: Int, unacked: Int) {
        let state = queues[name]
        let unacked = state.map(unackedCount) ?? 0
        return (state?.consumers.count ?? 0, state?.pending.count ?? 0, remoteQueueConsumers[name] ?? 0, unacked)
    }

    /// Deliveries of one queue that its local consumers have not acknowledged yet.
    private func unackedCount(of queue: QueueState) -> Int {
        queue.consumers.reduce(0) { sum, key in
            sum + (connections[key.connection]?.subscriptions[key.id]?.unacked.count ?? 0)
        }
    }

    /// Whether a local subscription would receive a message sent to `destination`.
    public func hasLocalSubscriber(for destination: Destination) -> Bool {
        switch destination {
        case .queue(let name):
            return queues[name]?.consumers.isEmpty == false
        case .topic(let key):
            var matched = Set<SubscriptionKey>()
            topics.matches(key, into: &matched)
            var bound = Set<String>()
            durableBindings.matches(key, into: &bound)
            return !matched.isEmpty || !bound.isEmpty
        }
    }

    /// Messages waiting in queues and queue deliveries awaiting acknowledgement, over the
    /// node: the gauges `/metrics` reads. One pass over counts, no copies.
    public var backlog: (pending: Int, unacked: Int) {
        queues.values.reduce(into: (pending: 0, unacked: 0)) { sum, state in
            sum.pending += state.pending.count
            sum.unacked += unackedCount(of: state)
        }
    }

    // MARK: - Operations

    /// Applies one operation of `connection`.
    ///
    /// - Parameters:
    ///   - operation: what the connection's session asked for.
    ///   - connection: who asked.
    ///   - receipt: the `receipt` header of the frame, answered once the operation took effect.
    ///   - outputs: where the work for the shell is appended.
    public func handle(
        _ operation: RouterOperation,
        from connection: ConnectionID,
        receipt: String?,
        into outputs: inout [RouterOutput]
    ) {
        if case .open(let version) = operation {
            connections[connection] = ConnectionState(
                version: version,
                unacked: UnackedBudget(limit: settings.maxUnackedBytes)
            )
            return
        }
        if case .closed = operation {
            close(connection, into: &outputs)
            return
        }
        // Operations of a connection already failed or closed are dropped: its ERROR is out.
        guard connections[connection] != nil else { return }

        let start = outputs.count
        do {
            try apply(operation, from: connection, into: &outputs)
        } catch {
            fail(connection, error.answering(receipt: receipt), into: &outputs)
            return
        }
        if let receipt, let version = connections[connection]?.version {
            let frame = StompFrame(.receipt, headers: [StompHeader.receiptID: receipt])
            let encoded = OutboundFrame(bytes: StompFrameEncoder.encode(frame, version: version), isText: true)
            if case .subscribe = operation {
                // The receipt says the subscription exists, so it comes before the messages
                // that subscription released (as RabbitMQ and ActiveMQ send it; synchronous
                // clients read it first), and after the interest change it vouches for. It
                // promises that a publish on any node reaches the subscription: the shell
                // holds it until the cluster knows.
                let position = outputs[start...].firstIndex { if case .deliver = $0 { true } else { false } }
                outputs.insert(.receipt(connection, encoded, waitsForCluster: true), at: position ?? outputs.count)
            } else {
                outputs.append(.receipt(connection, encoded, waitsForCluster: false))
            }
        }
        if case .disconnect = operation {
            outputs.append(.close(connection))
            close(connection, into: &outputs)
        }
    }

    private func apply(
        _ operation: RouterOperation,
        from connection: ConnectionID,
        into outputs: inout [RouterOutput]
    ) throws(StompProtocolError) {
        switch operation {
        case .subscribe(let request):
            try subscribe(request, connection: connection, into: &outputs)
        case .unsubscribe(let id):
            unsubscribe(SubscriptionKey(connection: connection, id: id), into: &outputs)
        case .deleteSubscription(let id):
            let durableQueue = connections[connection]?.subscriptions[id]?.request.durableQueue
            unsubscribe(SubscriptionKey(connection: connection, id: id), into: &outputs)
            if settings.durableQueues, let durableQueue {
                // Its UNSUBSCRIBE's RECEIPT says the subscription is gone for good.
                outputs.append(.durable(.unbind(queue: durableQueue), holding: connection))
            }
        case .send(let request):
            try publish(request, from: connection, into: &outputs)
        case .ack(let request):
            try acknowledge(request, connection: connection, requeue: false, into: &outputs)
        case .nack(let request):
            try acknowledge(request, connection: connection, requeue: true, into: &outputs)
        case .commit(let operations):
            for operation in operations {
                // An operation may have failed this very connection (a topic subscriber of its
                // own at its unacked limit); what remains of the transaction is void.
                guard connections[connection] != nil else { return }
                switch operation {
                case .send(let request): try publish(request, from: connection, into: &outputs)
                case .ack(let request): try acknowledge(request, connection: connection, requeue: false, into: &outputs)
                case .nack(let request): try acknowledge(request, connection: connection, requeue: true, into: &outputs)
                }
            }
        case .barrier, .disconnect, .open, .closed:
            break
        }
    }

    // MARK: - Subscriptions

    private func subscribe(
        _ request: SubscribeRequest,
        connection: ConnectionID,
        into outputs: inout [RouterOutput]
    ) throws(StompProtocolError) {
        guard let state = connections[connection] else { return }
        // The session knows the ids of the client's own subscriptions, not those of its
        // temporary queues, which the router makes.
        guard state.subscriptions[request.id] == nil else {
            throw StompProtocolError(
                .duplicateSubscription,
                "duplicate subscription id",
                detail:
                    "This connection already has a subscription with id '\(request.id)' (its temporary queue's, or its own)."
            )
        }
        var request = request
        if settings.durableQueues, let queue = request.durableQueue, case .topic(let pattern) = request.destination {
            // A durable topic subscription consumes its durable queue, which takes the topic's
            // messages whether or not a client is there. Its RECEIPT waits until the binding
            // is durable. (MESSAGE frames still name the topic they were published to.)
            try checkRoomForQueue(queue)
            outputs.append(.durable(.bind(queue: queue, pattern: pattern), holding: connection))
            request.destination = .queue(queue)
        } else {
            request.durableQueue = nil
        }
        if case .queue(let name) = request.destination { try checkRoomForQueue(name) }
        let key = SubscriptionKey(connection: connection, id: request.id)
        connections[connection]!.subscriptions[request.id] = Subscription(
            key: key,
            request: request,
            version: state.version,
            budget: state.unacked
        )
        switch request.destination {
        case .topic(let pattern):
            topics.insert(key, pattern: pattern)
            matchCache.removeAll(keepingCapacity: true)
        case .queue(let name):
            queues[name, default: QueueState()].consumers.append(key)
        }
        outputs.append(.interest(request.destination, delta: 1))
        if case .queue(let name) = request.destination {
            dispatch(queue: name, into: &outputs)
        }
    }

    private func unsubscribe(_ key: SubscriptionKey, into outputs: inout [RouterOutput]) {
        guard let subscription = connections[key.connection]?.subscriptions.removeValue(forKey: key.id) else { return }
        for entry in subscription.unacked {
            connections[key.connection]?.ackIndex[String(entry.tag)] = nil
            subscription.budget.bytes -= entry.message.footprint
        }
        outputs.append(.interest(subscription.request.destination, delta: -1))
        switch subscription.request.destination {
        case .topic(let pattern):
            topics.remove(key, pattern: pattern)
            matchCache.removeAll(keepingCapacity: true)
        case .queue(let name):
            queues[name]?.consumers.removeAll { $0 == key }
            // Whatever the consumer held goes back to the front, in its original order. The
            // queue may be gone: when a connection closes, an earlier sibling's dispatch drops
            // the queue once it has neither consumers nor messages, and these must not go with it.
            let returned = subscription.unacked.map {
                PendingMessage(message: $0.message, redelivered: true, durableID: $0.durableID)
            }
            queues[name, default: QueueState()].insertPending(returned, at: 0)
            queuedBytes += returned.reduce(0) { $0 + $1.message.footprint }
            dispatch(queue: name, into: &outputs)
        }
    }

    private func close(_ connection: ConnectionID, into outputs: inout [RouterOutput]) {
        guard let state = connections[connection] else { return }
        // Withdraw every queue consumer of this connection before requeueing anything, so that
        // what one subscription returns can't be handed to another of the same connection.
        for subscription in state.subscriptions.values {
            if case .queue(let name) = subscription.request.destination {
                queues[name]?.consumers.removeAll { $0 == subscription.key }
            }
        }
        // In a fixed order, so that what a close does doesn't depend on the hash seed.
        for id in state.subscriptions.keys.sorted() {
            unsubscribe(SubscriptionKey(connection: connection, id: id), into: &outputs)
        }
        connections[connection] = nil
        temporaryQueues.remove(connection)
    }

    private func fail(
        _ connection: ConnectionID,
        _ error: StompProtocolError,
        into outputs: inout [RouterOutput]
    ) {
        outputs.append(.fail(connection, error))
        close(connection, into: &outputs)
    }

    // MARK: - Publishing

    private func publish(
        _ request: PublishRequest,
        from connection: ConnectionID,
        into outputs: inout [RouterOutput]
    ) throws(StompProtocolError) {
        var request = request
        if let replyTo = request.headers[StompHeader.replyTo], let name = TemporaryQueues.requestedName(in: replyTo) {
            let queue = try temporaryQueue(named: name, for: connection, into: &outputs)
            request.headers.replaceOrAdd(StompHeader.replyTo, Destination.replyQueuePrefix + queue)
        }
        switch request.destination {
        case .topic:
            let message = makeMessage(request)
            deliverToTopicSubscribers(message, into: &outputs)
            outputs.append(.forward(message.envelope))
        case .queue(let name):
            if settings.durableQueues, request.headers[StompHeader.persistent] == "true",
                !TemporaryQueues.isPrivate(name)
            {
                // Stored and replicated first; the durable queue hands it back to the routers
                // of the nodes with consumers once it is committed.
                let envelope = MessageEnvelope(
                    destination: request.destination,
                    messageID: nextMessageID(),
                    headers: request.headers,
                    body: request.body
                )
                outputs.append(.durable(.enqueue(queue: name, envelope), holding: connection))
                return
            }
            // Read the queue in place: a copy held while appending below would make the append
            // copy every pending message.
            if queues[name]?.consumers.isEmpty ?? true, remoteQueueConsumers[name, default: 0] > 0 {
                outputs.append(.handOff(queue: name, makeMessage(request).envelope, redelivered: false, hops: 0))
                return
            }
            if TemporaryQueues.isPrivate(name), queues[name] == nil {
                // Its connection is gone (or never was): RabbitMQ drops what is sent to a
                // deleted reply queue, and holding it would keep it for no one.
                outputs.append(.unroutable(request.destination))
                return
            }
            guard queues[name]?.pending.count ?? 0 < settings.maxQueueDepth else {
                throw StompProtocolError(
                    .queueFull,
                    "queue full",
                    detail:
                        "\(request.destination) already holds \(settings.maxQueueDepth) messages waiting for a consumer."
                )
            }
            try checkRoomForQueue(name)
            let footprint = request.footprint
            guard queuedBytes + footprint <= settings.maxQueueBytes else {
                throw StompProtocolError(
                    .queueBytesLimit,
                    "queue bytes budget exceeded",
                    detail:
                        "This node's queues already hold their limit of \(settings.maxQueueBytes) bytes (limits.queue-bytes); try again once consumers catch up."
                )
            }
            let message = makeMessage(request)
            queues[name, default: QueueState()].pending.append(PendingMessage(message: message, redelivered: false))
            queuedBytes += footprint
            dispatch(queue: name, into: &outputs)
            // Still waiting: it may wait for long, and must not keep its whole read buffer
            // alive meanwhile. (One taken at once, the common case, is not copied.)
            if queues[name]?.pending.last?.message === message { message.compactBody() }
        }
    }

    /// The private queue behind `reply-to:/temp-queue/name` on `connection`: on first use it is
    /// made, and the connection subscribed to it, before the request that names it goes out,
    /// so a reply can't arrive before its subscription exists (here, or on any peer: the
    /// interest travels on each link ahead of the request).
    private func temporaryQueue(
        named name: String,
        for connection: ConnectionID,
        into outputs: inout [RouterOutput]
    ) throws(StompProtocolError) -> String {
        let (queue, isNew) = try temporaryQueues.queue(named: name, for: connection)
        guard isNew else { return queue }
        // Should this throw, the connection fails, and its temporary queues go with it.
        try subscribe(
            SubscribeRequest(
                id: TemporaryQueues.requestPrefix + name,
                destination: .queue(queue),
                ackMode: .auto,
                prefetch: .max
            ),
            connection: connection,
            into: &outputs
        )
        return queue
    }

    /// Refuses a queue that doesn't exist yet when the node holds its limit of queues.
    private func checkRoomForQueue(_ name: String) throws(StompProtocolError) {
        guard queues[name] == nil, queues.count >= settings.maxQueues else { return }
        throw StompProtocolError(
            .tooManyQueues,
            "too many queues",
            detail: "This node already holds its limit of \(settings.maxQueues) queues (limits.queues)."
        )
    }

    private func subscribers(ofTopic key: String) -> [Subscription] {
        if let cached = matchCache[key] { return cached }
        matchScratch.removeAll(keepingCapacity: true)
        topics.matches(key, into: &matchScratch)
        let matched = matchScratch.compactMap { connections[$0.connection]?.subscriptions[$0.id] }
        if matchCache.count >= Self.matchCacheLimit { matchCache.removeAll(keepingCapacity: true) }
        matchCache[key] = matched
        return matched
    }

    private func deliverToTopicSubscribers(_ message: RoutedMessage, into outputs: inout [RouterOutput]) {
        guard case .topic(let key) = message.destination else { return }
        for subscription in subscribers(ofTopic: key) {
            let subscriber = subscription.key
            // A subscriber failed earlier in this same loop is gone from its connection.
            guard connections[subscriber.connection] != nil else { continue }
            if subscription.hasRoom {
                deliver(message, redelivered: false, to: subscription, into: &outputs)
            } else {
                // A topic can't hold messages back for one subscriber without holding them for
                // ever; a subscriber that stops acknowledging is told so and let go.
                fail(subscriber.connection, subscription.noRoomError, into: &outputs)
            }
        }
        if !boundPatterns.isEmpty { enqueueForDurableSubscriptions(message, key: key, into: &outputs) }
    }

    /// Enqueues a topic message in the durable subscriptions' queues it matches, of those this
    /// node leads. No one waits for these writes: a topic SEND's RECEIPT doesn't vouch for them.
    private func enqueueForDurableSubscriptions(
        _ message: RoutedMessage,
        key: String,
        into outputs: inout [RouterOutput]
    ) {
        boundScratch.removeAll(keepingCapacity: true)
        durableBindings.matches(key, into: &boundScratch)
        for queue in boundScratch.sorted() {
            outputs.append(.durable(.enqueue(queue: queue, message.envelope), holding: nil))
        }
    }

    private func makeMessage(_ request: PublishRequest) -> RoutedMessage {
        RoutedMessage(id: nextMessageID(), request: request)
    }

    private func nextMessageID() -> String {
        nextMessageNumber += 1
        return settings.messageIDPrefix + String(nextMessageNumber)
    }

    /// Hands a queue's pending messages to consumers with room, round robin, until either
    /// runs out. With no consumer here but some on other nodes, they go there instead; a
    /// durable queue's go back to it, which decides where they go next.
    private func dispatch(queue name: String, into outputs: inout [RouterOutput]) {
        guard var queue = queues.removeValue(forKey: name) else { return }
        defer { if !queue.isUnused { queues[name] = queue } }
        if queue.consumers.isEmpty, queue.durablePending > 0 {
            // Never handed off: the queue's leader sends them to the nodes with consumers
            // itself, and keeps them until they are acknowledged there.
            giveBackDurable(from: &queue, name, into: &outputs)
        }
        if queue.consumers.isEmpty, remoteQueueConsumers[name, default: 0] > 0 {
            while let pending = queue.removeFirstPending() {
                queuedBytes -= pending.message.footprint
                outputs.append(
                    .handOff(
                        queue: name,
                        pending.message.envelope,
                        redelivered: pending.redelivered,
                        hops: pending.hops
                    )
                )
            }
            return
        }
        while !queue.pending.isEmpty, let subscription = nextConsumer(of: &queue) {
            let pending = queue.removeFirstPending()!
            queuedBytes -= pending.message.footprint
            deliver(
                pending.message,
                redelivered: pending.redelivered,
                durableID: pending.durableID,
                to: subscription,
                into: &outputs
            )
        }
    }

    /// Gives a queue's durable messages back to their durable queue: no consumer here can
    /// take them, and they must not wait where no one looks for them.
    private func giveBackDurable(from queue: inout QueueState, _ name: String, into outputs: inout [RouterOutput]) {
        var delivered: [UInt64] = []
        var undelivered: [UInt64] = []
        queue.pending.removeAll { pending in
            guard let id = pending.durableID else { return false }
            queuedBytes -= pending.message.footprint
            if pending.redelivered { delivered.append(id) } else { undelivered.append(id) }
            return true
        }
        queue.durablePending = 0
        if !undelivered.isEmpty {
            outputs.append(.durable(.giveBack(queue: name, ids: undelivered, delivered: false), holding: nil))
        }
        if !delivered.isEmpty {
            outputs.append(.durable(.giveBack(queue: name, ids: delivered, delivered: true), holding: nil))
        }
    }

    private func nextConsumer(of queue: inout QueueState, excluding excluded: SubscriptionKey? = nil) -> Subscription? {
        let count = queue.consumers.count
        for offset in 0..<count {
            let index = (queue.nextConsumer + offset) % count
            let key = queue.consumers[index]
            if key != excluded, let subscription = connections[key.connection]?.subscriptions[key.id],
                subscription.hasRoom
            {
                queue.nextConsumer = (index + 1) % count
                return subscription
            }
        }
        return nil
    }

    private func deliver(
        _ message: RoutedMessage,
        redelivered: Bool,
        durableID: UInt64? = nil,
        to subscription: Subscription,
        into outputs: inout [RouterOutput]
    ) {
        var ackID: String?
        if subscription.request.ackMode == .auto {
            if let durableID, case .queue(let name) = subscription.request.destination {
                // Consumed once written, as `auto` means: settled now.
                outputs.append(.durable(.settle(queue: name, ids: [durableID]), holding: nil))
            }
        } else {
            nextDeliveryTag += 1
            let tag = nextDeliveryTag
            ackID = String(tag)
            // Held until acknowledged: it must not keep its whole read buffer alive.
            message.compactBody()
            subscription.unacked.append(Unacked(tag: tag, message: message, durableID: durableID))
            subscription.budget.bytes += message.footprint
            connections[subscription.key.connection]?.ackIndex[ackID!] = subscription.key.id
        }
        let delivery = message.delivery(
            subscription: subscription.key.id,
            ackID: ackID,
            redelivered: redelivered,
            version: subscription.version
        )
        outputs.append(.deliver(subscription.key.connection, delivery))
    }

    // MARK: - From other nodes

    /// Applies work that comes from the cluster.
    public func handle(_ operation: RouterClusterOperation, into outputs: inout [RouterOutput]) {
        switch operation {
        case .deliverForwarded(let envelope):
            deliverToTopicSubscribers(RoutedMessage(envelope), into: &outputs)

        case .durableBinding(let queue, let pattern):
            if let old = boundPatterns.removeValue(forKey: queue) {
                durableBindings.remove(queue, pattern: old)
                outputs.append(.interest(.topic(old), delta: -1))
            }
            if let pattern {
                // Its interest brings the matching messages published on other nodes here.
                durableBindings.insert(queue, pattern: pattern)
                boundPatterns[queue] = pattern
                outputs.append(.interest(.topic(pattern), delta: 1))
            }

        case .acceptHandoff(let name, let envelope, let redelivered, let hops):
            // This node owns the message now. It is never refused for lack of room: that
            // would leave it owned by no one.
            let hasLocalConsumers = !(queues[name]?.consumers.isEmpty ?? true)
            if !hasLocalConsumers, remoteQueueConsumers[name, default: 0] > 0, hops < settings.maxHandoffHops {
                outputs.append(.handOff(queue: name, envelope, redelivered: redelivered, hops: hops))
                return
            }
            if !hasLocalConsumers, TemporaryQueues.isPrivate(name) {
                // A reply for a temporary queue whose connection went away meanwhile.
                outputs.append(.unroutable(envelope.destination))
                return
            }
            let message = RoutedMessage(envelope)
            message.compactBody()
            queues[name, default: QueueState()].pending.append(
                PendingMessage(message: message, redelivered: redelivered, hops: hops)
            )
            queuedBytes += message.footprint
            if hasLocalConsumers { dispatch(queue: name, into: &outputs) }

        case .remoteQueueConsumers(let name, let count):
            remoteQueueConsumers[name] = count > 0 ? count : nil
            if count > 0 { dispatch(queue: name, into: &outputs) }

        case .evacuate:
            for name in queues.keys.sorted() {
                guard var queue = queues.removeValue(forKey: name) else { continue }
                if queue.durablePending > 0 { giveBackDurable(from: &queue, name, into: &outputs) }
                while let pending = queue.removeFirstPending() {
                    queuedBytes -= pending.message.footprint
                    outputs.append(
                        .handOff(queue: name, pending.message.envelope, redelivered: pending.redelivered, hops: 0)
                    )
                }
                if !queue.isUnused { queues[name] = queue }
            }

        case .acceptDurable(let name, let envelope, let id, let redelivered):
            // Its body is a slice of the durable queue's copy, which outlives it: no compaction.
            let message = RoutedMessage(envelope)
            queues[name, default: QueueState()].insertPending(
                [PendingMessage(message: message, redelivered: redelivered, durableID: id)],
                at: queues[name]?.pending.count ?? 0
            )
            queuedBytes += message.footprint
            dispatch(queue: name, into: &outputs)

        case .forwardsLost(let loss):
            failSubscribers(affectedBy: loss, into: &outputs)
        }
    }

    /// Sends every topic subscriber that `loss` concerns an ERROR and closes its connection.
    private func failSubscribers(affectedBy loss: ForwardLoss, into outputs: inout [RouterOutput]) {
        var affected = Set<ConnectionID>()
        if let keys = loss.keys {
            for key in keys {
                for subscription in subscribers(ofTopic: key) { affected.insert(subscription.key.connection) }
            }
        } else {
            for (connection, state) in connections
            where state.subscriptions.values.contains(where: { subscription in
                if case .topic = subscription.request.destination { true } else { false }
            }) {
                affected.insert(connection)
            }
        }
        let error = loss.error
        for connection in affected.sorted(by: { $0.rawValue < $1.rawValue }) where connections[connection] != nil {
            fail(connection, error, into: &outputs)
        }
    }

    // MARK: - Acknowledgements

    private func acknowledge(
        _ request: AckRequest,
        connection: ConnectionID,
        requeue: Bool,
        into outputs: inout [RouterOutput]
    ) throws(StompProtocolError) {
        guard let state = connections[connection], let (subscription, index) = find(request, in: state) else {
            let named = request.ackID ?? request.messageID ?? "?"
            throw StompProtocolError(
                .unknownAck,
                "unknown ack id",
                detail: "'\(named)' names no message awaiting acknowledgement on this connection."
            )
        }
        // `client` mode acknowledges cumulatively: the named message and all before it.
        let range = subscription.request.ackMode == .client ? 0...index : index...index
        let settled = Array(subscription.unacked[range])
        subscription.unacked.removeSubrange(range)
        for entry in settled {
            connections[connection]?.ackIndex[String(entry.tag)] = nil
            subscription.budget.bytes -= entry.message.footprint
        }
        guard case .queue(let name) = subscription.request.destination else { return }
        if !requeue {
            let durableIDs = settled.compactMap(\.durableID)
            if !durableIDs.isEmpty {
                // The ACK's RECEIPT waits until no failover can deliver these again.
                outputs.append(.durable(.settle(queue: name, ids: durableIDs), holding: connection))
            }
        }
        if requeue {
            // A NACK says "not me": offer each message to another consumer with room first,
            // and only when there is none let it wait for whoever frees up, the NACKer included.
            var returned: [PendingMessage] = []
            for entry in settled {
                if var queue = queues[name], let other = nextConsumer(of: &queue, excluding: subscription.key) {
                    queues[name] = queue
                    deliver(entry.message, redelivered: true, durableID: entry.durableID, to: other, into: &outputs)
                } else {
                    returned.append(
                        PendingMessage(message: entry.message, redelivered: true, durableID: entry.durableID)
                    )
                }
            }
            queues[name, default: QueueState()].insertPending(returned, at: 0)
            queuedBytes += returned.reduce(0) { $0 + $1.message.footprint }
        }
        // An ACK frees room at this consumer; a NACK returns work. Either way, dispatch.
        dispatch(queue: name, into: &outputs)
    }

    private func find(_ request: AckRequest, in state: ConnectionState) -> (Subscription, Int)? {
        if let ackID = request.ackID {
            guard let subscriptionID = state.ackIndex[ackID], let subscription = state.subscriptions[subscriptionID],
                let tag = UInt64(ackID), let index = subscription.unacked.firstIndex(where: { $0.tag == tag })
            else { return nil }
            return (subscription, index)
        }
        guard let messageID = request.messageID else { return nil }
        let candidates: [Subscription]
        if let id = request.subscription {
            candidates = state.subscriptions[id].map { [$0] } ?? []
        } else {
            candidates = Array(state.subscriptions.values)
        }
        for subscription in candidates {
            if let index = subscription.unacked.firstIndex(where: { $0.message.id == messageID }) {
                return (subscription, index)
            }
        }
        return nil
    }
}
