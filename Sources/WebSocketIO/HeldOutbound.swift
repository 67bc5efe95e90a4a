import StompRouting

/// What a connection produced behind a hold, kept back so that nothing overtakes it: a later
/// frame's RECEIPT, the messages a subscription released, anything else for this client.
/// Two things hold a connection: a SUBSCRIBE's RECEIPT, until every peer knows of the
/// subscription, and a durable write (a persistent SEND, an ACK of a durable message), until
/// it is on disk on a majority of its queue's replicas; the frame's own RECEIPT, if it asked
/// for one, is the first thing behind that hold.
///
/// Each hold opens a segment; the frames produced after it join the last segment, already
/// framed for the transport. Releasing the first hold hands its receipt and its segment to
/// the connection's outbound buffer, in order. The bytes count toward the connection's
/// `limits.outbound-bytes`, and every hold ends within its timeout
/// (`cluster.interest-ack-timeout-ms`, `replication.send-timeout-ms`), so a hold is bounded in
/// bytes and time.
struct HeldOutbound {
    private struct Segment {
        /// The RECEIPT that waits for the cluster; `nil` for a durable write.
        var receipt: OutboundFrame?
        var after: OutboundBuffer
    }

    private let framing: OutboundFraming
    /// In the order the receipts were held: the first is released first.
    private var segments: [Segment] = []

    init(framing: OutboundFraming) {
        self.framing = framing
    }

    /// Whether a receipt is waiting, so that new frames must queue behind it.
    var isHolding: Bool { !segments.isEmpty }

    /// Bytes held, receipts included.
    private(set) var byteCount = 0

    /// Durable writes held: each one ends when its write is on disk on a majority, or fails.
    private(set) var writeCount = 0

    /// Whether a durable write is among the holds: the connection can't close before it ends,
    /// since what waits behind it would then say it had succeeded.
    var awaitsWrite: Bool { writeCount > 0 }

    /// Holds `receipt` until ``releaseFirst(into:)``; whatever is appended next waits behind it.
    mutating func hold(_ receipt: OutboundFrame) {
        segments.append(Segment(receipt: receipt, after: OutboundBuffer(framing: framing)))
        byteCount += receipt.bytes.readableBytes
    }

    /// Holds whatever is appended next until the durable write before it ends.
    mutating func holdForWrite() {
        segments.append(Segment(receipt: nil, after: OutboundBuffer(framing: framing)))
        writeCount += 1
    }

    /// Appends a frame behind the last held receipt.
    mutating func append(_ frame: OutboundFrame) {
        precondition(isHolding, "nothing is held")
        let before = segments[segments.count - 1].after.byteCount
        segments[segments.count - 1].after.append(frame)
        byteCount += segments[segments.count - 1].after.byteCount - before
    }

    /// Appends a MESSAGE behind the last held receipt.
    mutating func append(_ delivery: MessageDelivery) {
        precondition(isHolding, "nothing is held")
        let before = segments[segments.count - 1].after.byteCount
        segments[segments.count - 1].after.append(delivery)
        byteCount += segments[segments.count - 1].after.byteCount - before
    }

    /// The first held receipt may go: it and what followed it, up to the next held receipt,
    /// move to `outbound`. Does nothing when nothing is held.
    mutating func releaseFirst(into outbound: inout OutboundBuffer) {
        guard !segments.isEmpty else { return }
        var segment = segments.removeFirst()
        byteCount -= (segment.receipt?.bytes.readableBytes ?? 0) + segment.after.byteCount
        if segment.receipt == nil { writeCount -= 1 }
        if let receipt = segment.receipt { outbound.append(receipt) }
        if let bytes = segment.after.take() { outbound.appendFramed(bytes) }
    }

    /// The connection is about to close. What waits for the cluster moves to `outbound`, in
    /// order: the subscription exists here, and its receipt must not be lost. From the first
    /// durable write that has not ended on, everything is dropped: it would vouch for a write
    /// that may never be durable.
    mutating func releaseForClose(into outbound: inout OutboundBuffer) {
        while let first = segments.first, first.receipt != nil { releaseFirst(into: &outbound) }
        discard()
    }

    /// Drops everything held (a slow consumer's backlog, a closed connection).
    mutating func discard() {
        segments.removeAll()
        byteCount = 0
        writeCount = 0
    }
}
