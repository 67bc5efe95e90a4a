import NIOCore
import StompRouting

/// A persistent message as its queue's log stores it (the payload of
/// ``Replication/QueueCommand/enqueue(_:)``): the message-id it was given when published, its
/// application headers and its body.
///
/// `version u8 | [topic] | message-id | header count u16 | each name and value | body (the rest)`,
/// each string as its UTF-8 length (u32) and bytes. Version 1, a message sent to the queue
/// itself, names no destination: the queue's name is the log's group. Version 2, a topic
/// message a durable subscription's queue took, names its topic, which its MESSAGE frames say.
enum DurableMessageCodec {
    private static let sentToQueue: UInt8 = 1
    private static let publishedToTopic: UInt8 = 2

    static func encode(_ envelope: MessageEnvelope) -> ByteBuffer {
        var size = 8 + envelope.messageID.utf8.count + envelope.body.readableBytes
        for header in envelope.headers { size += 8 + header.name.utf8.count + header.value.utf8.count }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(size)
        switch envelope.destination {
        case .queue:
            buffer.writeInteger(sentToQueue)
        case .topic(let key):
            buffer.writeInteger(publishedToTopic)
            write(key, into: &buffer)
        }
        write(envelope.messageID, into: &buffer)
        buffer.writeInteger(UInt16(clamping: envelope.headers.count))
        var written = 0
        for header in envelope.headers where written < Int(UInt16.max) {
            write(header.name, into: &buffer)
            write(header.value, into: &buffer)
            written += 1
        }
        buffer.writeImmutableBuffer(envelope.body)
        return buffer
    }

    private static func write(_ string: String, into buffer: inout ByteBuffer) {
        // Headers are bounded far below 4 GiB by `limits.header-bytes`.
        buffer.writeInteger(UInt32(string.utf8.count))
        buffer.writeString(string)
    }

    /// `nil` for bytes this version did not write (a newer node's, or damage the CRC missed).
    static func decode(_ payload: ByteBuffer, queue: String) -> MessageEnvelope? {
        var buffer = payload
        let destination: Destination
        switch buffer.readInteger(as: UInt8.self) {
        case sentToQueue:
            destination = .queue(queue)
        case publishedToTopic:
            guard let key = buffer.readLengthPrefixedSlice(as: UInt32.self) else { return nil }
            destination = .topic(String(buffer: key))
        default:
            return nil
        }
        guard let id = buffer.readLengthPrefixedSlice(as: UInt32.self).map({ String(buffer: $0) }),
            let count = buffer.readInteger(as: UInt16.self)
        else { return nil }
        var headers = StompHeaders(minimumCapacity: Int(count))
        for _ in 0..<count {
            guard let name = buffer.readLengthPrefixedSlice(as: UInt32.self),
                let value = buffer.readLengthPrefixedSlice(as: UInt32.self)
            else { return nil }
            headers.add(String(buffer: name), String(buffer: value))
        }
        return MessageEnvelope(destination: destination, messageID: id, headers: headers, body: buffer)
    }
}
