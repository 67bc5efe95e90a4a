import NIOCore
import Testing

@testable import StompRouting

/// RabbitMQ's request/reply: `reply-to:/temp-queue/NAME` on a SEND gives the requester a
/// private queue that the responder's reply reaches, here or on another node, and that goes
/// with the requester's connection.
@Suite("Router: temporary reply queues")
struct TemporaryQueueTests {
    /// A requester (1) asks a responder (2), who consumes /queue/requests, with `reply-to`.
    private static func request(
        _ driver: inout RouterDriver,
        named name: String = "replies",
        body: String = "ping"
    ) throws -> (replyTo: String, events: [RouterEvent]) {
        let events = driver.send(
            ConnectionID(1),
            "/queue/requests",
            body,
            headers: ["reply-to": "/temp-queue/\(name)", "x-trace": "t1"]
        )
        let request = try #require(events.messages(to: ConnectionID(2)).last)
        return (try #require(request.headers["reply-to"]), events)
    }

    private static func connected(_ settings: Router.Settings = .init(messageIDPrefix: "n-")) -> RouterDriver {
        var driver = RouterDriver(settings: settings)
        driver.open(1)
        let responder = driver.open(2)
        driver.subscribe(responder, id: "s", "/queue/requests")
        return driver
    }

    @Test("the responder's reply to the rewritten reply-to reaches the requester on subscription /temp-queue/NAME")
    func requestAndReply() throws {
        var driver = Self.connected()
        let (replyTo, _) = try Self.request(&driver)
        #expect(replyTo.hasPrefix("/reply-queue/amq.gen-"))
        #expect(replyTo.utf8.count == "/reply-queue/amq.gen-".utf8.count + 32, "128 random bits in hex")

        let reply = driver.send(ConnectionID(2), replyTo, "pong", headers: ["correlation-id": "c1"])
        let answer = try #require(reply.messages(to: ConnectionID(1)).first)
        #expect(String(buffer: answer.body) == "pong")
        #expect(answer.subscription == "/temp-queue/replies")
        #expect(answer.headers["correlation-id"] == "c1")
        #expect(reply.messages(to: ConnectionID(2)).isEmpty, "the responder doesn't hear its own reply")
    }

    @Test("a connection reuses its queue for the same name, and another connection gets its own")
    func privatePerConnectionAndName() throws {
        var driver = Self.connected()
        let first = try Self.request(&driver).replyTo
        #expect(try Self.request(&driver).replyTo == first)
        #expect(try Self.request(&driver, named: "other").replyTo != first)
        driver.open(3)
        let fromAnother = try #require(
            driver.send(ConnectionID(3), "/queue/requests", "x", headers: ["reply-to": "/temp-queue/replies"])
                .messages(to: ConnectionID(2)).first?.headers["reply-to"]
        )
        #expect(fromAnother != first)
        #expect(driver.router.temporaryQueueCount == 3)
    }

    @Test("names come from the injected random source, so a seeded router repeats them")
    func seededNames() throws {
        func replyTo() throws -> String {
            var driver = RouterDriver(router: Router(settings: .init(messageIDPrefix: "n-"), random: Counting()))
            driver.open(1)
            driver.open(2)
            driver.subscribe(ConnectionID(2), id: "s", "/queue/requests")
            return try Self.request(&driver).replyTo
        }
        #expect(try replyTo() == "/reply-queue/amq.gen-00000000000000010000000000000002")
    }

    @Test("the queue's subscription goes out to the cluster ahead of the request that names it")
    func interestPrecedesTheRequest() throws {
        var driver = RouterDriver(settings: .init(messageIDPrefix: "n-"))
        driver.open(1)
        driver.run(.remoteQueueConsumers(queue: "requests", count: 1))
        driver.send(ConnectionID(1), "/queue/requests", "ping", headers: ["reply-to": "/temp-queue/r"])
        let outputs = driver.lastClusterOutputs
        #expect(outputs.count == 2)
        guard case .interest(.queue(let queue), delta: 1) = outputs.first,
            case .handOff(queue: "requests", let envelope, _, _) = outputs.last
        else {
            Issue.record("expected the interest, then the hand-off: \(outputs)")
            return
        }
        #expect(envelope.headers["reply-to"] == "/reply-queue/" + queue)
    }

    @Test("a reply from another node is delivered; one for a queue that is gone is dropped and counted")
    func repliesAcrossNodes() throws {
        var driver = Self.connected()
        let replyTo = try Self.request(&driver).replyTo
        let queue = String(replyTo.dropFirst("/reply-queue/".count))
        let envelope = MessageEnvelope(
            destination: .queue(queue),
            messageID: "n2-1",
            headers: [:],
            body: ByteBuffer(string: "pong")
        )
        let delivered = driver.run(.acceptHandoff(queue: queue, envelope, redelivered: false, hops: 1))
        #expect(delivered.bodies(to: ConnectionID(1)) == ["pong"])

        driver.run(.closed, from: ConnectionID(1))
        #expect(driver.router.temporaryQueueCount == 0)
        #expect(
            driver.lastClusterOutputs.contains {
                if case .interest(.queue(queue), delta: -1) = $0 { true } else { false }
            }
        )
        #expect(driver.run(.acceptHandoff(queue: queue, envelope, redelivered: false, hops: 1)).isEmpty)
        #expect(driver.lastUnroutable == [.queue(queue)])
        #expect(driver.send(ConnectionID(2), replyTo, "late").isEmpty)
        #expect(driver.lastUnroutable == [.queue(queue)])
        #expect(driver.router.pendingCount(queue: queue) == 0, "nothing is held for a requester that left")
        #expect(driver.router.queueCount == 1, "only /queue/requests remains")
    }

    @Test("past limits.temp-queues a connection fails with tooManyTemporaryQueues")
    func limitPerConnection() throws {
        var driver = Self.connected(.init(messageIDPrefix: "n-", maxTemporaryQueuesPerConnection: 2))
        _ = try Self.request(&driver, named: "a")
        _ = try Self.request(&driver, named: "b")
        _ = try Self.request(&driver, named: "a")
        let events = driver.send(
            ConnectionID(1),
            "/queue/requests",
            "x",
            headers: ["reply-to": "/temp-queue/c"],
            receipt: "r"
        )
        #expect(events == [.fail(ConnectionID(1), .tooManyTemporaryQueues, receiptID: "r")])
        #expect(driver.router.temporaryQueueCount == 0, "the failed connection's queues went with it")
    }

    @Test("a temporary queue counts toward limits.queues")
    func countsAsAQueue() throws {
        var driver = Self.connected(.init(messageIDPrefix: "n-", maxQueues: 1))
        let events = driver.send(
            ConnectionID(1),
            "/queue/requests",
            "x",
            headers: ["reply-to": "/temp-queue/r"]
        )
        #expect(events == [.fail(ConnectionID(1), .tooManyQueues, receiptID: nil)])
    }

    @Test("a SUBSCRIBE can't take the id of a temporary queue's subscription")
    func subscriptionIDs() throws {
        var driver = Self.connected()
        _ = try Self.request(&driver)
        #expect(
            driver.subscribe(ConnectionID(1), id: "/temp-queue/replies", "/topic/x")
                == [.fail(ConnectionID(1), .duplicateSubscription, receiptID: nil)]
        )
        var own = Self.connected()
        own.subscribe(ConnectionID(1), id: "/temp-queue/replies", "/topic/x")
        let events = own.send(ConnectionID(1), "/queue/requests", "x", headers: ["reply-to": "/temp-queue/replies"])
        #expect(events == [.fail(ConnectionID(1), .duplicateSubscription, receiptID: nil)])
    }

    /// Counts up from 1: names that a test can spell out.
    private struct Counting: RandomNumberGenerator {
        var value: UInt64 = 0
        mutating func next() -> UInt64 {
            value += 1
            return value
        }
    }
}
