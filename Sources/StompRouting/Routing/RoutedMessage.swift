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
    private(set) var body: ByteBuffer
    /// What holding this message costs, for the byte budgets. Worked out only for messages
    /// that are held: most topic messages never are.
    private(set) lazy var footprint = messageFootprint(body: body, headers: headers, destination: destination)
    /// Decided once per message: whether its frames may go out as WebSocket text.
    let isText: Bool
    // One tail per version, each encoded when a subscriber of that version first needs it.
    private var tail10: ByteBuffer?
    private var tail11: ByteBuffer?
    private var tail12: ByteBuffer?

    convenience init(_ envelope: MessageEnvelope) {
        self.init(
            id: envelope.messageID,
            request: PublishRequest(destination: envelope.destination, headers: envelope.headers, body: envelope.body)
        )
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

    /// Moves the body into storage of its own when it shares a larger buffer, before the
    /// message is held for long (see ``NIOCore/ByteBuffer/compacted()``).
    func compactBody() {
        body = body.compacted()
    }

    /// The MESSAGE frame for one subscriber. Called on the router's thread only: the tail
    /// is encoded on first use for each version and shared by every delivery after.
    func delivery(
        subscription: String,
        ackID: String?,
        redelivered: Bool,
        version: StompVersion
    ) -> MessageDelivery {
        MessageDelivery(
            subscription: subscription,
            ackID: ackID,
            redelivered: redelivered,
            version: version,
            tail: tail(for: version),
            isText: isText
        )
    }

    private func tail(for version: StompVersion) -> ByteBuffer {
        switch version {
        case .v1_0: return encodedOnce(&tail10, version)
        case .v1_1: return encodedOnce(&tail11, version)
        case .v1_2: return encodedOnce(&tail12, version)
        }
    }

    private func encodedOnce(_ slot: inout ByteBuffer?, _ version: StompVersion) -> ByteBuffer {
        if let tail = slot { return tail }
        let tail = encodeTail(version)
        slot = tail
        return tail
    }

    private func encodeTail(_ version: StompVersion) -> ByteBuffer {
        let escaping = HeaderEscaping(version)
        var size = 64 + id.utf8.count + destination.name.utf8.count + body.readableBytes
        for header in headers { size += header.name.utf8.count + header.value.utf8.count + 2 }
        var tail = ByteBuffer()
        tail.reserveCapacity(size)
        StompFrameEncoder.writeHeader(StompHeader.messageID, id, escaping: escaping, into: &tail)
        tail.writeStaticString("destination:")
        tail.writeString(destination.prefix)
        StompFrameEncoder.writeValue(destination.name, escaping: escaping, into: &tail)
        tail.writeInteger(UInt8(ascii: "\n"))
        for header in headers {
            StompFrameEncoder.writeHeader(header.name, header.value, escaping: escaping, into: &tail)
        }
        StompFrameEncoder.writeBody(body, escaping: escaping, into: &tail)
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
