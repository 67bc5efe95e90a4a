import NIOCore
import Testing

@testable import Gossip

/// Whom the shell dials when, with an injected clock and a seeded generator: backoff with
/// jitter inside its bounds, no dial to itself or twice at once, the seed and dead-member
/// cadences, and one link per pair that both ends agree on.
@Suite struct LinkPolicyTests {
    static let settings = LinkPolicy.Settings(backoffMinimum: .milliseconds(100), backoffMaximum: .seconds(5))
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    func policy(seed: UInt64 = 1) -> Dialler {
        Dialler(LinkPolicy(settings: Self.settings, now: start, random: SplitMix64(seed: seed)))
    }

    @Test func aFailedDialWaitsWithinItsBackoffAndTheCeilingDoublesUpToTheMaximum() {
        for seed in 1...50 {
            let policy = policy(seed: UInt64(seed))
            var now = start
            for failure in 1...8 {
                #expect(policy.dials(at: now))
                policy.policy.dialEnded("b:7946", failed: true, now: now)
                let wait = policy.policy.retryTime(of: "b:7946")! - now
                let ceiling = min(TimeAmount.milliseconds(100 << failure), .seconds(5))
                #expect(wait >= .milliseconds(100) && wait <= ceiling, "failure \(failure): waited \(wait)")
                #expect(!policy.dials(at: now + wait - .nanoseconds(1)))
                now = now + wait
            }
        }
    }

    @Test func membershipMayDialDuringTheBackoffAndALinkForgetsIt() {
        let policy = policy()
        #expect(policy.dials(at: start))
        policy.policy.dialEnded("b:7946", failed: true, now: start)
        #expect(!policy.dials(at: start))
        #expect(policy.dials(at: start, force: true))
        policy.policy.dialEnded("b:7946", failed: false, now: start)
        policy.policy.linkEstablished(dialedAddress: "b:7946")
        #expect(policy.policy.retryTime(of: "b:7946") == nil)
        #expect(policy.dials(at: start))
    }

    @Test func aLinkThatClosesBeforeItsHandshakeBacksOffToo() {
        let policy = policy()
        #expect(policy.dials(at: start))
        policy.policy.dialEnded("b:7946", failed: false, now: start)
        policy.policy.linkClosedBeforeHandshake(dialedAddress: "b:7946", now: start)
        #expect(!policy.dials(at: start))
        #expect(policy.dials(at: policy.policy.retryTime(of: "b:7946")!))
    }

    @Test func neverItselfAndNeverTwiceAtOnce() {
        let policy = policy()
        policy.policy.noteOwnAddress("a:7946")
        #expect(!policy.dials("a:7946", at: start, force: true))
        #expect(policy.dials(at: start))
        #expect(!policy.dials(at: start, force: true))
        // Connected, handshake under way: still the one dial.
        policy.policy.dialEnded("b:7946", failed: false, now: start)
        #expect(!policy.dials(at: start, force: true))
        policy.policy.linkEstablished(dialedAddress: "b:7946")
        #expect(policy.dials(at: start))
    }

    @Test func seedsEverySecondWhileAloneAndEveryThirtyOnceLinked() {
        let policy = policy()
        #expect(policy.seedsDue(at: start, linked: false))
        #expect(!policy.seedsDue(at: start + .milliseconds(999), linked: false))
        #expect(policy.seedsDue(at: start + .seconds(1), linked: false))
        #expect(!policy.seedsDue(at: start + .seconds(30), linked: true))
        #expect(policy.seedsDue(at: start + .seconds(31), linked: true))
    }

    @Test func deadMembersAreRedialledEveryFiveSeconds() {
        let policy = policy()
        #expect(!policy.deadRedialDue(at: start + .seconds(4)))
        #expect(policy.deadRedialDue(at: start + .seconds(5)))
        #expect(!policy.deadRedialDue(at: start + .seconds(9)))
        #expect(policy.deadRedialDue(at: start + .seconds(10)))
    }

    @Test func backoffsOfAddressesNobodyDialsAnyMoreAreForgotten() {
        let policy = policy()
        // A member that moved: its old address failed once, and nothing asks for it again.
        #expect(policy.dials("old:7946", at: start))
        policy.policy.dialEnded("old:7946", failed: true, now: start)
        // A dead member still redialled every five seconds keeps its backoff.
        var now = start
        let forgetting = policy.policy.forgetsBackoffAfter
        while now < start + forgetting + .seconds(10) {
            now = now + .seconds(5)
            if policy.deadRedialDue(at: now), policy.dials("dead:7946", at: now, force: true) {
                policy.policy.dialEnded("dead:7946", failed: true, now: now)
            }
        }
        #expect(policy.policy.retryTime(of: "old:7946") == nil)
        #expect(policy.policy.retryTime(of: "dead:7946") != nil)
        #expect(policy.policy.backoffCount == 1)
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

/// The policy behind a reference, so that `#expect` can ask it: the macro can't call a
/// mutating method on a value.
final class Dialler {
    var policy: LinkPolicy

    init(_ policy: LinkPolicy) {
        self.policy = policy
    }

    func dials(_ address: String = "b:7946", at now: NIODeadline, force: Bool = false) -> Bool {
        policy.startDial(address, now: now, force: force)
    }

    func seedsDue(at now: NIODeadline, linked: Bool) -> Bool {
        policy.seedsDue(now: now, linked: linked)
    }

    func deadRedialDue(at now: NIODeadline) -> Bool {
        policy.deadRedialDue(now: now)
    }
}
