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

/// Several nodes' durable queues on one loop, linked in memory: a node that doesn't hold a
/// queue writes to the one that exists, wherever it was made, rather than make a second group
/// of the same name.
@Suite final class DurableQueueLookupTests: DurableTestBed {
    let network = Network()

    init() {
        super.init(prefix: "durable-lookup")
        network.loop = loop
    }

    /// The nodes up, and what they say to each other, delivered on the next turn of the loop.
    final class Network: @unchecked Sendable {
        /// The test bed's, set once it has one.
        var loop: (any EventLoop)!
        var nodes: [String: DurableQueuesTests.Node] = [:]
        var live: [String] { nodes.keys.sorted() }

        final class Link: ReplicationLink {
            let me: String
            unowned let network: Network
            init(me: String, network: Network) {
                self.me = me
                self.network = network
            }
            var liveNodes: [String] { network.live }
            var deadNodes: [String] { [] }
            func send(_ payload: ByteBuffer, to node: String) -> Bool {
                guard let target = network.nodes[node] else { return false }
                network.loop.execute { [me] in target.queues.received(payload, from: me) }
                return true
            }
            func consumers(ofQueue name: String) -> [String: Int] { [:] }
            func linkNumber(to node: String) -> UInt64? { network.nodes[node] == nil ? nil : 1 }
            func afterInterestPropagated(_ body: @escaping () -> Void) { body() }
        }
    }

    /// A node up and linked to those up before it. On the loop.
    func make(_ name: String) throws -> DurableQueuesTests.Node {
        let settings = DurableQueues.Settings(directory: "\(directory)/\(name)", minFreeBytes: 0)
        let queues = try DurableQueues(settings: settings, node: name, eventLoop: loop, logger: Logger(label: name))
        queues.attach(link: Network.Link(me: name, network: network))
        let node = DurableQueuesTests.Node(queues)
        network.nodes[name] = node
        queues.start()
        return node
    }

    func start(_ name: String) throws -> DurableQueuesTests.Node {
        try onLoop { try self.make(name) }
    }

    struct Group: Sendable {
        var leader: String
        var messages: Int
    }

    /// The leader every node that holds `queue` knows, once they all know the same one, and
    /// the messages its replica holds. On the loop.
    func group(of queue: String) -> Group? {
        let held = network.nodes.values.compactMap { $0.queues.queues[queue] }
        let leaders = Set(held.map { $0.replica.raft.leader?.name })
        guard leaders.count == 1, let leader = leaders.first ?? nil,
            let replica = network.nodes[leader]?.queues.queues[queue]?.replica
        else { return nil }
        return Group(leader: leader, messages: replica.state.count)
    }

    func succeeded(_ node: DurableQueuesTests.Node, _ bodies: [String]) throws -> Bool {
        try onLoop { bodies.allSatisfy { body in node.results[body].map { (try? $0.get()) != nil } ?? false } }
    }

    func stop() throws {
        try onLoop { [network] in for node in network.nodes.values { node.queues.close() } }
    }

    @Test func aWriteThroughANodeThatJoinedReachesTheQueueMadeBeforeIt() throws {
        let first = try start("n1")
        try onLoop { first.enqueue("alone") }
        try wait("the first commit") { first.results["alone"] != nil }
        #expect(try succeeded(first, ["alone"]))

        // Both join, and one writes at once, in the same turn of the loop: before the leader
        // takes either of them on. Placement now ranks both among the queue's replicas, and
        // neither holds it.
        let (second, third) = try onLoop {
            let (second, third) = (try self.make("n2"), try self.make("n3"))
            third.enqueue("through-n3")
            return (second, third)
        }
        try wait("the write through n3") { third.results["through-n3"] != nil }
        try onLoop { second.enqueue("through-n2") }
        try wait("the write through n2") { second.results["through-n2"] != nil }
        #expect(try succeeded(second, ["through-n2"]) && succeeded(third, ["through-n3"]))
        try wait("one group, one leader") { self.group(of: "jobs") != nil }
        let group = try onLoop { self.group(of: "jobs") }
        #expect(group?.leader == "n1")
        #expect(group?.messages == 3)
        try stop()
    }

    @Test func nodesInAndOutsideANewQueuesPlacementWritingAtOnceMakeOneGroup() throws {
        let nodes = try ["n1", "n2", "n3", "n4"].map { try start($0) }
        let ids = ["n1", "n2", "n3", "n4"].map { ReplicaID($0) }
        let placement = ReplicaPlacement.replicas(of: "fresh", among: ids, factor: 3).map(\.name)
        let outside = nodes[ids.firstIndex { !placement.contains($0.name) }!]
        let inside = nodes[ids.firstIndex { $0.name == placement.last! }!]
        // The node outside looks the queue up, then sends its writes by placement; the one
        // inside would make it. All three writes reach the one group that is made.
        try onLoop {
            outside.enqueue("outside-1", to: "fresh")
            inside.enqueue("inside-1", to: "fresh")
            outside.enqueue("outside-2", to: "fresh")
        }
        try wait("the three writes") {
            outside.results.count == 2 && inside.results.count == 1
        }
        #expect(try succeeded(outside, ["outside-1", "outside-2"]) && succeeded(inside, ["inside-1"]))
        try wait("one group, one leader") { self.group(of: "fresh") != nil }
        let group = try onLoop { self.group(of: "fresh") }
        #expect(group?.messages == 3)
        #expect(group.map { placement.contains($0.leader) } == true, "\(String(describing: group)), \(placement)")
        #expect(try onLoop { outside.queues.queues["fresh"] == nil }, "the node outside placement holds no copy")
        try stop()
    }

    @Test func anAckThroughANodeThatDoesntHoldTheQueueReachesIt() throws {
        let first = try start("n1")
        try onLoop { first.enqueue("a") }
        try wait("the commit") { first.results["a"] != nil }
        let id = try #require(try onLoop { first.queues.queues["jobs"]?.ready.first })
        // n3 joins with a consumer that got the message from n1 (the leader delivers to any
        // node with consumers) and acknowledges it before n1 takes n3 on.
        let settled = try onLoop {
            _ = try self.make("n2")
            let third = try self.make("n3")
            third.queues.perform(.settle(queue: "jobs", ids: [id])) { third.results["ack"] = $0 }
            third.queues.flush()
            return third
        }
        try wait("the ACK") { settled.results["ack"] != nil }
        #expect(try succeeded(settled, ["ack"]))
        try wait("the message settled") { first.queues.queues["jobs"]?.replica.state.count == 0 }
        try stop()
    }

    /// A node that sees the others dead: the cluster's majority is on the other side.
    final class CutOffLink: ReplicationLink {
        var liveNodes: [String] { ["n3"] }
        var deadNodes: [String] { ["n1", "n2"] }
        func send(_ payload: ByteBuffer, to node: String) -> Bool { false }
        func consumers(ofQueue name: String) -> [String: Int] { [:] }
        func linkNumber(to node: String) -> UInt64? { nil }
        func afterInterestPropagated(_ body: @escaping () -> Void) { body() }
    }

    @Test func aNodeCutOffFromTheMajorityMakesNoQueue() throws {
        let settings = DurableQueues.Settings(directory: "\(directory)/n3", minFreeBytes: 0)
        let node = try onLoop { [loop] in
            let queues = try DurableQueues(settings: settings, node: "n3", eventLoop: loop, logger: Logger(label: "n3"))
            queues.attach(link: CutOffLink())
            queues.start()
            return DurableQueuesTests.Node(queues)
        }
        try onLoop { node.enqueue("alone") }
        try wait("the refusal") { node.results["alone"] != nil }
        let result = try onLoop { node.results["alone"] }
        guard case .failure(let error)? = result else {
            Issue.record("made on the minority side: \(String(describing: result))")
            return
        }
        #expect(error.kind == .durableUnavailable && error.summary == "no quorum for /queue/jobs")
        #expect(error.detail.contains("1 of the 3 members"), "\(error)")
        #expect(try onLoop { node.queues.queues.isEmpty })
        try onLoop { node.queues.close() }
    }
}
