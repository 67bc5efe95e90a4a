import DequeModule
import NIOCore

/// One peer's side of the link's bulk lane, for one boot epoch of that peer: the forwards and
/// queue hand-offs this node sent it, kept until the peer says it processed them, so that a
/// link that drops or a peer that stalls loses nothing (README, "No silent loss at the seam").
///
/// Each entry gets its sequence number when it is first written to a link, and keeps it when
/// it is written again on the link that replaces that one: the peer resumes from the last
/// number it processed, so nothing is skipped and nothing processed twice. Entries hold the
/// encoded message (before framing and compression), so one forward's bytes are shared by
/// every peer's outbox.
///
/// Sans-IO. It counts its bytes; its owner decides when they are too many (or the peer was
/// away too long), and ``collapse(reason:keyOf:)`` then turns all it holds into one gap.
struct PeerOutbox {
    /// What the peer is to process, in order.
    enum Entry: Equatable {
        /// A topic message, encoded as the link's forward body.
        case forward(ByteBuffer)
        /// A queue message handed over as hand-off `id`, encoded as the link's body.
        case handoff(id: UInt64, ByteBuffer)
        /// Messages this node dropped instead of sending.
        case gap(Gap)

        /// What holding the entry costs: its bytes and a fixed overhead for the bookkeeping.
        var cost: Int {
            switch self {
            case .forward(let body), .handoff(_, let body): return body.readableBytes + PeerOutbox.entryOverhead
            case .gap(let gap): return gap.cost
            }
        }
    }

    typealias Gap = SequenceGap

    /// A peer that claims what was never sent, or goes back on what it acknowledged.
    struct Violation: Error, Equatable {
        var detail: String
    }

    /// Bookkeeping counted per entry on top of its bytes.
    static let entryOverhead = 16

    /// Entries with a sequence number, oldest first, not acknowledged yet. The first
    /// ``writtenOnLink`` of them went out on the current link; the rest are to be written
    /// (again) before anything unsent.
    private(set) var inFlight = Deque<(seq: UInt64, entry: Entry)>()
    private var writtenOnLink = 0
    /// Entries not written yet; they get their numbers as they go out.
    private(set) var unsent = Deque<Entry>()
    /// Every number up to this one was processed by the peer.
    private(set) var acknowledged: UInt64 = 0
    /// The number the next entry written for the first time gets.
    private(set) var nextSeq: UInt64 = 1
    /// What everything held costs (``Entry/cost``).
    private(set) var bytes = 0
    /// What the unsent entries cost.
    private(set) var unsentBytes = 0

    var isEmpty: Bool { inFlight.isEmpty && unsent.isEmpty }

    init() {}

    /// Carries on a sequence whose entries this node no longer holds (a peer membership
    /// forgot, come back): the peer processed every number up to `acknowledged`, and the next
    /// entry written gets `nextSeq`.
    init(acknowledged: UInt64, nextSeq: UInt64) {
        precondition(nextSeq > acknowledged, "next \(nextSeq) must follow acknowledged \(acknowledged)")
        self.acknowledged = acknowledged
        self.nextSeq = nextSeq
    }

    /// Queues `entry` behind everything held.
    mutating func append(_ entry: Entry) {
        if case .gap(let gap) = entry, case .gap(var trailing) = unsent.last {
            // Losses in a row are one gap.
            trailing.merge(lost: gap.lost, keys: gap.keys)
            replaceLastUnsent(with: .gap(trailing))
            return
        }
        unsent.append(entry)
        bytes += entry.cost
        unsentBytes += entry.cost
    }

    /// The next entry to write on the current link, with its number: what a resumed link
    /// must write again first, then the unsent in order.
    mutating func next() -> (seq: UInt64, entry: Entry)? {
        if writtenOnLink < inFlight.count {
            defer { writtenOnLink += 1 }
            return inFlight[writtenOnLink]
        }
        guard var entry = unsent.popFirst() else { return nil }
        unsentBytes -= entry.cost
        let seq = nextSeq
        nextSeq += 1
        if case .gap(var gap) = entry {
            gap.first = gap.coveredFrom ?? seq
            gap.last = seq
            entry = .gap(gap)
        }
        inFlight.append((seq, entry))
        writtenOnLink += 1
        return (seq, entry)
    }

    /// The peer processed every entry up to `seq`: they are let go.
    ///
    /// - Returns: the hand-offs settled, which the peer now owns.
    /// - Throws: ``Violation`` for a number this node never wrote.
    mutating func acknowledge(through seq: UInt64) throws(Violation) -> [UInt64] {
        guard seq < nextSeq else {
            throw Violation(detail: "acknowledged \(seq), but only \(nextSeq - 1) were written")
        }
        guard seq > acknowledged else { return [] }
        acknowledged = seq
        var settled: [UInt64] = []
        while let first = inFlight.first, first.seq <= seq {
            inFlight.removeFirst()
            bytes -= first.entry.cost
            if writtenOnLink > 0 { writtenOnLink -= 1 }
            if case .handoff(let id, _) = first.entry { settled.append(id) }
        }
        return settled
    }

    /// A new link to the peer (same boot epochs): the peer processed every entry up to
    /// `received`, and the ones after are written again, with their numbers, before any new.
    ///
    /// - Throws: ``Violation`` when `received` is ahead of what was written or behind what
    ///   the peer acknowledged before.
    mutating func resume(peerReceived received: UInt64) throws(Violation) -> [UInt64] {
        guard received >= acknowledged else {
            throw Violation(detail: "resumed from \(received), but had acknowledged \(acknowledged)")
        }
        let settled = try acknowledge(through: received)
        writtenOnLink = 0
        return settled
    }

    /// The link went away: whatever is in flight waits for the next link's resume.
    mutating func linkDetached() {
        writtenOnLink = 0
    }

    /// Drops every entry held for one gap: the peer was away too long, or it holds too much.
    ///
    /// - Parameters:
    ///   - keyOf: the routing key of a forward's body, for the peer to tell the subscribers it
    ///     concerns (`nil` when it can't be read: the gap then stands for every topic).
    /// - Returns: the hand-offs dropped, which this node owns again.
    mutating func collapse(
        reason: Gap.Reason,
        keyOf: (ByteBuffer) -> String?
    ) -> [(id: UInt64, body: ByteBuffer)] {
        // An earlier gap in flight already stood for the numbers before its own; one not
        // written yet stands for those it replaced.
        var coveredFrom = inFlight.first.map { first in
            if case .gap(let earlier) = first.entry { earlier.first } else { first.seq }
        }
        if coveredFrom == nil, case .gap(let earlier) = unsent.first { coveredFrom = earlier.coveredFrom }
        var gap = Gap(coveredFrom: coveredFrom, lost: 0, reason: reason, keys: [])
        var reclaimed: [(id: UInt64, body: ByteBuffer)] = []
        for entry in inFlight.map(\.entry) + Array(unsent) {
            switch entry {
            case .forward(let body):
                gap.merge(lost: 1, keys: keyOf(body).map { [$0] })
            case .handoff(let id, let body):
                reclaimed.append((id, body))
            case .gap(let earlier):
                gap.merge(lost: earlier.lost, keys: earlier.keys)
            }
        }
        inFlight.removeAll()
        unsent.removeAll()
        writtenOnLink = 0
        bytes = 0
        unsentBytes = 0
        append(.gap(gap))
        return reclaimed
    }

    private mutating func replaceLastUnsent(with entry: Entry) {
        let old = unsent.removeLast()
        bytes += entry.cost - old.cost
        unsentBytes += entry.cost - old.cost
        unsent.append(entry)
    }
}
