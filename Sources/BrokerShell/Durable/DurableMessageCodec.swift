import NIOCore
import StompRouting

/// A persistent message as its queue's log stores it (the payload of
/// ``Replication/QueueCommand/enqueue(_:)``): the message-id it was given when published, its
/// application headers and its body. The queue's name is the log's group, so it isn't repeated.
///
/// `version u8 | message-id | header count u16 | each name and value | body (the rest)`, each
/// string as its UTF-8 length (u32) and bytes.
enum DurableMessageCodec {
    private static let version: UInt8 = 1

    static func encode(_ envelope: MessageEnvelope) -> ByteBuffer {
        var size = 8 + envelope.messageID.utf8.count + envelope.body.readableBytes
        for header in envelope.headers { size += 8 + header.name.utf8.count + header.value.utf8.count }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(size)
        buffer.writeInteger(version)
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
        guard buffer.readInteger(as: UInt8.self) == version,
            let id = buffer.readLengthPrefixedSlice(as: UInt32.self).map({ String(buffer: $0) }),
            let count = buffer.readInteger(as: UInt16.self)
        else { return nil }
        var headers = StompHeaders(minimumCapacity: Int(count))
        for _ in 0..<count {
            guard let name = buffer.readLengthPrefixedSlice(as: UInt32.self),
                let value = buffer.readLengthPrefixedSlice(as: UInt32.self)
            else { return nil }
            headers.add(String(buffer: name), String(buffer: value))
        }
        return MessageEnvelope(destination: .queue(queue), messageID: id, headers: headers, body: buffer)
    }
}
