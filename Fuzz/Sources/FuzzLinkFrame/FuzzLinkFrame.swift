import FuzzLinkSupport
import Gossip
import NIOCore

/// libFuzzer entry point: the inter-node link's reading side, frame decoder, LZ4 and
/// message decoder, on bytes a peer (or anyone who reaches the cluster port) sends.
///
/// Besides crashes it checks that whatever decodes survives the way back: the messages,
/// encoded and framed by the real encoder (with and without compression) and read again,
/// are the same messages. A difference would mean two nodes could disagree about a message.
///
/// - Parameters:
///   - data: the input.
///   - size: its length in bytes.
/// - Returns: 0, as libFuzzer requires; a bug traps instead.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var stream = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
    LinkStream.forEachFrame(in: &stream) { _, messages in
        checkRoundTrip(messages)
        return true
    }
    return 0
}

/// Encodes `messages` as a sender would and checks that a receiver reads them back.
private func checkRoundTrip(_ messages: [LinkMessage]) {
    var payload = ByteBuffer()
    for message in messages {
        message.encode(into: &payload)
    }
    // Threshold 0 tries LZ4 on every payload; `.max` never does.
    for compressionThreshold in [0, Int.max] {
        var wire = ByteBuffer()
        LinkFrame.encode(payload, compressionThreshold: compressionThreshold, into: &wire)
        var decoded: [(ByteBuffer, [LinkMessage])] = []
        LinkStream.forEachFrame(in: &wire) { payload, messages in
            decoded.append((payload, messages))
            return true
        }
        precondition(wire.readableBytes == 0, "\(wire.readableBytes) bytes of a frame were left unread")
        precondition(decoded.count == 1, "one frame was written, \(decoded.count) were read")
        precondition(decoded[0].0 == payload, "the payload changed on its way through the frame codec")
        precondition(decoded[0].1 == messages, "messages changed on their way back: \(messages) became \(decoded[0].1)")
    }
}
