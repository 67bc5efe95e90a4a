import NIOCore
import Testing

@testable import StompRouting

@Suite("Router: topics")
struct RouterTopicTests {
    @Test("a publish reaches every matching subscriber exactly once, with one message-id")
    func fanOut() throws {
        var driver = RouterDriver()
        let patterns = ["a.b", "a.*", "a.#", "#", "x.y", "a.*.c", "*", "a.b.#"]
        var subscribers: [ConnectionID] = []
        for (index, pattern) in patterns.enumerated() {
            let connection = driver.open(UInt64(index + 1))
            driver.subscribe(connection, id: "sub-\(index)", "/topic/\(pattern)")
            subscribers.append(connection)
        }
        let publisher = driver.open(100)
        let events = driver.send(publisher, "/topic/a.b", "hi")
        let matching: Set<Int> = [0, 1, 2, 3, 7]
        #expect(events.count == matching.count)
        for (index, connection) in subscribers.enumerated() {
            let frames = events.messages(to: connection)
            #expect(frames.count == (matching.contains(index) ? 1 : 0), "subscriber \(index) (\(patterns[index]))")
            if let frame = frames.first {
                #expect(frame.subscription == "sub-\(index)")
                #expect(frame.headers[StompHeader.destination] == "/topic/a.b")
                #expect(String(buffer: frame.body) == "hi")
            }
        }
        #expect(Set(events.messages.map(\.messageID)).count == 1)
        #expect(events.messages(to: publisher).isEmpty)
    }

    @Test("two matching subscriptions of one connection each get a copy")
    func twoSubscriptionsOfOneConnection() throws {
        var driver = RouterDriver()
        let connection = driver.open(1)
        driver.subscribe(connection, id: "exact", "/topic/a.b")
        driver.subscribe(connection, id: "wild", "/topic/a.#")
        driver.subscribe(connection, id: "other", "/topic/b")
        let events = driver.send(connection, "/topic/a.b", "x")
        let frames = events.messages(to: connection)
        #expect(frames.count == 2)
        #expect(Set(frames.compactMap(\.subscription)) == ["exact", "wild"])
        #expect(frames[0].messageID == frames[1].messageID)
    }

    @Test(
        "wildcard semantics through the router",
        arguments: [
            ("a", ["a.#", "#", "*"]),
            ("a.b.c", ["a.#", "#", "a.*.c", "#.c"]),
            ("a.c", ["a.#", "#", "#.c", "a.*"]),
            ("b", ["#", "*"]),
        ]
    )
    func wildcards(key: String, expected: [String]) {
        var driver = RouterDriver()
        let connection = driver.open(1)
        for pattern in ["a.#", "#", "*", "a.*", "a.*.c", "#.c", "a.b"] {
            driver.subscribe(connection, id: pattern, "/topic/\(pattern)")
        }
        let events = driver.send(connection, "/topic/\(key)")
        #expect(Set(events.messages.compactMap(\.subscription)) == Set(expected))
        #expect(events.messages.count == expected.count)
    }

    @Test("no subscriber: the publish is dropped")
    func noSubscriber() {
        var driver = RouterDriver()
        let connection = driver.open(1)
        #expect(driver.send(connection, "/topic/nobody").isEmpty)
    }

    @Test("UNSUBSCRIBE stops delivery")
    func unsubscribe() {
        var driver = RouterDriver()
        let subscriber = driver.open(1)
        let publisher = driver.open(2)
        driver.subscribe(subscriber, id: "s", "/topic/t.#")
        #expect(driver.send(publisher, "/topic/t.x").messages.count == 1)
        #expect(driver.router.subscriptionCount == 1)
        #expect(driver.run(.unsubscribe(id: "s"), from: subscriber).isEmpty)
        #expect(driver.router.subscriptionCount == 0)
        #expect(driver.send(publisher, "/topic/t.x").isEmpty)
    }

    @Test("a closed connection receives nothing more")
    func closedSubscriber() {
        var driver = RouterDriver()
        let subscriber = driver.open(1)
        let publisher = driver.open(2)
        driver.subscribe(subscriber, id: "s", "/topic/t")
        #expect(driver.run(.closed, from: subscriber).isEmpty)
        #expect(driver.router.connectionCount == 1)
        #expect(driver.send(publisher, "/topic/t").isEmpty)
        // Operations of the closed connection are dropped.
        #expect(driver.send(subscriber, "/topic/t", receipt: "r").isEmpty)
    }

    @Test("operations of a connection that never opened are dropped")
    func unopenedConnection() {
        var driver = RouterDriver()
        let stranger = ConnectionID(9)
        #expect(driver.subscribe(stranger, id: "s", "/topic/t", receipt: "r").isEmpty)
        #expect(driver.router.subscriptionCount == 0)
    }

    @Test("a topic subscriber in client mode at its prefetch limit is failed, the others still get the message")
    func topicUnackedLimit() {
        var driver = RouterDriver()
        let slow = driver.open(1)
        let fast = driver.open(2)
        let publisher = driver.open(3)
        driver.subscribe(slow, id: "slow", "/topic/t", ack: .client, prefetch: 1)
        driver.subscribe(fast, id: "fast", "/topic/t")
        #expect(driver.send(publisher, "/topic/t", "1").deliveries.sorted() == ["1:1", "2:1"])
        let events = driver.send(publisher, "/topic/t", "2", receipt: "r")
        #expect(events.contains(.fail(slow, .unackedLimit, receiptID: nil)))
        #expect(events.messages(to: slow).isEmpty)
        #expect(events.bodies(to: fast) == ["2"])
        #expect(events.contains { $0.frame?.isReceipt("r") == true && $0.connection == publisher })
        #expect(!events.contains { if case .fail(let connection, _, _) = $0 { connection != slow } else { false } })
        #expect(driver.router.connectionCount == 2)
    }

    @Test("an acknowledged topic message frees room for the next")
    func topicAckFreesRoom() throws {
        var driver = RouterDriver()
        let subscriber = driver.open(1)
        driver.subscribe(subscriber, id: "s", "/topic/t", ack: .clientIndividual, prefetch: 1)
        let first = try #require(driver.send(subscriber, "/topic/t", "1").messages.first)
        #expect(driver.run(.ack(AckRequest(ackID: first.ackID)), from: subscriber).isEmpty)
        #expect(driver.send(subscriber, "/topic/t", "2").bodies(to: subscriber) == ["2"])
    }

    @Test("NACK of a topic message is not redelivered")
    func topicNack() throws {
        var driver = RouterDriver()
        let subscriber = driver.open(1)
        driver.subscribe(subscriber, id: "s", "/topic/t", ack: .clientIndividual)
        let frame = try #require(driver.send(subscriber, "/topic/t", "1").messages.first)
        #expect(driver.run(.nack(AckRequest(ackID: frame.ackID)), from: subscriber).isEmpty)
        #expect(
            driver.run(.ack(AckRequest(ackID: frame.ackID)), from: subscriber) == [
                .fail(subscriber, .unknownAck, receiptID: nil)
            ]
        )
    }
}

@Suite("Router: queues")
struct RouterQueueTests {
    @Test("consumers are served round robin")
    func roundRobin() {
        var driver = RouterDriver()
        let one = driver.open(1)
        let two = driver.open(2)
        let publisher = driver.open(3)
        driver.subscribe(one, id: "c", "/queue/q")
        driver.subscribe(two, id: "c", "/queue/q")
        var deliveries: [String] = []
        for index in 1...4 {
            deliveries += driver.send(publisher, "/queue/q", "\(index)").deliveries
        }
        #expect(deliveries == ["1:1", "2:2", "1:3", "2:4"])
    }

    @Test("each queue message goes to exactly one consumer")
    func exactlyOnce() {
        var driver = RouterDriver()
        let consumers = (1...3).map { driver.open(UInt64($0)) }
        for consumer in consumers { driver.subscribe(consumer, id: "c", "/queue/work") }
        let publisher = driver.open(10)
        var events: [RouterEvent] = []
        for index in 0..<30 {
            events += driver.send(publisher, "/queue/work", "\(index)")
        }
        let bodies = events.messages.map { String(buffer: $0.body) }
        #expect(bodies.sorted() == (0..<30).map(String.init).sorted())
        #expect(Set(events.messages.compactMap(\.messageID)).count == 30)
        for consumer in consumers {
            #expect(events.messages(to: consumer).count == 10)
        }
    }

    @Test("messages wait while there is no consumer and go to the first one, in order")
    func heldUntilSubscribe() {
        var driver = RouterDriver()
        let publisher = driver.open(1)
        for index in 1...3 {
            #expect(driver.send(publisher, "/queue/q", "\(index)").isEmpty)
        }
        #expect(driver.router.pendingCount(queue: "q") == 3)
        let consumer = driver.open(2)
        let events = driver.subscribe(consumer, id: "c", "/queue/q", receipt: "r")
        #expect(events.bodies(to: consumer) == ["1", "2", "3"])
        // The RECEIPT first, as RabbitMQ and ActiveMQ send it: the subscription exists before
        // anything arrives on it.
        #expect(events.first?.frame?.isReceipt("r") == true)
        #expect(events.messages.allSatisfy { !$0.isRedelivered })
        #expect(driver.router.pendingCount(queue: "q") == 0)
    }

    @Test("a SEND beyond maxQueueDepth fails the publisher with queueFull")
    func queueFull() {
        var driver = RouterDriver(maxQueueDepth: 2)
        let publisher = driver.open(1)
        let bystander = driver.open(2)
        #expect(driver.send(publisher, "/queue/q", "1").isEmpty)
        #expect(driver.send(publisher, "/queue/q", "2", receipt: "ok").first?.frame?.isReceipt("ok") == true)
        #expect(driver.send(publisher, "/queue/q", "3", receipt: "r") == [.fail(publisher, .queueFull, receiptID: "r")])
        #expect(driver.router.pendingCount(queue: "q") == 2)
        #expect(driver.router.connectionCount == 1)
        // Another queue is unaffected, and so is another publisher once a consumer drains q.
        #expect(driver.send(bystander, "/queue/other", "x").isEmpty)
        let consumer = driver.open(3)
        #expect(driver.subscribe(consumer, id: "c", "/queue/q").bodies(to: consumer) == ["1", "2"])
    }

    @Test("client-individual ACK settles exactly the named message")
    func clientIndividualAck() throws {
        var driver = RouterDriver()
        let consumer = driver.open(1)
        let publisher = driver.open(2)
        driver.subscribe(consumer, id: "c", "/queue/q", ack: .clientIndividual, prefetch: 2)
        let m1 = try #require(driver.send(publisher, "/queue/q", "1").messages.first)
        let m2 = try #require(driver.send(publisher, "/queue/q", "2").messages.first)
        #expect(driver.send(publisher, "/queue/q", "3").isEmpty)
        #expect(m1.ackID != nil && m1.ackID != m2.ackID)
        // Acknowledging the second leaves room for exactly one more: the third.
        #expect(driver.run(.ack(AckRequest(ackID: m2.ackID)), from: consumer).bodies(to: consumer) == ["3"])
        // The first is still outstanding and can be acknowledged once.
        #expect(
            driver.run(.ack(AckRequest(ackID: m1.ackID)), from: consumer, receipt: "r").first?.frame?.isReceipt("r")
                == true
        )
        #expect(
            driver.run(.ack(AckRequest(ackID: m1.ackID)), from: consumer) == [
                .fail(consumer, .unknownAck, receiptID: nil)
            ]
        )
    }

    @Test("client ACK is cumulative")
    func clientAckIsCumulative() throws {
        var driver = RouterDriver()
        let consumer = driver.open(1)
        let publisher = driver.open(2)
        driver.subscribe(consumer, id: "c", "/queue/q", ack: .client, prefetch: 3)
        var frames: [StompFrame] = []
        for index in 1...5 {
            frames += driver.send(publisher, "/queue/q", "\(index)").messages
        }
        #expect(frames.map { String(buffer: $0.body) } == ["1", "2", "3"])
        // ACK of the second settles the first and the second: two more messages fit.
        let events = driver.run(.ack(AckRequest(ackID: frames[1].ackID)), from: consumer)
        #expect(events.bodies(to: consumer) == ["4", "5"])
        #expect(
            driver.run(.ack(AckRequest(ackID: frames[0].ackID)), from: consumer) == [
                .fail(consumer, .unknownAck, receiptID: nil)
            ]
        )
    }

    @Test("client ACK of the last message settles all of them")
    func clientAckAll() throws {
        var driver = RouterDriver()
        let consumer = driver.open(1)
        driver.subscribe(consumer, id: "c", "/queue/q", ack: .client, prefetch: 3)
        var frames: [StompFrame] = []
        for index in 1...6 { frames += driver.send(consumer, "/queue/q", "\(index)").messages }
        #expect(frames.count == 3)
        // Room for all three waiting messages proves that all three were settled.
        let events = driver.run(.ack(AckRequest(ackID: frames[2].ackID)), from: consumer)
        #expect(events.bodies(to: consumer) == ["4", "5", "6"])
        #expect(driver.router.pendingCount(queue: "q") == 0)
    }

    @Test("NACK on a queue redelivers the message with redelivered:true")
    func nackRedelivers() throws {
        var driver = RouterDriver()
        let consumer = driver.open(1)
        driver.subscribe(consumer, id: "c", "/queue/q", ack: .clientIndividual, prefetch: 1)
        let first = try #require(driver.send(consumer, "/queue/q", "payload").messages.first)
        #expect(!first.isRedelivered)
        #expect(first.headers[StompHeader.redelivered] == nil)
        let events = driver.run(.nack(AckRequest(ackID: first.ackID)), from: consumer, receipt: "n")
        let again = try #require(events.messages(to: consumer).first)
        #expect(again.isRedelivered)
        #expect(again.messageID == first.messageID)
        #expect(again.ackID != first.ackID)
        #expect(String(buffer: again.body) == "payload")
        #expect(events.last?.frame?.isReceipt("n") == true)
    }

    @Test("NACK in client mode returns every earlier message too, in order")
    func clientNackIsCumulative() throws {
        var driver = RouterDriver()
        let consumer = driver.open(1)
        let other = driver.open(2)
        driver.subscribe(consumer, id: "c", "/queue/q", ack: .client, prefetch: 2)
        var frames: [StompFrame] = []
        for index in 1...2 { frames += driver.send(other, "/queue/q", "\(index)").messages }
        #expect(frames.count == 2)
        driver.subscribe(other, id: "o", "/queue/q")
        let events = driver.run(.nack(AckRequest(ackID: frames[1].ackID)), from: consumer)
        #expect(events.messages.map { String(buffer: $0.body) } == ["1", "2"])
        #expect(events.messages.allSatisfy { $0.isRedelivered })
    }

    @Test("a closed consumer's unacknowledged messages go to another consumer with redelivered:true")
    func closeRedelivers() throws {
        var driver = RouterDriver()
        let dying = driver.open(1)
        let survivor = driver.open(2)
        let publisher = driver.open(3)
        driver.subscribe(dying, id: "c", "/queue/q", ack: .clientIndividual, prefetch: 5)
        let sent = (1...2).flatMap { driver.send(publisher, "/queue/q", "\($0)").messages }
        #expect(sent.count == 2)
        driver.subscribe(survivor, id: "c", "/queue/q")
        let events = driver.run(.closed, from: dying)
        #expect(events.allSatisfy { $0.connection == survivor })
        let redelivered = events.messages(to: survivor)
        #expect(redelivered.map { String(buffer: $0.body) } == ["1", "2"])
        #expect(redelivered.allSatisfy { $0.isRedelivered })
        #expect(redelivered.map(\.messageID) == sent.map(\.messageID))
        #expect(driver.router.connectionCount == 2)
    }

    @Test("a closed consumer's unacknowledged messages wait for the next consumer")
    func closeRequeuesWithoutConsumer() {
        var driver = RouterDriver()
        let dying = driver.open(1)
        driver.subscribe(dying, id: "c", "/queue/q", ack: .client)
        #expect(driver.send(dying, "/queue/q", "1").messages.count == 1)
        #expect(driver.run(.closed, from: dying).isEmpty)
        #expect(driver.router.pendingCount(queue: "q") == 1)
        let next = driver.open(2)
        let events = driver.subscribe(next, id: "c", "/queue/q")
        #expect(events.messages.map(\.isRedelivered) == [true])
    }

    @Test("closing a connection never hands its messages to its own other subscriptions")
    func closeDoesNotDeliverToItself() {
        // One connection holds one unacknowledged message in each of many client subscriptions
        // that all have room for more, and an auto subscription on the same queue. Whatever
        // order the router ends them in, the first one ended has siblings with room, so a
        // router that re-dispatches before taking the connection's consumers away delivers to
        // the closing connection; an auto delivery there is lost for good.
        var driver = RouterDriver()
        let dying = driver.open(1)
        let publisher = driver.open(2)
        for index in 0..<20 {
            driver.subscribe(dying, id: "client-\(index)", "/queue/q", ack: .clientIndividual, prefetch: 2)
        }
        let delivered = (0..<20).flatMap { driver.send(publisher, "/queue/q", "\($0)").messages }
        #expect(Set(delivered.compactMap(\.subscription)).count == 20)
        driver.subscribe(dying, id: "auto", "/queue/q")
        let events = driver.run(.closed, from: dying)
        #expect(events.messages(to: dying).isEmpty)
        #expect(driver.router.pendingCount(queue: "q") == 20)
        let next = driver.open(3)
        let redelivered = driver.subscribe(next, id: "c", "/queue/q")
        #expect(redelivered.bodies(to: next).sorted() == (0..<20).map(String.init).sorted())
    }

    @Test("UNSUBSCRIBE returns the consumer's unacknowledged messages to the queue")
    func unsubscribeRequeues() {
        var driver = RouterDriver()
        let consumer = driver.open(1)
        let other = driver.open(2)
        driver.subscribe(consumer, id: "c", "/queue/q", ack: .clientIndividual)
        #expect(driver.send(other, "/queue/q", "1").messages.count == 1)
        driver.subscribe(other, id: "o", "/queue/q")
        let events = driver.run(.unsubscribe(id: "c"), from: consumer)
        #expect(events.bodies(to: other) == ["1"])
        #expect(events.messages.allSatisfy { $0.isRedelivered })
    }

    @Test("prefetch caps a consumer's unacknowledged messages; the rest go elsewhere or wait")
    func prefetchCaps() throws {
        var driver = RouterDriver()
        let one = driver.open(1)
        let two = driver.open(2)
        let publisher = driver.open(3)
        driver.subscribe(one, id: "c", "/queue/q", ack: .clientIndividual, prefetch: 1)
        driver.subscribe(two, id: "c", "/queue/q", ack: .clientIndividual, prefetch: 1)
        let first = driver.send(publisher, "/queue/q", "1")
        let second = driver.send(publisher, "/queue/q", "2")
        #expect(first.deliveries + second.deliveries == ["1:1", "2:2"])
        #expect(driver.send(publisher, "/queue/q", "3").isEmpty)
        #expect(driver.router.pendingCount(queue: "q") == 1)
        // Only the consumer that acknowledges has room again.
        let ackID = try #require(second.messages.first?.ackID)
        #expect(driver.run(.ack(AckRequest(ackID: ackID)), from: two).deliveries == ["2:3"])
    }

    @Test("prefetch 1 with a single consumer: strictly one message in flight")
    func prefetchOneSingleConsumer() throws {
        var driver = RouterDriver()
        let consumer = driver.open(1)
        driver.subscribe(consumer, id: "c", "/queue/q", ack: .client, prefetch: 1)
        var inFlight = try #require(driver.send(consumer, "/queue/q", "1").messages.first)
        for index in 2...5 { #expect(driver.send(consumer, "/queue/q", "\(index)").isEmpty) }
        for index in 2...5 {
            let events = driver.run(.ack(AckRequest(ackID: inFlight.ackID)), from: consumer)
            #expect(events.bodies(to: consumer) == ["\(index)"])
            inFlight = try #require(events.messages.first)
        }
    }

    @Test("auto consumers carry no ack header; client consumers do")
    func ackHeaderPresence() {
        var driver = RouterDriver()
        let auto = driver.open(1)
        let client = driver.open(2)
        driver.subscribe(auto, id: "a", "/topic/t")
        driver.subscribe(client, id: "c", "/topic/t", ack: .client)
        let events = driver.send(auto, "/topic/t")
        #expect(events.messages(to: auto).first?.ackID == nil)
        #expect(events.messages(to: client).first?.ackID != nil)
    }
}

@Suite("Router: acknowledgements by version")
struct RouterAckVersionTests {
    @Test("1.1 ACK names message-id and subscription")
    func ack11() throws {
        var driver = RouterDriver()
        let consumer = driver.open(1, .v1_1)
        driver.subscribe(consumer, id: "c", "/queue/q", ack: .clientIndividual, prefetch: 1)
        let first = try #require(driver.send(consumer, "/queue/q", "1").messages.first)
        #expect(driver.send(consumer, "/queue/q", "2").isEmpty)
        let wrongSubscription = driver.run(
            .ack(AckRequest(messageID: first.messageID, subscription: "x")),
            from: consumer
        )
        #expect(wrongSubscription == [.fail(consumer, .unknownAck, receiptID: nil)])

        var fresh = RouterDriver()
        let again = fresh.open(1, .v1_1)
        fresh.subscribe(again, id: "c", "/queue/q", ack: .clientIndividual, prefetch: 1)
        let message = try #require(fresh.send(again, "/queue/q", "1").messages.first)
        #expect(fresh.send(again, "/queue/q", "2").isEmpty)
        let events = fresh.run(.ack(AckRequest(messageID: message.messageID, subscription: "c")), from: again)
        #expect(events.bodies(to: again) == ["2"])
    }

    @Test("1.0 ACK names the message-id alone")
    func ack10() throws {
        var driver = RouterDriver()
        let consumer = driver.open(1, .v1_0)
        driver.subscribe(consumer, id: "/queue/q", "/queue/q", ack: .client, prefetch: 1)
        let first = try #require(driver.send(consumer, "/queue/q", "1").messages.first)
        #expect(driver.send(consumer, "/queue/q", "2").isEmpty)
        let events = driver.run(.ack(AckRequest(messageID: first.messageID)), from: consumer)
        #expect(events.bodies(to: consumer) == ["2"])
    }

    @Test("an ACK of an unknown id fails with unknownAck and echoes the receipt")
    func unknownAck() {
        var driver = RouterDriver()
        let connection = driver.open(1)
        let events = driver.run(.ack(AckRequest(ackID: "12345")), from: connection, receipt: "r")
        #expect(events == [.fail(connection, .unknownAck, receiptID: "r")])
        #expect(driver.router.connectionCount == 0)
    }

    @Test("one connection can't acknowledge another's delivery")
    func ackOfAnotherConnection() throws {
        var driver = RouterDriver()
        let owner = driver.open(1)
        let thief = driver.open(2)
        driver.subscribe(owner, id: "c", "/queue/q", ack: .clientIndividual)
        let frame = try #require(driver.send(thief, "/queue/q").messages.first)
        #expect(
            driver.run(.ack(AckRequest(ackID: frame.ackID)), from: thief) == [.fail(thief, .unknownAck, receiptID: nil)]
        )
        #expect(driver.run(.ack(AckRequest(ackID: frame.ackID)), from: owner).isEmpty)
    }
}

@Suite("Router: receipts, transactions and DISCONNECT")
struct RouterReceiptTests {
    @Test("a receipt follows the deliveries of its operation")
    func receiptAfterDeliveries() {
        var driver = RouterDriver()
        let connection = driver.open(1)
        driver.subscribe(connection, id: "a", "/topic/t")
        driver.subscribe(connection, id: "b", "/topic/#")
        let events = driver.send(connection, "/topic/t", "x", receipt: "r")
        #expect(events.count == 3)
        #expect(events.prefix(2).allSatisfy { $0.frame?.command == .message })
        #expect(
            events.last
                == .deliver(connection, StompFrame(.receipt, headers: [StompHeader.receiptID: "r"]), isText: true)
        )
    }

    @Test(
        "every operation answers its receipt",
        arguments: [
            RouterOperation.barrier, .commit([]), .unsubscribe(id: "s"),
        ]
    )
    func receipts(operation: RouterOperation) {
        var driver = RouterDriver()
        let connection = driver.open(1)
        driver.subscribe(connection, id: "s", "/topic/t")
        let events = driver.run(operation, from: connection, receipt: "r")
        #expect(
            events == [.deliver(connection, StompFrame(.receipt, headers: [StompHeader.receiptID: "r"]), isText: true)]
        )
    }

    @Test("the receipt is written in the connection's version")
    func receiptEscaping() throws {
        var driver = RouterDriver()
        let old = driver.open(1, .v1_0)
        let new = driver.open(2, .v1_2)
        _ = driver.run(.barrier, from: old, receipt: "a:b")
        #expect(String(buffer: try #require(driver.lastRawDeliveries.first?.1)) == "RECEIPT\nreceipt-id:a:b\n\n\0")
        _ = driver.run(.barrier, from: new, receipt: "a:b")
        #expect(String(buffer: try #require(driver.lastRawDeliveries.first?.1)) == "RECEIPT\nreceipt-id:a\\cb\n\n\0")
    }

    @Test("COMMIT applies its operations in order")
    func commitInOrder() throws {
        var driver = RouterDriver()
        let consumer = driver.open(1)
        let publisher = driver.open(2)
        driver.subscribe(consumer, id: "q", "/queue/q", ack: .clientIndividual, prefetch: 1)
        driver.subscribe(consumer, id: "t", "/topic/t")
        let held = try #require(driver.send(publisher, "/queue/q", "0").messages.first)
        let operations: [TransactionalOperation] = [
            .send(RouterDriver.publish("/queue/q", "1")),
            .send(RouterDriver.publish("/topic/t", "2")),
            .ack(AckRequest(ackID: held.ackID)),
            .send(RouterDriver.publish("/topic/t", "3")),
        ]
        let events = driver.run(.commit(operations), from: consumer, receipt: "c")
        // "1" waits for room, "2" goes out, the ACK makes room for "1", then "3".
        #expect(events.deliveries == ["1:2", "1:1", "1:3"])
        #expect(events.count == 4)
        #expect(events.last?.frame?.isReceipt("c") == true)
    }

    @Test("a failing operation inside COMMIT fails the connection and sends no receipt")
    func commitFailure() {
        var driver = RouterDriver()
        let connection = driver.open(1)
        let events = driver.run(.commit([.ack(AckRequest(ackID: "nope"))]), from: connection, receipt: "c")
        #expect(events == [.fail(connection, .unknownAck, receiptID: "c")])
    }

    @Test("once a COMMIT has failed its connection, the rest of the transaction is dropped")
    func commitStopsWhenConnectionFails() throws {
        var driver = RouterDriver()
        let connection = driver.open(1)
        driver.subscribe(connection, id: "s", "/topic/t", ack: .client, prefetch: 1)
        #expect(driver.send(connection, "/topic/t", "1").messages.count == 1)
        // Publishing to its own topic at its limit fails the connection; the queue SEND and
        // the ACK after it belong to a connection whose ERROR is already out.
        let operations: [TransactionalOperation] = [
            .send(RouterDriver.publish("/topic/t", "2")),
            .send(RouterDriver.publish("/queue/q", "3")),
            .ack(AckRequest(ackID: "999")),
        ]
        let events = driver.run(.commit(operations), from: connection, receipt: "c")
        #expect(events == [.fail(connection, .unackedLimit, receiptID: nil)])
        #expect(driver.router.pendingCount(queue: "q") == 0)
    }

    @Test("DISCONNECT with a receipt answers the receipt, then closes")
    func disconnectWithReceipt() {
        var driver = RouterDriver()
        let connection = driver.open(1)
        driver.subscribe(connection, id: "s", "/topic/t")
        let events = driver.run(.disconnect, from: connection, receipt: "bye")
        #expect(
            events == [
                .deliver(connection, StompFrame(.receipt, headers: [StompHeader.receiptID: "bye"]), isText: true),
                .close(connection),
            ]
        )
        #expect(driver.router.connectionCount == 0)
        #expect(driver.router.subscriptionCount == 0)
    }

    @Test("DISCONNECT without a receipt just closes, and its queue messages go elsewhere")
    func disconnectRequeues() {
        var driver = RouterDriver()
        let leaving = driver.open(1)
        let staying = driver.open(2)
        driver.subscribe(leaving, id: "c", "/queue/q", ack: .client)
        #expect(driver.send(staying, "/queue/q", "1").messages.count == 1)
        driver.subscribe(staying, id: "c", "/queue/q")
        let events = driver.run(.disconnect, from: leaving)
        #expect(events.first == .close(leaving))
        #expect(events.bodies(to: staying) == ["1"])
        #expect(events.messages.allSatisfy { $0.isRedelivered })
    }
}

@Suite("Router: MESSAGE frames")
struct RouterMessageTests {
    @Test("message ids are unique and start with the configured prefix")
    func messageIDs() {
        var driver = RouterDriver(messageIDPrefix: "node-7:boot-3:")
        let connection = driver.open(1)
        driver.subscribe(connection, id: "t", "/topic/#")
        driver.subscribe(connection, id: "q", "/queue/q")
        var ids: [String] = []
        for index in 0..<50 {
            let destination = index.isMultiple(of: 2) ? "/topic/a" : "/queue/q"
            ids += driver.send(connection, destination).messages.compactMap(\.messageID)
        }
        #expect(ids.count == 50)
        #expect(Set(ids).count == 50)
        #expect(ids.allSatisfy { $0.hasPrefix("node-7:boot-3:") })
    }

    @Test("one message to many subscribers: same message-id, own subscription header, same body")
    func manySubscribers() {
        var driver = RouterDriver()
        let connections = (1...5).map { driver.open(UInt64($0), StompVersion.allCases[$0 % 3]) }
        for (index, connection) in connections.enumerated() {
            driver.subscribe(connection, id: "sub-\(index)", "/topic/news")
        }
        let events = driver.send(connections[0], "/topic/news", "extra", headers: ["x-a": "1"])
        let frames = events.messages
        #expect(frames.count == 5)
        #expect(Set(frames.compactMap(\.messageID)).count == 1)
        #expect(Set(frames.compactMap(\.subscription)) == Set((0..<5).map { "sub-\($0)" }))
        #expect(frames.allSatisfy { String(buffer: $0.body) == "extra" && $0.headers["x-a"] == "1" })
    }

    @Test("the MESSAGE carries the publisher's headers and the broker's, and content-length")
    func messageHeaders() throws {
        var driver = RouterDriver()
        let connection = driver.open(1)
        driver.subscribe(connection, id: "s", "/queue/q", ack: .client)
        let frame = try #require(
            driver.send(
                connection,
                "/queue/q",
                "body",
                headers: StompHeaders([("content-type", "text/plain"), ("x-b", "2")])
            ).messages.first
        )
        #expect(
            frame.headers.map(\.name) == [
                "subscription", "ack", "message-id", "destination", "content-type", "x-b", "content-length",
            ]
        )
        #expect(frame.headers[StompHeader.destination] == "/queue/q")
        #expect(frame.headers[StompHeader.contentLength] == "4")
    }

    @Test(
        "a header with ':' is escaped for each subscriber's version",
        arguments: [
            (StompVersion.v1_0, "\nx-key:a:b\n", "\nsubscription:s:1\n"),
            (.v1_1, "\nx-key:a\\cb\n", "\nsubscription:s\\c1\n"),
            (.v1_2, "\nx-key:a\\cb\n", "\nsubscription:s\\c1\n"),
        ]
    )
    func versionEscaping(version: StompVersion, rawHeader: String, rawSubscription: String) throws {
        var driver = RouterDriver()
        let subscriber = driver.open(1, version)
        let publisher = driver.open(2)
        driver.subscribe(subscriber, id: "s:1", "/topic/t")
        let events = driver.send(publisher, "/topic/t", "x", headers: ["x-key": "a:b"])
        let raw = String(buffer: try #require(driver.lastRawDeliveries.first?.1))
        #expect(raw.contains(rawHeader))
        #expect(raw.contains(rawSubscription))
        let frame = try #require(events.messages.first)
        #expect(frame.headers["x-key"] == "a:b")
        #expect(frame.subscription == "s:1")
    }

    @Test("subscribers of different versions of one message each get their own escaping")
    func mixedVersionsOneMessage() throws {
        var driver = RouterDriver()
        let v10 = driver.open(1, .v1_0)
        let v12 = driver.open(2, .v1_2)
        driver.subscribe(v10, id: "a", "/topic/t")
        driver.subscribe(v12, id: "b", "/topic/t")
        _ = driver.send(v10, "/topic/t", headers: ["k": "x:y\\z"])
        let raw = Dictionary(uniqueKeysWithValues: driver.lastRawDeliveries.map { ($0.0, String(buffer: $0.1)) })
        #expect(raw[v10]?.contains("\nk:x:y\\z\n") == true)
        #expect(raw[v12]?.contains("\nk:x\\cy\\\\z\n") == true)
    }

    @Test("isText tells whether the body is valid UTF-8")
    func isText() throws {
        var driver = RouterDriver()
        let connection = driver.open(1)
        driver.subscribe(connection, id: "s", "/topic/t")
        let text = driver.send(connection, "/topic/t", "héllo ✓")
        #expect(text.first == .deliver(connection, try #require(text.first?.frame), isText: true))
        for bytes: [UInt8] in [[0xFF], [0xC3], [0x61, 0x80], [0xED, 0xA0, 0x80]] {
            let request = PublishRequest(destination: .topic("t"), headers: [:], body: ByteBuffer(bytes: bytes))
            let events = driver.run(.send(request), from: connection)
            let frame = try #require(events.first?.frame)
            #expect(events.first == .deliver(connection, frame, isText: false), "body \(bytes)")
            #expect(frame.body == ByteBuffer(bytes: bytes))
        }
        // NUL is valid UTF-8; the content-length header lets it through.
        let nul = driver.run(
            .send(PublishRequest(destination: .topic("t"), headers: [:], body: ByteBuffer(bytes: [0x61, 0x00]))),
            from: connection
        )
        #expect(nul.first == .deliver(connection, try #require(nul.first?.frame), isText: true))
    }
}
