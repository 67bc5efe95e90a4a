import Gossip
import NIOCore
import NIOPosix
import StompRouting
import Synchronization
import Testing

/// The far end of a link played by the test over a plain socket, with the real handshake and
/// codec, so a shell can be sent what no shell would send.
struct ScriptedLinkPeer {
    struct Closed: Error {}

    private var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var unread = ByteBuffer()
    private let decoder = LinkFrame.Decoder()
    private var pending: [LinkMessage] = []

    init(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    static func connect(to port: Int) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port) {
            channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel(wrappingChannelSynchronously: channel) }
        }
    }

    /// Sends `messages` in one frame.
    func send(_ messages: [LinkMessage]) async throws {
        var payload = ByteBuffer()
        for message in messages { message.encode(into: &payload) }
        try await send(payload: payload)
    }

    /// Sends encoded messages, however they were made, in one frame.
    func send(payload: ByteBuffer) async throws {
        var frame = ByteBuffer()
        _ = LinkFrame.encode(payload, compressionThreshold: .max, into: &frame)
        try await outbound.write(frame)
    }

    /// The next message from the shell.
    ///
    /// - Throws: ``Closed`` when the shell closed the link.
    mutating func next() async throws -> LinkMessage {
        while pending.isEmpty {
            if var payload = try decoder.nextPayload(from: &unread)?.payload {
                try LinkMessage.decodeAll(&payload, into: &pending)
                continue
            }
            guard var bytes = try await inbound.next() else { throw Closed() }
            unread.writeBuffer(&bytes)
        }
        return pending.removeFirst()
    }

    /// Runs the dialler's side of the handshake as node `name` of the loopback tests' cluster.
    ///
    /// - Returns: the wire version the link settled on.
    mutating func handshake(
        as name: String,
        versions: ClosedRange<UInt16> = LinkHandshake.supportedVersions
    ) async throws -> UInt16 {
        let identity = LinkHandshake.Identity(
            clusterName: "loop",
            node: NodeID(name),
            epoch: 1,
            address: "127.0.0.1:1",
            secret: LinkLoopbackTests.secret
        )
        var handshake = LinkHandshake(
            identity: identity,
            nonce: Array(repeating: 7, count: 32),
            role: .dialer,
            versions: versions
        )
        try await send([try #require(handshake.opening)])
        while true {
            switch handshake.received(try await next()) {
            case .send(let reply):
                try await send([reply])
            case .wait:
                continue
            case .established(_, let version):
                return version
            case let step:
                Issue.record("the handshake did not complete: \(step)")
                throw Closed()
            }
        }
    }
}

@Suite("A link's peer played by the test", .serialized)
struct LinkScriptedPeerTests {
    /// A peer of the previous version (offering 2...2) and a shell of this build (2...3): the
    /// link comes up at 2, and the shell's status says so.
    @Test func aShellLinkedToAnOlderPeerRecordsTheVersionBothSpeak() async throws {
        let log = LinkLoopbackTests.LogCapture()
        let shell = LinkLoopbackTests.shell("a", log: log)
        let port = try await shell.start()
        try await ScriptedLinkPeer.connect(to: port).executeThenClose { inbound, outbound in
            var peer = ScriptedLinkPeer(inbound, outbound)
            let version = try await peer.handshake(as: "p", versions: 2...2)
            #expect(version == 2)
            // The shell registered the link before it sent the proof the peer just read.
            let links = await shell.status()?.links
            #expect(links?.map(\.peer) == [NodeID("p")] && links?.first?.wireVersion == 2, "\(log.all)")
            #expect(log.all.contains { $0.contains("link up") && $0.contains("link.wire_version=2") }, "\(log.all)")
        }
        await shell.leave()
    }

    /// A message whose destination is no `/topic/` or `/queue/` one can only come from a
    /// broken or foreign peer; the shell drops that one message (no delivery, no ack) and
    /// keeps the link, so the peer's other traffic still flows.
    @Test func aForwardOrHandOffWhoseDestinationDoesNotParseIsSkippedAndTheLinkStays() async throws {
        let log = LinkLoopbackTests.LogCapture()
        let routed = Mutex<[String]>([])
        let router = ClosureRouter { operation in
            switch operation {
            case .deliverForwarded(let message):
                routed.withLock { $0.append("forward \(message.destination)") }
            case .acceptHandoff(let queue, let message, _, let hops):
                routed.withLock { $0.append("handoff \(queue) \(message.destination) hops \(hops)") }
            default:
                break
            }
        }
        let shell = LinkLoopbackTests.shell("a", log: log, router: router)
        let port = try await shell.start()
        try await ScriptedLinkPeer.connect(to: port).executeThenClose { inbound, outbound in
            var peer = ScriptedLinkPeer(inbound, outbound)
            _ = try await peer.handshake(as: "p")
            var payload = ForeignMessage.forward(destination: "prices.eur")
            payload.writeImmutableBuffer(ForeignMessage.handoff(id: 1, queue: "jobs", destination: "/jobs"))
            payload.writeImmutableBuffer(ForeignMessage.forward(destination: "/topic/prices.eur"))
            payload.writeImmutableBuffer(ForeignMessage.handoff(id: 2, queue: "jobs", destination: "/queue/jobs"))
            try await peer.send(payload: payload)
            // Acks go out in the order the hand-offs were read, each after its message was
            // routed: the first ack seen is the only one there is, and all routing is done.
            var acked: [UInt64] = []
            while acked.isEmpty {
                if case .handoffAck(let id) = try await peer.next() { acked.append(id) }
            }
            #expect(acked == [2])
            #expect(await shell.status()?.links.map(\.peer) == [NodeID("p")])
        }
        #expect(routed.withLock { $0 } == ["forward /topic/prices.eur", "handoff jobs /queue/jobs hops 1"])
        #expect(!log.all.contains { $0.contains("link failed") || $0.contains("link refused") }, "\(log.all)")
        await shell.leave()
        withExtendedLifetime(router) {}
    }
}

/// Forwards and hand-offs as a broken or foreign peer may write them: with any string as the
/// destination, which a ``LinkMessage`` can't hold. The layout is WIRE-FORMAT.md's.
enum ForeignMessage {
    static func forward(destination: String) -> ByteBuffer {
        message(type: 30) { envelope(destination, into: &$0) }
    }

    static func handoff(id: UInt64, queue: String, destination: String) -> ByteBuffer {
        message(type: 31) { body in
            body.writeInteger(id)
            string(queue, into: &body)
            body.writeInteger(UInt8(0))  // redelivered
            body.writeInteger(UInt8(0))  // hops
            envelope(destination, into: &body)
        }
    }

    /// `[u8 type][u32 length][body]`.
    private static func message(type: UInt8, _ write: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var body = ByteBuffer()
        write(&body)
        var message = ByteBuffer()
        message.writeInteger(type)
        message.writeInteger(UInt32(body.readableBytes))
        message.writeImmutableBuffer(body)
        return message
    }

    /// Destination, message-id, no headers, an empty body.
    private static func envelope(_ destination: String, into body: inout ByteBuffer) {
        string(destination, into: &body)
        string("m-" + destination, into: &body)
        body.writeInteger(UInt32(0))
        body.writeInteger(UInt32(0))
    }

    private static func string(_ value: String, into body: inout ByteBuffer) {
        body.writeInteger(UInt32(value.utf8.count))
        body.writeString(value)
    }
}
