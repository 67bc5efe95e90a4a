import NIOCore
import Testing

@testable import StompRouting

@Suite("StompFrameDecoder")
struct FrameDecoderTests {
    // MARK: - Basics

    @Test("a minimal frame with a NUL-terminated body")
    func minimalFrame() throws {
        let frame = try decodeOne("SEND\ndestination:/queue/a\n\nhello\0")
        #expect(frame.command == .send)
        #expect(frame.headers.pairs == ["destination=/queue/a"])
        #expect(frame.body == buffer("hello"))
    }

    @Test("an incomplete frame returns nil and consumes only complete lines")
    func incompleteFrame() throws {
        var decoder = StompFrameDecoder()
        var input = buffer("SEND\ndestination:/queue/a\n\nhel")
        #expect(try decoder.nextFrame(from: &input) == nil)
        #expect(String(buffer: input) == "hel")
        input.writeString("lo\0")
        let frame = try #require(try decoder.nextFrame(from: &input))
        #expect(frame.body == buffer("hello"))
        #expect(input.readableBytes == 0)
    }

    @Test("CRLF line endings", arguments: StompVersion.allCases)
    func crlfLineEndings(version: StompVersion) throws {
        let frame = try decodeOne("SEND\r\ndestination:/queue/a\r\nx:1\r\n\r\nbody\0", version: version)
        #expect(frame.command == .send)
        #expect(frame.headers.pairs == ["destination=/queue/a", "x=1"])
        #expect(frame.body == buffer("body"))
    }

    @Test("mixed LF and CRLF line endings in one frame")
    func mixedLineEndings() throws {
        let frame = try decodeOne("MESSAGE\r\na:1\nb:2\r\n\nx\0")
        #expect(frame.headers.pairs == ["a=1", "b=2"])
    }

    @Test("a repeated header keeps every occurrence but the first one wins")
    func repeatedHeaders() throws {
        let frame = try decodeOne("SEND\nfoo:1\nfoo:2\ndestination:/queue/a\n\n\0")
        #expect(frame.headers["foo"] == "1")
        #expect(frame.headers.pairs == ["foo=1", "foo=2", "destination=/queue/a"])
    }

    @Test("a repeated content-length: the first one decides the body length")
    func repeatedContentLength() throws {
        let frame = try decodeOne("SEND\ncontent-length:3\ncontent-length:1\n\nabc\0")
        #expect(frame.body == buffer("abc"))
    }

    @Test("a header value may contain further colons")
    func valueWithColons() throws {
        let frame = try decodeOne("SEND\nurl:http://x:80/\n\n\0", version: .v1_0)
        #expect(frame.headers["url"] == "http://x:80/")
    }

    @Test("an empty header value")
    func emptyValue() throws {
        let frame = try decodeOne("SEND\nempty:\n\n\0")
        #expect(frame.headers["empty"] == "")
    }

    @Test("content-length lets a body contain NUL bytes")
    func contentLengthBodyWithNUL() throws {
        let bytes: [UInt8] = Array("SEND\ncontent-length:4\n\n".utf8) + [1, 0, 2, 0] + [0]
        let frames = try decodeAll(buffer(bytes: bytes))
        #expect(frames.count == 1)
        #expect(frames.first?.body == buffer(bytes: [1, 0, 2, 0]))
    }

    @Test("content-length zero is an empty body")
    func contentLengthZero() throws {
        let frame = try decodeOne("SEND\ncontent-length:0\n\n\0")
        #expect(frame.body.readableBytes == 0)
    }

    // MARK: - Heart-beats and several frames

    @Test("heart-beat EOLs (LF and CRLF) before, between and after frames")
    func heartbeatEOLs() throws {
        var decoder = StompFrameDecoder()
        var input = buffer("\n\r\n\nSEND\n\na\0\n\r\n\nSEND\n\nb\0\r\n\n")
        var frames: [StompFrame] = []
        while let frame = try decoder.nextFrame(from: &input) { frames.append(frame) }
        #expect(frames.map { String(buffer: $0.body) } == ["a", "b"])
        #expect(input.readableBytes == 0)
    }

    @Test("only heart-beats: no frame, everything consumed")
    func onlyHeartbeats() throws {
        var decoder = StompFrameDecoder()
        var input = buffer("\n\n\r\n\n")
        #expect(try decoder.nextFrame(from: &input) == nil)
        #expect(input.readableBytes == 0)
    }

    @Test("a lone CR at the end waits for its LF")
    func loneCarriageReturn() throws {
        var decoder = StompFrameDecoder()
        var input = buffer("\r")
        #expect(try decoder.nextFrame(from: &input) == nil)
        input.writeString("\nSEND\n\n\0")
        let frame = try #require(try decoder.nextFrame(from: &input))
        #expect(frame.command == .send)
    }

    @Test("several frames in one buffer, each call returns one")
    func severalFramesInOneBuffer() throws {
        var decoder = StompFrameDecoder()
        var input = buffer("SEND\nn:1\n\n\0SUBSCRIBE\nid:2\n\n\0ACK\nid:3\ncontent-length:1\n\nx\0")
        let first = try #require(try decoder.nextFrame(from: &input))
        let second = try #require(try decoder.nextFrame(from: &input))
        let third = try #require(try decoder.nextFrame(from: &input))
        #expect(try decoder.nextFrame(from: &input) == nil)
        #expect([first.command, second.command, third.command] == [.send, .subscribe, .ack])
        #expect([first.headers["n"], second.headers["id"], third.headers["id"]] == ["1", "2", "3"])
        #expect(third.body == buffer("x"))
    }

    // MARK: - Escapes

    @Test(
        "header escapes in 1.1 and 1.2",
        arguments: [
            (StompVersion.v1_2, "a\\nb", "a\nb"),
            (.v1_2, "a\\cb", "a:b"),
            (.v1_2, "a\\\\b", "a\\b"),
            (.v1_2, "a\\rb", "a\rb"),
            (.v1_2, "\\\\n", "\\n"),
            (.v1_2, "\\c\\n\\r\\\\", ":\n\r\\"),
            (.v1_1, "a\\nb", "a\nb"),
            (.v1_1, "a\\cb", "a:b"),
            (.v1_1, "a\\\\b", "a\\b"),
        ]
    )
    func definedEscapes(version: StompVersion, raw: String, expected: String) throws {
        let frame = try decodeOne("SEND\nk:\(raw)\n\n\0", version: version)
        #expect(frame.headers["k"] == expected)
    }

    @Test("header names are unescaped too")
    func escapedName() throws {
        let frame = try decodeOne("SEND\na\\cb\\nc:v\n\n\0")
        #expect(frame.headers["a:b\nc"] == "v")
    }

    @Test(
        "undefined escapes and a trailing backslash are fatal",
        arguments: [
            (StompVersion.v1_1, "a\\rb"),
            (.v1_1, "a\\tb"),
            (.v1_2, "a\\tb"),
            (.v1_1, "ab\\"),
            (.v1_2, "ab\\"),
            (.v1_2, "\\x"),
        ]
    )
    func invalidEscapes(version: StompVersion, raw: String) {
        let error = decodeError(buffer("SEND\nk:\(raw)\n\n\0"), version: version)
        #expect(error?.kind == .invalidHeader)
    }

    @Test("an invalid escape in a header name is fatal")
    func invalidEscapeInName() {
        #expect(decodeError(buffer("SEND\nk\\t:v\n\n\0"))?.kind == .invalidHeader)
    }

    @Test(
        "STOMP 1.0 has no escapes: backslashes are literal",
        arguments: ["a\\nb", "a\\cb", "a\\tb", "a\\rb", "ab\\", "\\\\"]
    )
    func noEscapesIn1_0(raw: String) throws {
        let frame = try decodeOne("SEND\nk:\(raw)\n\n\0", version: .v1_0)
        #expect(frame.headers["k"] == raw)
    }

    @Test(
        "CONNECT, STOMP and CONNECTED are never unescaped",
        arguments: [StompCommand.connect, .stomp, .connected],
        StompVersion.allCases
    )
    func noUnescapingOnConnect(command: StompCommand, version: StompVersion) throws {
        let frame = try decodeOne("\(command.rawValue)\npasscode:a\\cb\\tc\\\n\n\0", version: version)
        #expect(frame.headers["passcode"] == "a\\cb\\tc\\")
    }

    // MARK: - Malformed frames

    @Test("an unknown command", arguments: ["FOO", "send", "SEND ", " SEND", "MESSAGES"])
    func unknownCommand(command: String) {
        #expect(decodeError(buffer("\(command)\n\n\0"))?.kind == .unknownCommand)
    }

    @Test("a header line without a colon")
    func headerWithoutColon() {
        #expect(decodeError(buffer("SEND\ndestination\n\n\0"))?.kind == .invalidHeader)
    }

    @Test("an empty header name")
    func emptyHeaderName() {
        #expect(decodeError(buffer("SEND\n:value\n\n\0"))?.kind == .invalidHeader)
    }

    @Test(
        "a content-length that is not a non-negative decimal",
        arguments: ["abc", "-1", "+1", " 1", "1 ", "", "1.5", "0x10", "12345678901234567890123"]
    )
    func badContentLength(value: String) {
        #expect(decodeError(buffer("SEND\ncontent-length:\(value)\n\n\0"))?.kind == .invalidHeader)
    }

    @Test("a huge but well-formed content-length exceeds the body limit at once")
    func hugeContentLength() {
        #expect(decodeError(buffer("SEND\ncontent-length:999999999999999999\n\n"))?.kind == .bodyTooLarge)
    }

    @Test("content-length bytes not followed by NUL")
    func contentLengthWithoutNUL() {
        #expect(decodeError(buffer("SEND\ncontent-length:2\n\nabc\0"))?.kind == .malformedFrame)
    }

    @Test("after an error the decoder keeps throwing the same error")
    func errorIsSticky() throws {
        var decoder = StompFrameDecoder()
        var input = buffer("FOO\n\n\0")
        let first = #expect(throws: StompProtocolError.self) { try decoder.nextFrame(from: &input) }
        var good = buffer("SEND\n\n\0")
        let second = #expect(throws: StompProtocolError.self) { try decoder.nextFrame(from: &good) }
        #expect(first != nil)
        #expect(first == second)
        var empty = ByteBuffer()
        let third = #expect(throws: StompProtocolError.self) { try decoder.nextFrame(from: &empty) }
        #expect(third == first)
    }
}
