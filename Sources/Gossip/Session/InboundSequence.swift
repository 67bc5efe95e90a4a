/// One peer's side of what arrives on the link's bulk lane, for one boot epoch of that peer:
/// the last sequence number processed, what to do with the next, and when to say so.
///
/// The counterpart of the peer's ``PeerOutbox``: entries come in order, each once. One
/// already processed (written again on a resumed link) is skipped; one that skips a number is
/// a protocol violation, since the sender announces what it drops with a gap. Sans-IO.
struct InboundSequence {
    /// What to do with an arriving entry.
    enum Verdict: Equatable {
        /// Process it: it is the next.
        case process
        /// Skip it: it was processed already.
        case duplicate
        /// A number is missing before it: the link breaks the protocol.
        case hole(expected: UInt64, got: UInt64)
    }

    /// Entries after which an acknowledgement goes out without waiting for the tick.
    static let ackEvery = 1_024
    /// Bytes after which an acknowledgement goes out without waiting for the tick.
    static let ackEveryBytes = 1_048_576

    /// The peer's boot epoch this sequence belongs to.
    let peerEpoch: UInt64
    /// Every number up to this one was processed.
    private(set) var received: UInt64 = 0
    /// The last number acknowledged to the peer.
    private(set) var acknowledged: UInt64 = 0
    private var itemsSinceAck = 0
    private var bytesSinceAck = 0

    /// - Parameters:
    ///   - received: where a sequence kept for a peer membership forgot left off.
    init(peerEpoch: UInt64, received: UInt64 = 0) {
        self.peerEpoch = peerEpoch
        self.received = received
        self.acknowledged = received
    }

    /// Entry `seq` of `bytes` arrived.
    mutating func arrived(_ seq: UInt64, bytes: Int) -> Verdict {
        if seq <= received { return .duplicate }
        guard seq == received + 1 else { return .hole(expected: received + 1, got: seq) }
        received = seq
        itemsSinceAck += 1
        bytesSinceAck += bytes
        return .process
    }

    /// A gap standing for numbers `first` through `last` arrived.
    ///
    /// - Returns: the verdict, and how many of its numbers were processed here already (the
    ///   peer wrote them before it dropped the rest: they weren't lost).
    mutating func gapArrived(first: UInt64, last: UInt64) -> (verdict: Verdict, processedAlready: UInt64) {
        if last <= received { return (.duplicate, 0) }
        guard first <= received + 1 else { return (.hole(expected: received + 1, got: first), 0) }
        let processed = received >= first ? received - first + 1 : 0
        received = last
        itemsSinceAck += 1
        return (.process, processed)
    }

    /// Whether an acknowledgement should go out now, before the tick: enough arrived.
    var acknowledgementDue: Bool {
        itemsSinceAck >= Self.ackEvery || bytesSinceAck >= Self.ackEveryBytes
    }

    /// The number to acknowledge, if any arrived since the last acknowledgement; called on
    /// the tick, and when ``acknowledgementDue``.
    mutating func acknowledgement() -> UInt64? {
        guard received > acknowledged else { return nil }
        acknowledged = received
        itemsSinceAck = 0
        bytesSinceAck = 0
        return received
    }

    /// What to tell the peer when a link comes up: the last number processed.
    var resumePoint: UInt64 { received }
}
