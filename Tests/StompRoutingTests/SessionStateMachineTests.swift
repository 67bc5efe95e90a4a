import NIOCore
import Testing

@testable import StompRouting

/// Drives one ``SessionStateMachine`` with frames built from header pairs.
struct SessionDriver {
    typealias Action = SessionStateMachine.Action

    var session: SessionStateMachine
    var now: NIODeadline = at(0)

    init(settings: SessionStateMachine.Settings = .init(), sessionID: String = "s1") {
        self.session = SessionStateMachine(settings: settings, sessionID: sessionID)
    }

    mutating func receive(_ frame: StompFrame) -> [Action] {
        var actions: [Action] = []
        session.frameReceived(frame, now: now, into: &actions)
        return actions
    }

    mutating func receive(_ command: StompCommand, _ headers: [(String, String)] = [], body: String = "") -> [Action] {
        receive(StompFrame(command, headers: StompHeaders(headers), body: ByteBuffer(string: body)))
    }

    /// Connects with `accept-version` (none when nil) and returns the actions.
    @discardableResult
    mutating func connect(
        acceptVersion: String? = "1.2",
        heartBeat: String? = nil,
        command: StompCommand = .connect
    ) -> [Action] {
        var headers: [(String, String)] = [(StompHeader.host, "/")]
        if let acceptVersion { headers.append((StompHeader.acceptVersion, acceptVersion)) }
        if let heartBeat { headers.append((StompHeader.heartBeat, heartBeat)) }
        return receive(command, headers)
    }

    /// The error of the last action, which must be `.fail`.
    static func failure(_ actions: [Action]) -> StompProtocolError? {
        guard case .fail(let error) = actions.last else { return nil }
        return actions.count == 1 ? error : nil
    }
}

@Suite("SessionStateMachine: CONNECT")
struct SessionConnectTests {
    @Test("CONNECT 1.2 answers CONNECTED, reports the session and opens it in the router")
    func connect12() {
        var driver = SessionDriver()
        let actions = driver.connect(acceptVersion: "1.2", heartBeat: "0,0")
        let connected = StompFrame(
            .connected,
            headers: [
                StompHeader.version: "1.2",
                StompHeader.heartBeat: "10000,10000",
                StompHeader.server: "cluster-node",
                StompHeader.session: "s1",
            ]
        )
        #expect(
            actions == [
                .connected(.v1_2, .none),
                .send(connected),
                .route(.open(.v1_2), receipt: nil),
            ]
        )
        #expect(driver.session.version == .v1_2)
    }

    @Test("the STOMP command connects like CONNECT")
    func stompCommand() {
        var driver = SessionDriver()
        let actions = driver.connect(acceptVersion: "1.1,1.2", command: .stomp)
        #expect(actions.first == .connected(.v1_2, .none))
        #expect(actions.last == .route(.open(.v1_2), receipt: nil))
    }

    @Test(
        "accept-version negotiation picks the highest common version",
        arguments: [
            (String?.none, StompVersion.v1_0),
            ("1.0", .v1_0),
            ("1.1", .v1_1),
            ("1.2", .v1_2),
            ("1.0,1.1,1.2", .v1_2),
            ("1.2,1.0", .v1_2),
            ("1.0,1.1", .v1_1),
            (" 1.0 , 1.1 ", .v1_1),
            ("1.1,2.0", .v1_1),
        ]
    )
    func negotiation(header: String?, expected: StompVersion) {
        var driver = SessionDriver()
        let actions = driver.connect(acceptVersion: header)
        #expect(actions.first == .connected(expected, .none))
        #expect(driver.session.version == expected)
    }

    @Test("CONNECTED in 1.0 carries only the session header")
    func connected10() {
        var driver = SessionDriver()
        let actions = driver.connect(acceptVersion: nil)
        #expect(actions.contains(.send(StompFrame(.connected, headers: [StompHeader.session: "s1"]))))
    }

    @Test("a client that names 1.0 in accept-version is told the version chosen")
    func connected10Negotiated() {
        var driver = SessionDriver()
        let actions = driver.connect(acceptVersion: "1.0")
        #expect(
            actions.contains(
                .send(StompFrame(.connected, headers: [StompHeader.version: "1.0", StompHeader.session: "s1"]))
            )
        )
    }

    @Test("an unsupported version fails, and the ERROR names the supported versions", arguments: ["2.0", "", "1.3,3"])
    func unsupportedVersion(header: String) throws {
        var driver = SessionDriver()
        let error = try #require(SessionDriver.failure(driver.connect(acceptVersion: header)))
        #expect(error.kind == .unsupportedVersion)
        let frame = error.errorFrame(version: driver.session.version)
        #expect(frame.command == .error)
        #expect(frame.headers[StompHeader.version] == "1.0,1.1,1.2")
    }

    @Test("with external authentication, CONNECT asks the shell and waits for its answer")
    func externalAuthenticationAsks() {
        var driver = SessionDriver(settings: SessionStateMachine.Settings(authentication: .external))
        let asked = driver.receive(
            .connect,
            [("accept-version", "1.2"), ("login", "guest"), ("passcode", "secret"), ("host", "vh")]
        )
        #expect(asked == [.authenticate(ConnectCredentials(login: "guest", passcode: "secret", host: "vh"))])
        var actions: [SessionStateMachine.Action] = []
        let alice = SessionIdentity(user: "guest", permissions: .everything)
        driver.session.authenticated(.success(alice), now: .now(), into: &actions)
        #expect(actions.first == .connected(.v1_2, .none))
        #expect(driver.session.identity == alice)
    }

    @Test("a refused CONNECT gets the shell's ERROR with its receipt, and the session closes")
    func externalAuthenticationRefuses() {
        var driver = SessionDriver(settings: SessionStateMachine.Settings(authentication: .external))
        _ = driver.receive(
            .connect,
            [("accept-version", "1.2"), ("login", "guest"), ("passcode", "wrong"), ("receipt", "r-1")]
        )
        var actions: [SessionStateMachine.Action] = []
        driver.session.authenticated(
            .failure(StompProtocolError(.notAuthorized, "access refused")),
            now: .now(),
            into: &actions
        )
        #expect(SessionDriver.failure(actions)?.kind == .notAuthorized)
        #expect(SessionDriver.failure(actions)?.receiptID == "r-1")
        #expect(driver.connect().isEmpty)
    }

    @Test("a frame while the CONNECT is being decided is a frame before CONNECTED")
    func frameWhileAuthenticating() {
        var driver = SessionDriver(settings: SessionStateMachine.Settings(authentication: .external))
        _ = driver.connect()
        #expect(SessionDriver.failure(driver.receive(.send, [("destination", "/topic/a")]))?.kind == .notConnected)
    }

    @Test("the receipt of a failed CONNECT is echoed")
    func connectFailureEchoesReceipt() {
        var driver = SessionDriver()
        let actions = driver.receive(.connect, [("accept-version", "9.9"), ("receipt", "r-9")])
        #expect(SessionDriver.failure(actions)?.receiptID == "r-9")
    }

    @Test(
        "frames before CONNECT fail with notConnected",
        arguments: [StompCommand.send, .subscribe, .unsubscribe, .ack, .nack, .begin, .commit, .abort, .disconnect]
    )
    func frameBeforeConnect(command: StompCommand) {
        var driver = SessionDriver()
        let actions = driver.receive(command, [("destination", "/queue/a"), ("id", "1"), ("transaction", "t")])
        #expect(SessionDriver.failure(actions)?.kind == .notConnected)
    }

    @Test(
        "server frames from the client fail, before and after CONNECT",
        arguments: [StompCommand.connected, .message, .receipt, .error]
    )
    func serverFrames(command: StompCommand) {
        var before = SessionDriver()
        #expect(SessionDriver.failure(before.receive(command))?.kind == .unexpectedFrame)
        var after = SessionDriver()
        after.connect()
        #expect(SessionDriver.failure(after.receive(command))?.kind == .unexpectedFrame)
    }

    @Test("CONNECT twice fails with alreadyConnected", arguments: [StompCommand.connect, .stomp])
    func connectTwice(command: StompCommand) {
        var driver = SessionDriver()
        driver.connect()
        #expect(SessionDriver.failure(driver.connect(command: command))?.kind == .alreadyConnected)
    }

    @Test("an invalid heart-beat header fails", arguments: ["1", "a,b", "-1,0", "1,2,3", "", "1,", "86400001,0"])
    func invalidHeartBeat(value: String) {
        var driver = SessionDriver()
        #expect(SessionDriver.failure(driver.connect(heartBeat: value))?.kind == .invalidHeader)
    }

    @Test("heart-beat is ignored in 1.0")
    func heartBeatIgnoredIn10() {
        var driver = SessionDriver()
        let actions = driver.connect(acceptVersion: nil, heartBeat: "garbage")
        #expect(actions.first == .connected(.v1_0, .none))
    }
}

@Suite("SessionStateMachine: frames")
struct SessionFrameTests {
    private func connected(_ version: String = "1.2", settings: SessionStateMachine.Settings = .init()) -> SessionDriver
    {
        var driver = SessionDriver(settings: settings)
        driver.connect(acceptVersion: version)
        return driver
    }

    // MARK: - SEND

    @Test("SEND routes a publish with the application's headers only, first occurrence wins")
    func send() {
        var driver = connected()
        let actions = driver.receive(
            .send,
            [
                ("destination", "/topic/a.b"), ("receipt", "r1"), ("content-type", "text/plain"), ("x", "1"),
                ("x", "2"),
                ("message-id", "forged"), ("subscription", "forged"), ("ack", "forged"), ("redelivered", "true"),
                ("content-length", "5"),
            ],
            body: "hello"
        )
        let request = PublishRequest(
            destination: .topic("a.b"),
            headers: StompHeaders([("content-type", "text/plain"), ("x", "1")]),
            body: buffer("hello")
        )
        #expect(actions == [.route(.send(request), receipt: "r1")])
    }

    @Test(
        "a body on any client frame but SEND is an error that says so, with the frame's receipt",
        arguments: [StompCommand.subscribe, .unsubscribe, .ack, .nack, .begin, .commit, .abort, .disconnect]
    )
    func bodyOnlyOnSend(command: StompCommand) throws {
        var driver = connected()
        let headers = [("destination", "/queue/a"), ("id", "1"), ("transaction", "t"), ("receipt", "r9")]
        let error = try #require(SessionDriver.failure(driver.receive(command, headers, body: "x")))
        #expect(error.kind == .unexpectedBody)
        #expect(error.receiptID == "r9")
        #expect(error.detail.contains(command.rawValue))
    }

    @Test("a CONNECT with a body is refused too")
    func bodyOnConnect() {
        var driver = SessionDriver()
        let actions = driver.receive(.connect, [("accept-version", "1.2")], body: "hello")
        #expect(SessionDriver.failure(actions)?.kind == .unexpectedBody)
    }

    @Test("SEND without destination fails")
    func sendWithoutDestination() {
        var driver = connected()
        #expect(SessionDriver.failure(driver.receive(.send))?.kind == .missingHeader)
    }

    @Test(
        "invalid destinations fail",
        arguments: [
            "/exchange/x", "/exchange/amq.direct/key", "/topic/a\u{1}", "/topic/", "/queue/", "", "/amq/queue/",
            "/temp-queue/x", "/a/b",
        ]
    )
    func invalidDestination(value: String) {
        var send = connected()
        #expect(SessionDriver.failure(send.receive(.send, [("destination", value)]))?.kind == .invalidDestination)
        var subscribe = connected()
        #expect(
            SessionDriver.failure(subscribe.receive(.subscribe, [("destination", value), ("id", "1")]))?.kind
                == .invalidDestination
        )
    }

    @Test("SEND to a wildcard topic fails", arguments: ["/topic/a.*", "/topic/#", "/topic/a.#.b", "/topic/*"])
    func sendToWildcard(value: String) {
        var driver = connected()
        #expect(SessionDriver.failure(driver.receive(.send, [("destination", value)]))?.kind == .invalidDestination)
    }

    @Test("a queue name with wildcard characters is not a pattern")
    func queueIsNeverPattern() {
        var driver = connected()
        let actions = driver.receive(.send, [("destination", "/queue/a.*")])
        #expect(
            actions == [
                .route(
                    .send(PublishRequest(destination: .queue("a.*"), headers: [:], body: ByteBuffer())),
                    receipt: nil
                )
            ]
        )
    }

    // MARK: - SUBSCRIBE / UNSUBSCRIBE

    @Test("SUBSCRIBE routes a subscribe request with defaults")
    func subscribe() {
        var driver = connected()
        let actions = driver.receive(.subscribe, [("destination", "/topic/a.*"), ("id", "s-1"), ("receipt", "r")])
        let request = SubscribeRequest(id: "s-1", destination: .topic("a.*"), ackMode: .auto, prefetch: 1_000)
        #expect(actions == [.route(.subscribe(request), receipt: "r")])
    }

    @Test(
        "ack modes and prefetch-count, capped by maxUnacked",
        arguments: [
            ("auto", "5", AckMode.auto, 5),
            ("client", "1", .client, 1),
            ("client-individual", "50", .clientIndividual, 10),
        ]
    )
    func subscribeOptions(ack: String, prefetch: String, mode: AckMode, expected: Int) {
        var driver = connected(settings: .init(maxUnacked: 10))
        let actions = driver.receive(
            .subscribe,
            [("destination", "/queue/q"), ("id", "1"), ("ack", ack), ("prefetch-count", prefetch)]
        )
        let request = SubscribeRequest(id: "1", destination: .queue("q"), ackMode: mode, prefetch: expected)
        #expect(actions == [.route(.subscribe(request), receipt: nil)])
    }

    @Test("SUBSCRIBE needs an id in 1.1 and 1.2", arguments: ["1.1", "1.2"])
    func subscribeNeedsID(version: String) {
        var driver = connected(version)
        #expect(
            SessionDriver.failure(driver.receive(.subscribe, [("destination", "/queue/a")]))?.kind == .missingHeader
        )
    }

    @Test("SUBSCRIBE without id in 1.0 uses the destination as id, and UNSUBSCRIBE by destination ends it")
    func subscribeWithoutIDIn10() {
        var driver = connected("1.0")
        let actions = driver.receive(.subscribe, [("destination", "/queue/a")])
        let request = SubscribeRequest(id: "/queue/a", destination: .queue("a"), ackMode: .auto, prefetch: 1_000)
        #expect(actions == [.route(.subscribe(request), receipt: nil)])
        #expect(
            driver.receive(.unsubscribe, [("destination", "/queue/a")]) == [
                .route(.unsubscribe(id: "/queue/a"), receipt: nil)
            ]
        )
    }

    @Test("SUBSCRIBE without destination fails")
    func subscribeWithoutDestination() {
        var driver = connected()
        #expect(SessionDriver.failure(driver.receive(.subscribe, [("id", "1")]))?.kind == .missingHeader)
    }

    @Test("a duplicate subscription id fails")
    func duplicateSubscription() {
        var driver = connected()
        _ = driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "1")])
        let actions = driver.receive(.subscribe, [("destination", "/topic/b"), ("id", "1")])
        #expect(SessionDriver.failure(actions)?.kind == .duplicateSubscription)
    }

    @Test("an id may be reused after UNSUBSCRIBE")
    func reuseAfterUnsubscribe() {
        var driver = connected()
        _ = driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "1")])
        #expect(
            driver.receive(.unsubscribe, [("id", "1"), ("receipt", "u")]) == [
                .route(.unsubscribe(id: "1"), receipt: "u")
            ]
        )
        let again = driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "1")])
        #expect(again.count == 1)
        #expect(SessionDriver.failure(again) == nil)
    }

    @Test("UNSUBSCRIBE of an unknown id fails")
    func unknownSubscription() {
        var driver = connected()
        #expect(SessionDriver.failure(driver.receive(.unsubscribe, [("id", "nope")]))?.kind == .unknownSubscription)
    }

    @Test("UNSUBSCRIBE without id fails in 1.1 and 1.2", arguments: ["1.1", "1.2"])
    func unsubscribeWithoutID(version: String) {
        var driver = connected(version)
        _ = driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "/queue/a")])
        #expect(
            SessionDriver.failure(driver.receive(.unsubscribe, [("destination", "/queue/a")]))?.kind == .missingHeader
        )
    }

    @Test("more than maxSubscriptions subscriptions fail")
    func tooManySubscriptions() {
        var driver = connected(settings: .init(maxSubscriptions: 2))
        #expect(driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "1")]).count == 1)
        #expect(driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "2")]).count == 1)
        let third = driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "3")])
        #expect(SessionDriver.failure(third)?.kind == .tooManySubscriptions)
    }

    @Test("an invalid ack mode fails", arguments: ["sometimes", "AUTO", "", "client_individual"])
    func invalidAckMode(value: String) {
        var driver = connected()
        let actions = driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "1"), ("ack", value)])
        #expect(SessionDriver.failure(actions)?.kind == .invalidHeader)
    }

    @Test("an invalid prefetch-count fails", arguments: ["0", "-1", "x", "", "1.5"])
    func invalidPrefetch(value: String) {
        var driver = connected()
        let actions = driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "1"), ("prefetch-count", value)])
        #expect(SessionDriver.failure(actions)?.kind == .invalidHeader)
    }

    // MARK: - ACK / NACK

    @Test("ACK and NACK in 1.2 name the ack id", arguments: [StompCommand.ack, .nack])
    func ack12(command: StompCommand) {
        var driver = connected("1.2")
        let actions = driver.receive(command, [("id", "7"), ("receipt", "r")])
        let operation: RouterOperation = command == .ack ? .ack(AckRequest(ackID: "7")) : .nack(AckRequest(ackID: "7"))
        #expect(actions == [.route(operation, receipt: "r")])
    }

    @Test("ACK in 1.2 without id fails, even with message-id", arguments: [StompCommand.ack, .nack])
    func ack12WithoutID(command: StompCommand) {
        var driver = connected("1.2")
        let actions = driver.receive(command, [("message-id", "m"), ("subscription", "s")])
        #expect(SessionDriver.failure(actions)?.kind == .missingHeader)
    }

    @Test("ACK in 1.1 names message-id and subscription")
    func ack11() {
        var driver = connected("1.1")
        let actions = driver.receive(.ack, [("message-id", "m"), ("subscription", "s")])
        #expect(actions == [.route(.ack(AckRequest(messageID: "m", subscription: "s")), receipt: nil)])
    }

    @Test(
        "ACK in 1.1 without message-id or subscription fails",
        arguments: [[("message-id", "m")], [("subscription", "s")], [("id", "1")]] as [[(String, String)]]
    )
    func ack11Missing(headers: [(String, String)]) {
        var driver = connected("1.1")
        #expect(SessionDriver.failure(driver.receive(.ack, headers))?.kind == .missingHeader)
    }

    @Test("ACK in 1.0 needs message-id only")
    func ack10() {
        var driver = connected("1.0")
        #expect(driver.receive(.ack, [("message-id", "m")]) == [.route(.ack(AckRequest(messageID: "m")), receipt: nil)])
        var missing = connected("1.0")
        #expect(SessionDriver.failure(missing.receive(.ack, [("subscription", "s")]))?.kind == .missingHeader)
    }

    // MARK: - Errors in general

    @Test("the receipt of the offending frame is echoed in the error")
    func errorEchoesReceipt() throws {
        var driver = connected()
        let actions = driver.receive(.send, [("destination", "/nowhere"), ("receipt", "r-42")])
        let error = try #require(SessionDriver.failure(actions))
        #expect(error.receiptID == "r-42")
        #expect(error.errorFrame(version: .v1_2).headers[StompHeader.receiptID] == "r-42")
    }

    @Test("after an error the session ignores further frames")
    func ignoresAfterError() {
        var driver = connected()
        #expect(SessionDriver.failure(driver.receive(.send))?.kind == .missingHeader)
        #expect(driver.receive(.send, [("destination", "/queue/a")]).isEmpty)
        #expect(driver.receive(.subscribe, [("destination", "/queue/a"), ("id", "1")]).isEmpty)
        #expect(driver.receive(.disconnect).isEmpty)
        #expect(driver.connect().isEmpty)
    }

    @Test("failed() closes the session")
    func failedFromOutside() {
        var driver = connected()
        driver.session.failed()
        #expect(driver.receive(.send, [("destination", "/queue/a")]).isEmpty)
        #expect(driver.session.tick(now: at(1_000)) == .none)
    }

    @Test("DISCONNECT routes disconnect with its receipt, then frames are ignored")
    func disconnect() {
        var driver = connected()
        #expect(driver.receive(.disconnect, [("receipt", "bye")]) == [.route(.disconnect, receipt: "bye")])
        #expect(driver.receive(.send, [("destination", "/queue/a")]).isEmpty)
    }

    @Test("a frame without a receipt after a failure-free frame produces exactly one action")
    func singleActionPerFrame() {
        var driver = connected()
        #expect(driver.receive(.send, [("destination", "/queue/a")]).count == 1)
        #expect(driver.receive(.send, [("destination", "/topic/a")]).count == 1)
    }

    // MARK: - Transactions

    @Test("SEND, ACK and NACK in a transaction route nothing until COMMIT, which routes them in order")
    func commit() {
        var driver = connected()
        #expect(driver.receive(.begin, [("transaction", "t")]).isEmpty)
        #expect(driver.receive(.send, [("destination", "/queue/a"), ("transaction", "t")], body: "1").isEmpty)
        #expect(driver.receive(.ack, [("id", "5"), ("transaction", "t")]).isEmpty)
        #expect(driver.receive(.send, [("destination", "/topic/b"), ("transaction", "t")], body: "2").isEmpty)
        #expect(driver.receive(.nack, [("id", "6"), ("transaction", "t")]).isEmpty)
        let actions = driver.receive(.commit, [("transaction", "t"), ("receipt", "c")])
        let operations: [TransactionalOperation] = [
            .send(PublishRequest(destination: .queue("a"), headers: [:], body: buffer("1"))),
            .ack(AckRequest(ackID: "5")),
            .send(PublishRequest(destination: .topic("b"), headers: [:], body: buffer("2"))),
            .nack(AckRequest(ackID: "6")),
        ]
        #expect(actions == [.route(.commit(operations), receipt: "c")])
        // The transaction is over.
        #expect(SessionDriver.failure(driver.receive(.commit, [("transaction", "t")]))?.kind == .unknownTransaction)
    }

    @Test("frames outside the transaction route immediately while it is open")
    func nonTransactionalFramesRouteImmediately() {
        var driver = connected()
        _ = driver.receive(.begin, [("transaction", "t")])
        let actions = driver.receive(.send, [("destination", "/queue/a")])
        #expect(
            actions == [
                .route(.send(PublishRequest(destination: .queue("a"), headers: [:], body: ByteBuffer())), receipt: nil)
            ]
        )
    }

    @Test("ABORT discards the transaction")
    func abort() {
        var driver = connected()
        _ = driver.receive(.begin, [("transaction", "t")])
        _ = driver.receive(.send, [("destination", "/queue/a"), ("transaction", "t")])
        #expect(driver.receive(.abort, [("transaction", "t")]).isEmpty)
        #expect(SessionDriver.failure(driver.receive(.commit, [("transaction", "t")]))?.kind == .unknownTransaction)
    }

    @Test("an empty COMMIT routes an empty commit")
    func emptyCommit() {
        var driver = connected()
        _ = driver.receive(.begin, [("transaction", "t")])
        #expect(driver.receive(.commit, [("transaction", "t")]) == [.route(.commit([]), receipt: nil)])
    }

    @Test("receipts inside a transaction become barriers")
    func receiptsInTransaction() {
        var driver = connected()
        #expect(driver.receive(.begin, [("transaction", "t"), ("receipt", "b")]) == [.route(.barrier, receipt: "b")])
        #expect(
            driver.receive(.send, [("destination", "/queue/a"), ("transaction", "t"), ("receipt", "s")]) == [
                .route(.barrier, receipt: "s")
            ]
        )
        #expect(
            driver.receive(.ack, [("id", "1"), ("transaction", "t"), ("receipt", "a")]) == [
                .route(.barrier, receipt: "a")
            ]
        )
        #expect(driver.receive(.abort, [("transaction", "t"), ("receipt", "x")]) == [.route(.barrier, receipt: "x")])
    }

    @Test("transactions are independent")
    func twoTransactions() {
        var driver = connected()
        _ = driver.receive(.begin, [("transaction", "t1")])
        _ = driver.receive(.begin, [("transaction", "t2")])
        _ = driver.receive(.send, [("destination", "/queue/one"), ("transaction", "t1")])
        _ = driver.receive(.send, [("destination", "/queue/two"), ("transaction", "t2")])
        let two = driver.receive(.commit, [("transaction", "t2")])
        #expect(
            two == [
                .route(
                    .commit([.send(PublishRequest(destination: .queue("two"), headers: [:], body: ByteBuffer()))]),
                    receipt: nil
                )
            ]
        )
        let one = driver.receive(.commit, [("transaction", "t1")])
        #expect(
            one == [
                .route(
                    .commit([.send(PublishRequest(destination: .queue("one"), headers: [:], body: ByteBuffer()))]),
                    receipt: nil
                )
            ]
        )
    }

    @Test(
        "an unknown transaction fails",
        arguments: [
            (StompCommand.send, [("destination", "/queue/a"), ("transaction", "nope")]),
            (.ack, [("id", "1"), ("transaction", "nope")]),
            (.nack, [("id", "1"), ("transaction", "nope")]),
            (.commit, [("transaction", "nope")]),
            (.abort, [("transaction", "nope")]),
        ] as [(StompCommand, [(String, String)])]
    )
    func unknownTransaction(command: StompCommand, headers: [(String, String)]) {
        var driver = connected()
        _ = driver.receive(.begin, [("transaction", "other")])
        #expect(SessionDriver.failure(driver.receive(command, headers))?.kind == .unknownTransaction)
    }

    @Test("BEGIN, COMMIT and ABORT need a transaction header", arguments: [StompCommand.begin, .commit, .abort])
    func transactionHeaderRequired(command: StompCommand) {
        var driver = connected()
        #expect(SessionDriver.failure(driver.receive(command))?.kind == .missingHeader)
    }

    @Test("a duplicate BEGIN fails")
    func duplicateBegin() {
        var driver = connected()
        _ = driver.receive(.begin, [("transaction", "t")])
        let error = SessionDriver.failure(driver.receive(.begin, [("transaction", "t"), ("receipt", "r")]))
        #expect(error?.kind == .duplicateTransaction)
        #expect(error?.receiptID == "r")
    }

    @Test("open transactions and frames per transaction are bounded")
    func transactionLimits() {
        var driver = connected(settings: .init(maxTransactions: 1, maxTransactionFrames: 1))
        _ = driver.receive(.begin, [("transaction", "t")])
        #expect(SessionDriver.failure(driver.receive(.begin, [("transaction", "u")]))?.kind == .transactionLimit)

        var frames = connected(settings: .init(maxTransactions: 1, maxTransactionFrames: 1))
        _ = frames.receive(.begin, [("transaction", "t")])
        #expect(frames.receive(.send, [("destination", "/queue/a"), ("transaction", "t")]).isEmpty)
        #expect(
            SessionDriver.failure(frames.receive(.send, [("destination", "/queue/a"), ("transaction", "t")]))?.kind
                == .transactionLimit
        )
    }
}

@Suite("SessionStateMachine: permissions")
struct SessionPermissionTests {
    /// A session connected as a user who may read prices and use the jobs queue.
    private static func alice() throws -> SessionDriver {
        var driver = SessionDriver(settings: SessionStateMachine.Settings(authentication: .external))
        _ = driver.connect()
        let permissions = try DestinationPermissions(read: ["/topic/prices.#", "/queue/jobs"], write: ["/queue/jobs"])
        var actions: [SessionStateMachine.Action] = []
        driver.session.authenticated(
            .success(SessionIdentity(user: "alice", permissions: permissions)),
            now: .now(),
            into: &actions
        )
        return driver
    }

    @Test("SUBSCRIBE needs a read pattern covering all it can match")
    func subscribe() throws {
        var driver = try Self.alice()
        #expect(
            SessionDriver.failure(driver.receive(.subscribe, [("id", "1"), ("destination", "/topic/prices.*")])) == nil
        )
        let denied = SessionDriver.failure(
            driver.receive(.subscribe, [("id", "2"), ("destination", "/topic/#"), ("receipt", "r-2")])
        )
        #expect(denied?.kind == .readDenied)
        #expect(denied?.detail.contains("user 'alice' may not read from /topic/#") == true)
        #expect(denied?.receiptID == "r-2")
    }

    @Test("SEND needs a write pattern, in a transaction too")
    func send() throws {
        var driver = try Self.alice()
        #expect(SessionDriver.failure(driver.receive(.send, [("destination", "/queue/jobs")])) == nil)
        var inTransaction = try Self.alice()
        _ = inTransaction.receive(.begin, [("transaction", "t")])
        let denied = SessionDriver.failure(
            inTransaction.receive(.send, [("destination", "/topic/prices.eur"), ("transaction", "t")])
        )
        #expect(denied?.kind == .writeDenied)
        #expect(denied?.detail.contains("may not write to /topic/prices.eur") == true)
    }

    @Test("a reply-to must name a destination the sender could write to")
    func replyTo() throws {
        var driver = try Self.alice()
        #expect(
            SessionDriver.failure(driver.receive(.send, [("destination", "/queue/jobs"), ("reply-to", "/queue/jobs")]))
                == nil
        )
        // Not a destination of this broker: nobody can be made to write there.
        #expect(
            SessionDriver.failure(driver.receive(.send, [("destination", "/queue/jobs"), ("reply-to", "/nowhere/x")]))
                == nil
        )
        // A name without a prefix is a queue (as RabbitMQ has it), and checked like one.
        var unprefixed = try Self.alice()
        #expect(
            SessionDriver.failure(unprefixed.receive(.send, [("destination", "/queue/jobs"), ("reply-to", "admin")]))?
                .kind == .writeDenied
        )
        var confused = try Self.alice()
        let denied = SessionDriver.failure(
            confused.receive(.send, [("destination", "/queue/jobs"), ("reply-to", "/queue/admin"), ("receipt", "r")])
        )
        #expect(denied?.kind == .writeDenied)
        #expect(denied?.detail.contains("user 'alice' may not name /queue/admin as reply-to") == true)
        #expect(denied?.receiptID == "r")
    }

    @Test("a temporary reply queue takes a SEND from anyone who holds its name, and a SUBSCRIBE from no one")
    func temporaryReplyQueues() throws {
        var responder = try Self.alice()
        let reply = [("destination", "/reply-queue/amq.gen-0123456789abcdef0123456789abcdef")]
        #expect(SessionDriver.failure(responder.receive(.send, reply)) == nil)
        #expect(
            SessionDriver.failure(
                responder.receive(.send, [("destination", "/queue/jobs"), ("reply-to", reply[0].1)])
            ) == nil,
            "passing a reply address on needs no permission either"
        )
        var thief = SessionDriver()
        _ = thief.connect()
        let refused = SessionDriver.failure(
            thief.receive(.subscribe, [("id", "1"), ("destination", "/queue/amq.gen-0123456789abcdef")])
        )
        #expect(refused?.kind == .readDenied)
        #expect(refused?.detail.contains("another connection's temporary reply queue") == true)
        var misplaced = SessionDriver()
        _ = misplaced.connect()
        let invalid = SessionDriver.failure(misplaced.receive(.send, [("destination", "/temp-queue/replies")]))
        #expect(invalid?.kind == .invalidDestination)
        #expect(invalid?.detail.contains("only a SEND's reply-to header may name") == true)
    }

    @Test("new permissions apply from the next frame")
    func replaced() throws {
        var driver = try Self.alice()
        driver.session.replacePermissions(try DestinationPermissions(read: ["/topic/#"], write: []))
        #expect(SessionDriver.failure(driver.receive(.subscribe, [("id", "1"), ("destination", "/topic/#")])) == nil)
        #expect(SessionDriver.failure(driver.receive(.send, [("destination", "/queue/jobs")]))?.kind == .writeDenied)
    }

    @Test("without authentication every client is anonymous and may do everything")
    func anonymous() {
        var driver = SessionDriver()
        _ = driver.connect()
        #expect(driver.session.identity == .anonymous)
        #expect(SessionDriver.failure(driver.receive(.subscribe, [("id", "1"), ("destination", "/topic/#")])) == nil)
    }
}
