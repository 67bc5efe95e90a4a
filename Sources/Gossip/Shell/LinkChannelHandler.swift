import BrokerShell
import NIOCore
import NIOSSL

/// One end of a link to another node: framing, the handshake, and batching.
///
/// The handshake is ``LinkHandshake``'s: the dialler says hello as soon as the connection is
/// open, the listener only answers. Until the link is established, frames are held to the
/// small handshake size and a deadline runs from the moment the connection opened, on both
/// sides.
///
/// Messages handed to ``send(_:)`` are encoded into one of two batches, control and bulk,
/// and written as (at most) two frames at the end of the event-loop tick, control first, so
/// membership and interest never wait behind forwarded messages that were queued in the
/// same tick. Each batch is compressed when that pays (see ``LinkFrame``).
///
/// Lives on the cluster shell's event loop, like the shell itself, so the two call each
/// other directly. It reports to a ``LinkHandlerEvents`` (the shell) and reads nothing else
/// of it, so a test can run a pair of handlers in memory.
final class LinkChannelHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Whether this side dialled.
    let isOutbound: Bool
    /// The address dialled, for outbound links.
    let dialedAddress: String?
    /// Held strongly, though the shell holds its open handlers too: that cycle ends when
    /// ``LinkHandlerEvents/linkClosed(_:)`` makes the shell let go of this handler. A weak
    /// reference would quietly drop the events of links still open after the shell's owner let
    /// go of it, and an unowned one would crash on them.
    private let events: any LinkHandlerEvents
    private let metrics: ClusterMetrics
    /// The node's back-pressure (see ``pauseIfNodeIsBehind(context:)``); `nil` never pauses.
    private let flowControl: FlowControl?
    private let compressionThreshold: Int
    private var handshake: LinkHandshake
    private(set) var peer: LinkHello?
    /// The shell's number for this link, set when it keeps the link (0 until then, and for
    /// a link the tie-break refused): tells a replaced link's hand-offs from the new one's.
    var number: UInt64 = 0
    /// The wire version the handshake settled on (the highest both sides speak); `nil` until
    /// the link is established. What this link's messages are encoded at.
    private(set) var wireVersion: UInt16?
    private var context: ChannelHandlerContext?
    private var inbound = ByteBuffer()
    private var decoder: LinkFrame.Decoder
    /// With mutual TLS: the peer's certificate must name the node id it claims, so the
    /// handshake is given the certificate's DNS names.
    private let checksPeerCertificate: Bool
    /// The frame size allowed once the handshake is done; until then only small frames are.
    private let establishedFrameSize: Int
    private let handshakeTimeout: TimeAmount
    /// Closes the link unless the handshake completes in time.
    private var handshakeDeadline: Scheduled<Void>?
    private var messages: [LinkMessage] = []
    private var controlBatch = ByteBuffer()
    private var bulkBatch = ByteBuffer()
    private var flushScheduled = false
    /// Reading stopped because the node is behind (see ``FlowControl``).
    private(set) var isPausedForFlowControl = false
    /// Bytes of numbered entries queued since the last flush (``sendSequenced(_:_:)``).
    private var sequencedSinceFlush = 0
    /// A pump stopped at ``pumpBudget``: ask for more once this tick's writes are out.
    private var pumpWaiting = false
    private(set) var lastReceived: NIODeadline = .now()
    private(set) var lastSent: NIODeadline = .now()
    private(set) var counters = LinkCounters()

    /// - Parameters:
    ///   - events: told of the link's life and handed its messages; held strongly.
    ///   - metrics: counts bytes sent and handshakes timed out.
    ///   - flowControl: the node's back-pressure, which the link pauses reading for and
    ///     reports congestion to; `nil` for a link that never pauses.
    init(
        events: any LinkHandlerEvents,
        handshake: LinkHandshake,
        isOutbound: Bool,
        dialedAddress: String?,
        configuration: LinkHandlerConfiguration,
        metrics: ClusterMetrics,
        flowControl: FlowControl?
    ) {
        self.events = events
        self.metrics = metrics
        self.flowControl = flowControl
        self.handshake = handshake
        self.isOutbound = isOutbound
        self.dialedAddress = dialedAddress
        self.checksPeerCertificate = configuration.checksPeerCertificate
        self.decoder = LinkFrame.Decoder(
            maxFrameSize: min(configuration.handshakeFrameSize, configuration.maxFrameSize)
        )
        self.establishedFrameSize = configuration.maxFrameSize
        self.handshakeTimeout = configuration.handshakeTimeout
        self.compressionThreshold = configuration.compressionThreshold
    }

    var isEstablished: Bool { peer != nil }
    var channel: (any Channel)? { context?.channel }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { open() }
    }

    /// The pipeline lets go of its handlers when the channel closes. The context holds this
    /// handler strongly, so a context kept here would form a cycle that outlives the link,
    /// with its buffers (up to a whole partial frame) in it.
    func handlerRemoved(context: ChannelHandlerContext) {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        self.context = nil
        inbound = ByteBuffer()
        controlBatch = ByteBuffer()
        bulkBatch = ByteBuffer()
    }

    func channelActive(context: ChannelHandlerContext) {
        open()
        context.fireChannelActive()
    }

    /// The connection is up: register with the shell, start the handshake's deadline (on
    /// both sides: a dialler that never speaks is closed too) and, as the dialler, say hello.
    /// (A dial that fails never gets here, so it leaves nothing behind.)
    private func open() {
        guard handshakeDeadline == nil, let context else { return }
        let channel = context.channel
        let metrics = metrics
        let timeout = handshakeTimeout
        handshakeDeadline = context.eventLoop.scheduleTask(in: timeout) {
            metrics.linkHandshakeTimedOut()
            channel.close(promise: nil)
        }
        events.linkOpened(self)
        if let opening = handshake.opening { send(opening) }
    }

    /// The peer proved itself: it may now send frames of any allowed size.
    private func established(_ hello: LinkHello, version: UInt16) {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        decoder.maxFrameSize = establishedFrameSize
        peer = hello
        wireVersion = version
        events.linkEstablished(self, peer: hello, version: version)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        lastReceived = .now()
        if inbound.readableBytes == 0 { inbound = bytes } else { inbound.writeBuffer(&bytes) }
        do {
            while let (payload, sizes) = try decoder.nextPayload(from: &inbound) {
                counters.framesReceived += 1
                counters.rawBytesReceived += sizes.raw
                counters.wireBytesReceived += sizes.wire
                var body = payload
                try LinkMessage.decodeAll(&body, into: &messages)
                for message in messages {
                    guard context.channel.isActive else { break }
                    handle(message, context: context)
                }
                messages.removeAll(keepingCapacity: true)
            }
        } catch {
            // Decoding errors describe peer bytes: quoted like everything else from a peer.
            events.linkFailed(self, reason: "malformed input: \(LinkHandshake.quoted(String(describing: error)))")
            context.close(promise: nil)
            return
        }
        if inbound.readableBytes == 0 {
            inbound = ByteBuffer()
        } else if inbound.readerIndex > 1_048_576 {
            inbound.discardReadBytes()
        }
    }

    private func handle(_ message: LinkMessage, context: ChannelHandlerContext) {
        guard peer == nil else {
            events.received(message, on: self)
            return
        }
        if checksPeerCertificate, handshake.peerCertificateNames == nil {
            handshake.peerCertificateNames = Self.certificateNames(context: context)
        }
        switch handshake.received(message) {
        case .send(let reply):
            send(reply)
        case .wait:
            break
        case .established(let hello, let version):
            established(hello, version: version)
        case .sendAndEstablish(let replies, let hello, let version):
            for reply in replies { send(reply) }
            established(hello, version: version)
        case .refuse(let refusal):
            if let told = refusal.told { send(.refuse(told)) }
            flushBatches()
            events.linkFailed(self, reason: refusal.reason)
            context.close(promise: nil)
        case .selfConnection(let replies):
            for reply in replies { send(reply) }
            flushBatches()
            events.linkReachedItself(self)
            context.close(promise: nil)
        }
    }

    /// The subjectAltName DNS entries of the peer's certificate. Read when the first message
    /// arrives: TLS delivers no data before its handshake completed and verified the chain.
    /// No TLS handler or no certificate gives no names, which no claimed id passes.
    private static func certificateNames(context: ChannelHandlerContext) -> [String] {
        guard let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate() else { return [] }
        return LinkCertificateCheck.dnsNames(of: certificate)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        pauseIfNodeIsBehind(context: context)
        context.fireChannelReadComplete()
    }

    /// Stops reading while the node has more work queued than it allows, so that the peer's
    /// forwards wait in this link (and then in the peer, whose publishers pause) instead.
    private func pauseIfNodeIsBehind(context: ChannelHandlerContext) {
        guard !isPausedForFlowControl, let flowControl, flowControl.isBehind,
            let options = context.channel.syncOptions
        else { return }
        isPausedForFlowControl = true
        try? options.setOption(.autoRead, value: false)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        flowControl.linkPaused { [eventLoop = context.eventLoop] in
            eventLoop.execute { handler.value.resumeReading() }
        }
    }

    private func resumeReading() {
        guard isPausedForFlowControl else { return }
        isPausedForFlowControl = false
        try? context?.channel.syncOptions?.setOption(.autoRead, value: true)
    }

    /// Unsent bytes passed the high-water mark (the peer isn't keeping up), or fell back under
    /// the low one. The shell decides what it means for the node's publishers.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        events.linkWritabilityChanged(self, writable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func channelInactive(context: ChannelHandlerContext) {
        events.linkClosed(self)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // NIO's and NIOSSL's errors (I/O, TLS alerts, BoringSSL's error strings) carry no
        // bytes from the peer, and a TLS failure's full text is what an operator needs.
        events.linkFailed(self, reason: "\(error)")
        context.close(promise: nil)
    }

    // MARK: - Sending

    /// Queues a message for the end of this tick.
    func send(_ message: LinkMessage) {
        // Before the link is established only handshake messages go out, and those read alike
        // in every version: that is how the version gets agreed on.
        let version = wireVersion ?? handshake.versions.lowerBound
        if message.isControl {
            writeFrameIfFull(&controlBatch)
            message.encode(into: &controlBatch, version: version)
        } else {
            writeFrameIfFull(&bulkBatch)
            message.encode(into: &bulkBatch, version: version)
        }
        scheduleFlush()
    }

    /// A batch stops growing at about ``frameTarget``: what follows goes in the next frame.
    /// The peer then decodes a busy tick's messages in slices of that size, one per read, on
    /// its loop, rather than in one frame of tens of megabytes.
    private func writeFrameIfFull(_ batch: inout ByteBuffer) {
        guard batch.readableBytes >= Self.frameTarget, let context, context.channel.isActive else { return }
        writeFrame(batch, context: context)
        batch.clear()
    }

    static let frameTarget = 256 * 1_024

    /// Queues a forward, from its body encoded once for several links, on a link of wire
    /// version 2 (which has no sessions: what it can't take is lost).
    ///
    /// - Returns: `false` when the link's unsent bytes are over the limit and the message
    ///   was dropped.
    func sendForward(body: ByteBuffer, limit: Int) -> Bool {
        guard let channel = context?.channel else { return false }
        if !channel.isWritable {
            // Only once past the high-water mark is the channel's own count worth asking for.
            let unsent = (try? channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
            if unsent + bulkBatch.readableBytes + body.readableBytes > limit { return false }
        }
        writeFrameIfFull(&bulkBatch)
        LinkMessage.writeForward(body: body, into: &bulkBatch)
        scheduleFlush()
        return true
    }

    /// Bytes of numbered entries one pump queues per tick, at most: a session that resumes
    /// with megabytes held goes out in slices, and each slice's writes reach the channel (and
    /// its writability) before the next. TLS holds writes until the flush, so the channel
    /// alone would not stop a pump in time.
    static let pumpBudget = 1_048_576

    /// Whether a pump may queue another entry this tick; when not, the link asks for the next
    /// pump once this tick's writes are out (``LinkHandlerEvents/linkReadyForMore(_:)``).
    func roomForSequenced() -> Bool {
        guard sequencedSinceFlush < Self.pumpBudget else {
            pumpWaiting = true
            return false
        }
        return true
    }

    /// Queues numbered entry `seq` of the peer's session.
    func sendSequenced(_ seq: UInt64, _ entry: PeerOutbox.Entry) {
        writeFrameIfFull(&bulkBatch)
        let before = bulkBatch.writerIndex
        switch entry {
        case .forward(let body):
            LinkMessage.writeSequenced(seq: seq, handoff: false, body: body, into: &bulkBatch)
        case .handoff(_, let body):
            LinkMessage.writeSequenced(seq: seq, handoff: true, body: body, into: &bulkBatch)
        case .gap(let gap):
            LinkMessage.gap(gap).encode(into: &bulkBatch, version: wireVersion ?? handshake.versions.upperBound)
        }
        sequencedSinceFlush += bulkBatch.writerIndex - before
        scheduleFlush()
    }

    private func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { loopBound.value.flushBatches() }
    }

    /// Writes what this tick queued: control first, then bulk.
    func flushBatches() {
        flushScheduled = false
        guard let context, context.channel.isActive else {
            controlBatch.clear()
            bulkBatch.clear()
            return
        }
        var wrote = false
        for lane in 0..<2 {
            let batch = lane == 0 ? controlBatch : bulkBatch
            guard batch.readableBytes > 0 else { continue }
            writeFrame(batch, context: context)
            wrote = true
        }
        controlBatch.clear()
        bulkBatch.clear()
        sequencedSinceFlush = 0
        if wrote {
            lastSent = .now()
            context.flush()
        }
        if pumpWaiting, context.channel.isWritable {
            pumpWaiting = false
            events.linkReadyForMore(self)
        }
    }

    /// Writes one frame carrying `batch`, without flushing.
    private func writeFrame(_ batch: ByteBuffer, context: ChannelHandlerContext) {
        var frame = context.channel.allocator.buffer(capacity: batch.readableBytes + 9)
        let sizes = LinkFrame.encode(batch, compressionThreshold: compressionThreshold, into: &frame)
        counters.framesSent += 1
        counters.rawBytesSent += sizes.raw
        counters.wireBytesSent += sizes.wire
        metrics.linkBytesSent(raw: sizes.raw, wire: sizes.wire)
        context.write(wrapOutboundOut(frame), promise: nil)
    }

    func close() {
        flushBatches()
        context?.close(promise: nil)
    }
}

/// The limits a ``LinkChannelHandler`` works to, from ``ClusterSettings`` (see there for why
/// each is what it is by default).
struct LinkHandlerConfiguration: Sendable {
    /// The largest frame accepted before the peer proved the cluster secret. A stranger must
    /// not make the node buffer megabytes.
    var handshakeFrameSize: Int
    /// The largest frame accepted after.
    var maxFrameSize: Int
    /// How long the handshake may take before the link is closed.
    var handshakeTimeout: TimeAmount
    /// Batches smaller than this are sent uncompressed.
    var compressionThreshold: Int
    /// Whether a `NIOSSLHandler` ahead of the link's handler holds a verified peer
    /// certificate that must name the node id the peer claims.
    var checksPeerCertificate: Bool
}

extension LinkHandlerConfiguration {
    init(_ settings: ClusterSettings) {
        self.init(
            handshakeFrameSize: settings.handshakeFrameSize,
            maxFrameSize: settings.maxLinkFrameSize,
            handshakeTimeout: settings.handshakeTimeout,
            compressionThreshold: settings.compressionThreshold,
            checksPeerCertificate: settings.tls != nil
        )
    }
}

/// Bytes and frames through one link, raw (before compression) and on the wire.
public struct LinkCounters: Sendable, Equatable {
    public var framesSent = 0
    public var framesReceived = 0
    public var rawBytesSent = 0
    public var wireBytesSent = 0
    public var rawBytesReceived = 0
    public var wireBytesReceived = 0
}
