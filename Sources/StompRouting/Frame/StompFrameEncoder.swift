import NIOCore

/// Writes frames in the wire format of a given protocol version.
///
/// The encoder always writes a `content-length` for a non-empty body, computed here and never
/// copied from the frame's own headers, so a body may contain NUL bytes and a client can
/// read it without scanning.
public enum StompFrameEncoder {
    /// Appends `frame` to `buffer`.
    ///
    /// - Parameters:
    ///   - frame: the frame to write.
    ///   - version: the negotiated version, which decides how header values are escaped.
    ///   - buffer: where the bytes go.
    public static func encode(_ frame: StompFrame, version: StompVersion, into buffer: inout ByteBuffer) {
        buffer.writeString(frame.command.rawValue)
        buffer.writeInteger(UInt8(ascii: "\n"))
        let escaping = frame.command.escapesHeaders ? HeaderEscaping(version) : .none
        for header in frame.headers where header.name != StompHeader.contentLength {
            writeHeader(header.name, header.value, escaping: escaping, into: &buffer)
        }
        writeBody(frame.body, escaping: escaping, into: &buffer)
    }

    /// Encodes `frame` into a new buffer.
    public static func encode(_ frame: StompFrame, version: StompVersion) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(64 + frame.body.readableBytes)
        encode(frame, version: version, into: &buffer)
        return buffer
    }

    /// Appends one `name:value` line.
    public static func writeHeader(
        _ name: String,
        _ value: String,
        escaping: HeaderEscaping,
        into buffer: inout ByteBuffer
    ) {
        write(name, escaping: escaping, isName: true, into: &buffer)
        buffer.writeInteger(UInt8(ascii: ":"))
        write(value, escaping: escaping, isName: false, into: &buffer)
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    /// Appends a header value, escaped as `escaping` requires.
    public static func writeValue(_ value: String, escaping: HeaderEscaping, into buffer: inout ByteBuffer) {
        write(value, escaping: escaping, isName: false, into: &buffer)
    }

    /// Appends the content-length header, the blank line, the body and the terminating NUL.
    public static func writeBody(_ body: ByteBuffer, escaping: HeaderEscaping, into buffer: inout ByteBuffer) {
        if body.readableBytes > 0 {
            buffer.writeStaticString("content-length:")
            writeDecimal(body.readableBytes, into: &buffer)
            buffer.writeInteger(UInt8(ascii: "\n"))
        }
        buffer.writeInteger(UInt8(ascii: "\n"))
        buffer.writeImmutableBuffer(body)
        buffer.writeInteger(UInt8(0))
    }

    /// Writes a non-negative integer's digits without making a string of them.
    static func writeDecimal(_ value: Int, into buffer: inout ByteBuffer) {
        precondition(value >= 0)
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        let start = buffer.writerIndex
        buffer.writeRepeatingByte(UInt8(ascii: "0"), count: digits)
        var remaining = value
        for offset in stride(from: digits - 1, through: 0, by: -1) {
            buffer.setInteger(UInt8(ascii: "0") + UInt8(remaining % 10), at: start + offset)
            remaining /= 10
        }
    }

    private static func write(_ text: String, escaping: HeaderEscaping, isName: Bool, into buffer: inout ByteBuffer) {
        // Most headers need no escaping; checking first keeps the common path a single copy.
        guard needsEscaping(text) else {
            buffer.writeString(text)
            return
        }
        for byte in text.utf8 {
            switch (escaping, byte) {
            case (.none, UInt8(ascii: "\n")), (.none, UInt8(ascii: "\r")):
                // 1.0 has no escapes; a line break would end the header, so it becomes a space.
                buffer.writeInteger(UInt8(ascii: " "))
            case (.none, UInt8(ascii: ":")) where isName:
                buffer.writeInteger(UInt8(ascii: "_"))
            case (.none, _):
                buffer.writeInteger(byte)
            case (_, UInt8(ascii: "\n")):
                buffer.writeStaticString("\\n")
            case (_, UInt8(ascii: ":")):
                buffer.writeStaticString("\\c")
            case (_, UInt8(ascii: "\\")):
                buffer.writeStaticString("\\\\")
            case (.v1_2, UInt8(ascii: "\r")):
                buffer.writeStaticString("\\r")
            case (.v1_1, UInt8(ascii: "\r")):
                // 1.1 defines no escape for CR, and a CR before the EOL would be taken for CRLF.
                buffer.writeInteger(UInt8(ascii: " "))
            default:
                buffer.writeInteger(byte)
            }
        }
    }
}

/// Whether a header name or value holds a byte that some version escapes. Native strings
/// are contiguous UTF-8, so this is a plain byte loop.
@inline(__always)
private func needsEscaping(_ text: String) -> Bool {
    var text = text
    return text.withUTF8 { bytes in
        for byte in bytes where byte <= UInt8(ascii: "\\") {
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: ":")
                || byte == UInt8(ascii: "\\")
            {
                return true
            }
        }
        return false
    }
}

/// The escaping rules of a version: none in 1.0 (and on CONNECT/CONNECTED), `\n \c \\` in 1.1,
/// and `\r` as well in 1.2.
public enum HeaderEscaping: Sendable {
    case none
    case v1_1
    case v1_2

    public init(_ version: StompVersion) {
        switch version {
        case .v1_0: self = .none
        case .v1_1: self = .v1_1
        case .v1_2: self = .v1_2
        }
    }
}
