import NIOCore
import Testing

@testable import Gossip

/// The send side of a resumable link (issue 15): numbers given on first write and kept on a
/// resend, acknowledgements that let entries go, a resume that writes again what the peer
/// didn't process, exact byte accounting, and a collapse into one gap.
@Suite struct PeerOutboxTests {
    private static func forward(_ key: String) -> PeerOutbox.Entry { .forward(ByteBuffer(string: key)) }
    /// The test's bodies are their routing keys.
    private static func key(_ body: ByteBuffer) -> String? { String(buffer: body) }

    private static func drain(_ outbox: inout PeerOutbox) -> [(UInt64, PeerOutbox.Entry)] {
        var written: [(UInt64, PeerOutbox.Entry)] = []
        while let next = outbox.next() { written.append(next) }
        return written
    }

    @Test func entriesGetTheirNumbersAsTheyAreFirstWritten() throws {
        var outbox = PeerOutbox()
        outbox.append(Self.forward("a"))
        outbox.append(.handoff(id: 7, ByteBuffer(string: "job")))
        #expect(outbox.nextSeq == 1, "nothing written, nothing numbered")
        let written = Self.drain(&outbox)
        #expect(written.map(\.0) == [1, 2])
        outbox.append(Self.forward("b"))
        #expect(outbox.next()?.seq == 3)
        #expect(outbox.next() == nil)
        #expect(try outbox.acknowledge(through: 2) == [7], "the hand-off is the peer's now")
        #expect(outbox.inFlight.map(\.seq) == [3])
    }

    @Test func aResumedLinkWritesAgainWhatThePeerDidNotProcessWithTheSameNumbers() throws {
        var outbox = PeerOutbox()
        for key in ["a", "b", "c", "d"] { outbox.append(Self.forward(key)) }
        _ = Self.drain(&outbox)
        outbox.linkDetached()
        outbox.append(Self.forward("e"))
        #expect(try outbox.resume(peerReceived: 2).isEmpty)
        let again = Self.drain(&outbox)
        #expect(again.map(\.0) == [3, 4, 5])
        #expect(again.map(\.1) == [Self.forward("c"), Self.forward("d"), Self.forward("e")])
    }

    @Test func aPeerThatClaimsTooMuchOrGoesBackBreaksTheProtocol() throws {
        var outbox = PeerOutbox()
        outbox.append(Self.forward("a"))
        outbox.append(Self.forward("b"))
        _ = Self.drain(&outbox)
        #expect(throws: PeerOutbox.Violation.self) { try outbox.acknowledge(through: 3) }
        _ = try outbox.acknowledge(through: 2)
        #expect(throws: PeerOutbox.Violation.self) { try outbox.resume(peerReceived: 1) }
        #expect(try outbox.acknowledge(through: 1).isEmpty, "an old acknowledgement is moot")
    }

    @Test func bytesAreCountedExactlyAndGivenBack() throws {
        var outbox = PeerOutbox()
        let overhead = PeerOutbox.entryOverhead
        outbox.append(Self.forward("abc"))
        outbox.append(Self.forward("de"))
        #expect(outbox.bytes == 5 + 2 * overhead)
        #expect(outbox.unsentBytes == outbox.bytes)
        _ = outbox.next()
        #expect(outbox.unsentBytes == 2 + overhead)
        _ = outbox.next()
        #expect(outbox.unsentBytes == 0)
        _ = try outbox.acknowledge(through: 1)
        #expect(outbox.bytes == 2 + overhead)
        _ = try outbox.acknowledge(through: 2)
        #expect(outbox.bytes == 0)
        #expect(outbox.isEmpty)
    }

    @Test func aCollapseLeavesOneGapOverWhatWasWrittenAndGivesHandOffsBack() throws {
        var outbox = PeerOutbox()
        outbox.append(Self.forward("a"))
        outbox.append(Self.forward("b"))
        _ = Self.drain(&outbox)  // 1, 2 in flight
        _ = try outbox.acknowledge(through: 1)
        outbox.append(.handoff(id: 9, ByteBuffer(string: "job")))
        outbox.append(Self.forward("c"))
        let reclaimed = outbox.collapse(reason: .grace, keyOf: Self.key)
        #expect(reclaimed.map(\.id) == [9])
        #expect(outbox.inFlight.isEmpty)
        #expect(outbox.unsent.count == 1)
        #expect(outbox.bytes == outbox.unsent.first!.cost)
        // The peer may hold 2; the gap stands for it and for its own number.
        _ = try outbox.resume(peerReceived: 1)
        let written = Self.drain(&outbox)
        #expect(written.count == 1)
        guard case .gap(let gap) = written[0].1 else {
            Issue.record("expected a gap, got \(written)")
            return
        }
        #expect((gap.first, gap.last, written[0].0) == (2, 3, 3))
        #expect(gap.lost == 2)
        #expect(gap.keys == ["b", "c"])
        #expect(gap.reason == .grace)
    }

    @Test func lossesInARowAreOneGapThatGrowsUntilItIsWritten() {
        var outbox = PeerOutbox()
        _ = outbox.collapse(reason: .bytes, keyOf: Self.key)
        outbox.append(.gap(.init(lost: 3, reason: .bytes, keys: ["x"])))
        outbox.append(.gap(.init(lost: 1, reason: .bytes, keys: ["y"])))
        #expect(outbox.unsent.count == 1)
        guard case .gap(let merged) = outbox.unsent.first else {
            Issue.record("expected one gap")
            return
        }
        #expect((merged.lost, merged.keys) == (4, ["x", "y"]))
        #expect(outbox.next()?.seq == 1)
        outbox.append(.gap(.init(lost: 1, reason: .bytes, keys: ["z"])))
        #expect(outbox.unsent.count == 1, "a written gap is not changed: the next loss starts another")
    }

    @Test func aGapNamesEveryTopicPastItsKeyBound() {
        var gap = SequenceGap(lost: 0, reason: .bytes, keys: [])
        for index in 0..<SequenceGap.maxKeys { gap.merge(lost: 1, keys: ["k\(index)"]) }
        #expect(gap.keys?.count == SequenceGap.maxKeys)
        gap.merge(lost: 1, keys: ["one more"])
        #expect(gap.keys == nil)
        gap.merge(lost: .max, keys: ["again"])
        #expect(gap.lost == .max, "the count saturates")
        #expect(gap.keys == nil, "once every topic, always")
    }

    @Test func aSecondCollapseBeforeTheFirstGapIsWrittenKeepsWhatItCovered() throws {
        var outbox = PeerOutbox()
        outbox.append(Self.forward("a"))
        outbox.append(Self.forward("b"))
        _ = Self.drain(&outbox)  // 1, 2
        _ = try outbox.acknowledge(through: 1)
        _ = outbox.collapse(reason: .bytes, keyOf: Self.key)
        _ = outbox.collapse(reason: .grace, keyOf: Self.key)
        let written = Self.drain(&outbox)
        guard case .gap(let gap) = written.first?.1, written.count == 1 else {
            Issue.record("expected one gap, got \(written)")
            return
        }
        #expect((gap.first, gap.last) == (2, 3), "2 may never have reached the peer")
        #expect(gap.lost == 1)
    }

    @Test func aSecondCollapseStandsForTheFirstGapsNumbersToo() throws {
        var outbox = PeerOutbox()
        outbox.append(Self.forward("a"))
        outbox.append(Self.forward("b"))
        _ = Self.drain(&outbox)  // 1, 2
        _ = outbox.collapse(reason: .bytes, keyOf: Self.key)
        _ = Self.drain(&outbox)  // gap 1...3
        outbox.append(Self.forward("c"))
        _ = outbox.collapse(reason: .grace, keyOf: Self.key)
        let written = Self.drain(&outbox)
        guard case .gap(let gap) = written.first?.1 else {
            Issue.record("expected a gap, got \(written)")
            return
        }
        #expect((gap.first, gap.last) == (1, 4))
        #expect(gap.lost == 3)
        #expect(gap.keys == ["a", "b", "c"])
    }
}

/// The receive side: in order, once each, holes refused, gaps that cover what arrived, and
/// acknowledgements when enough arrived or on the tick.
@Suite struct InboundSequenceTests {
    @Test func entriesAreProcessedOnceInOrderAndAHoleIsRefused() {
        var inbound = InboundSequence(peerEpoch: 1)
        #expect(inbound.arrived(1, bytes: 10) == .process)
        #expect(inbound.arrived(2, bytes: 10) == .process)
        #expect(inbound.arrived(2, bytes: 10) == .duplicate)
        #expect(inbound.arrived(1, bytes: 10) == .duplicate)
        #expect(inbound.arrived(4, bytes: 10) == .hole(expected: 3, got: 4))
        #expect(inbound.resumePoint == 2)
    }

    @Test func aGapMayCoverWhatWasProcessedAlready() {
        var inbound = InboundSequence(peerEpoch: 1)
        for seq: UInt64 in 1...3 { _ = inbound.arrived(seq, bytes: 1) }
        let covered = inbound.gapArrived(first: 2, last: 6)
        #expect(covered.verdict == .process)
        #expect(covered.processedAlready == 2)
        #expect(inbound.resumePoint == 6)
        #expect(inbound.gapArrived(first: 2, last: 6).verdict == .duplicate)
        #expect(inbound.gapArrived(first: 9, last: 9).verdict == .hole(expected: 7, got: 9))
        #expect(inbound.arrived(7, bytes: 1) == .process)
    }

    @Test func acknowledgementsGoOutOnTheTickOrOnceEnoughArrived() {
        var inbound = InboundSequence(peerEpoch: 1)
        #expect(inbound.acknowledgement() == nil, "nothing arrived")
        _ = inbound.arrived(1, bytes: 1)
        #expect(!inbound.acknowledgementDue)
        #expect(inbound.acknowledgement() == 1)
        #expect(inbound.acknowledgement() == nil, "nothing new")
        for seq in 2...UInt64(InboundSequence.ackEvery) { _ = inbound.arrived(seq, bytes: 1) }
        #expect(!inbound.acknowledgementDue)
        _ = inbound.arrived(UInt64(InboundSequence.ackEvery) + 1, bytes: 1)
        #expect(inbound.acknowledgementDue)
        #expect(inbound.acknowledgement() == UInt64(InboundSequence.ackEvery) + 1)
        _ = inbound.arrived(UInt64(InboundSequence.ackEvery) + 2, bytes: InboundSequence.ackEveryBytes)
        #expect(inbound.acknowledgementDue, "or enough bytes")
    }
}
