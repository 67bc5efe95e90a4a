import NIOCore
import Testing

@testable import StompRouting

@Suite("StompFrameEncoder")
struct FrameEncoderTests {
    private func encoded(_ frame: StompFrame, _ version: StompVersion) -> String {
        String(buffer: StompFrameEncoder.encode(frame, version: version))
    }

    @Test("writes content-length for a non-empty body", arguments: StompVersion.allCases)
    func contentLengthForBody(version: StompVersion) {
        let frame = StompFrame(.send, headers: [StompHeader.destination: "/queue/a"], body: buffer("hello"))
        #expect(encoded(frame, version) == "SEND\ndestination:/queue/a\ncontent-length:5\n\nhello\0")
    }

    @Test("writes no content-length for an empty body")
    func noContentLengthForEmptyBody() {
        let frame = StompFrame(.receipt, headers: [StompHeader.receiptID: "r1"])
        #expect(encoded(frame, .v1_2) == "RECEIPT\nreceipt-id:r1\n\n\0")
    }

    @Test("ignores the frame's own content-length and computes it from the body")
    func ignoresFramesContentLength() {
        let frame = StompFrame(.message, headers: [StompHeader.contentLength: "99", "a": "1"], body: buffer("xyz"))
        #expect(encoded(frame, .v1_2) == "MESSAGE\na:1\ncontent-length:3\n\nxyz\0")
        let empty = StompFrame(.message, headers: [StompHeader.contentLength: "99"])
        #expect(encoded(empty, .v1_2) == "MESSAGE\n\n\0")
    }

    @Test("a body with NUL bytes is written verbatim")
    func bodyWithNUL() {
        let frame = StompFrame(.message, body: buffer(bytes: [0, 1, 0]))
        let bytes = Array(StompFrameEncoder.encode(frame, version: .v1_1).readableBytesView)
        #expect(bytes == Array("MESSAGE\ncontent-length:3\n\n".utf8) + [0, 1, 0, 0])
    }

    @Test("keeps header order and repeated headers")
    func headerOrder() {
        let frame = StompFrame(.message, headers: StompHeaders([("b", "1"), ("a", "2"), ("b", "3")]))
        #expect(encoded(frame, .v1_2) == "MESSAGE\nb:1\na:2\nb:3\n\n\0")
    }

    @Test(
        "escapes headers by version",
        arguments: [
            (StompVersion.v1_2, "MESSAGE\nk\\ce:a\\cb\\nc\\\\d\\re\n\n\0"),
            // 1.1 has no escape for CR: it becomes a space so that it can't be read as CRLF.
            (.v1_1, "MESSAGE\nk\\ce:a\\cb\\nc\\\\d e\n\n\0"),
            // 1.0 has no escapes at all: line breaks become spaces, a colon in a name becomes '_'.
            (.v1_0, "MESSAGE\nk_e:a:b c\\d e\n\n\0"),
        ]
    )
    func escaping(version: StompVersion, expected: String) {
        let frame = StompFrame(.message, headers: ["k:e": "a:b\nc\\d\re"])
        #expect(encoded(frame, version) == expected)
    }

    @Test("CONNECT, STOMP and CONNECTED are never escaped", arguments: [StompCommand.connect, .stomp, .connected])
    func connectNotEscaped(command: StompCommand) {
        let frame = StompFrame(command, headers: ["login": "a:b\\c"])
        #expect(encoded(frame, .v1_2) == "\(command.rawValue)\nlogin:a:b\\c\n\n\0")
    }

    @Test("encode(into:) appends after the bytes already there")
    func encodeIntoAppends() {
        var out = buffer("\n")
        StompFrameEncoder.encode(
            StompFrame(.receipt, headers: [StompHeader.receiptID: "1"]),
            version: .v1_2,
            into: &out
        )
        #expect(String(buffer: out) == "\nRECEIPT\nreceipt-id:1\n\n\0")
    }

    @Test("HeaderEscaping follows the version")
    func headerEscapingInit() {
        #expect(HeaderEscaping(.v1_0) == .none)
        #expect(HeaderEscaping(.v1_1) == .v1_1)
        #expect(HeaderEscaping(.v1_2) == .v1_2)
    }
}

/// encode -> decode gives back the frame, for each version, command and kind of body.
@Suite("StompFrame round trips")
struct FrameRoundTripTests {
    enum Body: String, CaseIterable, Sendable {
        case empty, text, binaryWithNULs

        var bytes: ByteBuffer {
            switch self {
            case .empty: return ByteBuffer()
            case .text: return ByteBuffer(string: "hello, wörld\n")
            case .binaryWithNULs: return ByteBuffer(bytes: [0, 0xFF, 0, 0x0A, 0x00, 0x0D, 0x0A, 0])
            }
        }
    }

    /// Headers that survive the version's escaping unchanged.
    static func headers(_ command: StompCommand, _ version: StompVersion) -> StompHeaders {
        var headers: StompHeaders = [StompHeader.destination: "/queue/a", "x-plain": "v"]
        headers.add("x-plain", "second")
        headers.add("x-empty", "")
        if !command.escapesHeaders || version == .v1_0 {
            // Colons in values and backslashes are carried literally.
            headers.add("x-special", "a:b\\c")
        } else if version == .v1_1 {
            headers.add("x-special", "a:b\nc\\d")
            headers.add("we:ird\\na\nme", "v")
        } else {
            headers.add("x-special", "a:b\nc\\d\re\r")
            headers.add("we:ird\\na\nme\r", "v")
        }
        return headers
    }

    @Test("encode then decode", arguments: StompVersion.allCases, StompCommand.allCases)
    func roundTrip(version: StompVersion, command: StompCommand) throws {
        for body in Body.allCases {
            let frame = StompFrame(command, headers: Self.headers(command, version), body: body.bytes)
            let bytes = StompFrameEncoder.encode(frame, version: version)
            let decoded = try decodeAll(bytes, version: version)
            var expected = frame
            if body.bytes.readableBytes > 0 {
                expected.headers.add(StompHeader.contentLength, String(body.bytes.readableBytes))
            }
            #expect(decoded == [expected], "body \(body)")
        }
    }

    @Test("several encoded frames back to back", arguments: StompVersion.allCases)
    func backToBack(version: StompVersion) throws {
        var bytes = ByteBuffer()
        let frames = StompCommand.allCases.map { StompFrame($0, headers: ["n": $0.rawValue], body: buffer(bytes: [0])) }
        for frame in frames {
            StompFrameEncoder.encode(frame, version: version, into: &bytes)
            bytes.writeString("\n")  // A heart-beat between frames.
        }
        let decoded = try decodeAll(bytes, version: version)
        #expect(decoded.map(\.command) == StompCommand.allCases)
        #expect(decoded.allSatisfy { $0.body == ByteBuffer(bytes: [0]) })
    }

    @Test("an ERROR built from a protocol error round-trips")
    func errorFrameRoundTrip() throws {
        let error = StompProtocolError(.unsupportedVersion, "unsupported: version", detail: "details", receiptID: "r:1")
        let frame = error.errorFrame(version: .v1_2)
        let decoded = try decodeAll(StompFrameEncoder.encode(frame, version: .v1_2))
        let first = try #require(decoded.first)
        #expect(first.command == .error)
        #expect(first.headers[StompHeader.message] == "unsupported: version")
        #expect(first.headers[StompHeader.receiptID] == "r:1")
        #expect(first.headers[StompHeader.version] == "1.0,1.1,1.2")
        #expect(String(buffer: first.body) == "details\n")
    }
}
