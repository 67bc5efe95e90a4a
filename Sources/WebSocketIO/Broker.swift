import CoreMetrics
import Logging
import NIOCore
import StompRouting
import Synchronization

/// The shell around the ``Router``: it confines the router to one event loop and carries
/// its outputs to the connections, which live on any loop of the group.
///
/// Every connection hands its operations over in the order its frames arrived, and the
/// router's outputs travel back to each connection in the order they were produced, so a
/// RECEIPT never overtakes the deliveries it vouches for. Tasks submitted from one loop to
/// another run in submission order, which is what makes this hold across loops.
///
/// Lock ordering: there is none to get wrong. The router's state is touched on
/// ``eventLoop`` only; a connection's state on its own loop only; the two meet through
/// `EventLoop.execute`.
public final class Broker: @unchecked Sendable {
    /// The loop that owns the router.
    public let eventLoop: any EventLoop
    public let logger: Logger
    /// Counts the work queued between loops and tells inputs when to pause.
    public let flowControl: FlowControl

    // Confined to `eventLoop`.
    private let router: Router
    private var sinks: [ConnectionID: ConnectionSink] = [:]
    private var outputs: [RouterOutput] = []
    /// Indices into `outputs` of SUBSCRIBE receipts, which wait for the cluster.
    private var gatedReceipts: Set<Int> = []
    private var cluster: (any BrokerClusterDelegate)?
    private var dispatching = false

    // Any thread.
    private let nextConnection = Atomic<UInt64>(0)
    private let published = Atomic<Int>(0)
    private let delivered = Atomic<Int>(0)
    private let publishedCounter = Counter(label: "stomp_messages_published_total")
    private let deliveredCounter = Counter(label: "stomp_messages_delivered_total")

    /// SEND frames applied since start (those in committed transactions included).
    public var messagesPublished: Int { published.load(ordering: .relaxed) }
    /// MESSAGE frames written to clients since start.
    public var messagesDelivered: Int { delivered.load(ordering: .relaxed) }
    private let shutdownError = Mutex<StompProtocolError?>(nil)

    /// Where a connection's outputs go: its handler, reached on its own loop.
    struct ConnectionSink: Sendable {
        let handler: NIOLoopBound<StompConnectionHandler>
        var eventLoop: any EventLoop { handler.eventLoop }
    }

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

    /// Connects the router to the cluster. Called once, before any client connects.
    public func attach(cluster: any BrokerClusterDelegate) {
        onRouterLoop { $0.cluster = cluster }
    }

    /// Applies work that arrives from other nodes. Called on ``eventLoop``.
    public func apply(_ operation: RouterClusterOperation) {
        eventLoop.assertInEventLoop()
        router.handle(operation, into: &outputs)
        dispatchOutputs()
    }

    /// A new identifier for a connection, unique for this process.
    func makeConnectionID() -> ConnectionID {
        ConnectionID(nextConnection.add(1, ordering: .relaxed).newValue)
    }

    /// Why new work is being refused, once ``shutdown(reason:)`` was called.
    var refusal: StompProtocolError? { shutdownError.withLock { $0 } }

    // MARK: - From connections

    /// Registers the handler that receives a connection's outputs. Called before the
    /// connection's first operation is submitted.
    func register(_ connection: ConnectionID, handler: NIOLoopBound<StompConnectionHandler>) {
        let sink = ConnectionSink(handler: handler)
        onRouterLoop { broker in
            if let refusal = broker.refusal {
                broker.outputs.append(.fail(connection, refusal))
                broker.sinks[connection] = sink
                broker.dispatchOutputs()
                broker.sinks[connection] = nil
                return
            }
            broker.sinks[connection] = sink
        }
    }

    /// Applies a connection's operations, in order.
    func submit(_ operations: [(RouterOperation, receipt: String?)], from connection: ConnectionID) {
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
                let start = broker.outputs.count
                broker.router.handle(operation, from: connection, receipt: receipt, into: &broker.outputs)
                // A SUBSCRIBE's receipt promises that a publish anywhere in the cluster reaches the
                // new subscription, so it waits until every peer holds the interest.
                if case .subscribe = operation, receipt != nil, broker.cluster != nil {
                    for index in start..<broker.outputs.count {
                        if case .receipt = broker.outputs[index] { broker.gatedReceipts.insert(index) }
                    }
                }
            }
            if sends > 0 {
                broker.published.add(sends, ordering: .relaxed)
                broker.publishedCounter.increment(by: sends)
            }
            broker.dispatchOutputs()
            if operations.contains(where: { if case .closed = $0.0 { return true } else { return false } }) {
                broker.sinks[connection] = nil
            }
        }
    }

    private func onRouterLoop(_ body: @escaping @Sendable (Broker) -> Void) {
        if eventLoop.inEventLoop {
            body(self)
        } else {
            eventLoop.execute { body(self) }
        }
    }

    // MARK: - To connections

    /// Sends each output to its connection. Outputs for connections on the router's loop are
    /// handed over directly; the rest are grouped per loop, so one task per loop carries all
    /// of a publish's deliveries there.
    ///
    /// Re-entrant calls (the cluster may release a held receipt synchronously, from inside a
    /// dispatch) only append; the dispatch in progress picks their outputs up.
    private func dispatchOutputs() {
        eventLoop.assertInEventLoop()
        guard !dispatching else { return }
        dispatching = true
        defer { dispatching = false }
        while !outputs.isEmpty {
            let batch = outputs
            let gated = gatedReceipts
            outputs.removeAll(keepingCapacity: true)
            gatedReceipts.removeAll(keepingCapacity: true)
            dispatch(batch, gated: gated)
        }
    }

    private func dispatch(_ outputs: [RouterOutput], gated gatedReceipts: Set<Int>) {
        var messages = 0
        // Few loops: a short array beats a dictionary per batch.
        var remote: [(loop: any EventLoop, items: [(ConnectionSink, ConnectionOutput)])] = []
        for (index, routerOutput) in outputs.enumerated() {
            let connection: ConnectionID
            let output: ConnectionOutput
            switch routerOutput {
            case .deliver(let id, let delivery):
                messages += 1
                (connection, output) = (id, .message(delivery))
            case .fail(let id, let error):
                (connection, output) = (id, .fail(error))
            case .close(let id):
                (connection, output) = (id, .close)
            case .receipt(let id, let frame):
                if gatedReceipts.contains(index), let cluster {
                    cluster.afterInterestPropagated { [self] in
                        self.outputs.append(.receipt(id, frame))
                        dispatchOutputs()
                    }
                    continue
                }
                (connection, output) = (id, .frame(frame))
            case .interest(let destination, let delta):
                cluster?.interestChanged(destination, delta: delta)
                continue
            case .forward(let message):
                cluster?.forward(message)
                continue
            case .handOff(let queue, let message, let redelivered, let hops):
                cluster?.handOff(queue: queue, message, redelivered: redelivered, hops: hops)
                continue
            }
            guard let sink = sinks[connection] else { continue }
            if case .fail = output { sinks[connection] = nil }
            if case .close = output { sinks[connection] = nil }
            if sink.eventLoop === eventLoop {
                sink.handler.value.routerOutput(output)
            } else if let slot = remote.firstIndex(where: { $0.loop === sink.eventLoop }) {
                remote[slot].items.append((sink, output))
            } else {
                remote.append((sink.eventLoop, [(sink, output)]))
            }
        }
        if messages > 0 {
            delivered.add(messages, ordering: .relaxed)
            deliveredCounter.increment(by: messages)
        }
        // One task per loop carries all of this batch's outputs for connections there.
        for (loop, items) in remote {
            flowControl.queued(items.count)
            loop.execute { [flowControl] in
                for (sink, output) in items { sink.handler.value.routerOutput(output) }
                flowControl.completed(items.count)
            }
        }
    }

    // MARK: - Observability

    /// The router's state, for the admin API.
    public func snapshot() async -> RouterSnapshot {
        await withRouter { $0.router.snapshot() }
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
        let connections = await withRouter { Array($0.sinks.keys) }
        let batchSize = clientsPerSecond.map { max($0 / 100, 1) } ?? max(connections.count, 1)
        var generator = SystemRandomNumberGenerator()
        for start in stride(from: 0, to: connections.count, by: batchSize) {
            let batch = connections[start..<min(start + batchSize, connections.count)]
            await withRouter { broker in
                for connection in batch where broker.sinks[connection] != nil {
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
            for connection in broker.sinks.keys { broker.disconnect(connection, reason: reason) }
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

/// The cluster, as the broker sees it. Every method is called on the broker's event loop,
/// in the order the router produced the corresponding outputs.
public protocol BrokerClusterDelegate: AnyObject, Sendable {
    /// Local subscriptions to a topic pattern or a queue changed by `delta`.
    func interestChanged(_ destination: Destination, delta: Int)
    /// A topic message published on this node, for peers with matching subscriptions.
    func forward(_ message: MessageEnvelope)
    /// A queue message for a peer with consumers.
    func handOff(queue: String, _ message: MessageEnvelope, redelivered: Bool, hops: UInt8)
    /// Runs `body` once every live peer has acknowledged this node's current interest, or
    /// when the configured wait runs out.
    func afterInterestPropagated(_ body: @escaping () -> Void)
}
