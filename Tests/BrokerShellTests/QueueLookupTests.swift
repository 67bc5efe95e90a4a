import NIOCore
import Replication
import Testing

@testable import BrokerShell

/// A lookup waits for every other node's answer and sends the writes to the first holder that
/// knows the queue's leader; of two nodes that would both make the queue, the one whose name
/// sorts first makes it, and a node that wouldn't make it never claims it.
@Suite struct QueueLookupTests {
    let deadline = NIODeadline.uptimeNanoseconds(1_000)

    func lookup(asking nodes: Set<String>) -> QueueLookup {
        QueueLookup(id: 7, asking: nodes, deadline: deadline)
    }

    func write(_ body: String) -> QueueLookup.Waiting {
        QueueLookup.Waiting(command: .enqueue(ByteBuffer(string: body)), admission: .payload, hops: 0, token: 1)
    }

    @Test func everyNoMeansHeldNowhereAndTheFirstHolderThatKnowsTheLeaderTakesTheWrites() {
        var lookup = lookup(asking: ["n2", "n3"])
        #expect(lookup.answered(by: "n2", to: 7, .notHeld) == nil)
        // A node that wasn't asked, answers twice, or answers an earlier lookup doesn't count.
        #expect(lookup.answered(by: "n9", to: 7, .heldWithLeader) == nil)
        #expect(lookup.answered(by: "n2", to: 7, .heldWithLeader) == nil)
        #expect(lookup.answered(by: "n3", to: 6, .heldWithLeader) == nil)
        #expect(lookup.answered(by: "n3", to: 7, .notHeld) == .heldNowhere)

        var found = self.lookup(asking: ["n2", "n3"])
        #expect(found.answered(by: "n3", to: 7, .heldWithLeader) == .passTo("n3"))
    }

    @Test func aHolderThatKnowsNoLeaderIsTheLastResort() {
        // A replica cut off from its group, or removed from it without hearing so, answers
        // first: the writes wait for a holder that knows where they go.
        var lookup = lookup(asking: ["n2", "n3", "n4"])
        #expect(lookup.answered(by: "n2", to: 7, .heldWithoutLeader) == nil)
        #expect(lookup.answered(by: "n3", to: 7, .heldWithLeader) == .passTo("n3"))

        var alone = self.lookup(asking: ["n2", "n3"])
        #expect(alone.answered(by: "n3", to: 7, .heldWithoutLeader) == nil)
        #expect(alone.timedOut() == .passTo("n3"))
        #expect(alone.answered(by: "n2", to: 7, .notHeld) == .passTo("n3"))
    }

    @Test func nodesThatNeverAnswerAreTakenToHoldNothing() {
        let lookup = lookup(asking: ["n2", "n3"])
        #expect(lookup.timedOut() == .heldNowhere)
        #expect(lookup.unanswered == ["n2", "n3"])
    }

    @Test func ofTwoNodesThatWouldMakeItTheNameThatSortsFirstMakesIt() {
        var first = lookup(asking: ["n2"])
        var second = lookup(asking: ["n1"])
        // n1 asks n2, n2 asks n1: only n1 says it holds the queue (it will make it).
        #expect(second.answer("n1", askerMakes: true, me: ReplicaID("n2"), makes: true) == .notHeld)
        #expect(first.answer("n2", askerMakes: true, me: ReplicaID("n1"), makes: true) == .heldWithoutLeader)
        #expect(second.answered(by: "n1", to: 7, .heldWithoutLeader) == .passTo("n1"))
        #expect(first.answered(by: "n2", to: 7, .notHeld) == .heldNowhere)
    }

    @Test func aNodeThatWouldntMakeItNeverClaimsItAndNeverTakesWritesFromOneThatWould() {
        // n1 is outside the queue's placement; n3 is in it.
        var outside = lookup(asking: ["n3"])
        var inside = lookup(asking: ["n1"])
        #expect(outside.answer("n3", askerMakes: true, me: ReplicaID("n1"), makes: false) == .notHeld)
        #expect(inside.answer("n1", askerMakes: false, me: ReplicaID("n3"), makes: true) == .heldWithoutLeader)
        #expect(inside.answered(by: "n1", to: 7, .notHeld) == .heldNowhere)
        #expect(outside.answered(by: "n3", to: 7, .heldWithoutLeader) == .passTo("n3"))
        // Neither would: neither claims it, and each goes by placement.
        var other = lookup(asking: ["n2"])
        #expect(other.answer("n2", askerMakes: false, me: ReplicaID("n1"), makes: false) == .notHeld)
        #expect(other.timedOut() == .heldNowhere)
    }

    @Test func aNodeOutrankedBySeveralPassesItsWritesToTheFirst() {
        var lookup = lookup(asking: ["n1", "n2", "n4"])
        let me = ReplicaID("n3")
        #expect(lookup.answer("n4", askerMakes: true, me: me, makes: true) == .heldWithoutLeader)
        #expect(lookup.answer("n2", askerMakes: true, me: me, makes: true) == .notHeld)
        #expect(lookup.answer("n1", askerMakes: true, me: me, makes: true) == .notHeld)
        #expect(lookup.answer("n2", askerMakes: true, me: me, makes: true) == .notHeld)
        #expect(lookup.timedOut() == .passTo("n1"))
        #expect(lookup.answered(by: "n4", to: 7, .notHeld) == nil)
        #expect(lookup.answered(by: "n2", to: 7, .notHeld) == nil)
        // No one holds it: the writes go to n1, which makes it.
        #expect(lookup.answered(by: "n1", to: 7, .notHeld) == .passTo("n1"))
    }

    @Test func onlyNewMessagesCountTowardsTheBytesWaiting() {
        var lookup = lookup(asking: ["n2"])
        lookup.add(write("12345"))
        lookup.add(QueueLookup.Waiting(command: .bind("news.#"), admission: .control, hops: 1, token: nil))
        lookup.add(write("678"))
        #expect(lookup.bytes == 8)
        #expect(lookup.waiting.count == 3)
    }
}
