import NIOCore
import Testing

@testable import Gossip

/// Every peer's resumable session (issue 15, step C3): the grace, the byte bounds, a new
/// boot epoch, balanced congestion votes and the summaries of forgotten peers; on a fake clock.
@Suite struct PeerSessionsTests {
    private static let peer = NodeID("n2")
    private static let other = NodeID("n3")
    private static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    /// A body of `size` bytes whose routing key is its text.
    private static func body(_ key: String, size: Int = 10) -> ByteBuffer {
        ByteBuffer(string: key.padding(toLength: size, withPad: " ", startingAt: 0))
    }

    private static func sessions(
        grace: TimeAmount = .seconds(30),
        peerBytes: Int = 1 << 20,
        nodeBytes: Int = 4 << 20,
        summaries: Int = 1_024
    ) -> PeerSessions {
        let settings = PeerSessions.Settings(
            peerBytes: peerBytes,
            nodeBytes: nodeBytes,
            outageGrace: grace,
            summaryCapacity: summaries
        )
        return PeerSessions(epoch: 100, settings: settings) {
            String(buffer: $0).trimmingCharacters(in: .whitespaces)
        }
    }

    /// Links `peer` at `epoch` and resumes from `received`.
    @discardableResult
    private static func link(
        _ sessions: PeerSessions,
        _ peer: NodeID = peer,
        epoch: UInt64 = 7,
        link: UInt64 = 1,
        received: UInt64 = 0,
        at now: NIODeadline = start
    ) -> [PeerSessions.Effect] {
        sessions.linkAttached(to: peer, epoch: epoch, link: link, resumable: true, now: now)
            + sessions.resumeReceived(
                from: peer,
                senderEpoch: epoch,
                receiverEpoch: 100,
                received: received,
                link: link
            )
    }

    private static func written(_ sessions: PeerSessions, _ peer: NodeID = peer) -> [(UInt64, PeerOutbox.Entry)] {
        var written: [(UInt64, PeerOutbox.Entry)] = []
        while let next = sessions.nextToWrite(for: peer) { written.append(next) }
        return written
    }

    private static func fill(_ sessions: PeerSessions, _ keys: [String], to peer: NodeID = peer) {
        for key in keys { _ = sessions.append(forward: body(key), to: [peer]) }
    }

    // MARK: - Grace

    @Test func aZeroGraceCollapsesAsSoonAsThePeerIsUnreachable() throws {
        let sessions = Self.sessions(grace: .zero)
        #expect(Self.link(sessions) == [.reachable(Self.peer, outage: nil)])
        Self.fill(sessions, ["a", "b", "c"])
        #expect(Self.written(sessions).map(\.0) == [1, 2, 3])
        let later = Self.start + .seconds(1)
        let effects = sessions.linkDetached(from: Self.peer, epoch: 7, link: 1, now: later)
        #expect(
            effects == [.unreachable(Self.peer), .dropped(Self.peer, .grace, messages: 3), .graceExpired(Self.peer)]
        )
        let outcome = sessions.append(forward: Self.body("d"), to: [Self.peer])
        #expect(outcome == PeerSessions.AppendOutcome(dropped: 1, effectsWaiting: true))
        #expect(sessions.takeEffects() == [.dropped(Self.peer, .grace, messages: 1)])

        // Back on a new link, having processed 1: one gap stands for 1...4 and its own number.
        let back = Self.link(sessions, link: 2, received: 1, at: later + .seconds(2))
        #expect(back == [.reachable(Self.peer, outage: .seconds(2))])
        let gap = Self.written(sessions)
        #expect(gap.count == 1)
        guard case .gap(let lost)? = gap.first?.1 else {
            Issue.record("expected a gap, got \(gap)")
            return
        }
        #expect((lost.first, lost.last, lost.lost, lost.reason) == (1, 4, 4, .grace))
        #expect(lost.keys == ["a", "b", "c", "d"])
        #expect(sessions.append(forward: Self.body("e"), to: [Self.peer]).held == 1, "reachable again: held")
    }

    @Test func withinTheGraceNothingIsLostAndTheRestIsWrittenAgain() throws {
        let sessions = Self.sessions()
        Self.link(sessions)
        Self.fill(sessions, ["a", "b", "c"])
        _ = Self.written(sessions)
        let suspect = Self.start + .seconds(1)
        #expect(sessions.statusChanged(Self.peer, epoch: 7, to: .suspect, now: suspect) == [.unreachable(Self.peer)])
        #expect(sessions.linkDetached(from: Self.peer, epoch: 7, link: 1, now: suspect).isEmpty)
        #expect(sessions.statusChanged(Self.peer, epoch: 7, to: .dead, now: suspect + .seconds(2)).isEmpty)
        Self.fill(sessions, ["d"])
        #expect(sessions.tick(now: suspect + .seconds(29)).isEmpty)
        #expect(sessions.state(of: Self.peer)?.heldMessages == 4)

        let alive = suspect + .seconds(29)
        #expect(sessions.statusChanged(Self.peer, epoch: 7, to: .alive, now: alive).isEmpty, "no link yet")
        let back = Self.link(sessions, link: 2, received: 2, at: alive)
        #expect(back == [.reachable(Self.peer, outage: .seconds(29))])
        let again = Self.written(sessions)
        #expect(again.map(\.0) == [3, 4])
        #expect(again.map(\.1) == [.forward(Self.body("c")), .forward(Self.body("d"))])
    }

    @Test func theGraceExpiresExactlyAtItsBound() {
        let sessions = Self.sessions(grace: .seconds(30))
        Self.link(sessions)
        Self.fill(sessions, ["a", "b"])
        _ = sessions.linkDetached(from: Self.peer, epoch: 7, link: 1, now: Self.start)
        let bound = Self.start + .seconds(30)
        #expect(sessions.tick(now: bound - .nanoseconds(1)).isEmpty)
        #expect(sessions.state(of: Self.peer)?.graceExpired == false)
        #expect(
            sessions.tick(now: bound) == [.dropped(Self.peer, .grace, messages: 2), .graceExpired(Self.peer)]
        )
        #expect(sessions.tick(now: bound + .seconds(1)).isEmpty, "once per outage")
        #expect(sessions.state(of: Self.peer)?.heldMessages == 1, "one gap")
    }

    // MARK: - Bytes

    @Test func aPeerPastItsBytesCollapsesAndDropsUntilItProcessedTheGap() throws {
        // Each forward costs 10 + 16: two fit in 60 bytes, the third doesn't.
        let sessions = Self.sessions(peerBytes: 60)
        Self.link(sessions)
        Self.fill(sessions, ["a", "b"])
        let third = sessions.append(forward: Self.body("c"), to: [Self.peer])
        #expect(third == PeerSessions.AppendOutcome(dropped: 1, effectsWaiting: true))
        #expect(sessions.takeEffects() == [.dropped(Self.peer, .bytes, messages: 3)])
        #expect(sessions.append(forward: Self.body("d"), to: [Self.peer]).dropped == 1, "until the gap is processed")
        #expect(sessions.takeEffects() == [.dropped(Self.peer, .bytes, messages: 1)])
        let gap = Self.written(sessions)
        guard case .gap(let lost)? = gap.first?.1, gap.count == 1 else {
            Issue.record("expected one gap, got \(gap)")
            return
        }
        #expect((gap[0].0, lost.lost, lost.reason, lost.keys) == (1, 4, .bytes, ["a", "b", "c", "d"]))
        #expect(sessions.receivedAck(from: Self.peer, senderEpoch: 7, receiverEpoch: 100, seq: 1, link: 1).isEmpty)
        #expect(sessions.append(forward: Self.body("e"), to: [Self.peer]).held == 1)
        #expect(sessions.nodeBytes == sessions.state(of: Self.peer)?.heldBytes)
    }

    @Test func theNodesBoundCollapsesTheLargestOutbox() {
        let sessions = Self.sessions(nodeBytes: 100)
        Self.link(sessions, Self.peer)
        Self.link(sessions, Self.other, link: 2)
        Self.fill(sessions, ["a", "b", "c"], to: Self.peer)  // 78 bytes
        #expect(sessions.append(forward: Self.body("x"), to: [Self.other]).held == 1)  // 104 > 100 before it
        #expect(sessions.takeEffects() == [.dropped(Self.peer, .nodeBytes, messages: 3)])
        let held = [Self.peer, Self.other].compactMap { sessions.state(of: $0)?.heldBytes }.reduce(0, +)
        #expect(sessions.nodeBytes == held)
        #expect(sessions.nodeBytes <= 100)
        #expect(
            sessions.append(forward: Self.body("d"), to: [Self.peer]).dropped == 1,
            "collapsed: drops until processed"
        )
        #expect(sessions.takeEffects() == [.dropped(Self.peer, .nodeBytes, messages: 1)])

        Self.fill(sessions, ["y", "z"], to: Self.other)
        #expect(sessions.nodeBytes > 100 - 26, "the next forward would not fit")
        let nowhere = sessions.append(forward: Self.body("w"), to: [NodeID("n9"), Self.peer])
        #expect(nowhere == PeerSessions.AppendOutcome(dropped: 1, unknown: 1, effectsWaiting: true))
        #expect(
            sessions.takeEffects() == [.dropped(Self.peer, .nodeBytes, messages: 1)],
            "no outbox collapses for a message no session would hold"
        )
    }

    @Test func aCollapseGivesHandOffsBack() {
        let sessions = Self.sessions(peerBytes: 60)
        Self.link(sessions)
        _ = sessions.append(handoff: 9, Self.body("job"), to: Self.peer)
        Self.fill(sessions, ["a"])
        #expect(sessions.append(forward: Self.body("b"), to: [Self.peer]).effectsWaiting)
        #expect(
            sessions.takeEffects() == [
                .reclaimed(Self.peer, handoff: 9, body: Self.body("job")), .dropped(Self.peer, .bytes, messages: 2),
            ]
        )
    }

    // MARK: - Epochs and leaving

    @Test func aNewBootEpochDropsTheOldSessionAndAnOlderOneIsIgnored() {
        let sessions = Self.sessions()
        Self.link(sessions, epoch: 7)
        Self.fill(sessions, ["a", "b"])
        _ = sessions.append(handoff: 3, Self.body("job"), to: Self.peer)
        let restarted = sessions.linkAttached(to: Self.peer, epoch: 8, link: 2, resumable: true, now: Self.start)
        #expect(
            restarted == [
                .reclaimed(Self.peer, handoff: 3, body: Self.body("job")),
                .dropped(Self.peer, .peerRestarted, messages: 2),
                .reachable(Self.peer, outage: nil),
            ]
        )
        #expect(sessions.state(of: Self.peer)?.position.epoch == 8)
        #expect(sessions.state(of: Self.peer)?.heldMessages == 0)
        #expect(sessions.linkDetached(from: Self.peer, epoch: 7, link: 1, now: Self.start).isEmpty)
        #expect(sessions.statusChanged(Self.peer, epoch: 7, to: .dead, now: Self.start).isEmpty)
        #expect(sessions.state(of: Self.peer)?.link == 2, "the old life's events change nothing")

        Self.fill(sessions, ["c"])
        #expect(
            sessions.statusChanged(Self.peer, epoch: 8, to: .left, now: Self.start) == [
                .dropped(Self.peer, .peerLeft, messages: 1)
            ]
        )
        #expect(sessions.state(of: Self.peer) == nil)
        #expect(sessions.nodeBytes == 0)
    }

    @Test func aPeerResumingBeyondWhatWasWrittenIsClosed() {
        let sessions = Self.sessions()
        Self.link(sessions)
        Self.fill(sessions, ["a"])
        _ = Self.written(sessions)
        _ = sessions.linkAttached(to: Self.peer, epoch: 7, link: 2, resumable: true, now: Self.start)
        let effects = sessions.resumeReceived(
            from: Self.peer,
            senderEpoch: 7,
            receiverEpoch: 100,
            received: 5,
            link: 2
        )
        guard case .closeLink(Self.peer, link: 2, _)? = effects.first, effects.count == 1 else {
            Issue.record("expected the link closed, got \(effects)")
            return
        }
        #expect(sessions.nextToWrite(for: Self.peer) == nil, "nothing written on a link that didn't resume")
    }

    @Test func whatArrivesIsCheckedOnTheCurrentLinkAndAcknowledgedOnTheTick() {
        let sessions = Self.sessions()
        Self.link(sessions)
        #expect(sessions.sequencedArrived(1, bytes: 5, from: Self.peer, link: 1) == .process)
        #expect(sessions.sequencedArrived(1, bytes: 5, from: Self.peer, link: 1) == .duplicate)
        #expect(sessions.sequencedArrived(2, bytes: 5, from: Self.peer, link: 9) == nil, "not its current link")
        #expect(sessions.sequencedArrived(3, bytes: 5, from: Self.peer, link: 1) == .hole(expected: 2, got: 3))
        #expect(sessions.acknowledgementIfDue(for: Self.peer) == nil, "one entry waits for the tick")
        let ack = LinkMessage.received(senderEpoch: 100, receiverEpoch: 7, seq: 1)
        #expect(sessions.tick(now: Self.start) == [.send(ack, to: Self.peer)])
        #expect(sessions.tick(now: Self.start).isEmpty, "nothing new")
        #expect(sessions.resumeMessage(for: Self.peer) == .resume(senderEpoch: 100, receiverEpoch: 7, received: 1))
    }

    @Test func aVersion2LinkCarriesNoEntriesButVotes() {
        let sessions = Self.sessions()
        #expect(
            sessions.linkAttached(to: Self.peer, epoch: 7, link: 1, resumable: false, now: Self.start) == [
                .reachable(Self.peer, outage: nil)
            ]
        )
        #expect(sessions.append(forward: Self.body("a"), to: [Self.peer]).held == 1)
        #expect(sessions.nextToWrite(for: Self.peer) == nil)
        #expect(
            sessions.writabilityChanged(of: Self.peer, link: 1, writable: false, now: Self.start) == [
                .congested(Self.peer, true)
            ]
        )
        let resumed = sessions.resumeReceived(from: Self.peer, senderEpoch: 7, receiverEpoch: 100, received: 0, link: 1)
        #expect(resumed.count == 1, "a resume on a version 2 link closes it: \(resumed)")
    }

    // MARK: - Congestion votes

    private enum Step: CaseIterable {
        case attach, detach, writable, unwritable, suspect, alive, dead, restart
    }

    /// What the votes must end at, from the steps alone.
    private struct Model {
        var exists = false
        var epoch: UInt64 = 7
        var link: UInt64 = 0
        var linked = false
        var writable = true
        var status = MemberUpdate.Status.alive
        var vote: Bool { exists && linked && status == .alive && !writable }
    }

    @Test func congestionVotesStayBalancedOverEverySequenceOfTransitions() {
        var sequences: [[Step]] = [[]]
        var frontier: [[Step]] = [[]]
        for _ in 1...5 {
            frontier = frontier.flatMap { prefix in Step.allCases.map { prefix + [$0] } }
            sequences += frontier
        }
        #expect(sequences.count == 1 + 8 + 64 + 512 + 4_096 + 32_768)
        var failures = 0
        var paused = 0
        for steps in sequences where failures < 5 {
            let sessions = Self.sessions()
            var model = Model()
            var applied = false
            for step in steps {
                let now = Self.start
                var effects: [PeerSessions.Effect] = []
                switch step {
                case .attach, .restart:
                    if step == .restart || !model.exists { model.status = .alive }
                    if step == .restart { model.epoch += 1 }
                    model.link += 1
                    (model.exists, model.linked, model.writable) = (true, true, true)
                    effects = Self.link(sessions, epoch: model.epoch, link: model.link, at: now)
                case .detach:
                    effects = sessions.linkDetached(from: Self.peer, epoch: model.epoch, link: model.link, now: now)
                    model.linked = false
                case .writable, .unwritable:
                    effects = sessions.writabilityChanged(
                        of: Self.peer,
                        link: model.link,
                        writable: step == .writable,
                        now: now
                    )
                    if model.linked { model.writable = step == .writable }
                case .suspect, .alive, .dead:
                    let status: MemberUpdate.Status = step == .suspect ? .suspect : step == .alive ? .alive : .dead
                    effects = sessions.statusChanged(Self.peer, epoch: model.epoch, to: status, now: now)
                    if model.exists || status != .dead { (model.exists, model.status) = (true, status) }
                }
                for case .congested(_, let vote) in effects {
                    if vote == applied {
                        failures += 1
                        Issue.record("\(steps): a second \(vote) vote in a row")
                    }
                    applied = vote
                    if vote { paused += 1 }
                }
                if applied != model.vote || sessions.state(of: Self.peer)?.congestionVote ?? false != model.vote {
                    failures += 1
                    Issue.record("\(steps): after \(step) the vote is \(applied), the state says \(model.vote)")
                }
            }
        }
        #expect(failures == 0)
        #expect(paused > 1_000, "the sequences do pause the publishers")
    }

    // MARK: - Forgotten peers

    @Test func forgottenPeersAreSummarisedAndResumeWhereTheyWere() throws {
        let sessions = Self.sessions(grace: .zero)
        Self.link(sessions)
        Self.fill(sessions, ["a", "b"])
        _ = Self.written(sessions)  // 1, 2
        _ = sessions.receivedAck(from: Self.peer, senderEpoch: 7, receiverEpoch: 100, seq: 1, link: 1)
        #expect(sessions.sequencedArrived(1, bytes: 5, from: Self.peer, link: 1) == .process)
        _ = sessions.linkDetached(from: Self.peer, epoch: 7, link: 1, now: Self.start)
        _ = sessions.memberForgotten(Self.peer)
        #expect(sessions.state(of: Self.peer) == nil)
        let summary = try #require(sessions.summary(of: Self.peer))
        #expect(summary.position == .init(epoch: 7, acknowledged: 1, nextSeq: 3, received: 1))
        #expect(summary.gap?.lost == 1)

        // The same life comes back: it is told where this node was, and gets the gap next.
        _ = sessions.linkAttached(to: Self.peer, epoch: 7, link: 2, resumable: true, now: Self.start)
        #expect(sessions.summaryCount == 0, "taken back")
        #expect(sessions.resumeMessage(for: Self.peer) == .resume(senderEpoch: 100, receiverEpoch: 7, received: 1))
        _ = sessions.resumeReceived(
            from: Self.peer,
            senderEpoch: 7,
            receiverEpoch: 100,
            received: 2,
            link: 2
        )
        let written = Self.written(sessions)
        guard case .gap(let gap)? = written.first?.1, written.count == 1 else {
            Issue.record("expected one gap, got \(written)")
            return
        }
        #expect((written[0].0, gap.first, gap.last) == (3, 2, 3))
    }

    @Test func summariesAreBoundedAndAnEvictedOneResumesBehindAnUnknownGap() {
        let sessions = Self.sessions(summaries: 3)
        let peers = (1...4).map { NodeID("p\($0)") }
        for (index, peer) in peers.enumerated() {
            Self.link(sessions, peer, link: UInt64(index + 1))
            _ = sessions.memberForgotten(peer)
        }
        #expect(sessions.summaryCount == 3)
        #expect(sessions.summary(of: peers[0]) == nil, "the oldest went")
        #expect(sessions.summary(of: peers[3]) != nil)

        // p1 counted 5 of this node's entries as processed; nothing here remembers them.
        _ = sessions.linkAttached(to: peers[0], epoch: 7, link: 9, resumable: true, now: Self.start)
        #expect(sessions.resumeMessage(for: peers[0]) == .resume(senderEpoch: 100, receiverEpoch: 0, received: 0))
        _ = sessions.resumeReceived(
            from: peers[0],
            senderEpoch: 7,
            receiverEpoch: 100,
            received: 5,
            link: 9
        )
        let written = Self.written(sessions, peers[0])
        guard case .gap(let gap)? = written.first?.1, written.count == 1 else {
            Issue.record("expected one gap, got \(written)")
            return
        }
        #expect((written[0].0, gap.first, gap.lost, gap.reason, gap.keys) == (6, 6, .max, .sessionUnknown, nil))
    }

    @Test func aPeerThatForgotThisNodeIsCountedForAgainFromOne() {
        let sessions = Self.sessions()
        Self.link(sessions)
        Self.fill(sessions, ["a", "b"])
        _ = Self.written(sessions)
        _ = sessions.receivedAck(from: Self.peer, senderEpoch: 7, receiverEpoch: 100, seq: 1, link: 1)
        Self.fill(sessions, ["c"])
        _ = sessions.linkAttached(to: Self.peer, epoch: 7, link: 2, resumable: true, now: Self.start)
        _ = sessions.resumeReceived(from: Self.peer, senderEpoch: 7, receiverEpoch: 0, received: 0, link: 2)
        let written = Self.written(sessions)
        #expect(written.map(\.0) == [1, 2])
        guard case .gap(let gap) = written.first?.1 else {
            Issue.record("expected a gap first, got \(written)")
            return
        }
        #expect((gap.lost, gap.reason, gap.keys) == (1, .sessionUnknown, ["b"]))
        #expect(written.last?.1 == .forward(Self.body("c")), "what was never written is kept")
    }
}
