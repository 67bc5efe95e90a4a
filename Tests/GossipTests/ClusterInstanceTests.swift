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

    static func instance(minimumMembers: Int = 1, grace: TimeAmount = .seconds(30)) -> Instance {
        var settings = Instance.Settings()
        settings.minimumMembers = minimumMembers
        settings.sessions.outageGrace = grace
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
    static func linkedToB(consumers: Int = 1, grace: TimeAmount = .seconds(30)) -> Instance {
        var instance = instance(grace: grace)
        _ = instance.linkEstablished(to: b, epoch: 5, address: "b:1", link: 1, resumable: true, now: start)
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
        let directives = instance.linkEstablished(
            to: Self.b,
            epoch: 5,
            address: "b:1",
            link: 1,
            resumable: true,
            now: Self.start
        )
        let snapshots = directives.compactMap { directive -> NodeID? in
            if case .send(.interestSnapshot(1, 1, _), let peer) = directive { return peer }
            return nil
        }
        #expect(snapshots == [Self.b])
        #expect(instance.linked == [Self.b])
    }

    @Test func aPeersConsumersReachTheRouterAndDrawHandOffs() {
        var instance = Self.instance()
        _ = instance.linkEstablished(to: Self.b, epoch: 5, address: "b:1", link: 1, resumable: true, now: Self.start)
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
        let directives = instance.linkClosed(to: Self.b, epoch: 5, link: 1, now: Self.start, leaving: false)
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
        _ = instance.linkEstablished(to: Self.b, epoch: 5, address: "b:1", link: 2, resumable: true, now: Self.start)
        _ = instance.handOff(queue: "jobs", Self.message(2), redelivered: false, hops: 0)
        let directives = instance.linkClosed(to: Self.b, epoch: 5, link: 1, now: Self.start, leaving: false)
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

    @Test func withoutAGraceADeadMemberTakesItsInterestAndLinkAlongAndReleasesReceipts() {
        var instance = Self.linkedToB(grace: .zero)
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
        let directives = instance.linkClosed(to: Self.b, epoch: 5, link: 1, now: Self.start, leaving: true)
        #expect(!directives.contains { if case .memberChanged = $0 { true } else { false } })
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
        _ = instance.linkEstablished(to: Self.b, epoch: 5, address: "b:1", link: 1, resumable: true, now: Self.start)
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
        _ = instance.linkClosed(to: Self.b, epoch: 5, link: 1, now: Self.start, leaving: false)
        #expect(instance.hasFormed)
        #expect(instance.notJoinedReason(seeds: ["b:1"])?.hasPrefix("not yet linked to live member(s) ") == true)
    }

    // MARK: - Sessions (issue 15)

    static func topicMessage(_ index: Int, key: String = "t") -> MessageEnvelope {
        MessageEnvelope(
            destination: .topic(key),
            messageID: "t-\(index)",
            headers: [:],
            body: ByteBuffer(string: "\(index)")
        )
    }

    /// `a` linked to `b` (epoch 5), whose subscribers want topic `t`.
    static func linkedToTopicSubscriber(grace: TimeAmount = .seconds(30)) -> Instance {
        var instance = instance(grace: grace)
        _ = instance.linkEstablished(to: b, epoch: 5, address: "b:1", link: 1, resumable: true, now: start)
        let snapshot = LinkMessage.interestSnapshot(epoch: 5, version: 1, entries: [(.topic("t"), 1)])
        _ = instance.received(snapshot, from: b, peerEpoch: 5, now: start)
        _ = instance.received(.resume(senderEpoch: 5, receiverEpoch: 0, received: 0), from: b, peerEpoch: 5, now: start)
        return instance
    }

    @Test func aResumableLinkOpensWithTheSessionsResume() {
        var instance = Self.instance()
        let directives = instance.linkEstablished(
            to: Self.b,
            epoch: 5,
            address: "b:1",
            link: 1,
            resumable: true,
            now: Self.start
        )
        let sends = directives.compactMap { directive -> String? in
            guard case .send(let message, Self.b) = directive else { return nil }
            switch message {
            case .resume(1, 0, 0): return "resume"
            case .interestSnapshot: return "snapshot"
            default: return nil
            }
        }
        #expect(sends == ["resume", "snapshot"])
        var other = Self.instance()
        let plain = other.linkEstablished(
            to: Self.b,
            epoch: 5,
            address: "b:1",
            link: 1,
            resumable: false,
            now: Self.start
        )
        #expect(!plain.contains { if case .send(.resume, _) = $0 { true } else { false } })
    }

    @Test func aDeadMemberWithinItsGraceKeepsItsInterestAndWhatIsPublishedForIt() {
        var instance = Self.linkedToTopicSubscriber()
        let directives = instance.received(Self.deadB(), from: Self.b, peerEpoch: 5, now: Self.start)
        #expect(directives.contains { if case .closeLink(Self.b) = $0 { true } else { false } })
        #expect(directives.contains { if case .reachability(Self.b, false, nil) = $0 { true } else { false } })
        #expect(instance.interest.remote.version(of: Self.b) != nil)
        var peers = Set<NodeID>()
        instance.interest.remote.peers(forTopic: "t", into: &peers)
        #expect(peers == [Self.b])
        #expect(instance.sessions.sequences(Self.b))
        let outcome = instance.sessions.append(forward: LinkMessage.forwardBody(Self.topicMessage(1)), to: [Self.b])
        #expect(outcome.held == 1)

        // The grace runs out: the interest goes, and what was held is dropped and counted.
        let expired = instance.tick(now: Self.start + .seconds(30))
        #expect(expired.contains { if case .interestExpired(Self.b, 1) = $0 { true } else { false } })
        #expect(expired.contains { if case .dropped(Self.b, .grace, 1) = $0 { true } else { false } })
        #expect(instance.interest.remote.version(of: Self.b) == nil)
    }

    @Test func aPeerBackWithinItsGraceGetsWhatWasHeldAfterItsResume() {
        var instance = Self.linkedToTopicSubscriber()
        for index in 1...2 {
            _ = instance.sessions.append(forward: LinkMessage.forwardBody(Self.topicMessage(index)), to: [Self.b])
        }
        // The first went out on link 1, which then dropped.
        #expect(instance.sessions.nextToWrite(for: Self.b)?.seq == 1)
        _ = instance.linkClosed(to: Self.b, epoch: 5, link: 1, now: Self.start, leaving: false)
        #expect(instance.sessions.nextToWrite(for: Self.b) == nil)

        _ = instance.linkEstablished(to: Self.b, epoch: 5, address: "b:1", link: 2, resumable: true, now: Self.start)
        // Nothing numbered goes out before the peer says where it is.
        #expect(instance.sessions.nextToWrite(for: Self.b) == nil)
        let resumed = instance.received(
            .resume(senderEpoch: 5, receiverEpoch: 1, received: 0),
            from: Self.b,
            peerEpoch: 5,
            now: Self.start
        )
        #expect(resumed.contains { if case .pump(Self.b) = $0 { true } else { false } })
        #expect(instance.sessions.nextToWrite(for: Self.b)?.seq == 1)
        #expect(instance.sessions.nextToWrite(for: Self.b)?.seq == 2)
        _ = instance.received(
            .received(senderEpoch: 5, receiverEpoch: 1, seq: 2),
            from: Self.b,
            peerEpoch: 5,
            now: Self.start
        )
        #expect(instance.sessions.state(of: Self.b)?.heldMessages == 0)
    }

    @Test func numberedForwardsArriveOnceEachInOrderAndAHoleBreaksTheLink() {
        var instance = Self.linkedToTopicSubscriber()
        func deliveries(_ directives: [Instance.Directive]) -> [String] {
            directives.compactMap {
                if case .route(.deliverForwarded(let message)) = $0 { message.messageID } else { nil }
            }
        }
        let first = instance.received(
            .sequenced(seq: 1, .forward(Self.topicMessage(1))),
            from: Self.b,
            peerEpoch: 5,
            now: Self.start
        )
        #expect(deliveries(first) == ["t-1"])
        let again = instance.received(
            .sequenced(seq: 1, .forward(Self.topicMessage(1))),
            from: Self.b,
            peerEpoch: 5,
            now: Self.start
        )
        #expect(deliveries(again).isEmpty)
        // A destination that didn't parse still takes its number.
        _ = instance.received(.sequenced(seq: 2, nil), from: Self.b, peerEpoch: 5, now: Self.start)
        let hole = instance.received(
            .sequenced(seq: 4, .forward(Self.topicMessage(4))),
            from: Self.b,
            peerEpoch: 5,
            now: Self.start
        )
        #expect(deliveries(hole).isEmpty)
        #expect(
            hole.contains {
                if case .breakLink(Self.b, 1, let reason) = $0 { reason.contains("expected 3, got 4") } else { false }
            }
        )
        // The tick acknowledges what was processed.
        let tick = instance.tick(now: Self.start + .milliseconds(100))
        #expect(tick.contains { if case .send(.received(1, 5, 2), Self.b) = $0 { true } else { false } })
    }

    @Test func aGapFailsTheSubscribersOfWhatWasLostAndNotOfWhatArrived() {
        var instance = Self.linkedToTopicSubscriber()
        _ = instance.received(
            .sequenced(seq: 1, .forward(Self.topicMessage(1))),
            from: Self.b,
            peerEpoch: 5,
            now: Self.start
        )
        // Numbers 1...3 dropped by the sender, of which 1 had arrived: 2 lost.
        let gap = SequenceGap(first: 1, last: 3, lost: 3, reason: .grace, keys: ["t"])
        let directives = instance.received(.gap(gap), from: Self.b, peerEpoch: 5, now: Self.start)
        let losses = directives.compactMap { if case .route(.forwardsLost(let loss)) = $0 { loss } else { nil } }
        #expect(losses.map(\.messages) == [2])
        #expect(losses.first?.keys == ["t"])
        #expect(losses.first?.reason.contains("cluster.outage-grace-ms") == true)

        // A gap standing only for what arrived costs no subscriber anything.
        _ = instance.received(
            .sequenced(seq: 4, .forward(Self.topicMessage(4))),
            from: Self.b,
            peerEpoch: 5,
            now: Self.start
        )
        let covered = SequenceGap(first: 4, last: 5, lost: 1, reason: .bytes, keys: ["t"])
        let none = instance.received(.gap(covered), from: Self.b, peerEpoch: 5, now: Self.start)
        #expect(!none.contains { if case .route(.forwardsLost) = $0 { true } else { false } })
    }

    @Test func anUnreachablePeerIsHandedNoQueueMessages() {
        var instance = Self.linkedToB()
        _ = instance.received(
            .members([MemberUpdate(node: Self.b, epoch: 5, address: "b:1", incarnation: 0, status: .suspect)]),
            from: Self.c,
            peerEpoch: 1,
            now: Self.start
        )
        #expect(instance.membership.status(of: Self.b)?.status == .suspect)
        let kept = instance.handOff(queue: "jobs", Self.message(1), redelivered: false, hops: 0)
        guard case .route(.acceptHandoff("jobs", _, false, UInt8.max)) = kept else {
            Issue.record("a suspect peer was handed a queue message: \(kept)")
            return
        }
    }
}
