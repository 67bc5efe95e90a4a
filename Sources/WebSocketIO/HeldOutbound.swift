import StompRouting

/// What a connection produced behind RECEIPTs that wait for the cluster (a SUBSCRIBE's, until
/// every peer knows of the subscription), kept back so that nothing overtakes them: a later
/// frame's RECEIPT, the messages the subscription released, anything else for this client.
///
/// Each held receipt opens a segment; the frames produced after it join the last segment,
/// already framed for the transport. Releasing the first receipt hands it and its segment to
/// the connection's outbound buffer, in order. The bytes count toward the connection's
/// `limits.outbound-bytes`, and the cluster releases a receipt within
/// `cluster.interest-ack-timeout-ms` at the latest, so the hold is bounded in bytes and time.
struct HeldOutbound {
    private struct Segment {
        var receipt: OutboundFrame
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

    /// Holds `receipt` until ``releaseFirst(into:)``; whatever is appended next waits behind it.
    mutating func hold(_ receipt: OutboundFrame) {
        segments.append(Segment(receipt: receipt, after: OutboundBuffer(framing: framing)))
        byteCount += receipt.bytes.readableBytes
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
        byteCount -= segment.receipt.bytes.readableBytes + segment.after.byteCount
        outbound.append(segment.receipt)
        if let bytes = segment.after.take() { outbound.appendFramed(bytes) }
    }

    /// Everything held moves to `outbound`, in order: the connection is about to close, so
    /// the promise the receipts wait to keep no longer matters, and they must not be lost.
    mutating func releaseAll(into outbound: inout OutboundBuffer) {
        while isHolding { releaseFirst(into: &outbound) }
    }

    /// Drops everything held (a slow consumer's backlog, a closed connection).
    mutating func discard() {
        segments.removeAll()
        byteCount = 0
    }
}
