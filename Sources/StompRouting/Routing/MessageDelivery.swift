import NIOCore

/// One subscriber's MESSAGE frame, not yet written out.
///
/// The lines that differ per subscriber (`subscription`, `ack`, `redelivered`) are kept as
/// values; everything after them is the message's shared tail, encoded once per protocol
/// version for all its subscribers. The connection writes both straight into its outbound
/// buffer, so a delivery costs no buffer of its own, however many subscribers there are.
public struct MessageDelivery: Sendable {
    public let subscription: String
    public let ackID: String?
    public let redelivered: Bool
    public let version: StompVersion
    /// `message-id`, `destination`, the application's headers, `content-length`, the blank
    /// line, the body and the NUL, escaped for `version`.
    public let tail: ByteBuffer
    /// Whether the frame is valid UTF-8, so that a WebSocket transport may send it as text.
    public let isText: Bool

    init(subscription: String, ackID: String?, redelivered: Bool, version: StompVersion, tail: ByteBuffer, isText: Bool)
    {
        self.subscription = subscription
        self.ackID = ackID
        self.redelivered = redelivered
        self.version = version
        self.tail = tail
        self.isText = isText
    }

    /// At least as many bytes as ``write(into:)`` writes: escaping at most doubles a value.
    public var maximumSize: Int {
        var size = 8 + 14 + 2 * subscription.utf8.count + tail.readableBytes
        if let ackID { size += 5 + 2 * ackID.utf8.count }
        if redelivered { size += 17 }
        return size
    }

    /// Appends the whole frame.
    public func write(into buffer: inout ByteBuffer) {
        let escaping = HeaderEscaping(version)
        buffer.writeStaticString("MESSAGE\n")
        StompFrameEncoder.writeHeader(StompHeader.subscription, subscription, escaping: escaping, into: &buffer)
        if let ackID {
            StompFrameEncoder.writeHeader(StompHeader.ack, ackID, escaping: escaping, into: &buffer)
        }
        if redelivered {
            buffer.writeStaticString("redelivered:true\n")
        }
        buffer.writeImmutableBuffer(tail)
    }
}
