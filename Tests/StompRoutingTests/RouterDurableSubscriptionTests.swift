import NIOCore
import Testing

@testable import StompRouting

/// Durable topic subscriptions in the router: the SUBSCRIBE binds a durable queue to the
/// topic pattern and consumes that queue; the node that leads the queue enqueues the matching
/// topic messages it sees (published here or forwarded); MESSAGE frames name the topic; a
/// plain UNSUBSCRIBE leaves the subscription, a deleting one unbinds it.
@Suite struct RouterDurableSubscriptionTests {
    var driver = RouterDriver(settings: Router.Settings(messageIDPrefix: "n1-", durableQueues: true))

    /// A durable subscription `s` to `news.#`, kept in the queue `sub-news`.
    static func durableRequest(ack: AckMode = .clientIndividual) -> SubscribeRequest {
        SubscribeRequest(id: "s", destination: .topic("news.#"), ackMode: ack, prefetch: 10, durableQueue: "sub-news")
    }

    mutating func subscribeDurably(_ connection: ConnectionID, receipt: String? = nil) -> [RouterEvent] {
        driver.run(.subscribe(Self.durableRequest()), from: connection, receipt: receipt)
    }

    @Test mutating func aDurableSubscribeBindsItsQueueAheadOfItsReceiptAndConsumesIt() {
        let consumer = driver.open(1)
        var outputs: [RouterOutput] = []
        let request = Self.durableRequest(ack: .auto)
        driver.router.handle(.subscribe(request), from: consumer, receipt: "r", into: &outputs)
        guard case .durable(.bind(queue: "sub-news", pattern: "news.#"), holding: consumer) = outputs.first else {
            Issue.record("expected the binding first, holding the connection, got \(outputs)")
            return
        }
        #expect(outputs.contains { if case .interest(.queue("sub-news"), delta: 1) = $0 { true } else { false } })
        #expect(!outputs.contains { if case .interest(.topic, _) = $0 { true } else { false } })
        guard case .receipt(consumer, _, waitsForCluster: true) = outputs.last else {
            Issue.record("expected the receipt last, got \(outputs)")
            return
        }
    }

    @Test mutating func theLeadingNodeEnqueuesMatchingTopicMessagesWhileBound() {
        let publisher = driver.open(1)
        let listener = driver.open(2)
        driver.subscribe(listener, id: "t", "/topic/news.sport")
        driver.run(.durableBinding(queue: "sub-news", pattern: "news.#"))
        #expect(
            driver.lastClusterOutputs.contains { if case .interest(.topic("news.#"), 1) = $0 { true } else { false } }
        )
        #expect(driver.router.hasLocalSubscriber(for: .topic("news.weather")))

        let events = driver.send(publisher, "/topic/news.sport", "goal")
        #expect(events.bodies(to: listener) == ["goal"], "ordinary subscribers are served as before")
        guard case .enqueue("sub-news", let envelope) = driver.lastDurable.first?.work else {
            Issue.record("expected an enqueue, got \(driver.lastDurable)")
            return
        }
        #expect(driver.lastDurable.count == 1 && driver.lastDurable[0].holding == nil)
        #expect(envelope.destination == .topic("news.sport") && String(buffer: envelope.body) == "goal")

        let forwarded = MessageEnvelope(
            destination: .topic("news.weather"),
            messageID: "n2-1",
            headers: [:],
            body: ByteBuffer(string: "rain")
        )
        driver.run(.deliverForwarded(forwarded))
        #expect(driver.lastDurable.map(\.work) == [.enqueue(queue: "sub-news", forwarded)])
        driver.send(publisher, "/topic/sports", "no match")
        #expect(driver.lastDurable.isEmpty)

        driver.run(.durableBinding(queue: "sub-news", pattern: nil))
        #expect(
            driver.lastClusterOutputs.contains { if case .interest(.topic("news.#"), -1) = $0 { true } else { false } }
        )
        driver.send(publisher, "/topic/news.sport", "after")
        #expect(driver.lastDurable.isEmpty, "another node leads it now")
    }

    @Test mutating func itsMessagesNameTheTopicAndAreSettledInItsQueue() {
        let consumer = driver.open(1)
        _ = subscribeDurably(consumer)
        let envelope = MessageEnvelope(
            destination: .topic("news.sport"),
            messageID: "n1-9",
            headers: [:],
            body: ByteBuffer(string: "goal")
        )
        let events = driver.run(.acceptDurable(queue: "sub-news", envelope, id: 4, redelivered: false))
        let frame = try! #require(events.messages(to: consumer).first)
        #expect(frame.headers[StompHeader.destination] == "/topic/news.sport")
        #expect(frame.headers[StompHeader.subscription] == "s")
        driver.run(.ack(AckRequest(ackID: frame.ackID)), from: consumer)
        #expect(driver.lastDurable.map(\.work) == [.settle(queue: "sub-news", ids: [4])])
    }

    @Test mutating func onlyADeletingUnsubscribeUnbinds() {
        let consumer = driver.open(1)
        _ = subscribeDurably(consumer)
        driver.run(.unsubscribe(id: "s"), from: consumer)
        #expect(driver.lastDurable.isEmpty, "the client is away; the subscription stays")
        _ = subscribeDurably(consumer)
        driver.run(.deleteSubscription(id: "s"), from: consumer)
        #expect(driver.lastDurable.map(\.work) == [.unbind(queue: "sub-news")])
        #expect(driver.lastDurable.first?.holding == consumer)
        // An ordinary subscription deleted is only unsubscribed.
        driver.subscribe(consumer, id: "t", "/topic/x")
        driver.run(.deleteSubscription(id: "t"), from: consumer)
        #expect(driver.lastDurable.isEmpty)
    }

    @Test func withoutDurableQueuesItIsAnOrdinaryTopicSubscription() {
        var memory = RouterDriver()
        let consumer = memory.open(1)
        let publisher = memory.open(2)
        let request = Self.durableRequest(ack: .auto)
        memory.run(.subscribe(request), from: consumer)
        #expect(memory.lastDurable.isEmpty)
        #expect(memory.send(publisher, "/topic/news.x", "hi").bodies(to: consumer) == ["hi"])
    }
}
