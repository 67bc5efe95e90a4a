import NIOCore
import StompRouting

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One client connection's STOMP end, for the benchmark and for `pub`/`sub` alike: decodes
/// frames and hands them to its owner; writes are flushed once per event-loop tick.
///
/// `@unchecked Sendable` for the same reason as ``BenchRun``: it lives on the run's one event
/// loop and is only touched there (tasks hand it around, and use it through `loop.submit`).
final class BenchConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var decoder = StompFrameDecoder(
        limits: .init(maxFrameSize: 1 << 24, maxBodySize: 1 << 24, maxHeaderCount: 256)
    )
    private var inbound = ByteBuffer()
    private var context: ChannelHandlerContext?
    private var flushScheduled = false
    /// Called for every frame received but benchmark MESSAGEs, on the connection's loop.
    var onFrame: (StompFrame) -> Void = { _ in }
    /// Called for every MESSAGE carrying benchmark headers, without decoding the frame.
    var onBenchMessage: ((BenchMessageScanner.Fields) -> Void)?
    /// The destination this connection subscribed to, as its MESSAGEs must name it.
    var subscribedDestination: [UInt8] = []
    /// Whether to ACK every MESSAGE as it arrives (the subscription is `client-individual`),
    /// before handing it on.
    var acknowledgesMessages = false
    var onClose: () -> Void = {}

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        // Work on a local buffer: every access to a stored property of a class is checked for
        // exclusivity at run time, and this loop runs for up to a million messages a second.
        // Take the stored bytes first: appending to a buffer the property still shares would
        // copy all of it on every read.
        var buffer = inbound
        inbound = ByteBuffer()
        if buffer.readableBytes == 0 {
            buffer = bytes
        } else {
            buffer.writeBuffer(&bytes)
        }
        defer { if buffer.readableBytes > 0 { inbound = buffer } }
        let onBenchMessage = self.onBenchMessage
        let destination = subscribedDestination
        do {
            while buffer.readableBytes > 0 {
                if let onBenchMessage, let scanned = BenchMessageScanner.scan(buffer, subscribedTo: destination) {
                    guard let (consumed, fields) = scanned else { break }
                    if acknowledgesMessages, let ack = fields.ack {
                        // The ack header's bytes as they came, still escaped: sent back as they
                        // are, they name the same message.
                        acknowledge(buffer.getSlice(at: buffer.readerIndex + ack.lowerBound, length: ack.count))
                    }
                    buffer.moveReaderIndex(forwardBy: consumed)
                    onBenchMessage(fields)
                    continue
                }
                guard let frame = try decoder.nextFrame(from: &buffer) else { break }
                if acknowledgesMessages, frame.command == .message, let ack = frame.headers["ack"] {
                    write(StompFrame(.ack, headers: ["id": ack]))
                }
                onFrame(frame)
            }
        } catch {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Writes bytes now and flushes at the end of the tick.
    func write(_ bytes: ByteBuffer) {
        guard let context else { return }
        context.write(wrapOutboundOut(bytes), promise: nil)
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let connection = loopBound.value
            connection.flushScheduled = false
            connection.context?.flush()
        }
    }

    func write(_ frame: StompFrame) {
        write(StompFrameEncoder.encode(frame, version: .v1_2))
    }

    /// ACK, for a `client-individual` subscription, of the MESSAGE whose `ack` header held
    /// `id` (escaped as on the wire).
    private func acknowledge(_ id: ByteBuffer?) {
        guard var id else { return }
        var frame = ByteBuffer()
        frame.reserveCapacity(id.readableBytes + 10)
        frame.writeStaticString("ACK\nid:")
        frame.writeBuffer(&id)
        frame.writeStaticString("\n\n")
        frame.writeInteger(UInt8(0))
        write(frame)
    }

    /// Sends `frame` and settles `answered` with the first frame that comes back: success if
    /// it is `expected`, an error naming what came instead, or that the connection closed
    /// first (`closedFirst`). Called on the connection's loop; replaces `onFrame`/`onClose`.
    func send(
        _ frame: StompFrame,
        expecting expected: StompCommand,
        closedFirst: String,
        answered: EventLoopPromise<Void>
    ) {
        // Whichever comes first settles the promise; the other is ignored.
        var settled = false
        onFrame = { answer in
            guard !settled else { return }
            settled = true
            if answer.command == expected {
                answered.succeed()
            } else {
                answered.fail(
                    StompClientError(
                        "\(frame.command.rawValue) answered with \(answer.command.rawValue): \(answer.headers["message"] ?? "")"
                    )
                )
            }
        }
        onClose = {
            guard !settled else { return }
            settled = true
            answered.fail(StompClientError(closedFirst))
        }
        write(frame)
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func close() {
        context?.close(promise: nil)
    }
}

/// Reads a benchmark MESSAGE straight from the bytes: the generator must stay cheaper than
/// the broker it measures, and decoding every header into strings would not be.
enum BenchMessageScanner {
    struct Fields {
        var publisher = -1
        var sequence = -1
        var sentAt: UInt64 = 0
        /// The frame's `destination` header is missing or not the subscribed one.
        var misrouted = true
        /// Where the value of the frame's `ack` header is, from the start of the frame.
        var ack: Range<Int>?
    }

    /// - Parameter destination: the destination the receiving subscriber subscribed to, which
    ///   the frame's first `destination` header must repeat byte for byte (the benchmark's
    ///   destinations need no header escaping).
    /// - Returns: `nil` when the bytes don't start with a benchmark MESSAGE (decode normally);
    ///   `.some(nil)` when one has started but isn't complete; otherwise its length and fields.
    static func scan(_ buffer: ByteBuffer, subscribedTo destination: [UInt8]) -> (Int, Fields)?? {
        buffer.withUnsafeReadableBytes { bytes -> (Int, Fields)?? in
            let prefix: StaticString = "MESSAGE\n"
            guard bytes.count >= prefix.utf8CodeUnitCount else { return .some(nil) }
            for index in 0..<prefix.utf8CodeUnitCount where bytes[index] != prefix.utf8Start[index] { return nil }
            var fields = Fields()
            var contentLength = -1
            var destinationSeen = false
            var line = prefix.utf8CodeUnitCount
            while true {
                guard let end = newline(in: bytes, from: line) else { return .some(nil) }
                if end == line { break }  // the blank line
                // Only lines starting with `a`, `b`, `c` or `d` can matter; most headers are
                // skipped on their first byte.
                switch bytes[line] {
                case UInt8(ascii: "a"):
                    if fields.ack == nil, let value = value(after: "ack:", in: bytes, line: line, end: end) {
                        fields.ack = value
                    }
                case UInt8(ascii: "b"):
                    if let value = number(after: "bench-seq:", in: bytes, line: line, end: end) {
                        fields.sequence = value
                    } else if let value = number(after: "bench-pub:", in: bytes, line: line, end: end) {
                        fields.publisher = value
                    } else if let value = number(after: "bench-ts:", in: bytes, line: line, end: end) {
                        fields.sentAt = UInt64(value)
                    }
                case UInt8(ascii: "c"):
                    if let value = number(after: "content-length:", in: bytes, line: line, end: end) {
                        contentLength = value
                    }
                case UInt8(ascii: "d"):
                    // STOMP 1.2: of repeated headers, the first one counts.
                    if !destinationSeen, let value = value(after: "destination:", in: bytes, line: line, end: end) {
                        destinationSeen = true
                        fields.misrouted = !bytes[value].elementsEqual(destination)
                    }
                default:
                    break
                }
                line = end + 1
            }
            guard contentLength >= 0, fields.sequence >= 0, fields.publisher >= 0 else { return nil }
            let total = line + 1 + contentLength + 1
            guard bytes.count >= total else { return .some(nil) }
            return .some((total, fields))
        }
    }

    /// The index of the next LF at or after `start`, searched with the C library's memchr.
    private static func newline(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < bytes.count, let base = bytes.baseAddress,
            let found = memchr(base + start, Int32(UInt8(ascii: "\n")), bytes.count - start)
        else { return nil }
        return base.distance(to: UnsafeRawPointer(found))
    }

    /// Where the value of the header line `line..<end` is, if the line starts with `name`.
    private static func value(
        after name: StaticString,
        in bytes: UnsafeRawBufferPointer,
        line: Int,
        end: Int
    ) -> Range<Int>? {
        let count = name.utf8CodeUnitCount
        guard end - line >= count else { return nil }
        for index in 0..<count where bytes[line + index] != name.utf8Start[index] { return nil }
        return (line + count)..<end
    }

    private static func number(after name: StaticString, in bytes: UnsafeRawBufferPointer, line: Int, end: Int) -> Int?
    {
        guard let digits = value(after: name, in: bytes, line: line, end: end), !digits.isEmpty else { return nil }
        var value = 0
        for index in digits {
            let digit = Int(bytes[index]) - 48
            guard digit >= 0, digit <= 9 else { return nil }
            value = value * 10 + digit
        }
        return value
    }
}
