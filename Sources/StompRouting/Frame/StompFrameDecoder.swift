import NIOCore

/// An incremental, resumable STOMP frame parser.
///
/// Feed it the bytes received so far; each call to ``nextFrame(from:)`` consumes at most one
/// frame from the front of the buffer and returns it, or returns `nil` when the buffer holds
/// only part of a frame. The part already parsed (command and complete header lines) is
/// consumed and kept here, so a frame may arrive in any number of pieces and no byte is
/// scanned twice, apart from a partial line that is bounded by the line limit.
///
/// Every limit is checked as soon as the length it bounds is known, so the bytes waiting in
/// the caller's buffer never exceed the largest frame allowed.
public struct StompFrameDecoder: Sendable {
    /// Bounds on what one frame may contain. Each one exceeded ends the connection with an
    /// ERROR naming the limit.
    public struct Limits: Sendable, Equatable {
        /// Bytes of a whole frame: command, header lines and body. Bounds the memory one
        /// connection can make the server hold for a frame in flight.
        public var maxFrameSize: Int
        /// Bytes of a body. Kept separate from the frame size so that an operator can allow large
        /// bodies without allowing large header sections.
        public var maxBodySize: Int
        /// Header lines in one frame. Every header is looked at when a frame is applied, so
        /// this and ``maxHeaderBytes`` bound the work one frame can cost.
        public var maxHeaderCount: Int
        /// Bytes of one header line (or the command line), escapes included.
        public var maxHeaderLineLength: Int
        /// Bytes of the command and all header lines together: many headers are allowed, as
        /// RabbitMQ and ActiveMQ allow them, but not many long ones.
        public var maxHeaderBytes: Int

        /// The defaults accept what RabbitMQ and ActiveMQ accept by default: 1,000 headers and
        /// a 4 MiB body.
        public init(
            maxFrameSize: Int = 4_194_304 + 262_144,
            maxBodySize: Int = 4_194_304,
            maxHeaderCount: Int = 1_000,
            maxHeaderLineLength: Int = 8_192,
            maxHeaderBytes: Int = 262_144
        ) {
            self.maxFrameSize = maxFrameSize
            self.maxBodySize = maxBodySize
            self.maxHeaderCount = maxHeaderCount
            self.maxHeaderLineLength = maxHeaderLineLength
            self.maxHeaderBytes = maxHeaderBytes
        }
    }

    /// Where the parser stands within the current frame.
    private enum State: Sendable {
        /// Between frames: skipping heart-beat EOLs, waiting for a command line.
        case awaitingCommand
        /// The command is known; reading header lines until the blank line.
        case readingHeaders(StompCommand, frameBytes: Int)
        /// Headers are complete; waiting for the body and its NUL. `scanned` counts bytes already
        /// searched for the NUL when there is no content-length.
        case readingBody(StompCommand, contentLength: Int?, frameBytes: Int, scanned: Int)
        /// A previous call failed; the connection is being closed.
        case failed(StompProtocolError)
    }

    public let limits: Limits
    /// The negotiated version decides how header values are unescaped. Until CONNECT is
    /// answered only CONNECT and STOMP frames are acceptable, and those are never escaped.
    public var version: StompVersion = .v1_2
    private var state: State = .awaitingCommand
    /// The headers of the frame being read. Kept outside `state` so that adding one appends in
    /// place instead of copying the array out of the enum and back.
    private var headers = StompHeaders()

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Consumes one frame from the front of `buffer` if it is complete.
    ///
    /// - Parameter buffer: the bytes received and not yet consumed. Bytes of a partial frame that
    ///   have been parsed are consumed too.
    /// - Returns: the next frame, or `nil` when more bytes are needed.
    /// - Throws: ``StompProtocolError`` for malformed input or an exceeded limit. The decoder
    ///   throws the same error from then on.
    public mutating func nextFrame(from buffer: inout ByteBuffer) throws(StompProtocolError) -> StompFrame? {
        while true {
            switch state {
            case .failed(let error):
                throw error

            case .awaitingCommand:
                Self.skipHeartbeats(&buffer)
                guard let line = try readLine(from: &buffer, frameBytes: 0) else { return nil }
                let command = try parseCommand(line.bytes)
                headers = StompHeaders(minimumCapacity: 8)
                state = .readingHeaders(command, frameBytes: line.consumed)

            case .readingHeaders(let command, let frameBytes):
                guard let line = try readLine(from: &buffer, frameBytes: frameBytes) else { return nil }
                let total = frameBytes + line.consumed
                if line.bytes.readableBytes == 0 {
                    let contentLength = try parseContentLength(headers)
                    if let contentLength {
                        try checkBody(size: contentLength, frameBytes: total)
                    }
                    state = .readingBody(command, contentLength: contentLength, frameBytes: total, scanned: 0)
                } else {
                    guard total <= limits.maxHeaderBytes else {
                        throw fail(
                            .headersTooLarge,
                            "headers too large",
                            "The command and headers of a frame may take at most \(limits.maxHeaderBytes) bytes (limits.header-bytes)."
                        )
                    }
                    guard headers.count < limits.maxHeaderCount else {
                        throw fail(
                            .tooManyHeaders,
                            "too many headers",
                            "A frame may carry at most \(limits.maxHeaderCount) headers (limits.header-count)."
                        )
                    }
                    let header = try parseHeader(line.bytes, unescape: command.escapesHeaders && version >= .v1_1)
                    headers.add(header.name, header.value)
                    state = .readingHeaders(command, frameBytes: total)
                }

            case .readingBody(let command, let contentLength, let frameBytes, let scanned):
                if let contentLength {
                    guard buffer.readableBytes > contentLength else { return nil }
                    guard buffer.getInteger(at: buffer.readerIndex + contentLength, as: UInt8.self) == 0 else {
                        throw fail(
                            .malformedFrame,
                            "frame not terminated by NUL",
                            "The \(contentLength) body bytes given by content-length must be followed by a NUL byte."
                        )
                    }
                    let body = buffer.readSlice(length: contentLength)!
                    buffer.moveReaderIndex(forwardBy: 1)
                    return finishFrame(command, body: body)
                }
                let view = buffer.readableBytesView
                if let nul = view[(view.startIndex + scanned)...].firstIndex(of: 0) {
                    let length = nul - view.startIndex
                    try checkBody(size: length, frameBytes: frameBytes)
                    let body = buffer.readSlice(length: length)!
                    buffer.moveReaderIndex(forwardBy: 1)
                    return finishFrame(command, body: body)
                }
                try checkBody(size: view.count, frameBytes: frameBytes)
                state = .readingBody(command, contentLength: nil, frameBytes: frameBytes, scanned: view.count)
                return nil
            }
        }
    }

    private mutating func finishFrame(_ command: StompCommand, body: ByteBuffer) -> StompFrame {
        state = .awaitingCommand
        defer { headers = StompHeaders() }
        return StompFrame(command, headers: headers, body: body)
    }

    // MARK: - Lines

    /// Heart-beats are bare EOLs between frames. A lone CR at the end may be the start of a
    /// CRLF, so it stays until the next read.
    private static func skipHeartbeats(_ buffer: inout ByteBuffer) {
        while let byte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) {
            if byte == UInt8(ascii: "\n") {
                buffer.moveReaderIndex(forwardBy: 1)
            } else if byte == UInt8(ascii: "\r"),
                buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) == UInt8(ascii: "\n")
            {
                buffer.moveReaderIndex(forwardBy: 2)
            } else {
                return
            }
        }
    }

    /// Reads one LF- or CRLF-terminated line, without its EOL.
    private mutating func readLine(
        from buffer: inout ByteBuffer,
        frameBytes: Int
    ) throws(StompProtocolError) -> (bytes: ByteBuffer, consumed: Int)? {
        let view = buffer.readableBytesView
        let searchEnd = view.startIndex + min(view.count, limits.maxHeaderLineLength + 2)
        guard let newline = view[view.startIndex..<searchEnd].firstIndex(of: UInt8(ascii: "\n")) else {
            if view.count > limits.maxHeaderLineLength + 1 {
                throw lineTooLong()
            }
            try checkFrame(size: frameBytes + view.count)
            return nil
        }
        let consumed = newline - view.startIndex + 1
        var length = consumed - 1
        if length > 0, view[newline - 1] == UInt8(ascii: "\r") { length -= 1 }
        guard length <= limits.maxHeaderLineLength else { throw lineTooLong() }
        try checkFrame(size: frameBytes + consumed)
        let line = buffer.getSlice(at: buffer.readerIndex, length: length)!
        buffer.moveReaderIndex(forwardBy: consumed)
        return (line, consumed)
    }

    private mutating func lineTooLong() -> StompProtocolError {
        fail(
            .headerLineTooLong,
            "header line too long",
            "A command or header line may be at most \(limits.maxHeaderLineLength) bytes (limits.header-line-length)."
        )
    }

    // MARK: - Command and headers

    private mutating func parseCommand(_ line: ByteBuffer) throws(StompProtocolError) -> StompCommand {
        if let command = StompCommand(line.readableBytesView) { return command }
        let text = String(buffer: line)
        let shown = String(text.unicodeScalars.prefix(32).map { $0.isASCII && $0.value >= 0x20 ? Character($0) : "?" })
        throw fail(.unknownCommand, "unknown command", "'\(shown)' is not a STOMP command.")
    }

    private mutating func parseHeader(
        _ line: ByteBuffer,
        unescape: Bool
    ) throws(StompProtocolError) -> (name: String, value: String) {
        let view = line.readableBytesView
        guard let colon = view.firstIndex(of: UInt8(ascii: ":")) else {
            throw fail(.invalidHeader, "malformed header", "A header line must have the form name:value.")
        }
        guard colon != view.startIndex else {
            throw fail(.invalidHeader, "malformed header", "A header name may not be empty.")
        }
        let name = view[view.startIndex..<colon]
        let value = view[(colon + 1)...]
        guard unescape else {
            return (String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self))
        }
        return (try unescaped(name), try unescaped(value))
    }

    /// Undoes the 1.1/1.2 header escapes. Any other escape is a fatal error (spec 1.2,
    /// "Value Encoding"); `\r` is defined in 1.2 only.
    private mutating func unescaped(_ bytes: ByteBufferView.SubSequence) throws(StompProtocolError) -> String {
        guard bytes.contains(UInt8(ascii: "\\")) else { return String(decoding: bytes, as: UTF8.self) }
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        var escaping = false
        for byte in bytes {
            if escaping {
                switch byte {
                case UInt8(ascii: "n"): result.append(UInt8(ascii: "\n"))
                case UInt8(ascii: "c"): result.append(UInt8(ascii: ":"))
                case UInt8(ascii: "\\"): result.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "r") where version >= .v1_2: result.append(UInt8(ascii: "\r"))
                default:
                    let shown =
                        byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : "\\x\(String(byte, radix: 16))"
                    throw fail(
                        .invalidHeader,
                        "invalid header escape",
                        "'\\\(shown)' is not a defined escape sequence in STOMP \(version.headerValue)."
                    )
                }
                escaping = false
            } else if byte == UInt8(ascii: "\\") {
                escaping = true
            } else {
                result.append(byte)
            }
        }
        if escaping {
            throw fail(.invalidHeader, "invalid header escape", "A header ends with an incomplete escape sequence.")
        }
        return String(decoding: result, as: UTF8.self)
    }

    private mutating func parseContentLength(_ headers: StompHeaders) throws(StompProtocolError) -> Int? {
        guard let text = headers[StompHeader.contentLength] else { return nil }
        guard !text.isEmpty, text.utf8.count <= 18,
            text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let length = Int(text)
        else {
            throw fail(
                .invalidHeader,
                "invalid content-length",
                "content-length must be a non-negative decimal integer."
            )
        }
        return length
    }

    // MARK: - Limits

    private mutating func checkBody(size: Int, frameBytes: Int) throws(StompProtocolError) {
        guard size <= limits.maxBodySize else {
            throw fail(
                .bodyTooLarge,
                "body too large",
                "A frame body may be at most \(limits.maxBodySize) bytes (limits.body-size)."
            )
        }
        try checkFrame(size: frameBytes + size + 1)
    }

    private mutating func checkFrame(size: Int) throws(StompProtocolError) {
        guard size <= limits.maxFrameSize else {
            throw fail(
                .frameTooLarge,
                "frame too large",
                "A frame may be at most \(limits.maxFrameSize) bytes (limits.frame-size)."
            )
        }
    }

    private mutating func fail(
        _ kind: StompProtocolError.Kind,
        _ summary: String,
        _ detail: String
    ) -> StompProtocolError {
        let error = StompProtocolError(kind, summary, detail: detail)
        state = .failed(error)
        return error
    }
}
