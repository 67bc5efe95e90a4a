import NIOCore

/// The protocol state of one client connection, without I/O.
///
/// The shell passes in what happened (a frame arrived, bytes arrived or left, a tick of the
/// clock) with the current time, and carries out the ``Action``s that come back. The session
/// validates every frame against the negotiated version, negotiates heart-beats, holds
/// transactions until COMMIT, and turns everything that concerns destinations into
/// ``RouterOperation``s for the router.
public struct SessionStateMachine {
    /// Per-connection settings, shared by every session of a listener.
    public struct Settings: Sendable {
        /// The fastest the server offers to send heart-beats (`sx`). Zero turns server beats off.
        public var heartbeatSend: TimeAmount
        /// How often the server asks the client to beat (`sy`). Zero asks for none.
        public var heartbeatReceive: TimeAmount
        /// A client is declared dead after its negotiated interval times this factor passes in
        /// silence. Above 1 so that a beat delayed by the network or a GC pause is tolerated.
        public var heartbeatGraceFactor: Double
        /// Subscriptions one connection may hold at once.
        public var maxSubscriptions: Int
        /// Default and ceiling for a subscription's unacknowledged messages (`prefetch-count`).
        public var maxUnacked: Int
        /// Open transactions per connection, frames per transaction, and bytes (bodies and
        /// headers) over all of a connection's open transactions: a transaction is held in
        /// memory until COMMIT, so all three are bounded.
        public var maxTransactions: Int
        public var maxTransactionFrames: Int
        public var maxTransactionBytes: Int
        /// Bytes of a `destination` header. Long names cost memory in every index and on
        /// every link; RabbitMQ caps routing keys at 255 bytes.
        public var maxDestinationLength: Int
        /// Dot-separated words of a topic name or pattern. Matching costs words x pattern
        /// length at worst, so both are bounded.
        public var maxDestinationWords: Int
        /// The `server` header of CONNECTED.
        public var serverName: String
        /// Who decides a CONNECT: nobody (everyone is anonymous and may do everything), or the
        /// shell.
        public var authentication: SessionAuthentication

        public init(
            heartbeatSend: TimeAmount = .seconds(10),
            heartbeatReceive: TimeAmount = .seconds(10),
            heartbeatGraceFactor: Double = 1.5,
            maxSubscriptions: Int = 1_024,
            maxUnacked: Int = 1_000,
            maxTransactions: Int = 16,
            maxTransactionFrames: Int = 10_000,
            maxTransactionBytes: Int = 16 * 1_048_576,
            maxDestinationLength: Int = 1_024,
            maxDestinationWords: Int = 64,
            serverName: String = "cluster-node",
            authentication: SessionAuthentication = .none
        ) {
            self.heartbeatSend = heartbeatSend
            self.heartbeatReceive = heartbeatReceive
            self.heartbeatGraceFactor = heartbeatGraceFactor
            self.maxSubscriptions = maxSubscriptions
            self.maxUnacked = maxUnacked
            self.maxTransactions = maxTransactions
            self.maxTransactionFrames = maxTransactionFrames
            self.maxTransactionBytes = maxTransactionBytes
            self.maxDestinationLength = maxDestinationLength
            self.maxDestinationWords = maxDestinationWords
            self.serverName = serverName
            self.authentication = authentication
        }
    }

    /// What the shell must do.
    public enum Action: Sendable, Equatable {
        /// Write this frame (CONNECTED) in the negotiated version.
        case send(StompFrame)
        /// The session is established: tell the router, start heart-beats, and decode later
        /// frames with this version's escaping.
        case connected(StompVersion, Heartbeat)
        /// Pass this operation to the router, which answers `receipt` once it took effect.
        case route(RouterOperation, receipt: String?)
        /// Send an ERROR for this reason and close the connection.
        case fail(StompProtocolError)
        /// Decide who this is and call ``SessionStateMachine/authenticated(_:now:into:)``;
        /// hand the session no frame until then.
        case authenticate(ConnectCredentials)
    }

    /// What a clock tick calls for.
    public enum TickAction: Sendable, Equatable {
        case none
        /// Write a heart-beat EOL.
        case sendHeartbeat
        /// The client went silent past its heart-beat window.
        case fail(StompProtocolError)
    }

    private enum State {
        /// Waiting for CONNECT or STOMP; nothing else is allowed.
        case awaitingConnect
        /// CONNECT arrived; the shell is deciding who it is.
        case authenticating(PendingConnect)
        /// Connected: frames are served.
        case connected(Connected)
        /// DISCONNECT was received or an error was sent; later frames are ignored.
        case closing
        /// Placeholder while `Connected` is mutated in place, to avoid copy-on-write copies.
        case modifying
    }

    /// Frames held until COMMIT, and what they weigh.
    private struct Transaction {
        var operations: [TransactionalOperation] = []
        var bytes = 0
    }

    /// A CONNECT waiting for its answer.
    private struct PendingConnect {
        var version: StompVersion
        /// Whether the client named its versions (`accept-version`); a 1.0 client that didn't
        /// predates the negotiation and gets 1.0's bare CONNECTED.
        var negotiated: Bool
        var heartbeat: Heartbeat
        var receipt: String?
        /// The CONNECT's `client-id`, which names its durable subscriptions (ActiveMQ's).
        var clientID: String?
    }

    private struct Connected {
        var identity: SessionIdentity
        var version: StompVersion
        var heartbeat: Heartbeat
        var clientID: String?
        var subscriptionIDs: Set<String> = []
        var transactions: [String: Transaction] = [:]
        /// Bytes held by all open transactions together.
        var transactionBytes = 0
        var lastReceived: NIODeadline
        var lastSent: NIODeadline
    }

    public let settings: Settings
    public let sessionID: String
    private var state: State = .awaitingConnect

    public init(settings: Settings, sessionID: String) {
        self.settings = settings
        self.sessionID = sessionID
    }

    /// The negotiated version, or 1.2 before CONNECT (the version errors are written in).
    public var version: StompVersion {
        if case .connected(let connected) = state { return connected.version }
        return .v1_2
    }

    // MARK: - Events

    /// Any bytes arrived, heart-beats included: the client is alive.
    public mutating func bytesReceived(now: NIODeadline) {
        guard case .connected(var connected) = state else { return }
        state = .modifying
        connected.lastReceived = now
        state = .connected(connected)
    }

    /// Bytes were written to the client: no heart-beat is due for a while.
    public mutating func bytesSent(now: NIODeadline) {
        guard case .connected(var connected) = state else { return }
        state = .modifying
        connected.lastSent = now
        state = .connected(connected)
    }

    /// Checks heart-beats in both directions.
    public mutating func tick(now: NIODeadline) -> TickAction {
        guard case .connected(let connected) = state else { return .none }
        if let timeout = connected.heartbeat.receiveTimeout, now - connected.lastReceived > timeout {
            state = .closing
            return .fail(
                StompProtocolError(
                    .heartbeatTimeout,
                    "heart-beat timeout",
                    detail: "Nothing was received for longer than the negotiated \(timeout.nanoseconds / 1_000_000) ms."
                )
            )
        }
        if let interval = connected.heartbeat.sendInterval, now - connected.lastSent >= interval {
            return .sendHeartbeat
        }
        return .none
    }

    /// The session failed for a reason found outside it (the router, the transport); it
    /// accepts no more frames.
    public mutating func failed() {
        state = .closing
    }

    /// A complete frame arrived.
    ///
    /// - Parameters:
    ///   - frame: the decoded frame.
    ///   - now: the current time, for heart-beat bookkeeping.
    ///   - actions: where the actions are appended, in order.
    public mutating func frameReceived(_ frame: StompFrame, now: NIODeadline, into actions: inout [Action]) {
        let receipt = frame.headers[StompHeader.receipt]
        do throws(StompProtocolError) {
            if case .closing = state { return }
            try Self.checkBodyAllowed(frame)
            switch state {
            case .awaitingConnect:
                try connect(frame, now: now, into: &actions)
            case .connected(var connected):
                state = .modifying
                defer { if case .modifying = state { state = .connected(connected) } }
                try serve(frame, receipt: receipt, connected: &connected, into: &actions)
            case .authenticating:
                // The shell holds frames back while it decides; one that slips through is a
                // frame before CONNECTED.
                throw StompProtocolError(
                    .notConnected,
                    "not connected",
                    detail: "A frame arrived before the CONNECT was answered."
                )
            case .closing:
                return
            case .modifying:
                preconditionFailure("frameReceived re-entered while the session state is being modified")
            }
        } catch {
            state = .closing
            actions.append(.fail(error.answering(receipt: receipt)))
        }
    }

    /// Only SEND (of the frames a client sends) may carry a body; a body on any other is a
    /// client's mistake worth telling it about, not something to drop silently.
    private static func checkBodyAllowed(_ frame: StompFrame) throws(StompProtocolError) {
        switch frame.command {
        case .connect, .stomp, .subscribe, .unsubscribe, .ack, .nack, .begin, .commit, .abort, .disconnect:
            guard frame.body.readableBytes > 0 else { return }
            throw StompProtocolError(
                .unexpectedBody,
                "body not allowed",
                detail:
                    "Only SEND frames may carry a body; this \(frame.command.rawValue) carries \(frame.body.readableBytes) bytes."
            )
        case .send, .connected, .message, .receipt, .error:
            return
        }
    }

    // MARK: - CONNECT

    private mutating func connect(
        _ frame: StompFrame,
        now: NIODeadline,
        into actions: inout [Action]
    ) throws(StompProtocolError) {
        switch frame.command {
        case .connect, .stomp:
            break
        case .send, .subscribe, .unsubscribe, .ack, .nack, .begin, .commit, .abort, .disconnect:
            throw StompProtocolError(
                .notConnected,
                "not connected",
                detail: "The first frame must be CONNECT or STOMP, not \(frame.command.rawValue)."
            )
        case .connected, .message, .receipt, .error:
            throw Self.serverFrame(frame.command)
        }

        let version = try Self.negotiateVersion(frame.headers[StompHeader.acceptVersion])
        var heartbeat = Heartbeat.none
        if version >= .v1_1, let value = frame.headers[StompHeader.heartBeat] {
            guard let client = Heartbeat.parse(value) else {
                throw StompProtocolError(
                    .invalidHeader,
                    "invalid heart-beat",
                    detail: "heart-beat must be two non-negative integers, as in 'heart-beat:10000,10000'."
                )
            }
            heartbeat = Heartbeat(
                client: client,
                serverSend: settings.heartbeatSend,
                serverReceive: settings.heartbeatReceive,
                graceFactor: settings.heartbeatGraceFactor
            )
        }
        let pending = PendingConnect(
            version: version,
            negotiated: frame.headers[StompHeader.acceptVersion] != nil,
            heartbeat: heartbeat,
            receipt: frame.headers[StompHeader.receipt],
            clientID: frame.headers[DurableSubscriptionHeaders.clientID]
        )
        switch settings.authentication {
        case .none:
            open(pending, as: .anonymous, now: now, into: &actions)
        case .external:
            state = .authenticating(pending)
            let credentials = ConnectCredentials(
                login: frame.headers[StompHeader.login],
                passcode: frame.headers[StompHeader.passcode],
                host: frame.headers[StompHeader.host]
            )
            actions.append(.authenticate(credentials))
        }
    }

    /// The shell decided who the client of a CONNECT is (after ``Action/authenticate(_:)``).
    ///
    /// - Parameters:
    ///   - result: who it is, or why it is refused (an ERROR, then the connection closes).
    ///   - now: the current time, for heart-beat bookkeeping.
    ///   - actions: where the actions are appended, in order.
    public mutating func authenticated(
        _ result: Result<SessionIdentity, StompProtocolError>,
        now: NIODeadline,
        into actions: inout [Action]
    ) {
        guard case .authenticating(let pending) = state else { return }
        switch result {
        case .success(let identity):
            open(pending, as: identity, now: now, into: &actions)
        case .failure(let error):
            state = .closing
            actions.append(.fail(error.answering(receipt: pending.receipt)))
        }
    }

    /// What the client may do changed (a reloaded users file): it applies from the next frame.
    public mutating func replacePermissions(_ permissions: DestinationPermissions) {
        guard case .connected(var connected) = state else { return }
        state = .modifying
        connected.identity.permissions = permissions
        state = .connected(connected)
    }

    /// Who the session belongs to, once connected.
    public var identity: SessionIdentity? {
        if case .connected(let connected) = state { return connected.identity }
        return nil
    }

    private mutating func open(
        _ pending: PendingConnect,
        as identity: SessionIdentity,
        now: NIODeadline,
        into actions: inout [Action]
    ) {
        let version = pending.version
        let heartbeat = pending.heartbeat
        var headers: StompHeaders = [
            StompHeader.version: version.headerValue,
            StompHeader.heartBeat:
                "\(settings.heartbeatSend.nanoseconds / 1_000_000),\(settings.heartbeatReceive.nanoseconds / 1_000_000)",
            StompHeader.server: settings.serverName,
            StompHeader.session: sessionID,
        ]
        if version == .v1_0 {
            // Heart-beats are 1.1's; the version is said whenever the client asked for one.
            headers = pending.negotiated ? [StompHeader.version: version.headerValue] : [:]
            headers.add(StompHeader.session, sessionID)
        }
        state = .connected(
            Connected(
                identity: identity,
                version: version,
                heartbeat: heartbeat,
                clientID: pending.clientID,
                lastReceived: now,
                lastSent: now
            )
        )
        actions.append(.connected(version, heartbeat))
        actions.append(.send(StompFrame(.connected, headers: headers)))
        actions.append(.route(.open(version), receipt: nil))
    }

    /// A `reply-to` asks whoever answers to write there: a client may name only a destination
    /// it could write to itself, or a request to a service with wider rights would let it
    /// write where it may not. (A value that is no destination of this broker's names nothing
    /// anyone can write to, and passes through.)
    private func checkReplyTo(_ replyTo: String?, of identity: SessionIdentity) throws(StompProtocolError) {
        guard let replyTo, let destination = try? Destination(parsing: replyTo),
            !destination.isTemporaryReplyQueue, !identity.permissions.mayWrite(destination)
        else { return }
        throw StompProtocolError(
            .writeDenied,
            "access denied",
            detail:
                "\(identity.name) may not name \(destination.description.prefix(200)) as reply-to: no write permission covers it."
        )
    }

    /// Names what was denied, and to whom: the client learns which pattern it lacks.
    static func accessDenied(
        _ identity: SessionIdentity,
        reading: Bool,
        _ destination: Destination
    ) -> StompProtocolError {
        StompProtocolError(
            reading ? .readDenied : .writeDenied,
            "access denied",
            detail:
                "\(identity.name) may not \(reading ? "read from" : "write to") \(destination.description.prefix(200)): no \(reading ? "read" : "write") permission covers it."
        )
    }

    /// Picks the highest version both sides know. A CONNECT without `accept-version` is 1.0.
    static func negotiateVersion(_ header: String?) throws(StompProtocolError) -> StompVersion {
        guard let header else { return .v1_0 }
        let offered = header.split(separator: ",").compactMap { StompVersion(headerValue: $0.trimming(" ")) }
        guard let best = offered.max() else {
            throw StompProtocolError(
                .unsupportedVersion,
                "unsupported protocol version",
                detail: "Supported protocol versions are 1.0, 1.1 and 1.2; the client offered '\(header.prefix(100))'."
            )
        }
        return best
    }

    // MARK: - Connected

    private mutating func serve(
        _ frame: StompFrame,
        receipt: String?,
        connected: inout Connected,
        into actions: inout [Action]
    ) throws(StompProtocolError) {
        let headers = frame.headers
        switch frame.command {
        case .connect, .stomp:
            throw StompProtocolError(
                .alreadyConnected,
                "already connected",
                detail: "CONNECT may be sent only once per connection."
            )

        case .connected, .message, .receipt, .error:
            throw Self.serverFrame(frame.command)

        case .send:
            let destination = try destination(of: frame)
            guard !destination.isPattern else {
                throw StompProtocolError(
                    .invalidDestination,
                    "invalid destination",
                    detail: "A SEND may not use a wildcard: '\(destination)' is a subscription pattern."
                )
            }
            guard destination.isTemporaryReplyQueue || connected.identity.permissions.mayWrite(destination) else {
                throw Self.accessDenied(connected.identity, reading: false, destination)
            }
            try checkReplyTo(headers[StompHeader.replyTo], of: connected.identity)
            let request = PublishRequest(
                destination: destination,
                headers: Self.applicationHeaders(headers),
                body: frame.body
            )
            try route(
                .send(request),
                transaction: headers[StompHeader.transaction],
                receipt: receipt,
                connected: &connected,
                into: &actions
            )

        case .subscribe:
            let destination = try destination(of: frame)
            let id =
                connected.version == .v1_0
                ? (headers[StompHeader.id] ?? destination.description) : try Self.require(StompHeader.id, in: frame)
            guard !connected.subscriptionIDs.contains(id) else {
                throw StompProtocolError(
                    .duplicateSubscription,
                    "duplicate subscription id",
                    detail: "This connection already has a subscription with id '\(id)'."
                )
            }
            guard !destination.isTemporaryReplyQueue else {
                throw StompProtocolError(
                    .readDenied,
                    "access denied",
                    detail:
                        "\(destination.description.prefix(200)) is another connection's temporary reply queue; to receive replies, name /temp-queue/NAME in a SEND's reply-to."
                )
            }
            guard connected.identity.permissions.mayRead(destination) else {
                throw Self.accessDenied(connected.identity, reading: true, destination)
            }
            guard connected.subscriptionIDs.count < settings.maxSubscriptions else {
                throw StompProtocolError(
                    .tooManySubscriptions,
                    "too many subscriptions",
                    detail: "A connection may hold at most \(settings.maxSubscriptions) subscriptions."
                )
            }
            var request = SubscribeRequest(
                id: id,
                destination: destination,
                ackMode: try Self.ackMode(headers[StompHeader.ack]),
                prefetch: try prefetch(headers[StompHeader.prefetchCount])
            )
            if case .topic = destination,
                let name = DurableSubscriptionHeaders.queueName(
                    subscribe: headers,
                    id: id,
                    clientID: connected.clientID
                )
            {
                request.durableQueue = try durableQueue(named: name, for: connected.identity)
            }
            connected.subscriptionIDs.insert(id)
            actions.append(.route(.subscribe(request), receipt: receipt))

        case .unsubscribe:
            let id: String
            if connected.version == .v1_0, headers[StompHeader.id] == nil {
                id = try Self.require(StompHeader.destination, in: frame)
            } else {
                id = try Self.require(StompHeader.id, in: frame)
            }
            guard connected.subscriptionIDs.remove(id) != nil else {
                throw StompProtocolError(
                    .unknownSubscription,
                    "unknown subscription",
                    detail: "This connection has no subscription with id '\(id)'."
                )
            }
            let deletes = DurableSubscriptionHeaders.deletes(unsubscribe: headers)
            actions.append(.route(deletes ? .deleteSubscription(id: id) : .unsubscribe(id: id), receipt: receipt))

        case .ack, .nack:
            let request = try ackRequest(frame, version: connected.version)
            let operation: TransactionalOperation = frame.command == .ack ? .ack(request) : .nack(request)
            try route(
                operation,
                transaction: headers[StompHeader.transaction],
                receipt: receipt,
                connected: &connected,
                into: &actions
            )

        case .begin:
            let transaction = try Self.require(StompHeader.transaction, in: frame)
            guard connected.transactions[transaction] == nil else {
                throw StompProtocolError(
                    .duplicateTransaction,
                    "duplicate transaction",
                    detail: "Transaction '\(transaction)' has already begun."
                )
            }
            guard connected.transactions.count < settings.maxTransactions else {
                throw StompProtocolError(
                    .transactionLimit,
                    "too many transactions",
                    detail: "A connection may hold at most \(settings.maxTransactions) open transactions."
                )
            }
            connected.transactions[transaction] = Transaction()
            if let receipt { actions.append(.route(.barrier, receipt: receipt)) }

        case .commit, .abort:
            let transaction = try Self.require(StompHeader.transaction, in: frame)
            guard let held = connected.transactions.removeValue(forKey: transaction) else {
                throw Self.unknownTransaction(transaction)
            }
            connected.transactionBytes -= held.bytes
            if frame.command == .commit {
                actions.append(.route(.commit(held.operations), receipt: receipt))
            } else if let receipt {
                actions.append(.route(.barrier, receipt: receipt))
            }

        case .disconnect:
            state = .closing
            actions.append(.route(.disconnect, receipt: receipt))
        }
    }

    /// Routes an operation now, or holds it in its transaction until COMMIT.
    private func route(
        _ operation: TransactionalOperation,
        transaction: String?,
        receipt: String?,
        connected: inout Connected,
        into actions: inout [Action]
    ) throws(StompProtocolError) {
        guard let transaction else {
            switch operation {
            case .send(let request): actions.append(.route(.send(request), receipt: receipt))
            case .ack(let request): actions.append(.route(.ack(request), receipt: receipt))
            case .nack(let request): actions.append(.route(.nack(request), receipt: receipt))
            }
            return
        }
        guard connected.transactions[transaction] != nil else { throw Self.unknownTransaction(transaction) }
        guard connected.transactions[transaction]!.operations.count < settings.maxTransactionFrames else {
            throw StompProtocolError(
                .transactionLimit,
                "transaction too large",
                detail: "A transaction may hold at most \(settings.maxTransactionFrames) frames."
            )
        }
        var operation = operation
        let bytes = operation.footprint
        guard connected.transactionBytes + bytes <= settings.maxTransactionBytes else {
            throw StompProtocolError(
                .transactionBytesLimit,
                "transaction bytes budget exceeded",
                detail:
                    "This connection's open transactions may hold at most \(settings.maxTransactionBytes) bytes (limits.transaction-bytes) until COMMIT."
            )
        }
        // A held body must not keep alive the whole read buffer it arrived in.
        if case .send(var request) = operation {
            request.body = request.body.compacted()
            operation = .send(request)
        }
        connected.transactions[transaction]!.operations.append(operation)
        connected.transactions[transaction]!.bytes += bytes
        connected.transactionBytes += bytes
        if let receipt { actions.append(.route(.barrier, receipt: receipt)) }
    }

    // MARK: - Header rules

    /// The frame's destination, within the length and word limits.
    /// The queue behind a durable topic subscription: a queue name like any other (within the
    /// same bounds, the client's own temporary queues excepted) that the client may read, since
    /// another subscription of the same name shares its messages, and write, since the
    /// subscription fills it with topic messages and deleting it empties it.
    private func durableQueue(named name: String, for identity: SessionIdentity) throws(StompProtocolError) -> String {
        let invalid = StompProtocolError(
            .invalidDestination,
            "invalid durable subscription name",
            detail:
                "'\(name.prefix(200))' can't name the queue of a durable subscription: it must be a queue name of at most \(settings.maxDestinationLength) bytes (limits.destination-length)."
        )
        guard !name.isEmpty, name.utf8.count <= settings.maxDestinationLength, !TemporaryQueues.isPrivate(name),
            (try? Destination(parsing: Destination.queuePrefix + name)) == .queue(name)
        else { throw invalid }
        guard identity.permissions.mayRead(.queue(name)) else {
            throw Self.accessDenied(identity, reading: true, .queue(name))
        }
        guard identity.permissions.mayWrite(.queue(name)) else {
            throw Self.accessDenied(identity, reading: false, .queue(name))
        }
        return name
    }

    private func destination(of frame: StompFrame) throws(StompProtocolError) -> Destination {
        let header = try Self.require(StompHeader.destination, in: frame)
        guard header.utf8.count <= settings.maxDestinationLength else {
            throw StompProtocolError(
                .destinationTooLong,
                "destination too long",
                detail:
                    "A destination may have at most \(settings.maxDestinationLength) bytes (limits.destination-length)."
            )
        }
        let destination = try Destination(parsing: header)
        guard destination.wordCount <= settings.maxDestinationWords else {
            throw StompProtocolError(
                .destinationTooLong,
                "destination has too many words",
                detail:
                    "A topic name or pattern may have at most \(settings.maxDestinationWords) dot-separated words (limits.destination-words)."
            )
        }
        return destination
    }

    private static func require(_ name: String, in frame: StompFrame) throws(StompProtocolError) -> String {
        guard let value = frame.headers[name] else {
            throw StompProtocolError(
                .missingHeader,
                "missing header '\(name)'",
                detail: "A \(frame.command.rawValue) frame must have a '\(name)' header."
            )
        }
        return value
    }

    private static func ackMode(_ value: String?) throws(StompProtocolError) -> AckMode {
        guard let value else { return .auto }
        guard let mode = AckMode(rawValue: value) else {
            throw StompProtocolError(
                .invalidHeader,
                "invalid ack mode",
                detail: "ack must be auto, client or client-individual, not '\(value.prefix(64))'."
            )
        }
        return mode
    }

    private func prefetch(_ value: String?) throws(StompProtocolError) -> Int {
        guard let value else { return settings.maxUnacked }
        guard let count = Int(value), count > 0 else {
            throw StompProtocolError(
                .invalidHeader,
                "invalid prefetch-count",
                detail: "prefetch-count must be a positive integer."
            )
        }
        return min(count, settings.maxUnacked)
    }

    private func ackRequest(_ frame: StompFrame, version: StompVersion) throws(StompProtocolError) -> AckRequest {
        switch version {
        case .v1_2:
            return AckRequest(ackID: try Self.require(StompHeader.id, in: frame))
        case .v1_1:
            return AckRequest(
                messageID: try Self.require(StompHeader.messageID, in: frame),
                subscription: try Self.require(StompHeader.subscription, in: frame)
            )
        case .v1_0:
            return AckRequest(
                messageID: try Self.require(StompHeader.messageID, in: frame),
                subscription: frame.headers[StompHeader.subscription]
            )
        }
    }

    /// Headers of a SEND that the broker writes itself rather than pass on with the message.
    private static func isBrokerHeader(_ name: String) -> Bool {
        switch name {
        case StompHeader.destination, StompHeader.receipt, StompHeader.transaction, StompHeader.contentLength,
            StompHeader.messageID, StompHeader.subscription, StompHeader.ack, StompHeader.redelivered:
            return true
        default:
            return false
        }
    }

    private static func applicationHeaders(_ headers: StompHeaders) -> StompHeaders {
        var result = StompHeaders()
        // A frame has few headers (the decoder bounds them): a linear check for repeats beats a set.
        for header in headers where !isBrokerHeader(header.name) && result[header.name] == nil {
            result.add(header.name, header.value)
        }
        return result
    }

    private static func unknownTransaction(_ name: String) -> StompProtocolError {
        StompProtocolError(
            .unknownTransaction,
            "unknown transaction",
            detail: "No transaction '\(name)' is open on this connection."
        )
    }

    private static func serverFrame(_ command: StompCommand) -> StompProtocolError {
        StompProtocolError(
            .unexpectedFrame,
            "unexpected frame",
            detail: "\(command.rawValue) is a server frame; a client may not send it."
        )
    }
}
