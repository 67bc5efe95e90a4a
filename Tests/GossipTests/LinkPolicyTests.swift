import NIOCore
import Testing

@testable import Gossip

/// Whom the shell dials when, with an injected clock and a seeded generator: backoff with
/// jitter inside its bounds, no dial to itself or twice at once, the seed and dead-member
/// cadences, and one link per pair that both ends agree on.
@Suite struct LinkPolicyTests {
    static let settings = LinkPolicy.Settings(backoffMinimum: .milliseconds(100), backoffMaximum: .seconds(5))
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    func policy(seed: UInt64 = 1) -> LinkPolicy {
        LinkPolicy(settings: Self.settings, now: start, random: SplitMix64(seed: seed))
    }

    @Test func aFailedDialWaitsWithinItsBackoffAndTheCeilingDoublesUpToTheMaximum() {
        for seed in 1...50 {
            var policy = policy(seed: UInt64(seed))
            var now = start
            for failure in 1...8 {
                let dials1 = policy.startDial("b:7946", now: now, force: false)
                #expect(dials1)
                policy.dialEnded("b:7946", failed: true, now: now)
                let wait = policy.retryTime(of: "b:7946")! - now
                let ceiling = min(TimeAmount.milliseconds(100 << failure), .seconds(5))
                #expect(wait >= .milliseconds(100) && wait <= ceiling, "failure \(failure): waited \(wait)")
                let dials2 = policy.startDial("b:7946", now: now + wait - .nanoseconds(1), force: false)
                #expect(!dials2)
                now = now + wait
            }
        }
    }

    @Test func membershipMayDialDuringTheBackoffAndALinkForgetsIt() {
        var policy = policy()
        let dials3 = policy.startDial("b:7946", now: start, force: false)
        #expect(dials3)
        policy.dialEnded("b:7946", failed: true, now: start)
        let dials4 = policy.startDial("b:7946", now: start, force: false)
        #expect(!dials4)
        let dials5 = policy.startDial("b:7946", now: start, force: true)
        #expect(dials5)
        policy.dialEnded("b:7946", failed: false, now: start)
        policy.linkEstablished(dialedAddress: "b:7946")
        #expect(policy.retryTime(of: "b:7946") == nil)
        let dials6 = policy.startDial("b:7946", now: start, force: false)
        #expect(dials6)
    }

    @Test func aLinkThatClosesBeforeItsHandshakeBacksOffToo() {
        var policy = policy()
        let dials7 = policy.startDial("b:7946", now: start, force: false)
        #expect(dials7)
        policy.dialEnded("b:7946", failed: false, now: start)
        policy.linkClosedBeforeHandshake(dialedAddress: "b:7946", now: start)
        let dials8 = policy.startDial("b:7946", now: start, force: false)
        #expect(!dials8)
        let dials9 = policy.startDial("b:7946", now: policy.retryTime(of: "b:7946")!, force: false)
        #expect(dials9)
    }

    @Test func neverItselfAndNeverTwiceAtOnce() {
        var policy = policy()
        policy.isOwnAddress("a:7946")
        let dials10 = policy.startDial("a:7946", now: start, force: true)
        #expect(!dials10)
        let dials11 = policy.startDial("b:7946", now: start, force: false)
        #expect(dials11)
        let dials12 = policy.startDial("b:7946", now: start, force: true)
        #expect(!dials12)
        policy.dialEnded("b:7946", failed: false, now: start)
        let dials13 = policy.startDial("b:7946", now: start, force: false)
        #expect(dials13)
    }

    @Test func seedsEverySecondWhileAloneAndEveryThirtyOnceLinked() {
        var policy = policy()
        let due14 = policy.seedsDue(now: start, linked: false)
        #expect(due14)
        let due15 = policy.seedsDue(now: start + .milliseconds(999), linked: false)
        #expect(!due15)
        let due16 = policy.seedsDue(now: start + .seconds(1), linked: false)
        #expect(due16)
        let due17 = policy.seedsDue(now: start + .seconds(30), linked: true)
        #expect(!due17)
        let due18 = policy.seedsDue(now: start + .seconds(31), linked: true)
        #expect(due18)
    }

    @Test func deadMembersAreRedialledEveryFiveSeconds() {
        var policy = policy()
        let due19 = policy.deadRedialDue(now: start + .seconds(4))
        #expect(!due19)
        let due20 = policy.deadRedialDue(now: start + .seconds(5))
        #expect(due20)
        let due21 = policy.deadRedialDue(now: start + .seconds(9))
        #expect(!due21)
        let due22 = policy.deadRedialDue(now: start + .seconds(10))
        #expect(due22)
    }

    /// Both nodes dialled at once, so each holds two links to the other: each end asks about
    /// the link that came up second on its side, and both must end up with the same one.
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func bothEndsKeepTheSameLink(aSawItsOwnDialFirst: Bool, bSawItsOwnDialFirst: Bool) {
        let (a, b) = (NodeID("a"), NodeID("b"))
        // The link a dialled, as each end sees it: dialled here on a's side, not on b's.
        func keptOnA(new dialledByA: Bool) -> Bool {
            LinkPolicy.keepsNewLink(
                existingPeerEpoch: 1,
                newPeerEpoch: 1,
                newLinkDialedHere: dialledByA,
                localNode: a,
                peer: b
            )
        }
        func keptOnB(new dialledByA: Bool) -> Bool {
            LinkPolicy.keepsNewLink(
                existingPeerEpoch: 1,
                newPeerEpoch: 1,
                newLinkDialedHere: !dialledByA,
                localNode: b,
                peer: a
            )
        }
        // Which link (true: the one a dialled) each side holds at the end.
        let newOnA = !aSawItsOwnDialFirst
        let heldByA = keptOnA(new: newOnA) ? newOnA : !newOnA
        let newOnB = bSawItsOwnDialFirst
        let heldByB = keptOnB(new: newOnB) ? newOnB : !newOnB
        #expect(heldByA == heldByB)
        #expect(heldByA, "the lower id (a) dialled the link both keep")
    }

    @Test func aRebootedPeersNewLinkWinsAndAnOlderBootsLoses() {
        let (a, b) = (NodeID("a"), NodeID("b"))
        #expect(
            LinkPolicy.keepsNewLink(
                existingPeerEpoch: 1,
                newPeerEpoch: 2,
                newLinkDialedHere: false,
                localNode: a,
                peer: b
            )
        )
        #expect(
            !LinkPolicy.keepsNewLink(
                existingPeerEpoch: 2,
                newPeerEpoch: 1,
                newLinkDialedHere: true,
                localNode: a,
                peer: b
            )
        )
    }
}
