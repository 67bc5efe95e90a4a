import NIOCore
import Testing

@testable import StompRouting

/// The router's side of durable queues: a `persistent:true` SEND to a queue becomes work for
/// them, committed messages come back as ``RouterClusterOperation/acceptDurable(queue:_:id:redelivered:)``,
/// and every way a message leaves a consumer tells them which (settled, or given back).
@Suite struct RouterDurableTests {
    static let persistent: StompHeaders = [StompHeader.persistent: "true"]

    var driver = RouterDriver(settings: Router.Settings(messageIDPrefix: "n1-", durableQueues: true))

    func envelope(_ body: String, id: String = "n1-1") -> MessageEnvelope {
        MessageEnvelope(
            destination: .queue("jobs"),
            messageID: id,
            headers: Self.persistent,
            body: ByteBuffer(string: body)
        )
    }

    @Test mutating func aPersistentSendBecomesAnEnqueueThatHoldsItsConnectionAheadOfItsReceipt() {
        let publisher = driver.open(1)
        var outputs: [RouterOutput] = []
        driver.router.handle(
            .send(RouterDriver.publish("/queue/jobs", "hello", headers: Self.persistent)),
            from: publisher,
            receipt: "r1",
            into: &outputs
        )
        #expect(outputs.count == 2)
        guard case .durable(.enqueue(let queue, let message), let holding) = outputs.first else {
            Issue.record("expected an enqueue first, got \(outputs)")
            return
        }
        #expect(queue == "jobs" && holding == publisher)
        #expect(String(buffer: message.body) == "hello" && message.headers[StompHeader.persistent] == "true")
        #expect(message.messageID == "n1-1")
        guard case .receipt(publisher, _, waitsForCluster: false) = outputs.last else {
            Issue.record("expected the receipt behind the hold, got \(outputs)")
            return
        }
    }

    @Test mutating func persistentSendsToTopicsAndTemporaryQueuesAndWithoutDurableQueuesStayInMemory() {
        let publisher = driver.open(1)
        let consumer = driver.open(2)
        driver.subscribe(consumer, id: "t", "/topic/news")
        let topic = driver.send(publisher, "/topic/news", "flash", headers: Self.persistent)
        #expect(topic.bodies(to: consumer) == ["flash"])
        #expect(driver.lastDurable.isEmpty)

        var memory = RouterDriver()
        let sender = memory.open(1)
        let receiver = memory.open(2)
        memory.subscribe(receiver, id: "q", "/queue/jobs")
        #expect(memory.send(sender, "/queue/jobs", "a", headers: Self.persistent).bodies(to: receiver) == ["a"])
        #expect(memory.lastDurable.isEmpty)
    }

    @Test mutating func anAcknowledgedDurableMessageIsSettledAndItsReceiptWaits() {
        let consumer = driver.open(2)
        driver.subscribe(consumer, id: "s", "/queue/jobs", ack: .clientIndividual)
        let delivered = driver.run(.acceptDurable(queue: "jobs", envelope("one"), id: 7, redelivered: false))
        let frame = try! #require(delivered.messages(to: consumer).first)
        #expect(frame.messageID == "n1-1" && !frame.isRedelivered)
        #expect(driver.lastDurable.isEmpty)

        var outputs: [RouterOutput] = []
        driver.router.handle(.ack(AckRequest(ackID: frame.ackID)), from: consumer, receipt: "a1", into: &outputs)
        guard case .durable(.settle("jobs", [7]), consumer) = outputs.first, case .receipt = outputs.last else {
            Issue.record("expected the settle holding the ACK's receipt, got \(outputs)")
            return
        }
    }

    @Test mutating func anAutoConsumerSettlesAsItReceives() {
        let consumer = driver.open(2)
        driver.subscribe(consumer, id: "s", "/queue/jobs")
        let delivered = driver.run(.acceptDurable(queue: "jobs", envelope("one"), id: 3, redelivered: true))
        #expect(delivered.messages(to: consumer).first?.isRedelivered == true)
        #expect(driver.lastDurable.map(\.work) == [.settle(queue: "jobs", ids: [3])])
        #expect(driver.lastDurable.first?.holding == nil)
    }

    @Test mutating func aDurableMessageWithoutAConsumerGoesBackUndelivered() {
        driver.run(.acceptDurable(queue: "jobs", envelope("one"), id: 4, redelivered: false))
        #expect(driver.lastDurable.map(\.work) == [.giveBack(queue: "jobs", ids: [4], delivered: false)])
        #expect(driver.router.queuedBytes == 0)
        #expect(driver.router.queueCount == 0)
    }

    @Test mutating func whatAConsumerHeldGoesBackDeliveredWhenItLeaves() {
        let consumer = driver.open(2)
        driver.subscribe(consumer, id: "s", "/queue/jobs", ack: .client)
        driver.run(.acceptDurable(queue: "jobs", envelope("one", id: "n1-1"), id: 5, redelivered: false))
        driver.run(.acceptDurable(queue: "jobs", envelope("two", id: "n1-2"), id: 6, redelivered: false))
        driver.run(.unsubscribe(id: "s"), from: consumer)
        #expect(driver.lastDurable.map(\.work) == [.giveBack(queue: "jobs", ids: [5, 6], delivered: true)])
        #expect(driver.router.queuedBytes == 0)
    }

    @Test mutating func aNackedDurableMessageGoesToAnotherConsumerAndIsSettledByItsAck() {
        let first = driver.open(2)
        let second = driver.open(3)
        driver.subscribe(first, id: "s", "/queue/jobs", ack: .clientIndividual, prefetch: 1)
        driver.subscribe(second, id: "s", "/queue/jobs", ack: .clientIndividual, prefetch: 1)
        let delivered = driver.run(.acceptDurable(queue: "jobs", envelope("one"), id: 9, redelivered: false))
        let frame = try! #require(delivered.messages.first)
        let nacker = delivered.first!.connection
        let other = nacker == first ? second : first
        let again = driver.run(.nack(AckRequest(ackID: frame.ackID)), from: nacker)
        let redelivery = try! #require(again.messages(to: other).first)
        #expect(redelivery.isRedelivered)
        #expect(driver.lastDurable.isEmpty)
        driver.run(.ack(AckRequest(ackID: redelivery.ackID)), from: other)
        #expect(driver.lastDurable.map(\.work) == [.settle(queue: "jobs", ids: [9])])
    }

    @Test mutating func aDurableMessageIsNeverHandedOffButGivenBack() {
        driver.run(.remoteQueueConsumers(queue: "jobs", count: 1))
        driver.run(.acceptDurable(queue: "jobs", envelope("one"), id: 11, redelivered: false))
        #expect(driver.lastDurable.map(\.work) == [.giveBack(queue: "jobs", ids: [11], delivered: false)])
        #expect(driver.lastClusterOutputs.isEmpty)
    }

    @Test mutating func aDrainGivesDurableMessagesBackInsteadOfHandingThemOff() {
        let consumer = driver.open(2)
        driver.subscribe(consumer, id: "s", "/queue/jobs", ack: .clientIndividual, prefetch: 1)
        driver.run(.acceptDurable(queue: "jobs", envelope("one", id: "n1-1"), id: 1, redelivered: false))
        driver.run(.acceptDurable(queue: "jobs", envelope("two", id: "n1-2"), id: 2, redelivered: false))
        driver.run(.remoteQueueConsumers(queue: "jobs", count: 1))
        driver.run(.evacuate)
        #expect(driver.lastDurable.map(\.work) == [.giveBack(queue: "jobs", ids: [2], delivered: false)])
        #expect(driver.lastClusterOutputs.isEmpty)
    }
}
