import Foundation
import Logging
import NIOCore
import NIOPosix
import Replication
import StompRouting
import Testing

@testable import BrokerShell

#if canImport(Glibc)
import Glibc
#endif

/// The durable queues of one node on a real log: what is enqueued comes back to the router
/// once committed, settles and give-backs do what they say, a restart redelivers what was not
/// settled, and every refusal names its cause.
@Suite final class DurableQueuesTests: DurableTestBed {
    init() {
        super.init(prefix: "durable-queues")
    }

    /// The queues and what they handed to the router, confined to the loop.
    final class Node: @unchecked Sendable {
        let queues: DurableQueues
        var accepted: [(id: UInt64, body: String, redelivered: Bool)] = []
        var destinations: [Destination] = []
        var results: [String: Result<Void, StompProtocolError>] = [:]
        /// The topic pattern each queue's binding was last announced with (`nil`: none).
        var bindings: [String: String?] = [:]

        init(_ queues: DurableQueues) {
            self.queues = queues
            queues.deliver = { [unowned self] operations in
                for operation in operations {
                    switch operation {
                    case .acceptDurable(_, let envelope, let id, let redelivered):
                        accepted.append((id, String(buffer: envelope.body), redelivered))
                        destinations.append(envelope.destination)
                    case .durableBinding(let queue, let pattern):
                        bindings[queue] = .some(pattern)
                    default:
                        break
                    }
                }
            }
        }

        func enqueue(_ body: String, to queue: String = "jobs") {
            let envelope = MessageEnvelope(
                destination: .queue(queue),
                messageID: "m-\(body.suffix(8))",
                headers: [StompHeader.persistent: "true", "app": "x"],
                body: ByteBuffer(string: body)
            )
            queues.perform(.enqueue(queue: queue, envelope)) { [self] in results[body] = $0 }
        }
    }

    func start(_ settings: DurableQueues.Settings? = nil) throws -> Node {
        let settings = settings ?? DurableQueues.Settings(directory: directory, minFreeBytes: 0)
        return try loop.submit { [loop] in
            let queues = try DurableQueues(
                settings: settings,
                node: "n1",
                eventLoop: loop,
                logger: Logger(label: "test")
            )
            queues.start()
            return Node(queues)
        }.wait()
    }

    @Test func committedMessagesReachTheRouterAndWhatWasNotSettledComesBackAfterARestart() throws {
        var node = try start()
        try onLoop { for body in ["a", "b", "c"] { node.enqueue(body) } }
        try wait("three commits") { node.results.count == 3 }
        #expect(try onLoop { node.results.values.allSatisfy { (try? $0.get()) != nil } })
        #expect(try onLoop { node.accepted.isEmpty }, "nothing goes out without a consumer")

        try onLoop { node.queues.consumersChanged(queue: "jobs", delta: 1) }
        #expect(try onLoop { node.accepted.map(\.body) } == ["a", "b", "c"])
        #expect(try onLoop { node.accepted.allSatisfy { !$0.redelivered } })
        let first = try onLoop { node.accepted[0].id }
        var settled = false
        try onLoop {
            node.queues.perform(.settle(queue: "jobs", ids: [first])) { settled = (try? $0.get()) != nil }
            node.queues.flush()
        }
        try wait("the settle") { settled }
        try onLoop { node.queues.close() }

        node = try start()
        try onLoop { node.queues.consumersChanged(queue: "jobs", delta: 1) }
        try wait("redelivery after the restart") { node.accepted.count == 2 }
        let again = try onLoop { node.accepted }
        #expect(again.map(\.body) == ["b", "c"])
        #expect(again.allSatisfy { $0.redelivered }, "held before the restart: they may have gone out")
        try onLoop { node.queues.close() }
    }

    @Test func aBoundQueueIsAnnouncedTakesTopicMessagesAndAnUnbindEmptiesIt() throws {
        var node = try start()
        var bound: Result<Void, StompProtocolError>?
        try onLoop {
            node.queues.perform(.bind(queue: "sub", pattern: "news.#")) { bound = $0 }
        }
        try wait("the binding") { bound != nil }
        #expect(try onLoop { (try? bound?.get()) != nil })
        #expect(try onLoop { node.bindings["sub"] } == .some("news.#"))
        try onLoop {
            let envelope = MessageEnvelope(
                destination: .topic("news.sport"),
                messageID: "n1-7",
                headers: [:],
                body: ByteBuffer(string: "goal")
            )
            node.queues.perform(.enqueue(queue: "sub", envelope), completion: nil)
        }
        try onLoop { node.queues.consumersChanged(queue: "sub", delta: 1) }
        try wait("the topic message") { node.accepted.count == 1 }
        #expect(try onLoop { node.destinations } == [.topic("news.sport")], "its MESSAGE names the topic")
        try onLoop { node.queues.consumersChanged(queue: "sub", delta: -1) }
        try onLoop { node.queues.close() }

        // A restart reads the binding back, and the leader announces it again.
        node = try start()
        try wait("the binding after the restart") { node.bindings["sub"] == .some("news.#") }
        var unbound = false
        try onLoop { node.queues.perform(.unbind(queue: "sub")) { unbound = (try? $0.get()) != nil } }
        try wait("the unbind") { unbound }
        #expect(try onLoop { node.bindings["sub"] } == .some(nil))
        #expect(try onLoop { node.queues.statistics.messages } == 0, "a deleted subscription's messages go")
        try onLoop { node.queues.close() }
    }

    @Test func givenBackMessagesGoOutAgainFirstAndThoseDeliveredSaySo() throws {
        let node = try start()
        try onLoop { for body in ["a", "b"] { node.enqueue(body) } }
        try wait("two commits") { node.results.count == 2 }
        try onLoop { node.queues.consumersChanged(queue: "jobs", delta: 1) }
        let ids = try onLoop { node.accepted.map(\.id) }
        try onLoop {
            node.accepted.removeAll()
            node.queues.perform(.giveBack(queue: "jobs", ids: [ids[0]], delivered: false), completion: nil)
        }
        // Not at once (the router just said it had no one for it): at the next tick.
        try wait("the message given back, out again") { node.accepted.count == 1 }
        #expect(try onLoop { node.accepted.map(\.body) } == ["a"])
        #expect(try onLoop { node.accepted[0].redelivered } == false)
        try onLoop {
            node.accepted.removeAll()
            node.queues.perform(.giveBack(queue: "jobs", ids: [ids[1]], delivered: true), completion: nil)
        }
        try wait("the requeue") { node.accepted.count == 1 }
        #expect(try onLoop { node.accepted[0].body == "b" && node.accepted[0].redelivered })
        try onLoop { node.queues.close() }
    }

    @Test func theRouterHoldsNoMoreThanTheDispatchWindow() throws {
        var settings = DurableQueues.Settings(directory: directory, minFreeBytes: 0)
        settings.dispatchWindow = 2
        let node = try start(settings)
        try onLoop { for body in ["a", "b", "c", "d"] { node.enqueue(body) } }
        try wait("four commits") { node.results.count == 4 }
        try onLoop { node.queues.consumersChanged(queue: "jobs", delta: 1) }
        #expect(try onLoop { node.accepted.map(\.body) } == ["a", "b"])
        let first = try onLoop { node.accepted[0].id }
        try onLoop {
            node.queues.perform(.settle(queue: "jobs", ids: [first]), completion: nil)
            node.queues.flush()
        }
        #expect(try onLoop { node.accepted.map(\.body) } == ["a", "b", "c"])
        try onLoop { node.queues.close() }
    }

    @Test func aFullLogRefusesNewMessagesNamingItsSetting() throws {
        let settings = DurableQueues.Settings(
            directory: directory,
            log: WriteAheadLog.Settings(segmentBytes: 64 << 10, maxBytes: 200 << 10),
            minFreeBytes: 0
        )
        let node = try start(settings)
        let big = String(repeating: "x", count: 60 << 10)
        for round in 0..<4 {
            try onLoop { node.enqueue(big + String(round)) }
            try wait("round \(round)") { node.results.count == round + 1 }
        }
        let failures = try onLoop {
            node.results.values.compactMap { result -> StompProtocolError? in
                if case .failure(let error) = result { return error } else { return nil }
            }
        }
        #expect(failures.count >= 1)
        #expect(failures.allSatisfy { $0.kind == .dataLimit && $0.detail.contains("data.max-bytes") })
        try onLoop { node.queues.close() }
    }

    @Test func aDataDirThatCantBeUsedRefusesPersistentMessagesSayingWhy() throws {
        let blocked = directory + "/not-a-directory"
        let file = fopen(blocked, "w")
        fclose(file)
        let node = try start(DurableQueues.Settings(directory: blocked, minFreeBytes: 0))
        try onLoop { node.enqueue("a") }
        let result = try onLoop { node.results["a"] }
        guard case .failure(let error) = result else {
            Issue.record("expected a refusal, got \(String(describing: result))")
            return
        }
        #expect(error.kind == .durableUnavailable)
        #expect(error.detail.contains(blocked))
        try onLoop { node.queues.close() }
    }

    /// A link to a second replica that never answers: the queue never gets a leader.
    final class SilentLink: ReplicationLink {
        var liveNodes: [String] { ["n1", "n2"] }
        var deadNodes: [String] { [] }
        func send(_ payload: ByteBuffer, to node: String) -> Bool { true }
        func consumers(ofQueue name: String) -> [String: Int] { [:] }
        func linkNumber(to node: String) -> UInt64? { 1 }
        func afterInterestPropagated(_ body: @escaping () -> Void) { body() }
    }

    @Test func aQueueWithoutAQuorumTimesWritesOutAndHoldsNoMoreThanItsBound() throws {
        var settings = DurableQueues.Settings(
            directory: directory,
            log: WriteAheadLog.Settings(segmentBytes: 1 << 20, maxBytes: 16 << 20),
            sendTimeout: .milliseconds(300),
            minFreeBytes: 0,
            replicationFactor: 2
        )
        settings.dispatchWindow = 8
        let node = try loop.submit { [loop] in
            let queues = try DurableQueues(
                settings: settings,
                node: "n1",
                eventLoop: loop,
                logger: Logger(label: "test")
            )
            queues.attach(link: SilentLink())
            queues.start()
            return Node(queues)
        }.wait()
        let big = String(repeating: "z", count: 300 << 10)
        try onLoop { for round in 0..<4 { node.enqueue(big + String(round)) } }
        // Waiting for a leader, 1 MiB at most (1/16 of data.max-bytes): the fourth is refused now.
        let refused = try onLoop {
            node.results.values.compactMap { result -> StompProtocolError? in
                if case .failure(let error) = result { return error } else { return nil }
            }
        }
        #expect(refused.count == 1, "\(refused)")
        #expect(refused.first?.kind == .durableUnavailable && refused.first?.summary.contains("no quorum") == true)
        try wait("the timeouts") { node.results.count == 4 }
        let kinds = try onLoop {
            node.results.values.compactMap { result -> StompProtocolError.Kind? in
                if case .failure(let error) = result { return error.kind } else { return nil }
            }
        }
        #expect(kinds.filter { $0 == .replicationTimeout }.count == 3)
        // Their clients were told: nothing of them is kept, so there is room again.
        try onLoop { node.enqueue("after") }
        try wait("the next timeout") { node.results["after"] != nil }
        let after = try onLoop { node.results["after"] }
        guard case .failure(let late)? = after else {
            Issue.record("no quorum, yet committed: \(String(describing: after))")
            return
        }
        #expect(late.kind == .replicationTimeout)
        try onLoop { node.queues.close() }
    }
}
