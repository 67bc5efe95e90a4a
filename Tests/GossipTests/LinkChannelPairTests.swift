import MetricsTestKit
import NIOCore
import NIOEmbedded
import StompRouting
import Testing

@testable import Gossip

/// What a link handler reported, in order: stands in for the cluster shell.
final class RecordingLinkEvents: LinkHandlerEvents {
    enum Event: Equatable {
        case opened
        case established(LinkHello, version: UInt16)
        case received(LinkMessage)
        case closed
        case failed(String)
        case reachedItself
        case writable(Bool)
        case readyForMore
    }

    private(set) var all: [Event] = []

    var received: [LinkMessage] {
        all.compactMap { event in
            guard case .received(let message) = event else { return nil }
            return message
        }
    }

    var wasEstablished: Bool {
        all.contains { event in
            guard case .established = event else { return false }
            return true
        }
    }

    func linkOpened(_ link: LinkChannelHandler) { all.append(.opened) }

    func linkEstablished(_ link: LinkChannelHandler, peer: LinkHello, version: UInt16) {
        all.append(.established(peer, version: version))
    }

    func received(_ message: LinkMessage, on link: LinkChannelHandler) { all.append(.received(message)) }
    func linkClosed(_ link: LinkChannelHandler) { all.append(.closed) }
    func linkFailed(_ link: LinkChannelHandler, reason: String) { all.append(.failed(reason)) }
    func linkReachedItself(_ link: LinkChannelHandler) { all.append(.reachedItself) }
    func linkWritabilityChanged(_ link: LinkChannelHandler, writable: Bool) { all.append(.writable(writable)) }
    func linkReadyForMore(_ link: LinkChannelHandler) { all.append(.readyForMore) }
}

/// One end of an in-memory link: a handler in an `EmbeddedChannel`, what it reported, and its
/// own metrics (the process-wide metrics factory can't be swapped per test).
final class LinkEnd {
    static let secret = Array("pair-test-secret-0123456789".utf8)

    /// Limits small enough that a test can cross them: an established frame may be 64 KiB.
    static let configuration = LinkHandlerConfiguration(
        handshakeFrameSize: 16 * 1_024,
        maxFrameSize: 64 * 1_024,
        handshakeTimeout: .seconds(5),
        compressionThreshold: 512,
        checksPeerCertificate: false
    )

    let handler: LinkChannelHandler
    let channel: EmbeddedChannel
    let events: RecordingLinkEvents
    let metrics: TestMetrics
    /// How this end introduces itself: what the other end should record.
    let hello: LinkHello

    init(
        _ role: LinkHandshake.Role,
        node: String,
        secret: [UInt8] = LinkEnd.secret,
        versions: ClosedRange<UInt16> = LinkHandshake.supportedVersions,
        configuration: LinkHandlerConfiguration = LinkEnd.configuration,
        loop: EmbeddedEventLoop
    ) throws {
        let identity = LinkHandshake.Identity(
            clusterName: "pair",
            node: NodeID(node),
            epoch: role == .dialer ? 11 : 22,
            address: role == .dialer ? "10.0.0.1:7946" : "10.0.0.2:7946",
            secret: secret
        )
        // Fixed nonces keep every run's bytes the same; the two ends' differ, as real ones do.
        let handshake = LinkHandshake(
            identity: identity,
            nonce: Array(repeating: role.rawValue, count: 32),
            role: role,
            versions: versions
        )
        guard case .hello(let hello) = handshake.hello else { throw Unexpected(handshake.hello) }
        let events = RecordingLinkEvents()
        let metrics = TestMetrics()
        self.hello = hello
        self.events = events
        self.metrics = metrics
        handler = LinkChannelHandler(
            events: events,
            handshake: handshake,
            isOutbound: role == .dialer,
            dialedAddress: role == .dialer ? "10.0.0.2:7946" : nil,
            configuration: configuration,
            metrics: ClusterMetrics(factory: metrics),
            flowControl: nil
        )
        channel = EmbeddedChannel(handler: handler, loop: loop)
    }

    /// Makes the channel active, as a connected socket is: the handler opens the link then.
    func connect() throws {
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7946)).wait()
    }

    func counter(_ label: String, _ dimensions: [(String, String)] = []) throws -> Int64 {
        try metrics.expectCounter(label, dimensions).totalValue
    }

    struct Unexpected: Error {
        init(_ value: Any) { description = "\(value)" }
        let description: String
    }
}

/// A dialler and a listener on one `EmbeddedEventLoop`, wired to each other by ``pump(_:)``.
struct LinkPair {
    /// How the bytes one end wrote reach the other: TCP keeps their order, not their grouping.
    enum Delivery: CaseIterable, Sendable {
        case asWritten
        case byteByByte
        case coalesced
    }

    let loop = EmbeddedEventLoop()
    let dialer: LinkEnd
    let listener: LinkEnd

    init(
        dialerNode: String = "a",
        listenerNode: String = "b",
        dialerSecret: [UInt8] = LinkEnd.secret,
        dialerVersions: ClosedRange<UInt16> = LinkHandshake.supportedVersions,
        listenerVersions: ClosedRange<UInt16> = LinkHandshake.supportedVersions,
        dialerConfiguration: LinkHandlerConfiguration = LinkEnd.configuration,
        listenerConfiguration: LinkHandlerConfiguration = LinkEnd.configuration
    ) throws {
        dialer = try LinkEnd(
            .dialer,
            node: dialerNode,
            secret: dialerSecret,
            versions: dialerVersions,
            configuration: dialerConfiguration,
            loop: loop
        )
        listener = try LinkEnd(
            .listener,
            node: listenerNode,
            versions: listenerVersions,
            configuration: listenerConfiguration,
            loop: loop
        )
        try listener.connect()
        try dialer.connect()
    }

    /// Runs the loop (each end flushes its batches at the end of a tick) and carries what each
    /// end wrote to the other, until a round carries nothing.
    ///
    /// A close is not carried: a closed end's last bytes still arrive, but the other end sees
    /// no end of stream, so every close a test sees is one that end decided on.
    func pump(_ delivery: Delivery = .asWritten) throws {
        for _ in 0..<1_000 {
            loop.run()
            let fromDialer = try carry(from: dialer, to: listener, delivery)
            let fromListener = try carry(from: listener, to: dialer, delivery)
            if !fromDialer && !fromListener { return }
        }
        Issue.record("the link was still talking after 1000 rounds")
    }

    /// - Returns: whether `from` had written anything.
    private func carry(from: LinkEnd, to: LinkEnd, _ delivery: Delivery) throws -> Bool {
        var written: [ByteBuffer] = []
        while let bytes = try from.channel.readOutbound(as: ByteBuffer.self) { written.append(bytes) }
        guard !written.isEmpty else { return false }
        switch delivery {
        case .asWritten:
            for bytes in written where to.channel.isActive { try to.channel.writeInbound(bytes) }
        case .byteByByte:
            for byte in written.flatMap({ $0.readableBytesView }) where to.channel.isActive {
                try to.channel.writeInbound(ByteBuffer(bytes: [byte]))
            }
        case .coalesced:
            var all = ByteBuffer()
            for var bytes in written { all.writeBuffer(&bytes) }
            if to.channel.isActive { try to.channel.writeInbound(all) }
        }
        return true
    }

    /// Closes what is still open and lets the loop run the handlers' removal, so nothing of a
    /// test outlives it.
    func finish() {
        for end in [dialer, listener] { _ = try? end.channel.finish(acceptAlreadyClosed: true) }
        loop.run()
    }
}

@Suite("A pair of link handlers in memory")
struct LinkChannelPairTests {
    static func envelope(_ topic: String, id: String, body: [UInt8] = []) -> MessageEnvelope {
        MessageEnvelope(destination: .topic(topic), messageID: id, headers: [:], body: ByteBuffer(bytes: body))
    }

    @Test(arguments: LinkPair.Delivery.allCases)
    func theHandshakeCompletesBothWaysAndEachEndRecordsThePeersHello(delivery: LinkPair.Delivery) throws {
        let pair = try LinkPair()
        defer { pair.finish() }
        try pair.pump(delivery)

        let version = LinkHandshake.supportedVersions.upperBound
        #expect(pair.dialer.events.all == [.opened, .established(pair.listener.hello, version: version)])
        #expect(pair.listener.events.all == [.opened, .established(pair.dialer.hello, version: version)])
        for (end, other) in [(pair.dialer, pair.listener), (pair.listener, pair.dialer)] {
            #expect(end.handler.isEstablished)
            #expect(end.handler.peer == other.hello)
            #expect(end.handler.wireVersion == version)
            #expect(end.channel.isActive)
            #expect(
                try end.counter("cluster_link_bytes_wire_total", [("direction", "out")])
                    == Int64(end.handler.counters.wireBytesSent)
            )
        }

        // Established both ways: each end now hands the other's messages on.
        pair.dialer.handler.send(.nodeInfo(adminAddress: "10.0.0.1:8080"))
        pair.listener.handler.send(.heartbeat)
        try pair.pump(delivery)
        #expect(pair.listener.events.received == [.nodeInfo(adminAddress: "10.0.0.1:8080")])
        #expect(pair.dialer.events.received == [.heartbeat])
    }

    struct VersionCase: Sendable, CustomTestStringConvertible {
        var dialer: ClosedRange<UInt16>
        var listener: ClosedRange<UInt16>
        var agreed: UInt16

        var testDescription: String { "dialler \(dialer), listener \(listener): \(agreed)" }
    }

    /// A node of the next version (offering 2...3) linked to one of this build (2...2), either
    /// way round, and two of the next version.
    @Test(arguments: [
        VersionCase(dialer: 2...3, listener: 2...2, agreed: 2),
        VersionCase(dialer: 2...2, listener: 2...3, agreed: 2),
        VersionCase(dialer: 2...3, listener: 2...3, agreed: 3),
    ])
    func bothEndsRecordTheHighestVersionBothSpeak(_ versions: VersionCase) throws {
        let pair = try LinkPair(dialerVersions: versions.dialer, listenerVersions: versions.listener)
        defer { pair.finish() }
        try pair.pump()

        #expect(pair.dialer.events.all == [.opened, .established(pair.listener.hello, version: versions.agreed)])
        #expect(pair.listener.events.all == [.opened, .established(pair.dialer.hello, version: versions.agreed)])
        #expect(pair.dialer.handler.wireVersion == versions.agreed)
        #expect(pair.listener.handler.wireVersion == versions.agreed)
    }

    /// Membership and interest must not wait behind forwards queued in the same tick, however
    /// the forwards were queued.
    @Test func controlMessagesOfATickAreWrittenAheadOfItsForwards() throws {
        let pair = try LinkPair()
        defer { pair.finish() }
        try pair.pump()
        let link = pair.dialer.handler
        let framesBefore = link.counters.framesSent

        link.send(.forward(Self.envelope("a", id: "1")))
        link.send(.ping(sequence: 1, gossip: []))
        #expect(link.sendForward(body: LinkMessage.forwardBody(Self.envelope("b", id: "2")), limit: .max))
        link.send(.interestAck(epoch: 1, version: 7))
        link.send(.forward(Self.envelope("c", id: "3")))
        try pair.pump()

        #expect(
            pair.listener.events.received == [
                .ping(sequence: 1, gossip: []),
                .interestAck(epoch: 1, version: 7),
                .forward(Self.envelope("a", id: "1")),
                .forward(Self.envelope("b", id: "2")),
                .forward(Self.envelope("c", id: "3")),
            ]
        )
        // One frame per lane for the whole tick.
        #expect(link.counters.framesSent - framesBefore == 2)
    }

    /// Anyone can open a connection to the link port and say nothing.
    @Test func aListenerThatNeverHearsAHelloIsClosedAtTheDeadlineAndCounted() throws {
        let loop = EmbeddedEventLoop()
        let listener = try LinkEnd(.listener, node: "b", loop: loop)
        defer { _ = try? listener.channel.finish(acceptAlreadyClosed: true) }
        try listener.connect()
        let timeout = LinkEnd.configuration.handshakeTimeout

        loop.advanceTime(by: timeout - .nanoseconds(1))
        #expect(listener.channel.isActive)
        #expect(try listener.counter("cluster_link_handshake_timeouts_total") == 0)

        loop.advanceTime(by: .nanoseconds(1))
        #expect(!listener.channel.isActive)
        #expect(try listener.counter("cluster_link_handshake_timeouts_total") == 1)
        #expect(listener.events.all == [.opened, .closed])
    }

    @Test func anEstablishedLinkOutlivesTheHandshakeDeadline() throws {
        let pair = try LinkPair()
        defer { pair.finish() }
        try pair.pump()

        pair.loop.advanceTime(by: LinkEnd.configuration.handshakeTimeout * 10)
        for end in [pair.dialer, pair.listener] {
            #expect(end.channel.isActive)
            #expect(try end.counter("cluster_link_handshake_timeouts_total") == 0)
            #expect(!end.events.all.contains(.closed))
        }
    }

    struct MalformedCase: Sendable, CustomTestStringConvertible {
        var testDescription: String
        /// What the peer writes: `[u32 length][u8 flags][payload]` frames (WIRE-FORMAT.md).
        var bytes: [UInt8]
        /// The decoder's complaint, before the handler quotes it.
        var error: String
    }

    @Test(arguments: [
        MalformedCase(
            testDescription: "unknown frame flags",
            bytes: [0, 0, 0, 2, 0x80, 0],
            error: "unknown frame flags 128"
        ),
        MalformedCase(
            testDescription: "frame over the established bound",
            bytes: [0, 0x10, 0, 0, 0],
            error: "frame length 1048576 out of bounds"
        ),
        MalformedCase(
            testDescription: "message longer than its frame",
            bytes: [0, 0, 0, 6, 0, 30, 0, 0, 0, 100],
            error: "truncated message"
        ),
    ])
    func malformedInputOnAnEstablishedLinkFailsItAndClosesIt(_ input: MalformedCase) throws {
        let pair = try LinkPair()
        defer { pair.finish() }
        try pair.pump()

        try pair.dialer.channel.writeAndFlush(ByteBuffer(bytes: input.bytes)).wait()
        try pair.pump()

        let reason = "malformed input: \(LinkHandshake.quoted(input.error))"
        #expect(Array(pair.listener.events.all.suffix(2)) == [.failed(reason), .closed])
        #expect(!pair.listener.channel.isActive)
    }

    /// Before the peer proved the secret a frame may be 16 KiB; after, the established bound.
    @Test func theFrameBoundRisesOnceThePeerProvedTheSecret() throws {
        var uncompressed = LinkEnd.configuration
        uncompressed.compressionThreshold = .max
        let handshakeFrameSize = uncompressed.handshakeFrameSize
        let body = [UInt8](repeating: 0x2A, count: handshakeFrameSize + 1_024)

        let loop = EmbeddedEventLoop()
        let stranger = try LinkEnd(.listener, node: "b", configuration: uncompressed, loop: loop)
        defer { _ = try? stranger.channel.finish(acceptAlreadyClosed: true) }
        try stranger.connect()
        var tooLarge = ByteBuffer()
        tooLarge.writeInteger(UInt32(handshakeFrameSize + 1))
        try stranger.channel.writeInbound(tooLarge)
        let reason = "malformed input: \(LinkHandshake.quoted("frame length \(handshakeFrameSize + 1) out of bounds"))"
        #expect(stranger.events.all == [.opened, .failed(reason), .closed])

        let pair = try LinkPair(dialerConfiguration: uncompressed, listenerConfiguration: uncompressed)
        defer { pair.finish() }
        try pair.pump()
        pair.dialer.handler.send(.forward(Self.envelope("big", id: "1", body: body)))
        try pair.pump()
        #expect(pair.listener.events.received == [.forward(Self.envelope("big", id: "1", body: body))])
        #expect(pair.listener.handler.counters.wireBytesReceived > handshakeFrameSize)
        #expect(pair.listener.channel.isActive)
    }

    @Test func aWrongSecretIsRefusedAndBothEndsClose() throws {
        let pair = try LinkPair(dialerSecret: Array("another-secret-0123456789".utf8))
        defer { pair.finish() }
        try pair.pump()

        for end in [pair.dialer, pair.listener] {
            #expect(!end.channel.isActive)
            #expect(!end.handler.isEstablished)
            #expect(!end.events.wasEstablished)
            #expect(end.events.all.first == .opened && end.events.all.last == .closed)
        }
        // The listener's log says why; the dialler is told only the generic refusal.
        guard case .failed(let listenerReason) = pair.listener.events.all.dropFirst().first else {
            Issue.record("the listener reported no failure: \(pair.listener.events.all)")
            return
        }
        #expect(listenerReason.contains("the dialler does not know the cluster secret"))
        let told = "refused by peer: \(LinkHandshake.quoted(LinkHandshake.genericRefusal))"
        #expect(pair.dialer.events.all == [.opened, .failed(told), .closed])
    }

    /// With `checksPeerCertificate`, a link without a TLS handler has no certificate to check
    /// the claimed node id against: refused, as a certificate naming another node would be.
    @Test func aListenerThatChecksCertificatesRefusesALinkWithoutOne() throws {
        var checking = LinkEnd.configuration
        checking.checksPeerCertificate = true
        let pair = try LinkPair(listenerConfiguration: checking)
        defer { pair.finish() }
        try pair.pump()

        let reason = "certificate does not name node \(LinkHandshake.quoted("a")) (it has no DNS names)"
        #expect(pair.listener.events.all == [.opened, .failed(reason), .closed])
        let told = "refused by peer: \(LinkHandshake.quoted(LinkHandshake.genericRefusal))"
        #expect(pair.dialer.events.all == [.opened, .failed(told), .closed])
    }

    /// A node that lists itself as a seed: both ends see it is one node, and close quietly.
    @Test func aLinkToItselfIsReportedAtBothEndsAndClosed() throws {
        let pair = try LinkPair(dialerNode: "a", listenerNode: "a")
        defer { pair.finish() }
        try pair.pump()

        for end in [pair.dialer, pair.listener] {
            #expect(end.events.all == [.opened, .reachedItself, .closed])
            #expect(!end.channel.isActive)
        }
    }
}
