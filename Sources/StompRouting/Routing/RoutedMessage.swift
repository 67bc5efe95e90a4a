import NIOCore

/// A published message as the router holds it, with its MESSAGE frame encoded once.
///
/// Every subscriber of a version receives the same bytes apart from the first few header
/// lines (`subscription`, `ack`, `redelivered`). Those are written per delivery in front of a
/// shared tail (`message-id`, `destination`, the application's headers, the body), which is
/// encoded at most once per protocol version, however many subscribers there are.
final class RoutedMessage {
    let id: String
    let destination: Destination
    let headers: StompHeaders
    let body: ByteBuffer
    /// Decided once per message: whether its frames may go out as WebSocket text.
    let isText: Bool
    private var tails: [ByteBuffer?] = [nil, nil, nil]

    convenience init(_ envelope: MessageEnvelope) {
        self.init(id: envelope.messageID, request: PublishRequest(destination: envelope.destination, headers: envelope.headers, body: envelope.body))
    }

    /// The message as it crosses to another node.
    var envelope: MessageEnvelope {
        MessageEnvelope(destination: destination, messageID: id, headers: headers, body: body)
    }

    init(id: String, request: PublishRequest) {
        self.id = id
        self.destination = request.destination
        self.headers = request.headers
        self.body = request.body
        // Headers are Swift strings and so valid UTF-8; only the body can break a text message.
        self.isText = request.body.withUnsafeReadableBytes { Self.isValidUTF8($0) }
    }

    /// The MESSAGE frame for one subscriber.
    func frame(
        subscription: String,
        ackID: String?,
        redelivered: Bool,
        version: StompVersion
    ) -> OutboundFrame {
        let tail = self.tail(for: version)
        let escaping = HeaderEscaping(version)
        var bytes = ByteBuffer()
        bytes.reserveCapacity(tail.readableBytes + subscription.utf8.count + 64)
        bytes.writeStaticString("MESSAGE\n")
        StompFrameEncoder.writeHeader(StompHeader.subscription, subscription, escaping: escaping, into: &bytes)
        if let ackID {
            StompFrameEncoder.writeHeader(StompHeader.ack, ackID, escaping: escaping, into: &bytes)
        }
        if redelivered {
            bytes.writeStaticString("redelivered:true\n")
        }
        bytes.writeImmutableBuffer(tail)
        return OutboundFrame(bytes: bytes, isText: isText)
    }

    private func tail(for version: StompVersion) -> ByteBuffer {
        if let tail = tails[version.rawValue] { return tail }
        let escaping = HeaderEscaping(version)
        var tail = ByteBuffer()
        tail.reserveCapacity(body.readableBytes + 128)
        StompFrameEncoder.writeHeader(StompHeader.messageID, id, escaping: escaping, into: &tail)
        StompFrameEncoder.writeHeader(StompHeader.destination, destination.description, escaping: escaping, into: &tail)
        for header in headers {
            StompFrameEncoder.writeHeader(header.name, header.value, escaping: escaping, into: &tail)
        }
        StompFrameEncoder.writeBody(body, escaping: escaping, into: &tail)
        tails[version.rawValue] = tail
        return tail
    }

    private static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // Most bodies are ASCII (JSON, text): check eight bytes at a time before decoding.
        var index = 0
        while index + 8 <= bytes.count {
            if bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { break }
            index += 8
        }
        while index < bytes.count, bytes[index] < 0x80 { index += 1 }
        guard index < bytes.count else { return true }
        var iterator = bytes[index...].makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
