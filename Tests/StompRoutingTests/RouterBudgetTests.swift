import NIOCore
import Testing

@testable import StompRouting

/// The router's byte budgets: what all queues hold, how many queues there are, and what one
/// connection holds unacknowledged. Each bound reached is an ERROR naming it, and the
/// accounting returns to zero once the messages are gone.
@Suite("Router byte budgets")
struct RouterBudgetTests {
    private static let body = String(repeating: "x", count: 1_000)

    @Test("a SEND that would take the queues past their byte budget fails with queueBytesLimit")
    func queueBytesBudget() {
        var driver = RouterDriver(settings: .init(messageIDPrefix: "n-", maxQueueBytes: 3_500))
        let publisher = driver.open(1)
        for _ in 0..<3 { #expect(driver.send(publisher, "/queue/q", Self.body).isEmpty) }
        #expect(driver.router.queuedBytes > 3_000)
        #expect(
            driver.send(publisher, "/queue/q", Self.body, receipt: "r") == [
                .fail(publisher, .queueBytesLimit, receiptID: "r")
            ]
        )
    }

    @Test("queued bytes return to zero as consumers take and acknowledge the messages")
    func queueBytesAreGivenBack() {
        var driver = RouterDriver(settings: .init(messageIDPrefix: "n-"))
        let publisher = driver.open(1)
        let consumer = driver.open(2)
        for index in 0..<5 { driver.send(publisher, "/queue/q", "\(index)\(Self.body)") }
        let held = driver.router.queuedBytes
        #expect(held >= 5 * 1_000)
        let events = driver.subscribe(consumer, id: "s", "/queue/q", ack: .clientIndividual)
        #expect(events.messages.count == 5)
        #expect(driver.router.queuedBytes == 0)
        // What a consumer held unacknowledged goes back to the queue when it leaves, and counts again.
        driver.run(.unsubscribe(id: "s"), from: consumer)
        #expect(driver.router.queuedBytes == held)
        driver.subscribe(consumer, id: "s2", "/queue/q")
        #expect(driver.router.queuedBytes == 0)
        #expect(driver.router.queueCount == 1)
        driver.run(.closed, from: consumer)
        #expect(driver.router.queueCount == 0, "an unused queue is forgotten")
    }

    @Test("past the queue limit, a SEND or a SUBSCRIBE to a new queue fails with tooManyQueues")
    func queueCountLimit() {
        var driver = RouterDriver(settings: .init(messageIDPrefix: "n-", maxQueues: 2))
        let client = driver.open(1)
        driver.send(client, "/queue/a", "1")
        driver.subscribe(client, id: "b", "/queue/b")
        #expect(driver.send(client, "/queue/a", "2").isEmpty, "an existing queue takes more")
        let other = driver.open(2)
        #expect(
            driver.subscribe(other, id: "c", "/queue/c", receipt: "r") == [.fail(other, .tooManyQueues, receiptID: "r")]
        )
        let third = driver.open(3)
        #expect(driver.send(third, "/queue/d", "1") == [.fail(third, .tooManyQueues, receiptID: nil)])
    }

    @Test("a queue consumer at its connection's unacked-bytes budget gets no more until it acknowledges")
    func unackedBytesHoldQueueDeliveries() throws {
        var driver = RouterDriver(settings: .init(messageIDPrefix: "n-", maxUnackedBytes: 2_500))
        let publisher = driver.open(1)
        let consumer = driver.open(2)
        driver.subscribe(consumer, id: "s", "/queue/q", ack: .clientIndividual)
        var delivered: [StompFrame] = []
        for _ in 0..<5 { delivered += driver.send(publisher, "/queue/q", Self.body).messages }
        #expect(delivered.count == 3, "deliveries stop once the budget is passed")
        #expect(driver.router.pendingCount(queue: "q") == 2)
        let ack = try #require(delivered.first?.ackID)
        let more = driver.run(.ack(AckRequest(ackID: ack)), from: consumer)
        #expect(more.messages.count == 1)
    }

    @Test("a topic subscriber at its unacked-bytes budget is told which budget and let go")
    func unackedBytesFailTopicSubscriber() {
        var driver = RouterDriver(settings: .init(messageIDPrefix: "n-", maxUnackedBytes: 2_500))
        let publisher = driver.open(1)
        let subscriber = driver.open(2)
        driver.subscribe(subscriber, id: "s", "/topic/t", ack: .client)
        var events: [RouterEvent] = []
        for _ in 0..<4 { events += driver.send(publisher, "/topic/t", Self.body) }
        #expect(events.messages.count == 3)
        #expect(events.contains(.fail(subscriber, .unackedBytesLimit, receiptID: nil)))
    }

    @Test("a held body no longer shares the read buffer it was sliced from")
    func heldBodiesAreCompacted() throws {
        var driver = RouterDriver(settings: .init(messageIDPrefix: "n-"))
        let publisher = driver.open(1)
        var readBuffer = ByteBuffer(repeating: UInt8(ascii: "a"), count: 64 * 1_024)
        let slice = readBuffer.readSlice(length: 10)
        let body = try #require(slice)
        #expect(body.storageCapacity >= 64 * 1_024)
        let request = PublishRequest(destination: .queue("q"), headers: [:], body: body)
        driver.run(.send(request), from: publisher)
        let consumer = driver.open(2)
        let events = driver.subscribe(consumer, id: "s", "/queue/q")
        #expect(events.bodies(to: consumer) == ["aaaaaaaaaa"])
        #expect(body.compacted().storageCapacity < 1_024)
        let small = ByteBuffer(string: "small")
        #expect(small.compacted().storageCapacity == small.storageCapacity, "a buffer of its own is kept as it is")
    }
}
