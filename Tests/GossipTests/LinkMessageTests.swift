import Gossip
import NIOCore
import StompRouting
import Testing

@Suite("Link messages: wire encoding")
struct LinkMessageTests {
    /// A hello as a real handshake sends it (``LinkHello`` has no public initializer).
    static func sampleHello() -> LinkHello {
        let identity = LinkHandshake.Identity(
            clusterName: "prod-eu",
            node: NodeID("node-a"),
            epoch: 1_700_000_000_123,
            address: "10.0.0.1:7946",
            secret: Array("s3cret".utf8)
        )
        guard
            case .hello(var hello) = LinkHandshake(identity: identity, nonce: (0..<32).map { UInt8($0) }, role: .dialer)
                .hello
        else {
            fatalError("a handshake's hello is a .hello")
        }
        hello.capabilities = 0xDEAD_BEEF_0000_0001
        return hello
    }

    static let updates = [
        MemberUpdate(node: NodeID("node-a"), epoch: 1, address: "10.0.0.1:7946", incarnation: 0, status: .alive),
        MemberUpdate(node: NodeID("node-b"), epoch: 2, address: "10.0.0.2:7946", incarnation: 7, status: .suspect),
        MemberUpdate(node: NodeID("node-c"), epoch: 3, address: "[::1]:7946", incarnation: .max, status: .dead),
        MemberUpdate(node: NodeID("nœud-ü"), epoch: .max, address: "", incarnation: 1, status: .left),
    ]

    static let body = MessageEnvelope(
        destination: .topic("prices.eur"),
        messageID: "node-a-42",
        headers: StompHeaders([("content-type", "application/json"), ("x-empty", ""), ("x-dup", "1"), ("x-dup", "2")]),
        body: ByteBuffer(bytes: [0, 1, 2, 0xFF, 0xFE])
    )

    /// One of every case, with non-trivial field values.
    static var everyCase: [LinkMessage] {
        [
            .hello(sampleHello()),
            .challenge(minVersion: 2, maxVersion: 3, nonce: (0..<32).map { UInt8($0 * 3) }),
            .challenge(minVersion: 0, maxVersion: .max, nonce: []),
            .proof((0..<32).map { UInt8(255 - $0) }),
            .refuse("cluster name 'x' does not match 'y'"),
            .heartbeat,
            .nodeInfo(adminAddress: "n1.example:8222"),
            .nodeInfo(adminAddress: ""),
            .adminRequest(action: "drain"),
            .ping(sequence: 1, gossip: []),
            .ping(sequence: .max, gossip: updates),
            .ack(sequence: 99, gossip: updates),
            .pingRequest(sequence: 12, target: NodeID("node-c"), gossip: Array(updates.prefix(2))),
            .members(updates),
            .members([]),
            .interestDelta(
                epoch: 5,
                version: 6,
                changes: [(.topic("a.*.c"), 1), (.queue("jobs"), 0), (.topic("a.#"), 0)]
            ),
            .interestSnapshot(epoch: 5, version: 6, entries: [(.queue("jobs"), 1_000), (.topic("#"), 1)]),
            // Another exchange's topics travel as topics, its scope word first.
            .interestSnapshot(epoch: 5, version: 7, entries: [(try! Destination(parsing: "/exchange/logs.v2/a.#"), 1)]),
            .interestSnapshot(epoch: 1, version: 0, entries: []),
            .interestAck(epoch: 5, version: 6),
            .interestDigest(epoch: 1, version: 2, yourEpoch: 3, yourVersion: 4),
            .forward(body),
            .forward(MessageEnvelope(destination: .topic("x"), messageID: "", headers: [:], body: ByteBuffer())),
            .forward(MessageEnvelope(destination: .queue("q"), messageID: "", headers: [:], body: ByteBuffer())),
            .forward(
                MessageEnvelope(
                    destination: try! Destination(parsing: "/exchange/logs.v2/a.b"),
                    messageID: "m",
                    headers: [:],
                    body: ByteBuffer()
                )
            ),
            .handoff(id: 77, queue: "jobs", message: body, redelivered: true, hops: 2),
            .handoff(id: 0, queue: "", message: body, redelivered: false, hops: 0),
            .handoffAck(id: .max),
            .sequenced(seq: 5, .forward(body)),
            .sequenced(seq: .max, .handoff(id: 3, queue: "jobs", message: body, redelivered: true, hops: 1)),
            .resume(senderEpoch: 1, receiverEpoch: 2, received: 0),
            .received(senderEpoch: .max, receiverEpoch: 7, seq: 1_000_000),
            .gap(SequenceGap(first: 2, last: 9, lost: 7, reason: .grace, keys: ["prices.eur", "nœud.ü"])),
            .gap(SequenceGap(first: 4, last: 4, lost: .max, reason: .sessionUnknown, keys: nil)),
            .replication(ByteBuffer(bytes: [1, 0, 0, 0, 3, 0xff])),
            .replication(ByteBuffer()),
        ]
    }

    private func encode(_ message: LinkMessage) -> ByteBuffer {
        var buffer = ByteBuffer()
        message.encode(into: &buffer)
        return buffer
    }

    private func decode(_ buffer: ByteBuffer) throws -> [LinkMessage] {
        var payload = buffer
        var messages: [LinkMessage] = []
        try LinkMessage.decodeAll(&payload, into: &messages)
        #expect(payload.readableBytes == 0)
        return messages
    }

    @Test func everyCaseRoundTrips() throws {
        for message in Self.everyCase {
            let decoded = try decode(encode(message))
            #expect(decoded == [message], "\(message)")
            // Equality is by encoded bytes: re-encoding the decoded message gives the same bytes.
            #expect(decoded.map(encode) == [encode(message)])
        }
    }

    @Test func aBatchOfEveryCaseRoundTripsInOrder() throws {
        var payload = ByteBuffer()
        for message in Self.everyCase { message.encode(into: &payload) }
        #expect(try decode(payload) == Self.everyCase)
    }

    @Test func decodedFieldsMatch() throws {
        let hello = Self.sampleHello()
        #expect(try decode(encode(.hello(hello))) == [.hello(hello)])
        guard case .hello(let decodedHello) = try decode(encode(.hello(hello))).first else {
            Issue.record("not a hello")
            return
        }
        #expect(decodedHello == hello)
        #expect(decodedHello.minVersion == 2 && decodedHello.maxVersion == LinkHandshake.supportedVersions.upperBound)
        #expect(decodedHello.capabilities == 0xDEAD_BEEF_0000_0001)
        #expect(decodedHello.node == NodeID("node-a") && decodedHello.epoch == 1_700_000_000_123)

        guard
            case .challenge(let minVersion, let maxVersion, let nonce) = try decode(
                encode(.challenge(minVersion: 2, maxVersion: 5, nonce: [9, 8, 7]))
            ).first
        else {
            Issue.record("not a challenge")
            return
        }
        #expect(minVersion == 2 && maxVersion == 5 && nonce == [9, 8, 7])
        // The wire layout: type 7, body length, two versions, then the nonce with its length.
        #expect(
            Array(encode(.challenge(minVersion: 2, maxVersion: 5, nonce: [9])).readableBytesView) == [
                7, 0, 0, 0, 9, 0, 2, 0, 5, 0, 0, 0, 1, 9,
            ]
        )

        guard
            case .pingRequest(let sequence, let target, let gossip) = try decode(
                encode(.pingRequest(sequence: 12, target: NodeID("t"), gossip: Self.updates))
            ).first
        else {
            Issue.record("not a pingRequest")
            return
        }
        #expect(sequence == 12 && target == NodeID("t") && gossip == Self.updates)

        guard
            case .interestDelta(let epoch, let version, let changes) = try decode(
                encode(.interestDelta(epoch: 9, version: 10, changes: [(.topic("a.b"), 1), (.queue("q"), 3)]))
            ).first
        else {
            Issue.record("not an interestDelta")
            return
        }
        #expect(epoch == 9 && version == 10)
        #expect(changes.map(\.0) == [.topic("a.b"), .queue("q")] && changes.map(\.1) == [1, 3])

        guard
            case .handoff(let id, let queue, let message, let redelivered, let hops) = try decode(
                encode(.handoff(id: 5, queue: "jobs", message: Self.body, redelivered: true, hops: 3))
            ).first
        else {
            Issue.record("not a handoff")
            return
        }
        #expect(id == 5 && queue == "jobs" && message == Self.body && redelivered && hops == 3)
        #expect(message.headers.map(\.name) == ["content-type", "x-empty", "x-dup", "x-dup"])
    }

    /// Only a broken or foreign peer names a destination that is no `/topic/` or `/queue/`
    /// one: that message is skipped, and the messages around it are read as usual.
    @Test func aMessageWhoseDestinationDoesNotParseIsSkipped() throws {
        var payload = encode(.forward(Self.body))
        payload.writeImmutableBuffer(ForeignMessage.forward(destination: "prices.eur"))
        payload.writeImmutableBuffer(ForeignMessage.handoff(id: 1, queue: "jobs", destination: "/exchange/x"))
        payload.writeImmutableBuffer(encode(.handoffAck(id: 1)))
        var decoded: [LinkMessage] = []
        try LinkMessage.decodeAll(&payload, into: &decoded)
        #expect(decoded == [.forward(Self.body), .handoffAck(id: 1)])
    }

    @Test func aGapThatMakesNoSenseThrows() {
        var backwards = encode(.gap(SequenceGap(first: 2, last: 9, lost: 7, reason: .grace, keys: [])))
        backwards.setInteger(UInt64(10), at: backwards.readerIndex + 5)
        #expect(throws: LinkWire.Malformed.self) { try decode(backwards) }
        var reason = encode(.gap(SequenceGap(first: 2, last: 9, lost: 7, reason: .grace, keys: [])))
        reason.setInteger(UInt8(99), at: reason.readerIndex + 5 + 8 + 8 + 4)
        #expect(throws: LinkWire.Malformed.self) { try decode(reason) }
    }

    @Test func differentMessagesAreNotEqual() {
        #expect(LinkMessage.ping(sequence: 1, gossip: []) != .ack(sequence: 1, gossip: []))
        #expect(LinkMessage.ping(sequence: 1, gossip: []) != .ping(sequence: 2, gossip: []))
        #expect(LinkMessage.members(Self.updates) != .members(Array(Self.updates.reversed())))
        #expect(
            LinkMessage.handoff(id: 1, queue: "q", message: Self.body, redelivered: true, hops: 1)
                != .handoff(id: 1, queue: "q", message: Self.body, redelivered: false, hops: 1)
        )
        #expect(
            LinkMessage.interestDelta(epoch: 1, version: 1, changes: [(.topic("a"), 1)])
                != .interestSnapshot(epoch: 1, version: 1, entries: [(.topic("a"), 1)])
        )
        #expect(
            LinkMessage.interestDelta(epoch: 1, version: 1, changes: [(.topic("a"), 1)])
                != .interestDelta(epoch: 1, version: 1, changes: [(.queue("a"), 1)])
        )
    }

    @Test func everyTruncatedPrefixThrows() {
        for message in Self.everyCase {
            let bytes = encode(message)
            for cut in 1..<bytes.readableBytes {
                let prefix = bytes.getSlice(at: bytes.readerIndex, length: cut)!
                #expect(throws: LinkWire.Malformed.self, "\(message) cut at \(cut)") { try decode(prefix) }
            }
        }
    }

    /// A message whose declared length is consistent but whose body lacks its last bytes.
    @Test func truncatedBodiesThrow() {
        // A replication message's body is opaque to the link: any length reads (the durable
        // queues check it).
        for message in Self.everyCase where message != .heartbeat {
            if case .replication = message { continue }
            let bytes = encode(message)
            let bodyLength = bytes.readableBytes - 5
            for missing in 1...bodyLength {
                var shortened = bytes.getSlice(at: bytes.readerIndex, length: bytes.readableBytes - missing)!
                shortened.setInteger(UInt32(bodyLength - missing), at: shortened.readerIndex + 1)
                #expect(throws: LinkWire.Malformed.self, "\(message) missing \(missing)") { try decode(shortened) }
            }
        }
    }

    @Test func invalidFieldValuesThrow() {
        // A member status that doesn't exist.
        var members = encode(.members([Self.updates[0]]))
        members.setInteger(UInt8(9), at: members.writerIndex - 1)
        #expect(throws: LinkWire.Malformed.self) { try decode(members) }

        // An interest kind that doesn't exist.
        var delta = encode(.interestDelta(epoch: 1, version: 1, changes: [(.topic("a"), 1)]))
        delta.setInteger(UInt8(7), at: delta.readerIndex + 5 + 8 + 8 + 4)
        #expect(throws: LinkWire.Malformed.self) { try decode(delta) }

        // A list count larger than the bytes that follow.
        var ping = ByteBuffer()
        ping.writeInteger(UInt8(10))
        ping.writeInteger(UInt32(12))
        ping.writeInteger(UInt64(1))
        ping.writeInteger(UInt32(1_000_000))
        #expect(throws: LinkWire.Malformed.self) { try decode(ping) }

        // A challenge whose nonce claims more than the 1 KiB any nonce may have.
        var challenge = encode(.challenge(minVersion: 2, maxVersion: 2, nonce: [UInt8](repeating: 1, count: 1_025)))
        #expect(throws: LinkWire.Malformed.self) { try decode(challenge) }
        challenge = encode(.challenge(minVersion: 2, maxVersion: 2, nonce: [UInt8](repeating: 1, count: 1_024)))
        #expect((try? decode(challenge))?.count == 1)

        // A string length far beyond the message.
        var refuse = ByteBuffer()
        refuse.writeInteger(UInt8(3))
        refuse.writeInteger(UInt32(6))
        refuse.writeInteger(UInt32.max)
        refuse.writeBytes([0x41, 0x42])
        #expect(throws: LinkWire.Malformed.self) { try decode(refuse) }
    }
}
