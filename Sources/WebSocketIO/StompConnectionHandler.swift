import Logging
import NIOCore
import StompRouting

/// What the router sends one connection.
enum ConnectionOutput: Sendable {
    /// Write this MESSAGE.
    case message(MessageDelivery)
    /// Write these bytes (a RECEIPT).
    case frame(OutboundFrame)
    /// Send an ERROR for this reason, then close.
    case fail(StompProtocolError)
    /// Close now: the DISCONNECT was answered.
    case close
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
    private let broker: Broker
    private let limiter: ConnectionLimiter
    private let metrics: StompMetrics
    private var logger: Logger
    private var decoder: StompFrameDecoder
    private var session: SessionStateMachine
    private var state = State.active
    private var context: ChannelHandlerContext?

    /// Unconsumed inbound bytes; holds at most one partial frame, which the decoder bounds.
    private var inbound = ByteBuffer()
    /// Frames written since the last flush, framed for the transport.
    private var outbound: OutboundBuffer
    /// Operations decoded in this read burst, handed to the router together.
    private var pendingOperations: [(RouterOperation, receipt: String?)] = []
    private var actions: [SessionStateMachine.Action] = []
    private var inReadBurst = false
    /// Whether this read burst carried a SEND: only publishers pause for flow control.
    private var publishedInBurst = false
    /// Reading stopped for flow control (see ``FlowControl``).
    private(set) var readsPaused = false
    private var flushScheduled = false
    private var registered = false
    private var holdsConnectionSlot = false
    private var heartbeatTask: RepeatedTask?

    init(
        id: ConnectionID,
        broker: Broker,
        limiter: ConnectionLimiter,
        metrics: StompMetrics,
        sessionSettings: SessionStateMachine.Settings,
        frameLimits: StompFrameDecoder.Limits,
        sessionIDPrefix: String,
        framing: OutboundFraming,
        logger: Logger
    ) {
        self.id = id
        self.outbound = OutboundBuffer(framing: framing)
        self.broker = broker
        self.limiter = limiter
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

    func channelActive(context: ChannelHandlerContext) {
        admit(context: context)
        context.fireChannelActive()
    }

    /// Takes a connection slot, or refuses the client with an ERROR when the node is full or
    /// shutting down.
    private func admit(context: ChannelHandlerContext) {
        guard !holdsConnectionSlot, state == .active else { return }
        if let refusal = broker.refusal {
            fail(refusal)
            return
        }
        guard limiter.acquire() else {
            fail(StompProtocolError(.tooManyConnections, "too many connections", detail: "This node serves at most \(limiter.limit) connections; try another node."))
            return
        }
        holdsConnectionSlot = true
        metrics.connectionOpened(open: limiter.current)
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
        while state == .active {
            let frame: StompFrame?
            do {
                frame = try decoder.nextFrame(from: &inbound)
            } catch {
                metrics.frameError(error.kind)
                fail(error)
                return
            }
            guard let frame else { break }
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
        guard !readsPaused, state == .active, broker.flowControl.shouldPausePublishers,
            let options = context.channel.syncOptions
        else { return }
        readsPaused = true
        try? options.setOption(.autoRead, value: false)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        broker.flowControl.clientPaused { [eventLoop = context.eventLoop] in
            eventLoop.execute { handler.value.resumeReading() }
        }
    }

    private func resumeReading() {
        guard readsPaused else { return }
        readsPaused = false
        // Turning autoRead back on reads at once whatever arrived meanwhile.
        try? context?.channel.syncOptions?.setOption(.autoRead, value: true)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The outbound buffer passed its high-water mark: the client reads slower than it is
        // sent to. Holding more would let one client exhaust the node's memory.
        if !context.channel.isWritable, state == .active {
            metrics.slowConsumerDisconnected()
            logger.info("disconnecting slow consumer")
            fail(StompProtocolError(.slowConsumer, "slow consumer", detail: "More than the allowed outbound bytes were waiting for this client to read them."))
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        heartbeatTask?.cancel()
        heartbeatTask = nil
        pendingOperations.removeAll()
        if registered {
            broker.submit([(.closed, receipt: nil)], from: id)
            registered = false
        }
        if holdsConnectionSlot {
            limiter.release()
            metrics.connectionClosed(open: limiter.current)
            holdsConnectionSlot = false
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
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
                decoder.version = version
                registered = true
                broker.register(id, handler: NIOLoopBound(self, eventLoop: context!.eventLoop))
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
            }
        }
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
            outbound.append(delivery)
            scheduleFlush()
        case .frame(let frame):
            outbound.append(frame)
            scheduleFlush()
        case .fail(let error):
            metrics.frameError(error.kind)
            registered = false
            fail(error)
        case .close:
            registered = false
            // The RECEIPT was written just before; a flush hands it to the kernel on a healthy
            // socket, so closing right after does not lose it.
            flush()
            state = .closing
            context.close(promise: nil)
        }
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
        outbound.append(OutboundFrame(bytes: StompFrameEncoder.encode(frame, version: session.version), isText: true))
    }

    private func flush() {
        guard let context, state != .closed, let bytes = outbound.take() else { return }
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        session.bytesSent(now: .now())
    }

    /// Sends the ERROR and closes. The close waits for the ERROR to be written, but not for
    /// long: a client that doesn't read (the slow consumer) would otherwise hold the
    /// connection open.
    private func fail(_ error: StompProtocolError) {
        guard state == .active, let context else { return }
        submitPendingOperations()
        state = .closing
        session.failed()
        heartbeatTask?.cancel()
        logger.debug("closing with ERROR", metadata: ["error.type": "\(error.kind.rawValue)", "stomp.error": "\(error.summary)"])
        write(error.errorFrame(version: session.version))
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(outbound.take()!), promise: written)
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
