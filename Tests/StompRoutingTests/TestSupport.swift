import NIOCore
import Testing

@testable import StompRouting

// Helpers shared by the StompRouting unit tests.

/// A buffer holding the UTF-8 bytes of `text`.
func buffer(_ text: String) -> ByteBuffer {
    ByteBuffer(string: text)
}

/// A buffer holding exactly `bytes`.
func buffer(bytes: [UInt8]) -> ByteBuffer {
    ByteBuffer(bytes: bytes)
}

/// Decodes every complete frame in `bytes` in one call sequence.
func decodeAll(
    _ bytes: ByteBuffer,
    version: StompVersion = .v1_2,
    limits: StompFrameDecoder.Limits = .init()
) throws(StompProtocolError) -> [StompFrame] {
    var decoder = StompFrameDecoder(limits: limits)
    decoder.version = version
    var input = bytes
    var frames: [StompFrame] = []
    while let frame = try decoder.nextFrame(from: &input) {
        frames.append(frame)
    }
    return frames
}

/// Decodes `text` and returns the single frame it must hold.
func decodeOne(_ text: String, version: StompVersion = .v1_2) throws -> StompFrame {
    let frames = try decodeAll(buffer(text), version: version)
    try #require(frames.count == 1)
    return frames[0]
}

/// The error that decoding `bytes` throws, or nil.
func decodeError(
    _ bytes: ByteBuffer,
    version: StompVersion = .v1_2,
    limits: StompFrameDecoder.Limits = .init()
) -> StompProtocolError? {
    do {
        _ = try decodeAll(bytes, version: version, limits: limits)
        return nil
    } catch {
        return error
    }
}

/// Feeds `bytes` to one decoder in the given chunks, appending each chunk to a buffer that
/// keeps whatever the decoder left unconsumed, and returns the frames in order.
func decodeChunked(
    _ chunks: [ByteBuffer],
    version: StompVersion = .v1_2,
    limits: StompFrameDecoder.Limits = .init()
) throws(StompProtocolError) -> [StompFrame] {
    var decoder = StompFrameDecoder(limits: limits)
    decoder.version = version
    var input = ByteBuffer()
    var frames: [StompFrame] = []
    for var chunk in chunks {
        input.writeBuffer(&chunk)
        while let frame = try decoder.nextFrame(from: &input) {
            frames.append(frame)
        }
    }
    return frames
}

/// A deadline `seconds` after an arbitrary origin.
func at(_ seconds: Int64, plus extra: TimeAmount = .zero) -> NIODeadline {
    NIODeadline.uptimeNanoseconds(0) + .seconds(seconds) + extra
}

extension StompHeaders {
    /// The headers as plain pairs, for readable comparisons.
    var pairs: [String] { map { "\($0.name)=\($0.value)" } }
}
