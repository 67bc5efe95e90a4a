import NIOCore
import StompRouting
import Testing

@testable import Gossip

/// How membership, interest and hand-offs react to each other on one node, driven without
/// links or clocks: what the shell (or the simulation) is asked to do.
@Suite struct ClusterInstanceTests {
    typealias Instance = ClusterInstance<String>
    static let (a, b, c) = (NodeID("a"), NodeID("b"), NodeID("c"))
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    static func instance(minimumMembers: Int = 1) -> Instance {
        var settings = Instance.Settings()
        settings.minimumMembers = minimumMembers
        return Instance(
            node: a,
            epoch: 1,
            address: "a:1",
            settings: settings,
            now: start,
            membershipRandom: SplitMix64(seed: 1),
            handoffRandom: SplitMix64(seed: 2)
        )
    }

    static func message(_ index: Int) -> MessageEnvelope {
        MessageEnvelope(destination: .queue("jobs"), messageID: "m-\(index)", headers: [:], body: ByteBuffer())
    }

    /// `a` linked to `b` (epoch 5), which has `consumers` consumers of /queue/jobs.
    static func linkedToB(consumers: Int = 1) -> Instance {
        var instance = instance()
        _ = instance.linkEstablished(to: b, epoch: 5, address: "b:1", link: 1, now: start)
        let snapshot = LinkMessage.interestSnapshot(epoch: 5, version: 1, entries: [(.queue("jobs"), consumers)])
        _ = instance.received(snapshot, from: b, peerEpoch: 5, now: start)
        return instance
    }

    static func deadB() -> LinkMessage {
        .members([MemberUpdate(node: b, epoch: 5, address: "b:1", incarnation: 0, status: .dead)])
    }

    @Test func aNewLinkGetsTheWholeInterestSnapshot() {
        var instance = Self.instance()
        _ = instance.interestChanged(.topic("t"), by: 1)
        let directives = instance.linkEstablished(to: Self.b, epoch: 5, address: "b:1", link: 1, now: Self.start)
        let snapshots = directives.compactMap { directive -> NodeID? in
            if case .send(.interestSnapshot(1, 1, _), let peer) = directive { return peer }
            return nil
        }
        #expect(snapshots == [Self.b])
        #expect(instance.linked == [Self.b])
    }

    @Test func aPeersConsumersReachTheRouterAndDrawHandOffs() {
        var instance = Self.instance()
        _ = instance.linkEstablished(to: Self.b, epoch: 5, address: "b:1", link: 1, now: Self.start)
        let snapshot = LinkMessage.interestSnapshot(epoch: 5, version: 1, entries: [(.queue("jobs"), 2)])
        let directives = instance.received(snapshot, from: Self.b, peerEpoch: 5, now: Self.start)
        #expect(directives.contains { if case .route(.remoteQueueConsumers("jobs", 2)) = $0 { true } else { false } })
        #expect(directives.contains { if case .send(.interestAck(5, 1), Self.b) = $0 { true } else { false } })
        guard
            case .send(.handoff(let id, "jobs", _, false, 0), Self.b) = instance.handOff(
                queue: "jobs",
                Self.message(1),
                redelivered: false,
                hops: 0
            )
        else {
            Issue.record("a queue message was not handed to the peer with consumers")
            return
        }
        #expect(instance.pendingHandoffs == 1)
        _ = instance.received(.handoffAck(id: id), from: Self.b, peerEpoch: 5, now: Self.start)
        #expect(instance.pendingHandoffs == 0)
    }

    @Test func withNoConsumerAnywhereAMessageStaysAsFarAsItTravelled() {
        var instance = Self.linkedToB(consumers: 0)
        let kept = instance.handOff(queue: "jobs", Self.message(1), redelivered: true, hops: 1)
        guard case .route(.acceptHandoff("jobs", _, true, UInt8.max)) = kept else {
            Issue.record("expected the message kept here, got \(kept)")
            return
        }
    }

    @Test func aHandOffFromAPeerIsAcceptedWithOneMoreHopAndAcknowledged() {
        var instance = Self.linkedToB()
        let handoff = LinkMessage.handoff(id: 9, queue: "jobs", message: Self.message(1), redelivered: false, hops: 0)
        let directives = instance.received(handoff, from: Self.b, peerEpoch: 5, now: Self.start)
        guard directives.count == 2, case .route(.acceptHandoff("jobs", _, false, 1)) = directives[0],
            case .send(.handoffAck(9), Self.b) = directives[1]
        else {
            Issue.record("expected accept then ack, got \(directives)")
            return
        }
    }

    @Test func aClosedLinkGivesBackWhatWasHandedOverItInOrder() {
        var instance = Self.linkedToB()
        for index in 1...3 { _ = instance.handOff(queue: "jobs", Self.message(index), redelivered: false, hops: 0) }
        let directives = instance.linkClosed(to: Self.b, link: 1, now: Self.start, leaving: false)
        let reclaimed = directives.compactMap { directive -> String? in
            if case .route(.acceptHandoff(_, let message, _, _)) = directive { return message.messageID }
            return nil
        }
        #expect(reclaimed == ["m-1", "m-2", "m-3"])
        #expect(instance.pendingHandoffs == 0)
        #expect(instance.linked.isEmpty)
    }

    @Test func aReplacedLinkGivesBackOnlyWhatWentOverIt() {
        var instance = Self.linkedToB()
        _ = instance.handOff(queue: "jobs", Self.message(1), redelivered: false, hops: 0)
        // Both ends dialled: link 2 replaces link 1, and more goes over it.
        _ = instance.linkEstablished(to: Self.b, epoch: 5, address: "b:1", link: 2, now: Self.start)
        _ = instance.handOff(queue: "jobs", Self.message(2), redelivered: false, hops: 0)
        let directives = instance.linkClosed(to: Self.b, link: 1, now: Self.start, leaving: false)
        let reclaimed = directives.compactMap { directive -> String? in
            if case .route(.acceptHandoff(_, let message, _, _)) = directive { return message.messageID }
            return nil
        }
        #expect(reclaimed == ["m-1"])
        #expect(instance.pendingHandoffs == 1)
        // The old link's close is not the peer's: membership and the current link stay.
        #expect(instance.linked == [Self.b])
        #expect(!directives.contains { if case .memberChanged = $0 { true } else { false } })
        #expect(instance.membership.status(of: Self.b)?.status == .alive)
    }

    @Test func aDeadMemberTakesItsInterestAndLinkAlongAndReleasesReceipts() {
        var instance = Self.linkedToB()
        _ = instance.handOff(queue: "jobs", Self.message(1), redelivered: false, hops: 0)
        _ = instance.interestChanged(.topic("t"), by: 1)
        #expect(instance.waitForPropagation("r1", now: Self.start) == nil)
        let directives = instance.received(Self.deadB(), from: Self.b, peerEpoch: 5, now: Self.start)
        var kinds: [String] = []
        for directive in directives {
            switch directive {
            case .memberChanged(let update, _, let dropped) where update.node == Self.b:
                #expect(update.status == .dead)
                #expect(dropped == 1)
                kinds.append("dead")
            case .route(.remoteQueueConsumers("jobs", 0)): kinds.append("no consumers")
            case .closeLink(Self.b): kinds.append("close")
            case .route(.acceptHandoff(_, let message, _, _)): kinds.append("reclaim \(message.messageID)")
            case .release(let receipt, .propagated): kinds.append("release \(receipt)")
            default: break
            }
        }
        #expect(kinds == ["dead", "no consumers", "close", "reclaim m-1", "release r1"])
        #expect(instance.interest.remote.version(of: Self.b) == nil)
        #expect(instance.linked.isEmpty)
    }

    @Test func whileLeavingAClosedLinkIsNotReportedToMembership() {
        var instance = Self.linkedToB()
        let directives = instance.linkClosed(to: Self.b, link: 1, now: Self.start, leaving: true)
        #expect(directives.isEmpty)
        #expect(instance.membership.status(of: Self.b)?.status == .alive)
    }

    @Test func everyLinkedPeerGetsADigestEachInterval() {
        var instance = Self.linkedToB()
        let early = instance.tick(now: Self.start + .seconds(1))
        #expect(!early.contains { if case .send(.interestDigest, _) = $0 { true } else { false } })
        let due = instance.tick(now: Self.start + instance.settings.digestInterval)
        let digests = due.compactMap { directive -> NodeID? in
            if case .send(.interestDigest(1, 0, 5, 1), let peer) = directive { return peer }
            return nil
        }
        #expect(digests == [Self.b])
    }

    @Test func aReceiptNobodyAnswersGoesOutAtTheTimeout() {
        var instance = Self.linkedToB()
        _ = instance.interestChanged(.topic("t"), by: 1)
        #expect(instance.waitForPropagation("r1", now: Self.start) == nil)
        let directives = instance.tick(now: Self.start + instance.settings.acknowledgementTimeout)
        #expect(directives.contains { if case .release("r1", .timedOut) = $0 { true } else { false } })
    }

    @Test func theNodeJoinsOnceLinkedToEnoughMembersWithTheirInterest() {
        var instance = Self.instance(minimumMembers: 2)
        #expect(instance.notJoinedReason(seeds: ["b:1"])?.contains("linked to 0 of the 1 peer(s)") == true)
        _ = instance.linkEstablished(to: Self.b, epoch: 5, address: "b:1", link: 1, now: Self.start)
        // Linked, but without its interest yet.
        #expect(instance.notJoinedReason(seeds: ["b:1"]) != nil)
        _ = instance.received(
            .interestSnapshot(epoch: 5, version: 0, entries: []),
            from: Self.b,
            peerEpoch: 5,
            now: Self.start
        )
        #expect(instance.notJoinedReason(seeds: ["b:1"]) == nil)
        // Once formed, losing the peer's link doesn't undo it, but it is named until relinked.
        _ = instance.linkClosed(to: Self.b, link: 1, now: Self.start, leaving: false)
        #expect(instance.hasFormed)
        #expect(instance.notJoinedReason(seeds: ["b:1"])?.hasPrefix("not yet linked to live member(s) ") == true)
    }
}
