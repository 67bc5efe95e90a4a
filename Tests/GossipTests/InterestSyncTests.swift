import NIOCore
import StompRouting
import Testing

@testable import Gossip

/// Interest kept in step with the peers, without links or clocks: what each peer message is
/// answered with, and when a SUBSCRIBE's receipt may go out.
@Suite struct InterestSyncTests {
    static let (b, c) = (NodeID("b"), NodeID("c"))
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    static let timeout = TimeAmount.seconds(5)

    static func sync() -> InterestSync<String> {
        InterestSync(epoch: 7, acknowledgementTimeout: timeout)
    }

    /// `sync` with a local subscription to /topic/a, version 1, acknowledged by nobody yet.
    static func subscribed() -> InterestSync<String> {
        var sync = sync()
        _ = sync.localChanged(.topic("a"), by: 1)
        return sync
    }

    // MARK: - Local changes

    @Test func onlyChangesAPeerCanSeeAreAnnounced() {
        var sync = Self.sync()
        #expect(
            sync.localChanged(.topic("a.*"), by: 1)
                == .interestDelta(epoch: 7, version: 1, changes: [(.topic("a.*"), 1)])
        )
        // A second subscriber to the same pattern changes nothing a peer routes by.
        #expect(sync.localChanged(.topic("a.*"), by: 1) == nil)
        #expect(
            sync.localChanged(.queue("jobs"), by: 2)
                == .interestDelta(epoch: 7, version: 2, changes: [(.queue("jobs"), 2)])
        )
        #expect(
            sync.localChanged(.topic("a.*"), by: -2)
                == .interestDelta(epoch: 7, version: 3, changes: [(.topic("a.*"), 0)])
        )
        #expect(sync.local.version == 3)
    }

    @Test func aNewLinkStartsFromTheWholeSnapshot() {
        var sync = Self.subscribed()
        _ = sync.localChanged(.queue("jobs"), by: 3)
        guard case .interestSnapshot(7, 2, let entries) = sync.linkEstablished(to: Self.b, peerEpoch: 1) else {
            Issue.record("a link did not start from a snapshot")
            return
        }
        #expect(Dictionary(uniqueKeysWithValues: entries) == [.topic("a"): 1, .queue("jobs"): 3])
    }

    // MARK: - The peers' interest

    @Test func anAppliedDeltaIsAcknowledgedAndNamesTheQueuesItChanged() {
        var sync = Self.sync()
        let delta = LinkMessage.interestDelta(epoch: 3, version: 1, changes: [(.queue("jobs"), 2)])
        let reaction = sync.received(delta, from: Self.b, peerEpoch: 3)
        #expect(reaction.replies == [.interestAck(epoch: 3, version: 1)])
        #expect(reaction.queuesChanged == ["jobs"])
        #expect(sync.remote.consumers(ofQueue: "jobs") == [Self.b: 2])
        // The same delta again (a resend): acknowledged again, changes nothing.
        let again = sync.received(delta, from: Self.b, peerEpoch: 3)
        #expect(again.replies == [.interestAck(epoch: 3, version: 1)])
        #expect(again.queuesChanged.isEmpty)
    }

    @Test func aMissingDeltaIsAskedForWithADigest() {
        var sync = Self.sync()
        _ = sync.received(.interestSnapshot(epoch: 3, version: 1, entries: []), from: Self.b, peerEpoch: 3)
        let skipped = LinkMessage.interestDelta(epoch: 3, version: 3, changes: [(.topic("x"), 1)])
        let reaction = sync.received(skipped, from: Self.b, peerEpoch: 3)
        #expect(reaction.replies == [.interestDigest(epoch: 7, version: 0, yourEpoch: 3, yourVersion: 1)])
        #expect(sync.remote.version(of: Self.b)?.version == 1)
    }

    @Test func aDigestOfAnotherViewOfThisNodeGetsTheSnapshot() {
        var sync = Self.subscribed()
        _ = sync.received(.interestSnapshot(epoch: 3, version: 4, entries: []), from: Self.b, peerEpoch: 3)
        // The peer holds version 0 of ours; we hold its current version 4.
        let behind = sync.received(
            .interestDigest(epoch: 3, version: 4, yourEpoch: 7, yourVersion: 0),
            from: Self.b,
            peerEpoch: 3
        )
        #expect(behind.replies == [sync.snapshot])
        // Another boot of this node, even at the same version, is another view too.
        let otherBoot = sync.received(
            .interestDigest(epoch: 3, version: 4, yourEpoch: 6, yourVersion: 1),
            from: Self.b,
            peerEpoch: 3
        )
        #expect(otherBoot.replies == [sync.snapshot])
        // Both views current: nothing to say.
        let current = sync.received(
            .interestDigest(epoch: 3, version: 4, yourEpoch: 7, yourVersion: 1),
            from: Self.b,
            peerEpoch: 3
        )
        #expect(current.replies.isEmpty)
    }

    @Test func aDigestShowingThisNodeBehindIsAnsweredWithItsOwnDigest() {
        var sync = Self.subscribed()
        _ = sync.received(.interestSnapshot(epoch: 3, version: 4, entries: []), from: Self.b, peerEpoch: 3)
        let reaction = sync.received(
            .interestDigest(epoch: 3, version: 9, yourEpoch: 7, yourVersion: 1),
            from: Self.b,
            peerEpoch: 3
        )
        // Our digest tells the peer we hold its version 4, so it resends its snapshot.
        #expect(reaction.replies == [.interestDigest(epoch: 7, version: 1, yourEpoch: 3, yourVersion: 4)])
    }

    @Test func aGoneMemberTakesItsInterestAlong() {
        var sync = Self.sync()
        _ = sync.received(
            .interestSnapshot(epoch: 3, version: 2, entries: [(.queue("jobs"), 1), (.topic("t"), 1)]),
            from: Self.b,
            peerEpoch: 3
        )
        #expect(sync.memberGone(Self.b) == ["jobs"])
        var peers = Set<NodeID>()
        sync.remote.peers(forTopic: "t", into: &peers)
        #expect(peers.isEmpty)
        #expect(sync.remote.version(of: Self.b) == nil)
    }

    // MARK: - Receipts

    @Test func aReceiptWaitsForEveryLivePeer() {
        var sync = Self.subscribed()
        #expect(sync.waitForPropagation("r1", live: [Self.b, Self.c], now: Self.start) == nil)
        let fromB = sync.received(.interestAck(epoch: 7, version: 1), from: Self.b, peerEpoch: 1)
        #expect(fromB.acknowledgementAdvanced)
        #expect(sync.releaseWaiters(live: [Self.b, Self.c], now: Self.start + .milliseconds(10)).isEmpty)
        _ = sync.received(.interestAck(epoch: 7, version: 1), from: Self.c, peerEpoch: 1)
        let released = sync.releaseWaiters(live: [Self.b, Self.c], now: Self.start + .milliseconds(30))
        #expect(released.map(\.0) == ["r1"])
        #expect(released.map(\.1) == [.propagated(after: .milliseconds(30))])
        #expect(sync.waitingCount == 0)
    }

    @Test func withEveryPeerCurrentAReceiptDoesNotWait() {
        var sync = Self.subscribed()
        _ = sync.received(.interestAck(epoch: 7, version: 1), from: Self.b, peerEpoch: 1)
        #expect(sync.waitForPropagation("r1", live: [Self.b], now: Self.start) == "r1")
        // Alone in the cluster, nobody needs to hear.
        #expect(Self.subscribed().isPropagated(1, toEvery: []))
    }

    @Test func aReceiptWaitsForTheVersionOfItsOwnSubscription() {
        var sync = Self.subscribed()
        _ = sync.received(.interestAck(epoch: 7, version: 1), from: Self.b, peerEpoch: 1)
        _ = sync.localChanged(.topic("later"), by: 1)
        #expect(sync.waitForPropagation("r2", live: [Self.b], now: Self.start) == nil)
        // An acknowledgement of an older version doesn't release it.
        let stale = sync.received(.interestAck(epoch: 7, version: 1), from: Self.b, peerEpoch: 1)
        #expect(!stale.acknowledgementAdvanced)
        #expect(sync.releaseWaiters(live: [Self.b], now: Self.start).isEmpty)
    }

    @Test func anAcknowledgementOfAnEarlierBootOfThisNodeCountsForNothing() {
        var sync = Self.subscribed()
        #expect(sync.waitForPropagation("r1", live: [Self.b], now: Self.start) == nil)
        let old = sync.received(.interestAck(epoch: 6, version: 9), from: Self.b, peerEpoch: 1)
        #expect(!old.acknowledgementAdvanced)
        #expect(sync.releaseWaiters(live: [Self.b], now: Self.start).isEmpty)
    }

    @Test func aPeerThatRestartedMustAcknowledgeAgain() {
        var sync = Self.subscribed()
        _ = sync.received(.interestAck(epoch: 7, version: 1), from: Self.b, peerEpoch: 1)
        #expect(sync.isPropagated(1, toEvery: [Self.b]))
        _ = sync.linkEstablished(to: Self.b, peerEpoch: 2)
        #expect(!sync.isPropagated(1, toEvery: [Self.b]))
        // The same boot linking again keeps what it acknowledged.
        _ = sync.received(.interestAck(epoch: 7, version: 1), from: Self.b, peerEpoch: 2)
        _ = sync.linkEstablished(to: Self.b, peerEpoch: 2)
        #expect(sync.isPropagated(1, toEvery: [Self.b]))
    }

    @Test func aReceiptNobodyAcknowledgesGoesOutAtTheTimeout() {
        var sync = Self.subscribed()
        #expect(sync.waitForPropagation("r1", live: [Self.b], now: Self.start) == nil)
        let early = Self.start + Self.timeout - .milliseconds(1)
        #expect(sync.releaseWaiters(live: [Self.b], now: early).isEmpty)
        let released = sync.releaseWaiters(live: [Self.b], now: Self.start + Self.timeout)
        #expect(released.map(\.0) == ["r1"])
        #expect(released.map(\.1) == [.timedOut])
    }

    @Test func aDeadPeerNoLongerHoldsReceipts() {
        var sync = Self.subscribed()
        _ = sync.received(.interestAck(epoch: 7, version: 1), from: Self.b, peerEpoch: 1)
        #expect(sync.waitForPropagation("r1", live: [Self.b, Self.c], now: Self.start) == nil)
        _ = sync.memberGone(Self.c)
        let released = sync.releaseWaiters(live: [Self.b], now: Self.start + .milliseconds(5))
        #expect(released.map(\.0) == ["r1"])
    }

    @Test func receiptsAreReleasedInTheOrderTheyBeganWaiting() {
        var sync = Self.subscribed()
        for name in ["r1", "r2", "r3"] {
            _ = sync.localChanged(.topic(name), by: 1)
            #expect(sync.waitForPropagation(name, live: [Self.b], now: Self.start) == nil)
        }
        _ = sync.received(.interestAck(epoch: 7, version: 4), from: Self.b, peerEpoch: 1)
        #expect(sync.releaseWaiters(live: [Self.b], now: Self.start).map(\.0) == ["r1", "r2", "r3"])
    }
}
