import NIOCore
import Replication
import Testing

@testable import BrokerShell

/// A queue about to be made waits for every other node's answer, goes to the first that holds
/// it, and of two nodes making it at once, the one whose name sorts first makes it.
@Suite struct QueueLookupTests {
    let deadline = NIODeadline.uptimeNanoseconds(1_000)

    func write(_ body: String) -> QueueLookup.Waiting {
        QueueLookup.Waiting(command: .enqueue(ByteBuffer(string: body)), admission: .payload, hops: 0, token: 1)
    }

    @Test func everyNoMakesItAndTheFirstHolderThatKnowsTheLeaderTakesTheWrites() {
        var lookup = QueueLookup(asking: ["n2", "n3"], deadline: deadline)
        #expect(lookup.answered(by: "n2", .notHeld) == nil)
        // A node that wasn't asked, or answers twice, doesn't count.
        #expect(lookup.answered(by: "n9", .heldWithLeader) == nil)
        #expect(lookup.answered(by: "n2", .heldWithLeader) == nil)
        #expect(lookup.answered(by: "n3", .notHeld) == .heldNowhere)

        var found = QueueLookup(asking: ["n2", "n3"], deadline: deadline)
        #expect(found.answered(by: "n3", .heldWithLeader) == .passTo("n3"))
    }

    @Test func aHolderThatKnowsNoLeaderIsTheLastResort() {
        // A replica cut off from its group, or removed from it without hearing so, answers
        // first: the writes wait for a holder that knows where they go.
        var lookup = QueueLookup(asking: ["n2", "n3", "n4"], deadline: deadline)
        #expect(lookup.answered(by: "n2", .heldWithoutLeader) == nil)
        #expect(lookup.answered(by: "n3", .heldWithLeader) == .passTo("n3"))

        var alone = QueueLookup(asking: ["n2", "n3"], deadline: deadline)
        #expect(alone.answered(by: "n3", .heldWithoutLeader) == nil)
        #expect(alone.timedOut() == .passTo("n3"))
        #expect(alone.answered(by: "n2", .notHeld) == .passTo("n3"))
    }

    @Test func nodesThatNeverAnswerAreTakenToHoldNothing() {
        let lookup = QueueLookup(asking: ["n2", "n3"], deadline: deadline)
        #expect(lookup.timedOut() == .heldNowhere)
        #expect(lookup.unanswered == ["n2", "n3"])
    }

    @Test func ofTwoNodesMakingItAtOnceTheNameThatSortsFirstMakesIt() {
        var first = QueueLookup(asking: ["n2"], deadline: deadline)
        var second = QueueLookup(asking: ["n1"], deadline: deadline)
        // n1 asks n2, n2 asks n1: only n1 says it holds the queue (it will make it).
        #expect(second.answer("n1", me: ReplicaID("n2")) == .notHeld)
        #expect(first.answer("n2", me: ReplicaID("n1")) == .heldWithoutLeader)
        #expect(second.answered(by: "n1", .heldWithoutLeader) == .passTo("n1"))
        #expect(first.answered(by: "n2", .notHeld) == .heldNowhere)
    }

    @Test func aNodeOutrankedBySeveralPassesItsWritesToTheFirst() {
        var lookup = QueueLookup(asking: ["n1", "n2", "n4"], deadline: deadline)
        #expect(lookup.answer("n4", me: ReplicaID("n3")) == .heldWithoutLeader)
        #expect(lookup.answer("n2", me: ReplicaID("n3")) == .notHeld)
        #expect(lookup.answer("n1", me: ReplicaID("n3")) == .notHeld)
        #expect(lookup.answer("n2", me: ReplicaID("n3")) == .notHeld)
        #expect(lookup.timedOut() == .passTo("n1"))
        #expect(lookup.answered(by: "n4", .notHeld) == nil)
        #expect(lookup.answered(by: "n2", .notHeld) == nil)
        // No one holds it: the writes go to n1, which makes it.
        #expect(lookup.answered(by: "n1", .notHeld) == .passTo("n1"))
    }

    @Test func onlyNewMessagesCountTowardsTheBytesWaiting() {
        var lookup = QueueLookup(asking: ["n2"], deadline: deadline)
        lookup.add(write("12345"))
        lookup.add(QueueLookup.Waiting(command: .bind("news.#"), admission: .control, hops: 1, token: nil))
        lookup.add(write("678"))
        #expect(lookup.bytes == 8)
        #expect(lookup.waiting.count == 3)
    }
}
