import NIOCore
import Testing

@testable import StompRouting

/// The router's seam to the cluster: interest, forwards, hand-offs.
@Suite("Router: cluster seam")
struct RouterClusterTests {
    private func envelope(_ destination: String, _ body: String, id: String = "n2-x-1") -> MessageEnvelope {
        MessageEnvelope(
            destination: try! Destination(parsing: destination),
            messageID: id,
            headers: [:],
            body: ByteBuffer(string: body)
        )
    }

    private func handOffs(_ outputs: [RouterOutput]) -> [(queue: String, body: String, hops: UInt8)] {
        outputs.compactMap {
            if case .handOff(let queue, let message, _, let hops) = $0 {
                return (queue, String(buffer: message.body), hops)
            }
            return nil
        }
    }

    @Test func subscribeAndUnsubscribeReportInterest() {
        var driver = RouterDriver()
        let a = driver.open(1)
        driver.subscribe(a, id: "s", "/topic/a.*")
        guard case .interest(.topic("a.*"), delta: 1) = driver.lastClusterOutputs.first else {
            Issue.record("expected interest +1, got \(driver.lastClusterOutputs)")
            return
        }
        driver.run(.unsubscribe(id: "s"), from: a)
        guard case .interest(.topic("a.*"), delta: -1) = driver.lastClusterOutputs.first else {
            Issue.record("expected interest -1, got \(driver.lastClusterOutputs)")
            return
        }
        driver.subscribe(a, id: "q", "/queue/jobs")
        driver.run(.closed, from: a)
        guard case .interest(.queue("jobs"), delta: -1) = driver.lastClusterOutputs.first else {
            Issue.record("closing a connection withdraws its interest, got \(driver.lastClusterOutputs)")
            return
        }
    }

    /// What each output is, in order, with the receipts' wait for the cluster.
    private func kinds(_ outputs: [RouterOutput]) -> [String] {
        outputs.map {
            switch $0 {
            case .interest: "interest"
            case .deliver: "deliver"
            case .receipt(_, _, let waits): waits ? "receipt waiting for the cluster" : "receipt"
            case .forward: "forward"
            case .handOff: "handOff"
            case .fail: "fail"
            case .close: "close"
            case .unroutable: "unroutable"
            case .durable: "durable"
            }
        }
    }

    @Test func aSubscribeReceiptFollowsItsInterestAndPrecedesTheMessagesItReleases() {
        var driver = RouterDriver()
        let publisher = driver.open(1)
        driver.send(publisher, "/queue/jobs", "1")
        driver.send(publisher, "/queue/jobs", "2")
        let consumer = driver.open(2)
        let request = SubscribeRequest(id: "s", destination: .queue("jobs"), ackMode: .auto, prefetch: 10)
        var outputs: [RouterOutput] = []
        driver.router.handle(.subscribe(request), from: consumer, receipt: "r", into: &outputs)
        #expect(kinds(outputs) == ["interest", "receipt waiting for the cluster", "deliver", "deliver"])
    }

    @Test func onlyASubscribeReceiptWaitsForTheCluster() {
        var driver = RouterDriver()
        let client = driver.open(1)
        var outputs: [RouterOutput] = []
        let publish = PublishRequest(destination: .topic("t"), headers: [:], body: ByteBuffer())
        driver.router.handle(.send(publish), from: client, receipt: "s", into: &outputs)
        driver.router.handle(.unsubscribe(id: "none"), from: client, receipt: "u", into: &outputs)
        driver.router.handle(.barrier, from: client, receipt: "b", into: &outputs)
        #expect(kinds(outputs).filter { $0.hasPrefix("receipt") } == ["receipt", "receipt", "receipt"])
    }

    @Test func locallyPublishedTopicMessagesAreForwardedOnce() {
        var driver = RouterDriver()
        let a = driver.open(1)
        driver.send(a, "/topic/news", "hi")
        #expect(driver.lastClusterOutputs.count == 1)
        guard case .forward(let message) = driver.lastClusterOutputs.first else {
            Issue.record("expected a forward")
            return
        }
        #expect(message.messageID == "node1-1")
        #expect(String(buffer: message.body) == "hi")
    }

    @Test func forwardedMessagesAreDeliveredLocallyAndNeverForwardedAgain() {
        var driver = RouterDriver()
        let a = driver.open(1)
        driver.subscribe(a, id: "s", "/topic/news.#")
        let events = driver.run(.deliverForwarded(envelope("/topic/news.eu", "remote")))
        #expect(events.count == 1)
        #expect(events.first?.frame?.headers["message-id"] == "n2-x-1")
        #expect(driver.lastClusterOutputs.isEmpty)
    }

    @Test func forwardsLostFailTheTopicSubscribersTheyConcernAndNoOneElse() {
        var driver = RouterDriver()
        let news = driver.open(1)
        driver.subscribe(news, id: "s", "/topic/news.#")
        let sport = driver.open(2)
        driver.subscribe(sport, id: "s", "/topic/sport")
        let worker = driver.open(3)
        driver.subscribe(worker, id: "q", "/queue/jobs")

        let named = ForwardLoss(peer: "n2", messages: 7, reason: "cluster.outage-grace-ms", keys: ["news.eu"])
        let events = driver.run(.forwardsLost(named))
        #expect(events == [.fail(news, .messagesLost, receiptID: nil)])
        #expect(named.error.detail.contains("n2") && named.error.detail.contains("up to 7"))
        // The failed connection is gone: a later forward for its topic reaches no one.
        #expect(driver.run(.deliverForwarded(envelope("/topic/news.eu", "late"))).isEmpty)

        // A loss that can't name its topics concerns every topic subscriber, never a queue consumer.
        let any = ForwardLoss(peer: "n2", messages: nil, reason: "unknown session", keys: nil)
        #expect(driver.run(.forwardsLost(any)) == [.fail(sport, .messagesLost, receiptID: nil)])
        #expect(!any.error.detail.contains("up to"))
    }

    @Test func queueMessagesGoToPeersOnlyWithoutLocalConsumers() {
        var driver = RouterDriver()
        let publisher = driver.open(1)
        driver.run(.remoteQueueConsumers(queue: "jobs", count: 2))
        driver.send(publisher, "/queue/jobs", "one")
        #expect(handOffs(driver.lastClusterOutputs).map(\.body) == ["one"])

        let consumer = driver.open(2)
        driver.subscribe(consumer, id: "c", "/queue/jobs")
        let events = driver.send(publisher, "/queue/jobs", "two")
        #expect(handOffs(driver.lastClusterOutputs).isEmpty)
        #expect(events.contains { $0.connection == consumer && $0.frame?.body == ByteBuffer(string: "two") })
    }

    @Test func heldMessagesMoveWhenARemoteConsumerAppears() {
        var driver = RouterDriver()
        let publisher = driver.open(1)
        driver.send(publisher, "/queue/jobs", "one")
        driver.send(publisher, "/queue/jobs", "two")
        #expect(driver.router.pendingCount(queue: "jobs") == 2)
        driver.run(.remoteQueueConsumers(queue: "jobs", count: 1))
        #expect(handOffs(driver.lastClusterOutputs).map(\.body) == ["one", "two"])
        #expect(driver.router.pendingCount(queue: "jobs") == 0)
    }

    @Test func acceptedHandoffIsDeliveredOrHeldNeverDropped() {
        var driver = RouterDriver()
        // No consumer here and none elsewhere: held, even beyond the queue's depth.
        driver.run(.acceptHandoff(queue: "jobs", envelope("/queue/jobs", "a"), redelivered: false, hops: 1))
        #expect(driver.router.pendingCount(queue: "jobs") == 1)

        let consumer = driver.open(1)
        let events = driver.subscribe(consumer, id: "c", "/queue/jobs")
        #expect(events.first?.frame?.body == ByteBuffer(string: "a"))
    }

    @Test func handoffHopsAreBounded() {
        var driver = RouterDriver()
        driver.run(.remoteQueueConsumers(queue: "jobs", count: 1))
        // A message that arrives where its consumer has just left is handed on...
        driver.run(.acceptHandoff(queue: "jobs", envelope("/queue/jobs", "a"), redelivered: false, hops: 1))
        #expect(handOffs(driver.lastClusterOutputs).map(\.hops) == [1])
        // ...but not for ever: past the bound it stays.
        driver.run(.acceptHandoff(queue: "jobs", envelope("/queue/jobs", "b"), redelivered: false, hops: 3))
        #expect(handOffs(driver.lastClusterOutputs).isEmpty)
        #expect(driver.router.pendingCount(queue: "jobs") == 1)
    }

    @Test func unackedMessagesOfADepartingLastConsumerGoToPeers() {
        var driver = RouterDriver()
        let consumer = driver.open(1)
        let publisher = driver.open(2)
        driver.subscribe(consumer, id: "c", "/queue/jobs", ack: .clientIndividual)
        driver.send(publisher, "/queue/jobs", "one")
        driver.run(.remoteQueueConsumers(queue: "jobs", count: 1))
        driver.run(.closed, from: consumer)
        let moved = driver.lastClusterOutputs.compactMap { output -> Bool? in
            if case .handOff(_, _, let redelivered, _) = output { return redelivered }
            return nil
        }
        #expect(moved == [true])
    }
}
