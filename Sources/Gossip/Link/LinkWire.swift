import NIOCore

/// Primitive encodings of the link's wire format (see `WIRE-FORMAT.md`): big-endian integers,
/// strings as a u32 byte count then UTF-8, lists as a u32 count then elements.
public enum LinkWire {
    /// Thrown for any malformed input: the link is closed, never trusted further.
    public struct Malformed: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// The longest string accepted, so a corrupt length can't make the reader allocate wildly.
    static let maxStringLength = 16 * 1_048_576
    /// The most elements accepted in a list.
    static let maxListCount = 1_000_000
}

extension ByteBuffer {
    mutating func writeLinkString(_ string: String) {
        let lengthIndex = writerIndex
        writeInteger(UInt32(0))
        let written = writeString(string)
        setInteger(UInt32(written), at: lengthIndex)
    }

    mutating func readLinkString() throws(LinkWire.Malformed) -> String {
        guard let length = readInteger(as: UInt32.self), Int(length) <= LinkWire.maxStringLength,
            let string = readString(length: Int(length))
        else { throw LinkWire.Malformed("truncated or oversized string") }
        return string
    }

    mutating func writeLinkBytes(_ bytes: ByteBuffer) {
        writeInteger(UInt32(bytes.readableBytes))
        writeImmutableBuffer(bytes)
    }

    mutating func readLinkBytes() throws(LinkWire.Malformed) -> ByteBuffer {
        guard let length = readInteger(as: UInt32.self), let bytes = readSlice(length: Int(length)) else {
            throw LinkWire.Malformed("truncated bytes")
        }
        return bytes
    }

    mutating func readLinkInteger<T: FixedWidthInteger>(as: T.Type = T.self) throws(LinkWire.Malformed) -> T {
        guard let value = readInteger(as: T.self) else { throw LinkWire.Malformed("truncated integer") }
        return value
    }

    mutating func readLinkCount() throws(LinkWire.Malformed) -> Int {
        let count = Int(try readLinkInteger(as: UInt32.self))
        guard count <= LinkWire.maxListCount, count <= readableBytes else {
            throw LinkWire.Malformed("implausible list length")
        }
        return count
    }
}
