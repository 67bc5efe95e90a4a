import NIOCore
import Testing

@testable import StompRouting

/// Every limit of ``StompFrameDecoder/Limits``, at its boundary, and the promise that the
/// decoder refuses oversized input before the caller has buffered much more than the limit.
@Suite("StompFrameDecoder limits")
struct FrameDecoderLimitTests {
    /// Feeds `bytes` one at a time until the decoder throws; returns the error and the most bytes
    /// the caller's buffer held before that call.
    private func dripUntilError(
        _ bytes: [UInt8],
        limits: StompFrameDecoder.Limits
    ) -> (error: StompProtocolError?, maxBuffered: Int) {
        var decoder = StompFrameDecoder(limits: limits)
        var input = ByteBuffer()
        var maxBuffered = 0
        for byte in bytes {
            input.writeInteger(byte)
            maxBuffered = max(maxBuffered, input.readableBytes)
            do {
                while try decoder.nextFrame(from: &input) != nil {}
            } catch {
                return (error, maxBuffered)
            }
        }
        return (nil, maxBuffered)
    }

    // MARK: - Frame size

    @Test("a frame of exactly maxFrameSize bytes passes, one more byte fails", arguments: [false, true])
    func frameSizeBoundary(withContentLength: Bool) throws {
        let text =
            withContentLength
            ? "SEND\ndestination:/queue/a\ncontent-length:5\n\nhello\0"
            : "SEND\ndestination:/queue/a\n\nhello\0"
        let size = text.utf8.count
        let exact = try decodeAll(buffer(text), limits: .init(maxFrameSize: size))
        #expect(exact.count == 1)
        let error = decodeError(buffer(text), limits: .init(maxFrameSize: size - 1))
        #expect(error?.kind == .frameTooLarge)
    }

    @Test("headers alone beyond maxFrameSize fail before the blank line arrives")
    func frameSizeFromHeaders() {
        var text = "SEND\n"
        for index in 0..<50 { text += "header-\(index):value\n" }
        let result = dripUntilError(Array(text.utf8), limits: .init(maxFrameSize: 200))
        #expect(result.error?.kind == .frameTooLarge)
        #expect(result.maxBuffered <= 200)
    }

    @Test("a body without NUL fails once the frame exceeds maxFrameSize, without buffering more")
    func frameSizeFromUnterminatedBody() {
        let bytes = Array("SEND\n\n".utf8) + Array(repeating: UInt8(ascii: "x"), count: 1_000)
        let result = dripUntilError(bytes, limits: .init(maxFrameSize: 100, maxBodySize: 10_000))
        #expect(result.error?.kind == .frameTooLarge)
        #expect(result.maxBuffered <= 100)
    }

    // MARK: - Body size

    @Test("content-length at the body limit passes, one more fails before any body byte arrives")
    func bodySizeViaContentLength() throws {
        let limits = StompFrameDecoder.Limits(maxBodySize: 10)
        let ok = try decodeAll(buffer("SEND\ncontent-length:10\n\n0123456789\0"), limits: limits)
        #expect(ok.first?.body.readableBytes == 10)
        let error = decodeError(buffer("SEND\ncontent-length:11\n\n"), limits: limits)
        #expect(error?.kind == .bodyTooLarge)
    }

    @Test("a NUL-terminated body at the body limit passes, one more byte fails")
    func bodySizeViaNULScan() throws {
        let limits = StompFrameDecoder.Limits(maxBodySize: 10)
        let ok = try decodeAll(buffer("SEND\n\n0123456789\0"), limits: limits)
        #expect(ok.first?.body.readableBytes == 10)
        #expect(decodeError(buffer("SEND\n\n01234567890\0"), limits: limits)?.kind == .bodyTooLarge)
    }

    @Test("a NUL-scanned body fails as soon as it outgrows the limit, before its NUL")
    func bodySizeViaNULScanStreaming() {
        let bytes = Array("SEND\n\n".utf8) + Array(repeating: UInt8(ascii: "x"), count: 1_000)
        let result = dripUntilError(bytes, limits: .init(maxBodySize: 10))
        #expect(result.error?.kind == .bodyTooLarge)
        #expect(result.maxBuffered <= 11)
    }

    // MARK: - Header count

    @Test("maxHeaderCount headers pass, one more fails")
    func headerCount() throws {
        let limits = StompFrameDecoder.Limits(maxHeaderCount: 3)
        let ok = try decodeAll(buffer("SEND\na:1\nb:2\nc:3\n\n\0"), limits: limits)
        #expect(ok.first?.headers.count == 3)
        #expect(decodeError(buffer("SEND\na:1\nb:2\nc:3\nd:4\n\n\0"), limits: limits)?.kind == .tooManyHeaders)
    }

    @Test("repeated headers count towards the limit")
    func repeatedHeadersCount() {
        let limits = StompFrameDecoder.Limits(maxHeaderCount: 2)
        #expect(decodeError(buffer("SEND\na:1\na:1\na:1\n\n\0"), limits: limits)?.kind == .tooManyHeaders)
    }

    @Test("the defaults take 1,000 headers and a 4 MiB body, as RabbitMQ and ActiveMQ do")
    func generousDefaults() throws {
        let headers = (0..<1_000).map { "x-h\($0):v\($0)\n" }.joined()
        let body = String(repeating: "b", count: 4 * 1_048_576)
        let frames = try decodeAll(buffer("SEND\n" + headers + "\n" + body + "\0"), limits: .init())
        #expect(frames.first?.headers.count == 1_000)
        #expect(frames.first?.body.readableBytes == 4 * 1_048_576)
    }

    // MARK: - Header bytes

    @Test("the command and headers together are held to maxHeaderBytes")
    func headerBytes() throws {
        // "SEND\n" (5) + "a:12345\n" (8) + "b:12345\n" (8) = 21 bytes.
        let frame = "SEND\na:12345\nb:12345\n\n\0"
        #expect(try decodeAll(buffer(frame), limits: .init(maxHeaderBytes: 21)).count == 1)
        let error = decodeError(buffer(frame), limits: .init(maxHeaderBytes: 20))
        #expect(error?.kind == .headersTooLarge)
        #expect(error?.detail.contains("limits.header-bytes") == true)
    }

    // MARK: - Header line length

    @Test("a header line of exactly the limit passes with LF and CRLF, one more byte fails", arguments: ["\n", "\r\n"])
    func headerLineLength(eol: String) throws {
        let limits = StompFrameDecoder.Limits(maxHeaderLineLength: 20)
        let line20 = "k:" + String(repeating: "v", count: 18)
        let ok = try decodeAll(buffer("SEND\(eol)\(line20)\(eol)\(eol)\0"), limits: limits)
        #expect(ok.first?.headers["k"]?.utf8.count == 18)
        let line21 = line20 + "v"
        let error = decodeError(buffer("SEND\(eol)\(line21)\(eol)\(eol)\0"), limits: limits)
        #expect(error?.kind == .headerLineTooLong)
    }

    @Test("the command line is bounded by the line limit too")
    func commandLineLength() {
        let limits = StompFrameDecoder.Limits(maxHeaderLineLength: 8)
        #expect(decodeError(buffer("SUBSCRIBEXX\n\n\0"), limits: limits)?.kind == .headerLineTooLong)
        let result = dripUntilError(Array(repeating: UInt8(ascii: "A"), count: 100), limits: limits)
        #expect(result.error?.kind == .headerLineTooLong)
        #expect(result.maxBuffered <= 8 + 2)
    }

    @Test("a header line without LF that grows beyond the limit fails before much is buffered")
    func endlessHeaderLine() {
        let limits = StompFrameDecoder.Limits(maxHeaderLineLength: 64)
        let bytes = Array("SEND\nk:".utf8) + Array(repeating: UInt8(ascii: "v"), count: 10_000)
        let result = dripUntilError(bytes, limits: limits)
        #expect(result.error?.kind == .headerLineTooLong)
        #expect(result.maxBuffered <= 64 + 2)
    }

    @Test("a header line without LF arriving in one large chunk fails at once")
    func endlessHeaderLineOneChunk() {
        let limits = StompFrameDecoder.Limits(maxHeaderLineLength: 64)
        let text = "SEND\nk:" + String(repeating: "v", count: 10_000)
        #expect(decodeError(buffer(text), limits: limits)?.kind == .headerLineTooLong)
    }

    @Test("the default limits are the documented ones")
    func defaults() {
        let limits = StompFrameDecoder.Limits()
        #expect(limits.maxFrameSize == 4_456_448)
        #expect(limits.maxBodySize == 4_194_304)
        #expect(limits.maxHeaderCount == 1_000)
        #expect(limits.maxHeaderLineLength == 8_192)
        #expect(limits.maxHeaderBytes == 262_144)
    }
}

/// The decoder is resumable: however the bytes are split, the frames are the same.
@Suite("StompFrameDecoder splitting")
struct FrameDecoderSplitTests {
    /// A stream exercising each parser state: heart-beats, LF and CRLF, escapes, a content-length
    /// body containing NULs, a NUL-scanned body and repeated headers.
    static let stream: [UInt8] = {
        var bytes: [UInt8] = []
        bytes += Array("\n\r\n".utf8)
        bytes += Array("SEND\ndestination:/queue/a\nk:a\\cb\\nc\\\\d\\re\n\nhello\0".utf8)
        bytes += Array("\r\n".utf8)
        bytes += Array("MESSAGE\r\nsubscription:0\r\ncontent-length:5\r\n\r\n".utf8) + [0, 1, 0, 2, 0] + [0]
        bytes += Array("\n".utf8)
        bytes += Array("ACK\nid:1\nid:2\n\n\0".utf8)
        bytes += Array("SUBSCRIBE\r\nid:x\r\ndestination:/topic/a.#\r\n\r\n\0\n".utf8)
        return bytes
    }()

    static var chunkStream: ByteBuffer { ByteBuffer(bytes: stream) }

    private func oneShot() throws -> [StompFrame] {
        try decodeAll(Self.chunkStream)
    }

    @Test("the reference stream decodes to the expected frames")
    func reference() throws {
        let frames = try oneShot()
        #expect(frames.map(\.command) == [.send, .message, .ack, .subscribe])
        #expect(frames[0].headers["k"] == "a:b\nc\\d\re")
        #expect(frames[1].body == ByteBuffer(bytes: [0, 1, 0, 2, 0]))
        #expect(frames[2].headers["id"] == "1")
        #expect(frames[3].headers["destination"] == "/topic/a.#")
    }

    @Test("in two pieces, split at every index")
    func everyTwoPieceSplit() throws {
        let expected = try oneShot()
        let bytes = Self.stream
        for index in 0...bytes.count {
            let frames = try decodeChunked([
                ByteBuffer(bytes: bytes[..<index]),
                ByteBuffer(bytes: bytes[index...]),
            ])
            #expect(frames == expected, "split at \(index)")
        }
    }

    @Test("one byte at a time")
    func dripFeed() throws {
        let expected = try oneShot()
        let frames = try decodeChunked(Self.stream.map { ByteBuffer(bytes: [$0]) })
        #expect(frames == expected)
    }

    @Test("every prefix decodes to a prefix of the frames, consuming no unparsed byte")
    func everyPrefix() throws {
        let expected = try oneShot()
        let bytes = Self.stream
        for length in 0...bytes.count {
            let frames = try decodeAll(ByteBuffer(bytes: bytes[..<length]))
            #expect(Array(expected.prefix(frames.count)) == frames, "prefix \(length)")
        }
    }

    @Test("in three pieces, split at every pair of indices of one frame")
    func everyThreePieceSplitOfOneFrame() throws {
        let bytes = Array("MESSAGE\r\nk:a\\r\\c\r\ncontent-length:3\r\n\r\na\0b\0".utf8)
        let expected = try decodeAll(ByteBuffer(bytes: bytes))
        try #require(expected.count == 1)
        for first in 0...bytes.count {
            for second in first...bytes.count {
                let frames = try decodeChunked([
                    ByteBuffer(bytes: bytes[..<first]),
                    ByteBuffer(bytes: bytes[first..<second]),
                    ByteBuffer(bytes: bytes[second...]),
                ])
                #expect(frames == expected, "split at \(first), \(second)")
            }
        }
    }

    @Test("discarding read bytes between calls changes nothing")
    func discardReadBytesBetweenCalls() throws {
        let expected = try oneShot()
        var decoder = StompFrameDecoder()
        var input = ByteBuffer()
        var frames: [StompFrame] = []
        for byte in Self.stream {
            input.writeInteger(byte)
            while let frame = try decoder.nextFrame(from: &input) { frames.append(frame) }
            input.discardReadBytes()
        }
        #expect(frames == expected)
    }

    @Test("a limit error is the same however the bytes are split")
    func errorsAreSplitIndependent() {
        let bytes = Array("SEND\nk:\\t\n\n\0".utf8)
        for index in 0...bytes.count {
            let chunks = [ByteBuffer(bytes: bytes[..<index]), ByteBuffer(bytes: bytes[index...])]
            let error = #expect(throws: StompProtocolError.self, "split at \(index)") { try decodeChunked(chunks) }
            #expect(error?.kind == .invalidHeader, "split at \(index)")
        }
    }
}
