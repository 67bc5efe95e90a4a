import NIOCore
import StompRouting

/// The work `StompConnectionHandler` and `Broker` do around the sans-IO core, minus the event
/// loops: decode, consult the session, route, and write what comes back.
///
/// The clock is simulated (a millisecond per frame) so that a crash reproduces exactly, yet
/// heart-beat deadlines still pass. The cluster is a mirror: forwards and hand-offs come
/// back to this same router as if a peer had sent them, so the router's cluster operations
/// run on the messages the fuzzer produced.
struct SessionHarness {
    /// One client connection, as `StompConnectionHandler` holds it.
    private struct Client {
        let id: ConnectionID
        var decoder = StompFrameDecoder()
        var session: SessionStateMachine
        var inbound = ByteBuffer()
        /// Reading frames; false once an ERROR was sent or DISCONNECT answered.
        var active = true
        /// CONNECTED was sent, so the router knows the connection.
        var registered = false
    }

    private var clients: [Client]
    private let router = Router(
        settings: Router.Settings(messageIDPrefix: "m-", maxQueueDepth: 64, durableQueues: true)
    )
    /// The id the next durable message gets, as its queue's log would number it.
    private var nextDurableID: UInt64 = 0
    private var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
    private var actions: [SessionStateMachine.Action] = []
    private var outputs: [RouterOutput] = []
    /// Interest per queue, which the mirror peer reports back as remote consumers.
    private var queueInterest: [String: Int] = [:]
    /// Everything written to clients; encoding it is part of what is fuzzed.
    private var written = ByteBuffer()

    init() {
        // Small limits so that the fuzzer reaches them with short inputs.
        let settings = SessionStateMachine.Settings(
            heartbeatSend: .milliseconds(5),
            heartbeatReceive: .milliseconds(5),
            maxSubscriptions: 8,
            maxUnacked: 4,
            maxTransactions: 2,
            maxTransactionFrames: 8
        )
        // The second client logs in: its CONNECT is decided outside the session and what it
        // may do is checked at every SUBSCRIBE and SEND.
        var external = settings
        external.authentication = .external
        clients = (0..<2).map {
            Client(
                id: ConnectionID(UInt64($0 + 1)),
                session: SessionStateMachine(settings: $0 == 0 ? settings : external, sessionID: "s-\($0)")
            )
        }
    }

    /// Who a login is, as a users file would say: `refused` is refused, anyone else may read
    /// `/topic/a.#` and `/queue/q` and write `/topic/a.b` and `/queue/q`.
    private static func decide(_ credentials: ConnectCredentials) -> Result<SessionIdentity, StompProtocolError> {
        guard credentials.login != "refused" else { return .failure(.accessRefused) }
        return .success(SessionIdentity(user: credentials.login, permissions: permissions))
    }

    private static let permissions = try! DestinationPermissions(
        read: ["/topic/a.#", "/queue/q"],
        write: ["/topic/a.b", "/queue/q"]
    )

    // MARK: - Input

    /// Bytes arrived on connection `index`; they are handed to the decoder in two reads, so
    /// that every input also exercises resuming a partial frame.
    mutating func received(_ bytes: UnsafeBufferPointer<UInt8>, on index: Int) {
        let half = bytes.count / 2
        read(UnsafeBufferPointer(rebasing: bytes[..<half]), on: index)
        read(UnsafeBufferPointer(rebasing: bytes[half...]), on: index)
    }

    private mutating func read(_ bytes: UnsafeBufferPointer<UInt8>, on index: Int) {
        guard clients[index].active else { return }
        clients[index].session.bytesReceived(now: now)
        // Held outside `clients` while decoding: the decoder lives there too.
        var inbound = clients[index].inbound
        clients[index].inbound = ByteBuffer()
        defer { clients[index].inbound = inbound }
        inbound.writeBytes(bytes)
        while clients[index].active {
            let frame: StompFrame?
            do {
                frame = try clients[index].decoder.nextFrame(from: &inbound)
            } catch {
                fail(index, error)
                return
            }
            guard let frame else { break }
            now = now + .milliseconds(1)
            clients[index].session.frameReceived(frame, now: now, into: &actions)
            let frameActions = actions
            actions.removeAll(keepingCapacity: true)
            perform(frameActions, on: index)
            tick(index)
            // What was written only needs to have been encoded; keep an input's memory small.
            if written.readableBytes > 65_536 { written.clear() }
        }
    }

    /// Heart-beats as the handler's repeated task would check them.
    private mutating func tick(_ index: Int) {
        switch clients[index].session.tick(now: now) {
        case .none:
            break
        case .sendHeartbeat:
            written.writeString("\n")
            clients[index].session.bytesSent(now: now)
        case .fail(let error):
            fail(index, error)
        }
    }

    /// Every connection closes, after the node evacuated its queues: the paths that hand
    /// unacknowledged and pending messages on.
    mutating func finish() {
        route(.evacuate)
        for index in clients.indices where clients[index].registered {
            close(index)
        }
    }

    // MARK: - Session actions

    private mutating func perform(_ frameActions: [SessionStateMachine.Action], on index: Int) {
        for action in frameActions {
            switch action {
            case .send(let frame):
                StompFrameEncoder.encode(frame, version: clients[index].session.version, into: &written)
            case .connected(let version, _):
                clients[index].decoder.version = version
                clients[index].registered = true
            case .route(let operation, let receipt):
                guard clients[index].active else { return }
                router.handle(operation, from: clients[index].id, receipt: receipt, into: &outputs)
                dispatch()
            case .fail(let error):
                fail(index, error)
            case .authenticate(let credentials):
                var answers: [SessionStateMachine.Action] = []
                clients[index].session.authenticated(Self.decide(credentials), now: now, into: &answers)
                perform(answers, on: index)
            }
        }
    }

    /// An ERROR goes out and the connection closes, as `StompConnectionHandler.fail` does.
    private mutating func fail(_ index: Int, _ error: StompProtocolError) {
        guard clients[index].active else { return }
        clients[index].session.failed()
        StompFrameEncoder.encode(
            error.errorFrame(version: clients[index].session.version),
            version: clients[index].session.version,
            into: &written
        )
        close(index)
    }

    private mutating func close(_ index: Int) {
        clients[index].active = false
        guard clients[index].registered else { return }
        clients[index].registered = false
        router.handle(.closed, from: clients[index].id, receipt: nil, into: &outputs)
        dispatch()
    }

    // MARK: - Router outputs

    private mutating func route(_ operation: RouterClusterOperation) {
        router.handle(operation, into: &outputs)
        dispatch()
    }

    /// Carries out the router's outputs, including those that its own outputs cause (a close
    /// frees unacknowledged messages; the mirror peer hands messages back).
    private mutating func dispatch() {
        while !outputs.isEmpty {
            let batch = outputs
            outputs.removeAll(keepingCapacity: true)
            for output in batch {
                carryOut(output)
            }
        }
    }

    private mutating func carryOut(_ output: RouterOutput) {
        switch output {
        case .deliver(let connection, let delivery):
            guard let index = clientIndex(connection), clients[index].active else { return }
            written.reserveCapacity(minimumWritableBytes: delivery.maximumSize)
            delivery.write(into: &written)
        case .receipt(let connection, let frame, _):
            guard let index = clientIndex(connection), clients[index].active else { return }
            written.writeImmutableBuffer(frame.bytes)
        case .fail(let connection, let error):
            guard let index = clientIndex(connection) else { return }
            fail(index, error)
        case .close(let connection):
            guard let index = clientIndex(connection) else { return }
            close(index)
        case .interest(let destination, let delta):
            guard case .queue(let name) = destination else { return }
            queueInterest[name, default: 0] += delta
            router.handle(.remoteQueueConsumers(queue: name, count: queueInterest[name]!), into: &outputs)
        case .forward(let envelope):
            router.handle(.deliverForwarded(envelope), into: &outputs)
        case .handOff(let queue, let envelope, let redelivered, let hops):
            // ClusterShell counts the hop on arrival the same way.
            router.handle(
                .acceptHandoff(queue: queue, envelope, redelivered: redelivered, hops: hops == .max ? hops : hops + 1),
                into: &outputs
            )
        case .unroutable:
            break
        case .durable(.enqueue(let queue, let envelope), _):
            // Committed at once: it comes back for this node's consumers.
            nextDurableID += 1
            router.handle(
                .acceptDurable(queue: queue, envelope, id: nextDurableID, redelivered: false),
                into: &outputs
            )
        case .durable(.bind(let queue, let pattern), _):
            // Committed at once, and this node leads the queue: it takes the topic's messages.
            router.handle(.durableBinding(queue: queue, pattern: pattern), into: &outputs)
        case .durable(.unbind(let queue), _):
            router.handle(.durableBinding(queue: queue, pattern: nil), into: &outputs)
        case .durable(.settle, _), .durable(.giveBack, _):
            // Settled, or kept for a consumer that comes later: handing them back now would
            // only come back again while there is none.
            break
        }
    }

    private func clientIndex(_ connection: ConnectionID) -> Int? {
        clients.firstIndex { $0.id == connection }
    }
}
