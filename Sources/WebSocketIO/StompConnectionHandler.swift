import BrokerShell
import Logging
import NIOCore
import NIOPosix
import StompRouting
import Synchronization

/// What the router sends one connection.
enum ConnectionOutput: Sendable {
    /// Write this MESSAGE.
    case message(MessageDelivery)
    /// Write these bytes (a RECEIPT).
    case frame(OutboundFrame)
    /// Write this RECEIPT once the cluster knows of its subscription (``releaseReceipt``);
    /// until then it and everything after it wait (``HeldOutbound``).
    case heldReceipt(OutboundFrame)
    /// Everything after this waits until a durable write ends (``releaseReceipt``).
    case holdForWrite
    /// The earliest hold may go, with what waited behind it.
    case releaseReceipt
    /// Send an ERROR for this reason, then close.
    case fail(StompProtocolError)
    /// Close now: the DISCONNECT was answered.
    case close
}

/// The bounds one connection is held to, from the node's settings.
struct ConnectionLimits: Sendable {
    /// Bytes gathered for the client or handed to its socket and not yet written
    /// (`limits.outbound-bytes`): past it, the client is a slow consumer.
    var maxOutboundBytes: Int
    /// From accepting (or upgrading) to CONNECT (`timeouts.connect-ms`).
    var connectTimeout: TimeAmount
    /// Clients the node serves (`limits.connections`), for the ERROR that refuses one more.
    var nodeConnections: Int
    /// Unwritten bytes over all clients (`limits.node-outbound-bytes`).
    var nodeOutbound: NodeByteBudget
    /// Bytes of frames still arriving, over all clients (`limits.node-inbound-bytes`).
    var nodeInbound: NodeByteBudget
    /// How long a refused login waits for its ERROR (`auth.failure-delay-ms`): guessing
    /// passwords one connection at a time gets slow.
    var failedLoginDelay: TimeAmount = .milliseconds(500)
    /// Durable writes (persistent SENDs, ACKs of durable messages) waiting for their quorum
    /// at once (`limits.durable-writes-in-flight`): at that many, the connection stops
    /// reading until half of them have ended.
    var maxDurableWritesInFlight = 1_024
}

/// Drives one client connection: bytes in, frames decoded, the session consulted, operations
/// handed to the ``Broker``, and the broker's outputs written back.
///
/// The transport below it (plain TCP, or WebSocket through ``WebSocketStompBridge``) delivers
/// raw STOMP bytes and takes bytes framed for it by ``OutboundBuffer``. Frames are gathered
/// in that buffer and handed to the channel, and flushed, once: during a read burst in
/// `channelReadComplete`, otherwise after the event-loop tick's tasks.
final class StompConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// Reading frames.
        case active
        /// An ERROR was written or DISCONNECT answered; waiting for the close.
        case closing
        /// The channel is gone.
        case closed
    }

    private let id: ConnectionID
    private let connections: ConnectionRegistry
    private var broker: Broker { connections.broker }
    private let ticket: AdmissionTicket
    private let limits: ConnectionLimits
    private let metrics: StompMetrics
    private var logger: Logger
    private var decoder: StompFrameDecoder
    private var session: SessionStateMachine
    private var state = State.active
    private var context: ChannelHandlerContext?

    /// Unconsumed inbound bytes; holds at most one partial frame, which the decoder bounds.
    private var inbound = ByteBuffer()
    /// What `inbound` holds as the node's inbound budget counts it.
    private var inboundCounted = 0
    /// Frames written since the last flush, framed for the transport.
    private var outbound: OutboundBuffer
    /// Frames waiting behind a RECEIPT that waits for the cluster.
    private var held: HeldOutbound
    /// The DISCONNECT was answered while a durable write was still held: close once it ends.
    private var closeWhenReleased = false
    /// Operations decoded in this read burst, handed to the router together.
    private var pendingOperations: [(RouterOperation, receipt: String?)] = []
    private var actions: [SessionStateMachine.Action] = []
    private var inReadBurst = false
    /// Whether this read burst carried a SEND: only publishers pause for flow control.
    private var publishedInBurst = false
    /// Reading stopped for flow control (see ``FlowControl``).
    private var pausedForBacklog = false
    /// Reading stopped: `limits.durable-writes-in-flight` writes wait for their quorum. Each
    /// write holds memory until it ends, so a client may not pipeline them without bound; as
    /// with flow control, TCP then slows it down rather than an ERROR.
    private var pausedForWrites = false
    /// Whether this node stopped reading the client, for either reason.
    var readsPaused: Bool { pausedForBacklog || pausedForWrites }
    private var flushScheduled = false
    private var registered = false
    private var admitted = false
    private var heartbeatTask: RepeatedTask?
    /// Closes a connection that doesn't CONNECT in time.
    private var connectDeadline: Scheduled<Void>?
    /// Ends a connection when the token it logged in with expires.
    private var credentialExpiry: Scheduled<Void>?
    /// Bytes handed to the channel and not yet written to the socket.
    private var unwritten = 0
    /// Decides CONNECTs; `nil` when every client is anonymous.
    private let authenticator: (any ClientAuthenticator)?
    /// A CONNECT is being decided: no frame is decoded, nothing read, until it is.
    private var authenticating = false
    /// Read by a password check waiting on the thread pool, so that it skips the hash once
    /// nobody waits for it.
    private let connectionClosed = SharedFlag()
    /// The authenticator's reload the session's permissions come from.
    private var permissionsGeneration = 0
    init(
        id: ConnectionID,
        connections: ConnectionRegistry,
        ticket: AdmissionTicket,
        limits: ConnectionLimits,
        metrics: StompMetrics,
        sessionSettings: SessionStateMachine.Settings,
        frameLimits: StompFrameDecoder.Limits,
        sessionIDPrefix: String,
        framing: OutboundFraming,
        authenticator: (any ClientAuthenticator)?,
        logger: Logger
    ) {
        self.id = id
        self.authenticator = authenticator
        self.outbound = OutboundBuffer(framing: framing)
        self.held = HeldOutbound(framing: framing)
        self.connections = connections
        self.ticket = ticket
        self.limits = limits
        self.metrics = metrics
        self.decoder = StompFrameDecoder(limits: frameLimits)
        self.session = SessionStateMachine(settings: sessionSettings, sessionID: sessionIDPrefix + id.description)
        var logger = logger
        logger[metadataKey: "stomp.connection.id"] = "\(id)"
        self.logger = logger
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { admit(context: context) }
    }

    /// The pipeline lets go of its handlers when the channel closes. The context holds this
    /// handler strongly, so a context kept here would form a cycle that outlives the channel,
    /// with everything the connection held: a partial frame, open transactions, buffers.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context: context)
        context.fireChannelActive()
    }

    /// Refuses the client with an ERROR when the node is shutting down; otherwise gives it
    /// until the connect deadline to CONNECT. The connection slot is taken at CONNECT: until
    /// then the connection counts as pending (see ``ConnectionAdmission``).
    private func admit(context: ChannelHandlerContext) {
        guard !admitted, state == .active else { return }
        admitted = true
        if let refusal = broker.refusal {
            fail(refusal)
            return
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timeout = limits.connectTimeout
        connectDeadline = context.eventLoop.scheduleTask(in: timeout) {
            handler.value.fail(
                StompProtocolError(
                    .connectTimeout,
                    "connect timeout",
                    detail:
                        "No CONNECT frame arrived within \(timeout.nanoseconds / 1_000_000) ms of connecting (timeouts.connect-ms)."
                )
            )
        }
        logger.debug("connection opened", metadata: ["stomp.remote": "\(context.remoteAddress.map { "\($0)" } ?? "?")"])
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard state == .active else { return }
        var bytes = unwrapInboundIn(data)
        inReadBurst = true
        session.bytesReceived(now: .now())
        if inbound.readableBytes == 0 {
            inbound = bytes
        } else {
            inbound.writeBuffer(&bytes)
        }
        decodeInbound()
    }

    /// Decodes and serves the frames in `inbound`, until it holds no whole frame or a CONNECT
    /// is being decided.
    private func decodeInbound() {
        defer { countInbound() }
        while state == .active, !authenticating {
            let frame: StompFrame?
            do {
                frame = try decoder.nextFrame(from: &inbound)
            } catch {
                metrics.frameError(error.kind)
                fail(error)
                return
            }
            guard let frame else { break }
            refreshPermissionsIfReloaded()
            guard state == .active else { return }
            session.frameReceived(frame, now: .now(), into: &actions)
            perform(actions)
            actions.removeAll(keepingCapacity: true)
        }
        if inbound.readableBytes == 0 {
            // Let the read buffer go: NIO reuses it for the next read, and an idle connection
            // then holds no buffer at all.
            inbound = ByteBuffer()
        } else if inbound.readerIndex > 65_536 {
            inbound.discardReadBytes()
        }
    }

    /// Counts what `inbound` holds (a partial frame, or frames waiting for a login check) in
    /// the node's budget. While the node holds more than its budget, a connection whose
    /// unfinished frame grows is the one filling it, and is let go: each connection's frame
    /// bound alone would let many connections each hold a frame short of it.
    private func countInbound() {
        let held = inbound.readableBytes
        guard held != inboundCounted else { return }
        let grew = held > inboundCounted
        limits.nodeInbound.add(held - inboundCounted)
        inboundCounted = held
        guard grew, state == .active, limits.nodeInbound.isExceeded else { return }
        fail(Self.nodeInboundBudgetExceeded(limit: limits.nodeInbound.limit, held: held))
    }

    private static func nodeInboundBudgetExceeded(limit: Int, held: Int) -> StompProtocolError {
        StompProtocolError(
            .nodeInboundBytesLimit,
            "node inbound budget exceeded",
            detail:
                "The node holds more than \(limit) bytes (limits.node-inbound-bytes) of frames still arriving; this connection's unfinished frame had reached \(held) bytes."
        )
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        submitPendingOperations()
        flush()
        if publishedInBurst {
            publishedInBurst = false
            pauseIfBrokerIsBehind(context: context)
        }
        context.fireChannelReadComplete()
    }

    /// Stops reading this publisher while the node (or a peer it forwards to) is behind, so
    /// that TCP slows it down; see ``FlowControl``.
    private func pauseIfBrokerIsBehind(context: ChannelHandlerContext) {
        guard !pausedForBacklog, state == .active, broker.flowControl.shouldPausePublishers else { return }
        pausedForBacklog = true
        updateAutoRead()
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        broker.flowControl.clientPaused { [eventLoop = context.eventLoop] in
            eventLoop.execute { handler.value.resumeAfterBacklog() }
        }
    }

    private func resumeAfterBacklog() {
        guard pausedForBacklog else { return }
        pausedForBacklog = false
        updateAutoRead()
    }

    /// Pauses reading at `limits.durable-writes-in-flight` held writes and resumes once half
    /// of them ended, so that reading doesn't flap on each write.
    private func pauseOrResumeForWrites() {
        if !pausedForWrites, held.writeCount >= limits.maxDurableWritesInFlight {
            pausedForWrites = true
            metrics.pausedForDurableWrites()
            updateAutoRead()
        } else if pausedForWrites, held.writeCount <= limits.maxDurableWritesInFlight / 2 {
            pausedForWrites = false
            updateAutoRead()
        }
    }

    /// Reads while nothing pauses them: no login being decided, no pause. Turning autoRead
    /// back on reads at once whatever arrived meanwhile.
    private func updateAutoRead() {
        let read = state == .active && !authenticating && !readsPaused
        try? context?.channel.syncOptions?.setOption(.autoRead, value: read)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The outbound buffer passed its high-water mark: the client reads slower than it is
        // sent to. Holding more would let one client exhaust the node's memory.
        if !context.channel.isWritable, state == .active {
            disconnectSlowConsumer(
                detail:
                    "More than \(limits.maxOutboundBytes) bytes (limits.outbound-bytes) were waiting for this client to read them."
            )
        }
        context.fireChannelWritabilityChanged()
    }

    private func disconnectSlowConsumer(detail: String) {
        guard state == .active else { return }
        metrics.slowConsumerDisconnected()
        Self.slowConsumerLog.log(
            logger,
            "disconnecting slow consumer",
            metadata: ["stomp.outbound.bytes": "\(outbound.byteCount + held.byteCount + unwritten)"]
        )
        // What was gathered for it and not yet handed over is dropped: it is the backlog.
        _ = outbound.take()
        held.discard()
        fail(StompProtocolError(.slowConsumer, "slow consumer", detail: detail))
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        connectionClosed.value.store(true, ordering: .relaxed)
        heartbeatTask?.cancel()
        heartbeatTask = nil
        connectDeadline?.cancel()
        connectDeadline = nil
        // It holds this handler until the token's expiry, hours away perhaps.
        credentialExpiry?.cancel()
        credentialExpiry = nil
        pendingOperations.removeAll()
        if registered {
            connections.closed(id)
            registered = false
        }
        ticket.release()
        // Whatever was never written won't be: the node's budget gets it back now.
        limits.nodeOutbound.remove(unwritten)
        unwritten = 0
        limits.nodeInbound.remove(inboundCounted)
        inboundCounted = 0
        inbound = ByteBuffer()
        _ = outbound.take()
        held.discard()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let exceeded = error as? NodeInboundBudgetExceeded {
            // Counted below, in the WebSocket layers: a message still arriving.
            fail(Self.nodeInboundBudgetExceeded(limit: exceeded.limit, held: exceeded.held))
            return
        }
        logger.debug("connection error", metadata: ["error.type": "\(type(of: error))", "error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: - Session actions

    private func perform(_ actions: [SessionStateMachine.Action]) {
        for action in actions {
            switch action {
            case .send(let frame):
                write(frame)
            case .connected(let version, let heartbeat):
                connectDeadline?.cancel()
                connectDeadline = nil
                guard ticket.promote() else {
                    fail(
                        StompProtocolError(
                            .tooManyConnections,
                            "too many connections",
                            detail:
                                "This node serves at most \(limits.nodeConnections) connections (limits.connections); try another node."
                        )
                    )
                    return
                }
                decoder.version = version
                registered = true
                connections.register(id, handler: NIOLoopBound(self, eventLoop: context!.eventLoop))
                startHeartbeats(heartbeat)
            case .route(let operation, let receipt):
                switch operation {
                case .send, .commit: publishedInBurst = true
                default: break
                }
                pendingOperations.append((operation, receipt))
            case .fail(let error):
                metrics.frameError(error.kind)
                fail(error)
            case .authenticate(let credentials):
                authenticate(credentials)
            }
        }
    }

    // MARK: - Authentication

    /// Asks the authenticator about a CONNECT. While it decides, nothing more is read or
    /// decoded, so frames the client sent right behind its CONNECT wait in `inbound`.
    private func authenticate(_ credentials: ConnectCredentials) {
        guard let authenticator, let context else {
            finishAuthentication(.success(.anonymous))
            return
        }
        authenticating = true
        updateAutoRead()
        permissionsGeneration = authenticator.generation
        // Either way the answer comes in a task of its own, not from inside the decoding of
        // the CONNECT that asked.
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        switch authenticator.authenticate(credentials, from: context.remoteAddress) {
        case .decided(let result):
            context.eventLoop.execute { handler.value.answerAuthentication(result) }
        case .later(let work):
            let closed = connectionClosed
            NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) {
                work(closed.value.load(ordering: .relaxed))
            }.whenComplete { outcome in
                let result: Result<SessionIdentity, StompProtocolError> =
                    (try? outcome.get()) ?? .failure(.accessRefused)
                handler.value.answerAuthentication(result)
            }
        case .awaiting(let work):
            let promise = context.eventLoop.makePromise(of: Result<SessionIdentity, StompProtocolError>.self)
            promise.completeWithTask { await work() }
            promise.futureResult.whenSuccess { result in handler.value.answerAuthentication(result) }
        }
    }

    /// A refusal waits before it is told; an acceptance doesn't.
    private func answerAuthentication(_ result: Result<SessionIdentity, StompProtocolError>) {
        guard case .failure = result, limits.failedLoginDelay > .zero, let context else {
            finishAuthentication(result)
            return
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: limits.failedLoginDelay) { handler.value.finishAuthentication(result) }
    }

    private func finishAuthentication(_ result: Result<SessionIdentity, StompProtocolError>) {
        authenticating = false
        guard state == .active else { return }
        var answers: [SessionStateMachine.Action] = []
        session.authenticated(result, now: .now(), into: &answers)
        perform(answers)
        if case .success(let identity) = result, let expiresAt = identity.expiresAt { endConnection(at: expiresAt) }
        // The frames that came right behind the CONNECT, then reading again.
        decodeInbound()
        updateAutoRead()
        submitPendingOperations()
        flush()
    }

    /// A connection that logged in with a token ends when the token does: an ERROR, then
    /// the close. (A client that wants to stay connects again with a fresh token.)
    private func endConnection(at deadline: NIODeadline) {
        guard let context else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        credentialExpiry = context.eventLoop.scheduleTask(deadline: deadline) {
            let handler = handler.value
            guard handler.state == .active else { return }
            handler.metrics.frameError(.credentialsExpired)
            handler.fail(.credentialsExpired)
        }
    }

    /// A reload (users file, SIGHUP) changed what users may do: this session's permissions
    /// follow from its next frame, and a user who is gone is let go.
    private func refreshPermissionsIfReloaded() {
        guard let authenticator, authenticator.generation != permissionsGeneration else { return }
        permissionsGeneration = authenticator.generation
        guard let identity = session.identity, identity.credential == .password, let user = identity.user else {
            return
        }
        guard let permissions = authenticator.currentPermissions(of: user) else {
            fail(
                StompProtocolError(
                    .notAuthorized,
                    "access revoked",
                    detail: "User '\(user.prefix(64))' is no longer allowed on this node."
                )
            )
            return
        }
        session.replacePermissions(permissions)
    }

    private func submitPendingOperations() {
        guard !pendingOperations.isEmpty else { return }
        broker.submit(pendingOperations, from: id)
        pendingOperations.removeAll(keepingCapacity: true)
    }

    // MARK: - Router outputs (on this connection's loop)

    /// One output of the router for this connection: written now, flushed once at the end of
    /// this event-loop tick (or of the read burst it belongs to), however many arrive.
    func routerOutput(_ output: ConnectionOutput) {
        guard state == .active, let context else { return }
        switch output {
        case .message(let delivery):
            // A fan-out stops building deliveries for a client as soon as it is over its
            // bound, rather than after a whole batch of them piled up.
            guard outbound.byteCount + held.byteCount + unwritten + delivery.maximumSize <= limits.maxOutboundBytes
            else {
                disconnectSlowConsumer(
                    detail:
                        "More than \(limits.maxOutboundBytes) bytes (limits.outbound-bytes) were waiting for this client to read them."
                )
                return
            }
            if held.isHolding {
                held.append(delivery)
            } else {
                outbound.append(delivery)
                scheduleFlush()
            }
        case .frame(let frame):
            append(frame)
            scheduleFlush()
        case .heldReceipt(let frame):
            held.hold(frame)
        case .holdForWrite:
            held.holdForWrite()
            pauseOrResumeForWrites()
        case .releaseReceipt:
            held.releaseFirst(into: &outbound)
            pauseOrResumeForWrites()
            if closeWhenReleased, !held.awaitsWrite {
                closeAfterDisconnect(context: context)
            } else {
                scheduleFlush()
            }
        case .fail(let error):
            metrics.frameError(error.kind)
            registered = false
            fail(error)
        case .close:
            // Still registered: the registry keeps carrying releases here until the channel
            // is gone and reports it.
            if held.awaitsWrite {
                // The DISCONNECT's RECEIPT vouches for the durable writes before it: the close
                // waits for them (each ends within its timeout, or fails the connection).
                closeWhenReleased = true
            } else {
                closeAfterDisconnect(context: context)
            }
        }
    }

    private func closeAfterDisconnect(context: ChannelHandlerContext) {
        closeWhenReleased = false
        // The RECEIPT was written just before; a flush hands it to the kernel on a healthy
        // socket, so closing right after does not lose it.
        held.releaseForClose(into: &outbound)
        flush()
        state = .closing
        context.close(promise: nil)
    }

    /// Within a read burst the flush waits for `channelReadComplete`, so that everything the
    /// burst caused goes out together; otherwise it runs once after the current tick's tasks.
    private func scheduleFlush() {
        guard !inReadBurst, !flushScheduled, let context else { return }
        flushScheduled = true
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            handler.value.flushScheduled = false
            handler.value.flush()
        }
    }

    // MARK: - Writing

    /// Frames the session answers with itself (CONNECTED, an ERROR) hold Swift strings only,
    /// so they are valid UTF-8.
    private func write(_ frame: StompFrame) {
        append(OutboundFrame(bytes: StompFrameEncoder.encode(frame, version: session.version), isText: true))
    }

    /// Queues a frame behind any held RECEIPT, else for the next flush.
    private func append(_ frame: OutboundFrame) {
        if held.isHolding {
            held.append(frame)
        } else {
            outbound.append(frame)
        }
    }

    private func flush() {
        guard let context, state != .closed, let bytes = outbound.take() else { return }
        // While the node as a whole holds more unwritten bytes than its budget, the clients
        // holding a good share of their own bound are the ones filling it.
        if state == .active, unwritten > limits.maxOutboundBytes / 8, limits.nodeOutbound.isExceeded {
            disconnectSlowConsumer(
                detail:
                    "The node's outbound budget (limits.node-outbound-bytes) is exhausted and this client holds \(unwritten) unread bytes."
            )
            return
        }
        context.writeAndFlush(wrapOutboundOut(bytes), promise: track(bytes.readableBytes, context: context))
        session.bytesSent(now: .now())
    }

    /// Counts `count` bytes as unwritten, here and in the node's budget, until the write
    /// completes (or fails, when the channel closes).
    private func track(_ count: Int, context: ChannelHandlerContext) -> EventLoopPromise<Void> {
        unwritten += count
        limits.nodeOutbound.add(count)
        let promise = context.eventLoop.makePromise(of: Void.self)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { _ in handler.value.written(count) }
        return promise
    }

    private func written(_ count: Int) {
        // After channelInactive, the whole remainder was given back already.
        guard unwritten > 0 else { return }
        unwritten -= count
        limits.nodeOutbound.remove(count)
    }

    /// Sends the ERROR and closes. The close waits for the ERROR to be written, but not for
    /// long: a client that doesn't read (the slow consumer) would otherwise hold the
    /// connection open.
    private func fail(_ error: StompProtocolError) {
        guard state == .active, let context else { return }
        submitPendingOperations()
        state = .closing
        // The connection ends: the receipts held for the cluster go now, ahead of the ERROR.
        held.releaseForClose(into: &outbound)
        session.failed()
        heartbeatTask?.cancel()
        Self.errorLog.log(
            logger,
            "closing connection with ERROR",
            metadata: ["error.type": "\(error.kind.rawValue)", "stomp.error": "\(error.summary)"]
        )
        connectDeadline?.cancel()
        connectDeadline = nil
        write(error.errorFrame(version: session.version))
        let bytes = outbound.take()!
        let written = track(bytes.readableBytes, context: context)
        context.writeAndFlush(wrapOutboundOut(bytes), promise: written)
        let channel = context.channel
        let deadline = context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        written.futureResult.whenComplete { _ in
            deadline.cancel()
            channel.close(promise: nil)
        }
    }

    // MARK: - Heart-beats

    private func startHeartbeats(_ heartbeat: Heartbeat) {
        guard let interval = heartbeat.tickInterval, let context else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        heartbeatTask = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            handler.value.heartbeatTick()
        }
    }

    private static let heartbeat = ByteBuffer(string: "\n")
    /// A slow consumer or a bound reached is worth a line in the log, but not one per client
    /// when thousands hit it at once.
    private static let slowConsumerLog = RateLimitedLog(interval: .seconds(5))
    private static let errorLog = RateLimitedLog(interval: .seconds(5))

    private func heartbeatTick() {
        guard state == .active else { return }
        // A client this node stopped reading may well be sending: it isn't its silence.
        if readsPaused { session.bytesReceived(now: .now()) }
        switch session.tick(now: .now()) {
        case .none:
            break
        case .sendHeartbeat:
            outbound.append(OutboundFrame(bytes: Self.heartbeat, isText: true))
            flush()
        case .fail(let error):
            metrics.frameError(error.kind)
            logger.info("closing connection: heart-beat timeout")
            fail(error)
        }
    }
}

/// A flag set on an event loop and read on a worker thread.
private final class SharedFlag: Sendable {
    let value = Atomic<Bool>(false)
}
