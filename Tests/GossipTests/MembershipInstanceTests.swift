import Gossip
import NIOCore
import Testing

@Suite("SWIM membership instance")
struct MembershipInstanceTests {
    typealias Directive = MembershipInstance.Directive

    static let a = NodeID("a"), b = NodeID("b"), c = NodeID("c"), d = NodeID("d")

    static func t(_ milliseconds: Int64) -> NIODeadline {
        .uptimeNanoseconds(0) + .milliseconds(milliseconds)
    }

    static func update(
        _ node: NodeID,
        epoch: UInt64 = 1,
        incarnation: UInt64 = 0,
        _ status: MemberUpdate.Status
    ) -> MemberUpdate {
        MemberUpdate(node: node, epoch: epoch, address: "\(node.name):7946", incarnation: incarnation, status: status)
    }

    /// Node `a` with links to `peers`, all at epoch 1.
    static func instance(peers: [NodeID] = [b, c, d], seed: UInt64 = 1) -> MembershipInstance {
        var instance = MembershipInstance(node: a, epoch: 1, address: "a:7946", random: SplitMix64(seed: seed))
        for peer in peers {
            _ = instance.linkEstablished(node: peer, epoch: 1, address: "\(peer.name):7946", now: t(0))
        }
        return instance
    }

    static func pings(_ directives: [Directive]) -> [(sequence: UInt64, to: NodeID, gossip: [MemberUpdate])] {
        directives.compactMap {
            guard case .send(.ping(let sequence, let gossip), let to) = $0 else { return nil }
            return (sequence, to, gossip)
        }
    }

    static func pingRequests(_ directives: [Directive]) -> [(sequence: UInt64, target: NodeID, to: NodeID)] {
        directives.compactMap {
            guard case .send(.pingRequest(let sequence, let target, _), let to) = $0 else { return nil }
            return (sequence, target, to)
        }
    }

    static func statusChanges(_ directives: [Directive]) -> [(MemberUpdate, MemberUpdate.Status?)] {
        directives.compactMap {
            guard case .statusChanged(let update, let previous) = $0 else { return nil }
            return (update, previous)
        }
    }

    @Test func aNewLinkAddsAnAliveMemberAndSendsTheMemberList() {
        var m = MembershipInstance(node: Self.a, epoch: 1, address: "a:7946", random: SplitMix64(seed: 1))
        let directives = m.linkEstablished(node: Self.b, epoch: 5, address: "b:7946", now: Self.t(0))
        let alive = MemberUpdate(node: Self.b, epoch: 5, address: "b:7946", incarnation: 0, status: .alive)
        #expect(directives.contains(.statusChanged(alive, previous: nil)))
        #expect(directives.contains(.connect(Self.b, address: "b:7946")))
        #expect(directives.contains(.send(.members(m.allMembers), to: Self.b)))
        #expect(m.allMembers == [m.myself, alive])
        #expect(m.myself == MemberUpdate(node: Self.a, epoch: 1, address: "a:7946", incarnation: 0, status: .alive))
        #expect(m.liveMembers == [Self.b])
        #expect(m.status(of: Self.b) == alive)

        // The same link again changes nothing but still sends the list.
        let again = m.linkEstablished(node: Self.b, epoch: 5, address: "b:7946", now: Self.t(10))
        #expect(Self.statusChanges(again).isEmpty)
        #expect(again == [.send(.members(m.allMembers), to: Self.b)])
    }

    @Test func membersListsIntroduceMembersToConnectTo() {
        var m = Self.instance(peers: [Self.b])
        let directives = m.received(
            .members([Self.update(Self.b, .alive), Self.update(Self.c, .alive), Self.update(Self.a, .alive)]),
            from: Self.b,
            now: Self.t(5)
        )
        #expect(directives.contains(.connect(Self.c, address: "c:7946")))
        #expect(Self.statusChanges(directives).map(\.0.node) == [Self.c])
        #expect(Set(m.liveMembers) == [Self.b, Self.c])
        #expect(m.incarnation == 0)
    }

    @Test func suspicionOfItselfIsRefutedWithAHigherIncarnation() {
        var m = Self.instance()
        var directives = m.received(
            .members([Self.update(Self.a, incarnation: 0, .suspect)]),
            from: Self.b,
            now: Self.t(0)
        )
        #expect(m.incarnation == 1)
        #expect(directives == [.broadcast(.members([Self.update(Self.a, incarnation: 1, .alive)]))])
        #expect(m.myself.status == .alive)

        // Declared dead at a later incarnation: refuted above it.
        directives = m.received(
            .ping(sequence: 9, gossip: [Self.update(Self.a, incarnation: 3, .dead)]),
            from: Self.c,
            now: Self.t(1)
        )
        #expect(m.incarnation == 4)
        #expect(directives.contains(.broadcast(.members([Self.update(Self.a, incarnation: 4, .alive)]))))
        #expect(directives.contains { if case .send(.ack(9, _), Self.c) = $0 { true } else { false } })

        // Old news (a lower incarnation, an earlier boot, or "alive") needs no refutation.
        for stale in [
            Self.update(Self.a, incarnation: 2, .suspect), Self.update(Self.a, epoch: 0, incarnation: 9, .dead),
            Self.update(Self.a, incarnation: 7, .alive),
        ] {
            #expect(m.received(.members([stale]), from: Self.b, now: Self.t(2)).isEmpty)
        }
        #expect(m.incarnation == 4)
        // Refuting counts against this node's own health (Lifeguard).
        #expect(m.localHealth == 2)
        // The refutation is also piggy-backed on the next messages.
        let ack = m.received(.ping(sequence: 10, gossip: []), from: Self.b, now: Self.t(3))
        guard case .send(.ack(10, let gossip), Self.b) = ack.first else {
            Issue.record("expected an ack, got \(ack)")
            return
        }
        #expect(gossip.contains(Self.update(Self.a, incarnation: 4, .alive)))
    }

    @Test func anUnansweredProbeEscalatesThenSuspectsThenDeclaresDead() throws {
        var m = Self.instance()
        let ping = try #require(Self.pings(m.tick(now: Self.t(0))).first)
        let target = ping.to
        #expect(m.tick(now: Self.t(399)).isEmpty)

        // The direct probe timed out: up to k other members are asked to probe the target.
        let escalation = m.tick(now: Self.t(400))
        let requests = Self.pingRequests(escalation)
        #expect(requests.count == 2)
        #expect(Set(requests.map(\.to)) == Set([Self.b, Self.c, Self.d]).subtracting([target]))
        #expect(requests.allSatisfy { $0.target == target && $0.sequence == requests[0].sequence })
        #expect(m.localHealth == 1)
        #expect(m.status(of: target)?.status == .alive)

        // The indirect probes timed out too: suspect, and tell everyone.
        let suspicion = m.tick(now: Self.t(1_000))
        let suspect = Self.update(target, .suspect)
        #expect(suspicion.contains(.statusChanged(suspect, previous: .alive)))
        #expect(suspicion.contains(.broadcast(.members([suspect]))))
        #expect(m.status(of: target)?.status == .suspect)
        #expect(m.liveMembers.contains(target))

        // Not refuted within the suspicion timeout: dead.
        #expect(Self.statusChanges(m.tick(now: Self.t(2_999))).isEmpty)
        let death = m.tick(now: Self.t(3_000))
        let dead = Self.update(target, .dead)
        #expect(death.contains(.statusChanged(dead, previous: .suspect)))
        #expect(death.contains(.broadcast(.members([dead]))))
        #expect(!m.liveMembers.contains(target))

        // Dead members aren't probed any more, and are forgotten after the tombstone retention.
        for second in 4...20 {
            #expect(!Self.pings(m.tick(now: Self.t(Int64(second) * 1_000))).contains { $0.to == target })
        }
        _ = m.tick(now: Self.t(62_999))
        #expect(m.status(of: target)?.status == .dead)
        _ = m.tick(now: Self.t(63_000))
        #expect(m.status(of: target) == nil)
    }

    @Test func anAckSettlesTheProbe() throws {
        var m = Self.instance()
        let ping = try #require(Self.pings(m.tick(now: Self.t(0))).first)
        _ = m.received(.ack(sequence: ping.sequence, gossip: []), from: ping.to, now: Self.t(20))
        #expect(m.tick(now: Self.t(400)).isEmpty)
        #expect(m.tick(now: Self.t(999)).isEmpty)
        #expect(m.localHealth == 0)
        #expect(m.status(of: ping.to)?.status == .alive)
    }

    @Test func anIndirectAckPreventsSuspicion() throws {
        var m = Self.instance()
        let ping = try #require(Self.pings(m.tick(now: Self.t(0))).first)
        let request = try #require(Self.pingRequests(m.tick(now: Self.t(400))).first)
        _ = m.received(.ack(sequence: request.sequence, gossip: []), from: request.to, now: Self.t(700))
        let next = m.tick(now: Self.t(1_000))
        #expect(Self.statusChanges(next).isEmpty)
        #expect(m.status(of: ping.to)?.status == .alive)
        // A late direct ack after the escalation is harmless.
        #expect(m.received(.ack(sequence: ping.sequence, gossip: []), from: ping.to, now: Self.t(1_001)).isEmpty)
    }

    @Test func probingOnAnotherMembersBehalf() throws {
        var m = Self.instance()
        let asked = m.received(.pingRequest(sequence: 42, target: Self.c, gossip: []), from: Self.b, now: Self.t(0))
        let ping = try #require(Self.pings(asked).first)
        #expect(ping.to == Self.c)
        let answered = m.received(.ack(sequence: ping.sequence, gossip: []), from: Self.c, now: Self.t(100))
        #expect(answered.count == 1)
        guard case .send(.ack(42, _), Self.b) = answered.first else {
            Issue.record("expected the ack to be relayed to b with b's sequence, got \(answered)")
            return
        }

        // When the target doesn't answer, the helper says nothing and suspects no one.
        _ = m.received(.pingRequest(sequence: 43, target: Self.d, gossip: []), from: Self.b, now: Self.t(200))
        let later = m.tick(now: Self.t(900))
        #expect(Self.statusChanges(later).isEmpty)
        #expect(!later.contains { if case .send(.ack(43, _), _) = $0 { true } else { false } })
        #expect(m.status(of: Self.d)?.status == .alive)
    }

    @Test func aClosedLinkIsProbedAtOnce() {
        var m = Self.instance()
        let directives = m.linkClosed(node: Self.c, now: Self.t(10))
        #expect(Self.pings(directives).map(\.to) == [Self.c])
        // Already being probed: no second probe.
        #expect(m.linkClosed(node: Self.c, now: Self.t(20)).isEmpty)
        // Unknown or departed members aren't probed.
        #expect(m.linkClosed(node: NodeID("unknown"), now: Self.t(30)).isEmpty)
        _ = m.received(.members([Self.update(Self.d, incarnation: 1, .left)]), from: Self.d, now: Self.t(40))
        #expect(m.linkClosed(node: Self.d, now: Self.t(50)).isEmpty)
    }

    @Test func precedenceOfUpdates() {
        var m = Self.instance(peers: [Self.b])
        func status() -> MemberUpdate? { m.status(of: Self.b) }

        // Suspect beats alive at the same incarnation; alive needs a higher one to win back.
        _ = m.received(.members([Self.update(Self.b, incarnation: 0, .suspect)]), from: Self.c, now: Self.t(0))
        #expect(status()?.status == .suspect)
        _ = m.received(.members([Self.update(Self.b, incarnation: 0, .alive)]), from: Self.c, now: Self.t(1))
        #expect(status()?.status == .suspect)
        _ = m.received(.members([Self.update(Self.b, incarnation: 1, .alive)]), from: Self.c, now: Self.t(2))
        #expect(status() == Self.update(Self.b, incarnation: 1, .alive))
        // An older suspicion is ignored.
        _ = m.received(.members([Self.update(Self.b, incarnation: 0, .suspect)]), from: Self.c, now: Self.t(3))
        #expect(status()?.status == .alive)

        // Dead: a new link at the same boot doesn't revive it, nor does alive at the same incarnation.
        _ = m.received(.members([Self.update(Self.b, incarnation: 1, .dead)]), from: Self.c, now: Self.t(4))
        #expect(status()?.status == .dead)
        let relinked = m.linkEstablished(node: Self.b, epoch: 1, address: "b:7946", now: Self.t(5))
        #expect(Self.statusChanges(relinked).isEmpty)
        #expect(relinked.contains(.send(.members(m.allMembers), to: Self.b)))
        #expect(status()?.status == .dead)
        _ = m.received(.members([Self.update(Self.b, incarnation: 1, .alive)]), from: Self.b, now: Self.t(6))
        _ = m.received(.members([Self.update(Self.b, incarnation: 5, .suspect)]), from: Self.c, now: Self.t(6))
        #expect(status()?.status == .dead)
        // The refutation brings it back, and it is connected to again.
        let revived = m.received(.members([Self.update(Self.b, incarnation: 2, .alive)]), from: Self.b, now: Self.t(7))
        #expect(revived.contains(.statusChanged(Self.update(Self.b, incarnation: 2, .alive), previous: .dead)))
        #expect(revived.contains(.connect(Self.b, address: "b:7946")))

        // Left is final for that boot...
        _ = m.received(.members([Self.update(Self.b, incarnation: 3, .left)]), from: Self.b, now: Self.t(8))
        #expect(status()?.status == .left)
        for update in [
            Self.update(Self.b, incarnation: 99, .alive), Self.update(Self.b, incarnation: 99, .suspect),
            Self.update(Self.b, incarnation: 99, .dead),
        ] {
            #expect(m.received(.members([update]), from: Self.c, now: Self.t(9)).isEmpty)
        }
        #expect(m.linkEstablished(node: Self.b, epoch: 1, address: "b:7946", now: Self.t(10)).count == 1)
        #expect(status()?.status == .left)

        // ...and a new boot replaces any status of an earlier one, while old boots' news is ignored.
        let rebooted = m.linkEstablished(node: Self.b, epoch: 2, address: "b:7946", now: Self.t(11))
        #expect(rebooted.contains(.statusChanged(Self.update(Self.b, epoch: 2, .alive), previous: .left)))
        #expect(status() == Self.update(Self.b, epoch: 2, .alive))
        _ = m.received(
            .members([Self.update(Self.b, epoch: 1, incarnation: 100, .dead)]),
            from: Self.c,
            now: Self.t(12)
        )
        #expect(status() == Self.update(Self.b, epoch: 2, .alive))
    }

    @Test func leavingTellsEveryoneAndStopsProbing() {
        var m = Self.instance()
        #expect(m.leave() == [.broadcast(.members([Self.update(Self.a, incarnation: 1, .left)]))])
        #expect(m.myself.status == .left)
        #expect(m.tick(now: Self.t(0)).isEmpty)
        #expect(m.tick(now: Self.t(5_000)).isEmpty)
        // Being suspected while leaving is not refuted.
        let directives = m.received(
            .members([Self.update(Self.a, incarnation: 1, .suspect)]),
            from: Self.b,
            now: Self.t(6_000)
        )
        #expect(directives.isEmpty)
        #expect(m.incarnation == 1)
    }

    @Test func peersSeeALeaveAsFinal() {
        var m = Self.instance()
        let directives = m.received(
            .members([Self.update(Self.b, incarnation: 1, .left)]),
            from: Self.b,
            now: Self.t(0)
        )
        #expect(directives.contains(.statusChanged(Self.update(Self.b, incarnation: 1, .left), previous: .alive)))
        #expect(!m.liveMembers.contains(Self.b))
        #expect(!directives.contains { if case .connect = $0 { true } else { false } })
    }

    @Test func probesGoRoundRobin() throws {
        var m = Self.instance()
        for round in 0..<4 {
            var targets: [NodeID] = []
            for period in 0..<3 {
                let now = Int64(round * 3 + period) * 1_000
                let ping = try #require(Self.pings(m.tick(now: Self.t(now))).first)
                targets.append(ping.to)
                _ = m.received(.ack(sequence: ping.sequence, gossip: []), from: ping.to, now: Self.t(now + 10))
            }
            #expect(Set(targets) == [Self.b, Self.c, Self.d], "round \(round)")
        }
        // No probe before the period is over.
        #expect(m.tick(now: Self.t(11_999)).isEmpty)
    }

    @Test func localHealthStretchesTheProbeTimeout() throws {
        var m = Self.instance()
        // A failed direct probe, answered indirectly.
        _ = try #require(Self.pings(m.tick(now: Self.t(0))).first)
        let request = try #require(Self.pingRequests(m.tick(now: Self.t(400))).first)
        _ = m.received(.ack(sequence: request.sequence, gossip: []), from: request.to, now: Self.t(500))
        #expect(m.localHealth == 1)

        // The next direct probe waits twice as long before escalating.
        let second = try #require(Self.pings(m.tick(now: Self.t(1_000))).first)
        #expect(Self.pingRequests(m.tick(now: Self.t(1_400))).isEmpty)
        #expect(Self.pingRequests(m.tick(now: Self.t(1_799))).isEmpty)
        let escalation = Self.pingRequests(m.tick(now: Self.t(1_800)))
        #expect(escalation.first?.target == second.to)
        #expect(m.localHealth == 2)
        _ = m.received(.ack(sequence: escalation[0].sequence, gossip: []), from: escalation[0].to, now: Self.t(1_900))

        // Successful direct probes bring it back down.
        let third = try #require(Self.pings(m.tick(now: Self.t(2_000))).first)
        _ = m.received(.ack(sequence: third.sequence, gossip: []), from: third.to, now: Self.t(2_010))
        #expect(m.localHealth == 1)

        // And it is bounded.
        var probeTimeouts = 0
        var now: Int64 = 3_000
        while probeTimeouts < 20 {
            for directive in m.tick(now: Self.t(now)) {
                if case .send(.pingRequest(let sequence, _, _), let to) = directive {
                    probeTimeouts += 1
                    _ = m.received(.ack(sequence: sequence, gossip: []), from: to, now: Self.t(now))
                }
            }
            now += 100
        }
        #expect(m.localHealth == MembershipInstance.Settings().maxLocalHealth)
    }

    @Test func updatesArePiggyBackedABoundedNumberOfTimes() {
        var m = Self.instance(peers: [Self.b])
        _ = m.received(.members([Self.update(Self.c, .alive)]), from: Self.b, now: Self.t(0))
        var carried = 0
        for sequence in 1...40 {
            let reply = m.received(
                .ping(sequence: UInt64(sequence), gossip: []),
                from: Self.b,
                now: Self.t(Int64(sequence))
            )
            guard case .send(.ack(_, let gossip), Self.b) = reply.first else {
                Issue.record("expected an ack")
                return
            }
            #expect(gossip.count <= MembershipInstance.Settings().maxGossipPerMessage)
            if gossip.contains(Self.update(Self.c, .alive)) { carried += 1 }
        }
        // 3 members: gossipRepeatFactor (3) x the bit length of 3 (2).
        #expect(carried == 6)
    }

    @Test func gossipIsBoundedPerMessageAndEventuallyCarriesEveryUpdate() {
        var m = Self.instance(peers: [Self.b])
        let many = (0..<20).map { Self.update(NodeID("m\($0)"), .alive) }
        _ = m.received(.members(many), from: Self.b, now: Self.t(0))
        var seen = Set<NodeID>()
        for sequence in 1...20 {
            guard
                case .send(.ack(_, let gossip), _) = m.received(
                    .ping(sequence: UInt64(sequence), gossip: []),
                    from: Self.b,
                    now: Self.t(1)
                ).first
            else {
                Issue.record("expected an ack")
                return
            }
            #expect(gossip.count == 8)
            seen.formUnion(gossip.map(\.node))
        }
        // 21 updates pending: the 20 new members and b.
        #expect(seen == Set(many.map(\.node)).union([Self.b]))
    }
}

/// Probes share links with forwarded messages: traffic from a member is as good as an ack.
@Suite("SWIM membership: traffic counts as an answer")
struct MembershipHeardFromTests {
    typealias T = MembershipInstanceTests

    /// Starts `a`'s first probe and returns its target.
    private static func firstProbe(_ m: inout MembershipInstance) -> NodeID {
        let pings = T.pings(m.tick(now: T.t(0)))
        #expect(pings.count == 1)
        return pings[0].to
    }

    @Test func aMemberHeardFromDuringTheProbeIsNotEscalated() {
        var m = T.instance()
        let target = Self.firstProbe(&m)
        m.heard(from: target, at: T.t(300))
        let directives = m.tick(now: T.t(500))  // past the 400 ms probe timeout, no ack
        #expect(T.pingRequests(directives).isEmpty)
        #expect(T.statusChanges(directives).isEmpty)
        #expect(m.localHealth == 0)
    }

    @Test func trafficFromBeforeTheProbeDoesNotCount() {
        var m = T.instance()
        let target = Self.firstProbe(&m)
        m.heard(from: target, at: T.t(-100))
        let directives = m.tick(now: T.t(500))
        #expect(T.pingRequests(directives).map(\.target).allSatisfy { $0 == target })
        #expect(!T.pingRequests(directives).isEmpty, "the unanswered probe goes to helpers")
        #expect(m.localHealth == 1)
    }

    @Test func aMemberHeardFromDuringIndirectProbesIsNotSuspected() {
        var m = T.instance()
        let target = Self.firstProbe(&m)
        #expect(!T.pingRequests(m.tick(now: T.t(500))).isEmpty)
        m.heard(from: target, at: T.t(700))
        let directives = m.tick(now: T.t(1_200))  // past the indirect probes' 600 ms
        #expect(T.statusChanges(directives).isEmpty)
        #expect(m.status(of: target)?.status == .alive)
    }

    @Test func silenceStillEndsInSuspicion() {
        var m = T.instance()
        let target = Self.firstProbe(&m)
        _ = m.tick(now: T.t(500))
        let directives = m.tick(now: T.t(1_200))
        #expect(T.statusChanges(directives).map(\.0) == [T.update(target, .suspect)])
    }

    @Test func aProbeOnAnotherMembersBehalfIsAnsweredWhenTheTargetWasHeardFrom() {
        var m = T.instance()
        let asked = m.received(.pingRequest(sequence: 42, target: T.c, gossip: []), from: T.b, now: T.t(0))
        #expect(T.pings(asked).map(\.to) == [T.c])
        m.heard(from: T.c, at: T.t(100))
        let directives = m.tick(now: T.t(700))
        #expect(directives.contains { if case .send(.ack(sequence: 42, _), to: T.b) = $0 { true } else { false } })
    }
}
