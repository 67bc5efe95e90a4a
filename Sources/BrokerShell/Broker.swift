import CoreMetrics
import DequeModule
import Logging
import NIOCore
import StompRouting
import Synchronization

/// The shell around the ``Router``: it confines the router to one event loop and carries
/// its outputs to the connections (through ``ClientConnections``, which reaches each on its
/// own loop) and to the rest of the cluster (through ``ClusterSeam``), and applies what other
/// nodes send (as ``RouterClusterInput``).
///
/// Every connection hands its operations over in the order its frames arrived, and the
/// router's outputs travel back to each connection in the order they were produced, so a
/// RECEIPT never overtakes the deliveries it vouches for. Tasks submitted from one loop to
/// another run in submission order, which is what makes this hold across loops.
///
/// Lock ordering: there is none to get wrong. The router's state is touched on
/// ``eventLoop`` only; a connection's state on its own loop only; the two meet through
/// `EventLoop.execute`.
public final class Broker: RouterClusterInput, @unchecked Sendable {
    /// The loop that owns the router.
    public let eventLoop: any EventLoop
    public let logger: Logger
    /// Counts the work queued between loops and tells inputs when to pause.
    public let flowControl: FlowControl

    // Confined to `eventLoop`.
    private let router: Router
    /// Weak: the transports own their registry (and it holds this broker).
    private weak var connections: (any ClientConnections)?
    private var outputs: [RouterOutput] = []
    private var cluster: (any ClusterSeam)?
    private var durable: DurableQueues?
    private var dispatching = false
    /// Per connection, the holds its handler keeps (``RouterOutput/receipt(_:_:waitsForCluster:)``,
    /// ``RouterOutput/durable(_:holding:)``) in the order it keeps them, and which have ended:
    /// the handler releases its first hold each time, so they are released in that order
    /// however their waits end. An entry goes when its last hold ends.
    private var holds: [ConnectionID: HoldLine] = [:]
    /// Connections whose held receipt the cluster released during a dispatch, released to the
    /// connections once the batch that held it went out.
    private var releasedReceipts: [ConnectionID] = []
    /// Local subscriptions per destination, as the router reports interest: the admin API's
    /// interest listing when the node runs without a cluster (a cluster keeps its own).
    private var subscriptionsByDestination: [Destination: Int] = [:]

    // Any thread.
    private let nextConnection = Atomic<UInt64>(0)
    private let published = Atomic<Int>(0)
    private let delivered = Atomic<Int>(0)
    private let publishedCounter = Counter(label: "stomp_messages_published_total")
    private let deliveredCounter = Counter(label: "stomp_messages_delivered_total")
    /// Replies sent to a temporary queue whose connection is gone.
    private let unroutableCounter = Counter(label: "stomp_messages_unroutable_total")

    /// SEND frames applied since start (those in committed transactions included).
    public var messagesPublished: Int { published.load(ordering: .relaxed) }
    /// MESSAGE frames written to clients since start.
    public var messagesDelivered: Int { delivered.load(ordering: .relaxed) }
    private let shutdownError = Mutex<StompProtocolError?>(nil)

    /// - Parameters:
    ///   - settings: the router's settings.
    ///   - eventLoop: the loop that runs the router.
    ///   - logger: for connection-level events.
    ///   - flowControl: the bounds on work queued between loops.
    public init(
        settings: Router.Settings,
        eventLoop: any EventLoop,
        logger: Logger,
        flowControl: FlowControl = FlowControl()
    ) {
        self.router = Router(settings: settings)
        self.eventLoop = eventLoop
        self.logger = logger
        self.flowControl = flowControl
    }

    /// Connects the router to the clients' transports. Called once, before any client connects.
    public func attach(connections: any ClientConnections) {
        onRouterLoop { $0.connections = connections }
    }

    /// Connects the router to the cluster. Called once, before any client connects.
    public func attach(cluster: any ClusterSeam) {
        onRouterLoop { $0.cluster = cluster }
    }

    /// Connects the router to the node's durable queues. Called once, on ``eventLoop``, before
    /// any client connects.
    public func attach(durable: DurableQueues) {
        eventLoop.preconditionInEventLoop()
        self.durable = durable
        durable.deliver = { [unowned self] operations in
            for operation in operations { router.handle(operation, into: &outputs) }
            dispatchOutputs()
        }
    }

    /// Applies work that arrives from other nodes. Called on ``eventLoop``.
    public func apply(_ operation: RouterClusterOperation) {
        eventLoop.assertInEventLoop()
        router.handle(operation, into: &outputs)
        if case .remoteQueueConsumers(let name, let count) = operation {
            // After the router knows: what the durable queue hands it now goes to them.
            durable?.remoteConsumersChanged(queue: name, count: count)
        }
        dispatchOutputs()
    }

    /// A new identifier for a connection, unique for this process.
    package func makeConnectionID() -> ConnectionID {
        ConnectionID(nextConnection.add(1, ordering: .relaxed).newValue)
    }

    /// Why new work is being refused, once ``shutdown(reason:clientsPerSecond:)`` was called.
    package var refusal: StompProtocolError? { shutdownError.withLock { $0 } }

    // MARK: - From connections

    /// Applies a connection's operations, in order.
    package func submit(_ operations: [(RouterOperation, receipt: String?)], from connection: ConnectionID) {
        guard !operations.isEmpty else { return }
        let crossesLoops = !eventLoop.inEventLoop
        if crossesLoops { flowControl.queued(operations.count) }
        onRouterLoop { broker in
            defer { if crossesLoops { broker.flowControl.completed(operations.count) } }
            var sends = 0
            for (operation, receipt) in operations {
                switch operation {
                case .send: sends += 1
                case .commit(let batch): sends += batch.reduce(0) { if case .send = $1 { $0 + 1 } else { $0 } }
                default: break
                }
                broker.router.handle(operation, from: connection, receipt: receipt, into: &broker.outputs)
            }
            if sends > 0 {
                broker.published.add(sends, ordering: .relaxed)
                broker.publishedCounter.increment(by: sends)
            }
            broker.dispatchOutputs()
        }
    }

    /// Runs `body` on the router's loop: at once when called there, else as a task (tasks
    /// from one loop run in the order they were submitted).
    package func onRouterLoop(_ body: @escaping @Sendable (Broker) -> Void) {
        if eventLoop.inEventLoop {
            body(self)
        } else {
            eventLoop.execute { body(self) }
        }
    }

    // MARK: - To connections and to the cluster

    /// Carries out the router's outputs: the cluster's first, in order, then the connections'
    /// in one batch. A SEND's receipt thus leaves after its message was handed to the links.
    ///
    /// Re-entrant calls (the cluster may hand work back synchronously, from inside a
    /// dispatch) only append; the dispatch in progress picks their outputs up.
    private func dispatchOutputs() {
        eventLoop.assertInEventLoop()
        guard !dispatching else { return }
        dispatching = true
        defer { dispatching = false }
        while !outputs.isEmpty {
            let batch = outputs
            outputs.removeAll(keepingCapacity: true)
            dispatch(batch)
            // The batch's settles, proposed together.
            durable?.flush()
            // Receipts the cluster released at once: their connections have them by now.
            for connection in releasedReceipts { connections?.releaseReceipt(of: connection) }
            releasedReceipts.removeAll(keepingCapacity: true)
        }
    }

    private func dispatch(_ outputs: [RouterOutput]) {
        for output in outputs {
            switch output {
            case .interest(let destination, let delta):
                let count = subscriptionsByDestination[destination, default: 0] + delta
                subscriptionsByDestination[destination] = count > 0 ? count : nil
                cluster?.interestChanged(destination, delta: delta)
                if case .queue(let name) = destination { durable?.consumersChanged(queue: name, delta: delta) }
            case .forward(let message):
                cluster?.forward(message)
            case .handOff(let queue, let message, let redelivered, let hops):
                cluster?.handOff(queue: queue, message, redelivered: redelivered, hops: hops)
            case .receipt(let connection, _, waitsForCluster: true):
                // A SUBSCRIBE's receipt promises that a publish anywhere in the cluster
                // reaches the new subscription: its connection holds it (and all that
                // follows) until every peer holds the interest.
                guard let cluster else { break }
                let hold = openHold(connection)
                cluster.afterInterestPropagated { [self] in endHold(hold) }
            case .durable(let work, let connection):
                perform(work, holding: connection)
            case .unroutable:
                unroutableCounter.increment()
            case .deliver, .receipt, .fail, .close:
                break
            }
        }
        guard let connections else { return }
        let messages = connections.send(outputs, receiptsWait: cluster != nil)
        if messages > 0 {
            delivered.add(messages, ordering: .relaxed)
            deliveredCounter.increment(by: messages)
        }
    }

    // MARK: - Holds

    private struct Hold {
        var connection: ConnectionID
        var serial: UInt64
    }

    private struct HoldLine {
        /// The serial of `ended`'s first element.
        var first: UInt64 = 0
        var ended = Deque<Bool>()
    }

    private func openHold(_ connection: ConnectionID) -> Hold {
        var line = holds[connection, default: HoldLine()]
        let hold = Hold(connection: connection, serial: line.first + UInt64(line.ended.count))
        line.ended.append(false)
        holds[connection] = line
        return hold
    }

    private func endHold(_ hold: Hold) {
        guard var line = holds[hold.connection], hold.serial >= line.first else { return }
        line.ended[Int(hold.serial - line.first)] = true
        while line.ended.first == true {
            line.ended.removeFirst()
            line.first += 1
            releaseReceipt(of: hold.connection)
        }
        holds[hold.connection] = line.ended.isEmpty ? nil : line
    }

    /// A durable write that the connection waits for failed: it gets the ERROR, and what
    /// waited behind the write is dropped with it.
    private func failHold(_ hold: Hold, _ error: StompProtocolError) {
        holds[hold.connection] = nil
        guard connections?.contains(hold.connection) == true else { return }
        disconnect(hold.connection, reason: error)
        dispatchOutputs()
    }

    private func perform(_ work: DurableWork, holding connection: ConnectionID?) {
        // The router asks for durable work only when durable queues are attached.
        guard let durable else { return }
        guard let connection else {
            durable.perform(work, completion: nil)
            return
        }
        let hold = openHold(connection)
        durable.perform(work) { [self] result in
            switch result {
            case .success: endHold(hold)
            case .failure(let error): failHold(hold, error)
            }
        }
    }

    private func releaseReceipt(of connection: ConnectionID) {
        eventLoop.assertInEventLoop()
        if dispatching {
            releasedReceipts.append(connection)
        } else {
            connections?.releaseReceipt(of: connection)
        }
    }

    // MARK: - Observability

    // The admin API reads the router one page at a time, on the router's loop, so a listing
    // costs what its page costs however many connections the node serves.

    /// One page of the connections, in id order; see ``Router/connectionPage(offset:limit:)``.
    public func connectionPage(offset: Int, limit: Int) async -> RouterSnapshot.Page<RouterSnapshot.Connection> {
        await withRouter { $0.router.connectionPage(offset: offset, limit: limit) }
    }

    /// One page of the subscriptions, by connection and id; see ``Router/subscriptionPage(offset:limit:)``.
    public func subscriptionPage(
        offset: Int,
        limit: Int
    ) async -> RouterSnapshot.Page<RouterSnapshot.SubscriptionRow> {
        await withRouter { $0.router.subscriptionPage(offset: offset, limit: limit) }
    }

    /// One page of the queues, in name order; see ``Router/queuePage(offset:limit:)``.
    public func queuePage(offset: Int, limit: Int) async -> RouterSnapshot.Page<RouterSnapshot.Queue> {
        await withRouter { $0.router.queuePage(offset: offset, limit: limit) }
    }

    /// One page of the destinations local clients subscribe to, by destination, each with its
    /// number of local subscriptions.
    public func destinationPage(offset: Int, limit: Int) async -> RouterSnapshot.Page<DestinationCount> {
        await withRouter { broker in
            let counts = broker.subscriptionsByDestination
            let keys = PageSelection.page(of: Array(counts.keys), offset: offset, limit: limit)
            return RouterSnapshot.Page(
                total: counts.count,
                items: keys.map { DestinationCount(destination: $0, count: counts[$0] ?? 0) }
            )
        }
    }

    /// A destination and how many local subscriptions it has.
    public struct DestinationCount: Sendable {
        public var destination: Destination
        public var count: Int
    }

    /// Whether a local subscription would receive a message sent to `destination`.
    public func hasLocalSubscriber(for destination: Destination) async -> Bool {
        await withRouter { $0.router.hasLocalSubscriber(for: destination) }
    }

    /// Subscriptions, queue messages waiting, and queue deliveries awaiting acknowledgement,
    /// over the node: counts only, for `/v1/node` and `/metrics`.
    public func routerCounts() async -> (subscriptions: Int, pending: Int, unacked: Int) {
        await withRouter { broker in
            let backlog = broker.router.backlog
            return (broker.router.subscriptionCount, backlog.pending, backlog.unacked)
        }
    }

    /// One page of the durable queues held here, by name (none without durable queues).
    public func durableQueuePage(offset: Int, limit: Int) async -> RouterSnapshot.Page<DurableQueues.QueueView> {
        await withRouter { $0.durable?.queuePage(offset: offset, limit: limit) ?? .empty }
    }

    /// Bytes held by all queues and the number of queues, against their budgets.
    public func queueUse() async -> (bytes: Int, queues: Int) {
        await withRouter { ($0.router.queuedBytes, $0.router.queueCount) }
    }

    // MARK: - Shutdown

    /// Refuses new connections and tells every connected client why before closing it.
    ///
    /// - Parameters:
    ///   - reason: the ERROR every client receives.
    ///   - clientsPerSecond: how fast clients are let go. A load balancer sends them all to
    ///     the remaining nodes; spreading their reconnects (with jitter) spares those a storm.
    ///     `nil` lets everyone go at once.
    /// - Returns: once every connection has been told.
    public func shutdown(reason: StompProtocolError, clientsPerSecond: Int? = nil) async {
        shutdownError.withLock { $0 = reason }
        let connections = await withRouter { $0.connections?.connectionIDs ?? [] }
        let batchSize = clientsPerSecond.map { max($0 / 100, 1) } ?? max(connections.count, 1)
        var generator = SystemRandomNumberGenerator()
        for start in stride(from: 0, to: connections.count, by: batchSize) {
            let batch = connections[start..<min(start + batchSize, connections.count)]
            await withRouter { broker in
                for connection in batch where broker.connections?.contains(connection) == true {
                    broker.disconnect(connection, reason: reason)
                }
                broker.dispatchOutputs()
            }
            if clientsPerSecond != nil, start + batchSize < connections.count {
                // 10 ms per batch on average, jittered by half either way.
                try? await Task.sleep(for: .microseconds(Int.random(in: 5_000...15_000, using: &generator)))
            }
        }
        // Anyone who connected meanwhile (before the listeners closed) goes too.
        await withRouter { broker in
            for connection in broker.connections?.connectionIDs ?? [] { broker.disconnect(connection, reason: reason) }
            broker.dispatchOutputs()
        }
    }

    /// Fails a connection from the broker's side. The router closes it at once (its
    /// subscriptions end, its unacknowledged queue messages go back to their queues), since
    /// the handler, told by the ERROR that the router is done with it, won't report the close.
    private func disconnect(_ connection: ConnectionID, reason: StompProtocolError) {
        outputs.append(.fail(connection, reason))
        router.handle(.closed, from: connection, receipt: nil, into: &outputs)
    }

    /// Runs `body` on the router's loop and returns its result.
    private func withRouter<T: Sendable>(_ body: @escaping @Sendable (Broker) -> T) async -> T {
        let promise = eventLoop.makePromise(of: T.self)
        onRouterLoop { promise.succeed(body($0)) }
        return try! await promise.futureResult.get()
    }
}
