import NIOCore
import Testing

@testable import StompRouting

/// Which SUBSCRIBE and UNSUBSCRIBE frames ask for, or delete, a durable topic subscription, in
/// RabbitMQ's and ActiveMQ's headers, and the queue each names.
@Suite("SessionStateMachine: durable subscriptions")
struct SessionDurableSubscriptionTests {
    private static func connected(clientID: String? = nil) -> SessionDriver {
        var driver = SessionDriver()
        var headers: [(String, String)] = [(StompHeader.acceptVersion, "1.2")]
        if let clientID { headers.append(("client-id", clientID)) }
        _ = driver.receive(.connect, headers)
        return driver
    }

    private static func durableQueue(_ actions: [SessionStateMachine.Action]) -> String?? {
        guard actions.count == 1, case .route(.subscribe(let request), _) = actions[0] else { return .none }
        return .some(request.durableQueue)
    }

    @Test(
        "the queue a SUBSCRIBE's headers name",
        arguments: [
            ([("durable", "true"), ("auto-delete", "false")], nil, "stomp-subscription-s1"),
            ([("persistent", "true"), ("auto-delete", "false")], "app", "stomp-subscription-app-s1"),
            ([("durable", "true"), ("auto-delete", "false"), ("x-queue-name", "feed")], nil, "feed"),
            ([("activemq.subscriptionName", "feed")], "app", "app.feed"),
            ([("durable-subscription-name", "feed")], nil, "feed"),
            ([("durable", "true")], nil, nil),
            ([("auto-delete", "false")], nil, nil),
            ([], "app", nil),
        ] as [([(String, String)], String?, String?)]
    )
    func names(headers: [(String, String)], clientID: String?, expected: String?) {
        var driver = Self.connected(clientID: clientID)
        let actions = driver.receive(.subscribe, [("id", "s1"), ("destination", "/topic/news.#")] + headers)
        #expect(Self.durableQueue(actions) == .some(expected))
    }

    @Test("a queue is never a durable subscription: its messages already wait")
    func queuesIgnoreTheHeaders() {
        var driver = Self.connected()
        let actions = driver.receive(
            .subscribe,
            [("id", "s1"), ("destination", "/queue/jobs"), ("durable", "true"), ("auto-delete", "false")]
        )
        #expect(Self.durableQueue(actions) == .some(nil))
    }

    @Test("a name that can't be a queue's, or another connection's temporary queue, is refused")
    func invalidNames() {
        for name in [String(repeating: "x", count: 10_000), "amq.gen-private-x"] {
            var driver = Self.connected()
            let actions = driver.receive(
                .subscribe,
                [("id", "s1"), ("destination", "/topic/a"), ("activemq.subscriptionName", name), ("receipt", "r")]
            )
            let error = SessionDriver.failure(actions)
            #expect(error?.kind == .invalidDestination, "\(name.prefix(20))")
            #expect(error?.summary == "invalid durable subscription name")
            #expect(error?.receiptID == "r")
        }
    }

    @Test("the subscriber must be allowed to read and write the queue: it could hold another's messages")
    func readPermissionOnTheQueue() throws {
        func bob() throws -> SessionDriver {
            var driver = SessionDriver(settings: SessionStateMachine.Settings(authentication: .external))
            _ = driver.connect()
            let permissions = try DestinationPermissions(
                read: ["/topic/news.#", "/queue/mine", "/queue/readonly"],
                write: ["/queue/mine"]
            )
            var actions: [SessionStateMachine.Action] = []
            driver.session.authenticated(
                .success(SessionIdentity(user: "bob", permissions: permissions)),
                now: .now(),
                into: &actions
            )
            return driver
        }
        var driver = try bob()
        let denied = driver.receive(
            .subscribe,
            [("id", "1"), ("destination", "/topic/news.#"), ("activemq.subscriptionName", "orders")]
        )
        #expect(SessionDriver.failure(denied)?.kind == .readDenied)
        driver = try bob()
        let readOnly = driver.receive(
            .subscribe,
            [("id", "1"), ("destination", "/topic/news.#"), ("activemq.subscriptionName", "readonly")]
        )
        #expect(SessionDriver.failure(readOnly)?.kind == .writeDenied, "it would fill and empty the queue")
        driver = try bob()
        let allowed = driver.receive(
            .subscribe,
            [("id", "2"), ("destination", "/topic/news.#"), ("activemq.subscriptionName", "mine")]
        )
        #expect(Self.durableQueue(allowed) == .some("mine"))
    }

    @Test(
        "an UNSUBSCRIBE deletes the subscription when its headers say so",
        arguments: [
            ([("durable", "true")], true), ([("persistent", "true")], true),
            ([("activemq.subscriptionName", "feed")], true), ([], false),
        ] as [([(String, String)], Bool)]
    )
    func deleting(headers: [(String, String)], deletes: Bool) {
        var driver = Self.connected()
        _ = driver.receive(.subscribe, [("id", "s1"), ("destination", "/topic/a")])
        let actions = driver.receive(.unsubscribe, [("id", "s1")] + headers)
        #expect(actions == [.route(deletes ? .deleteSubscription(id: "s1") : .unsubscribe(id: "s1"), receipt: nil)])
    }
}
