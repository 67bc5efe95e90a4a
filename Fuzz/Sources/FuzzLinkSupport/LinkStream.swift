import Gossip
import NIOCore

/// A link's byte stream read the way `LinkChannelHandler` reads it: frames, each frame's
/// payload a batch of messages.
public enum LinkStream {
    /// The largest frame the fuzz targets accept. The node allows 64 MiB; the bound is
    /// checked by the same code at any size, and a smaller one keeps inputs that claim a huge
    /// decompressed size from dominating the run's time and memory.
    public static let maxFrameSize = 1_048_576

    /// Calls `body` with each frame's messages, in order, until the stream ends, a frame or
    /// a message in it is malformed (the node closes the link there), or `body` returns false.
    ///
    /// - Parameters:
    ///   - stream: the bytes received on the link.
    ///   - body: takes one frame's payload and its messages; returns whether to go on.
    public static func forEachFrame(in stream: inout ByteBuffer, _ body: (ByteBuffer, [LinkMessage]) -> Bool) {
        let decoder = LinkFrame.Decoder(maxFrameSize: maxFrameSize)
        var messages: [LinkMessage] = []
        while true {
            messages.removeAll(keepingCapacity: true)
            do {
                guard let (payload, sizes) = try decoder.nextPayload(from: &stream) else { return }
                precondition(
                    sizes.raw == payload.readableBytes,
                    "frame reports \(sizes.raw) raw bytes for a payload of \(payload.readableBytes)"
                )
                var reader = payload
                try LinkMessage.decodeAll(&reader, into: &messages)
                guard body(payload, messages) else { return }
            } catch {
                return
            }
        }
    }
}
