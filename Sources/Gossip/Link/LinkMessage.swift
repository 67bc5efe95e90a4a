import NIOCore
import StompRouting

/// Who a node is, on a link: the dialler's first message, and the listener's once the
/// dialler has proved the cluster secret (see ``LinkHandshake``).
public struct LinkHello: Sendable, Equatable {
    /// Versions of this wire format the sender speaks; the link uses the highest in common.
    public var minVersion: UInt16
    public var maxVersion: UInt16
    /// Capability bits (none defined yet; receivers ignore unknown ones).
    public var capabilities: UInt64
    public var clusterName: String
    public var node: NodeID
    public var epoch: UInt64
    /// The address peers should dial to reach the sender's link listener.
    public var address: String
    /// 32 random bytes the other side must prove knowledge of the cluster secret over. The
    /// listener's is the one its ``LinkMessage/challenge(minVersion:maxVersion:nonce:)`` carried.
    public var nonce: [UInt8]
}

/// Every message of the link protocol. The numbers are the wire type codes; a receiver skips
/// types it doesn't know, so a newer node can add some without breaking an older one.
public enum LinkMessage: Sendable, Equatable {
    // Handshake and link upkeep.
    case hello(LinkHello)
    /// The listener's answer to the dialler's hello: the versions it speaks and the nonce the
    /// dialler must prove the cluster secret over. Nothing about who the listener is: that
    /// waits until the dialler has proved itself.
    case challenge(minVersion: UInt16, maxVersion: UInt16, nonce: [UInt8])
    /// HMAC-SHA256 of the cluster secret over the prover's role, the cluster name, node ids
    /// and nonces (see ``LinkHandshake`` and `WIRE-FORMAT.md`).
    case proof([UInt8])
    /// The handshake was refused; the text says why. The link closes after it.
    case refuse(String)
    case heartbeat
    /// Where the sender's admin API is reachable (`host:port`, empty for nowhere), so that
    /// any member can name every other one to an operator.
    case nodeInfo(adminAddress: String)
    /// An operator's request, made through another member's admin API, that the receiver
    /// act on itself: `drain` or `leave`. Unknown actions are ignored.
    case adminRequest(action: String)

    // Membership (SWIM), each with piggy-backed gossip.
    case ping(sequence: UInt64, gossip: [MemberUpdate])
    case ack(sequence: UInt64, gossip: [MemberUpdate])
    case pingRequest(sequence: UInt64, target: NodeID, gossip: [MemberUpdate])
    /// A full list of members the sender knows, sent when a link comes up.
    case members([MemberUpdate])

    // Interest.
    case interestDelta(epoch: UInt64, version: UInt64, changes: [(Destination, Int)])
    case interestSnapshot(epoch: UInt64, version: UInt64, entries: [(Destination, Int)])
    case interestAck(epoch: UInt64, version: UInt64)
    /// "I am at (epoch, version), and I hold you at (yourEpoch, yourVersion)."
    case interestDigest(epoch: UInt64, version: UInt64, yourEpoch: UInt64, yourVersion: UInt64)

    // Messages.
    /// A topic message for the receiver's local subscribers only; never forwarded again.
    case forward(MessageEnvelope)
    /// A queue message whose ownership passes to the receiver once it acknowledges.
    case handoff(id: UInt64, queue: String, message: MessageEnvelope, redelivered: Bool, hops: UInt8)
    case handoffAck(id: UInt64)

    // The resumable bulk lane (wire version 3; not offered yet, see WIRE-FORMAT.md).
    /// A forward or hand-off numbered `seq` in the sender's sequence for this pair of boots.
    /// `nil` inside when its destination didn't parse: the number counts all the same.
    indirect case sequenced(seq: UInt64, LinkMessage?)
    /// Sent first on a new link: the last number of the peer's sequence for this pair of
    /// boots that the sender processed (0 for none, or when it holds another boot of the peer).
    case resume(senderEpoch: UInt64, receiverEpoch: UInt64, received: UInt64)
    /// The sender processed every number of the receiver's sequence up to `seq`.
    case received(senderEpoch: UInt64, receiverEpoch: UInt64, seq: UInt64)
    /// Messages the sender dropped instead of sending, numbered `gap.last`, standing for
    /// `gap.first` through `gap.last`.
    case gap(SequenceGap)
    /// The durable queues' traffic (Raft's messages, SENDs forwarded to a queue's leader and
    /// their outcomes): opaque to the link, read by the broker's durable queues. Version 4.
    case replication(ByteBuffer)

    /// The bytes of a forward's or hand-off's message body, for acknowledging by volume; 0 for others.
    var bodySize: Int {
        switch self {
        case .forward(let message), .handoff(_, _, let message, _, _): message.body.readableBytes
        default: 0
        }
    }

    /// Whether the message is control traffic, which must not wait behind bulk messages.
    public var isControl: Bool {
        switch self {
        case .forward, .handoff, .sequenced, .gap, .replication: return false
        default: return true
        }
    }

    public static func == (lhs: LinkMessage, rhs: LinkMessage) -> Bool {
        var left = ByteBuffer()
        var right = ByteBuffer()
        lhs.encode(into: &left)
        rhs.encode(into: &right)
        return left == right
    }
}

// MARK: - Encoding

extension LinkMessage {
    enum TypeCode: UInt8 {
        case hello = 1
        case proof = 2
        case refuse = 3
        case heartbeat = 4
        case nodeInfo = 5
        case adminRequest = 6
        case challenge = 7
        case ping = 10
        case ack = 11
        case pingRequest = 12
        case members = 13
        case interestDelta = 20
        case interestSnapshot = 21
        case interestAck = 22
        case interestDigest = 23
        case forward = 30
        case handoff = 31
        case handoffAck = 32
        case sequencedForward = 33
        case sequencedHandoff = 34
        case resume = 35
        case received = 36
        case gap = 37
        case replication = 40
    }

    var typeCode: TypeCode {
        switch self {
        case .hello: return .hello
        case .challenge: return .challenge
        case .proof: return .proof
        case .refuse: return .refuse
        case .heartbeat: return .heartbeat
        case .nodeInfo: return .nodeInfo
        case .adminRequest: return .adminRequest
        case .ping: return .ping
        case .ack: return .ack
        case .pingRequest: return .pingRequest
        case .members: return .members
        case .interestDelta: return .interestDelta
        case .interestSnapshot: return .interestSnapshot
        case .interestAck: return .interestAck
        case .interestDigest: return .interestDigest
        case .forward: return .forward
        case .handoff: return .handoff
        case .handoffAck: return .handoffAck
        case .sequenced(_, .handoff?): return .sequencedHandoff
        case .sequenced: return .sequencedForward
        case .resume: return .resume
        case .received: return .received
        case .gap: return .gap
        case .replication: return .replication
        }
    }

    /// Appends `[u8 type][u32 length][body]`.
    ///
    /// - Parameters:
    ///   - buffer: the output.
    ///   - version: the wire version of the link the message goes on (see `WIRE-FORMAT.md`).
    ///     Every message reads alike in every version so far, so no case looks at it yet: it is
    ///     where a field a later version adds will branch, written only to peers that speak it.
    public func encode(into buffer: inout ByteBuffer, version: UInt16 = LinkHandshake.supportedVersions.upperBound) {
        buffer.writeInteger(typeCode.rawValue)
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        let start = buffer.writerIndex
        switch self {
        case .hello(let hello):
            buffer.writeInteger(hello.minVersion)
            buffer.writeInteger(hello.maxVersion)
            buffer.writeInteger(hello.capabilities)
            buffer.writeLinkString(hello.clusterName)
            buffer.writeLinkString(hello.node.name)
            buffer.writeInteger(hello.epoch)
            buffer.writeLinkString(hello.address)
            buffer.writeInteger(UInt32(hello.nonce.count))
            buffer.writeBytes(hello.nonce)
        case .challenge(let minVersion, let maxVersion, let nonce):
            buffer.writeInteger(minVersion)
            buffer.writeInteger(maxVersion)
            buffer.writeInteger(UInt32(nonce.count))
            buffer.writeBytes(nonce)
        case .proof(let mac):
            buffer.writeInteger(UInt32(mac.count))
            buffer.writeBytes(mac)
        case .refuse(let reason):
            buffer.writeLinkString(reason)
        case .heartbeat:
            break
        case .nodeInfo(let address):
            buffer.writeLinkString(address)
        case .adminRequest(let action):
            buffer.writeLinkString(action)
        case .ping(let sequence, let gossip), .ack(let sequence, let gossip):
            buffer.writeInteger(sequence)
            Self.write(gossip, into: &buffer)
        case .pingRequest(let sequence, let target, let gossip):
            buffer.writeInteger(sequence)
            buffer.writeLinkString(target.name)
            Self.write(gossip, into: &buffer)
        case .members(let members):
            Self.write(members, into: &buffer)
        case .interestDelta(let epoch, let version, let entries),
            .interestSnapshot(let epoch, let version, let entries):
            buffer.writeInteger(epoch)
            buffer.writeInteger(version)
            buffer.writeInteger(UInt32(entries.count))
            for (destination, count) in entries {
                // The kind, then the name without its prefix: the prefix is the kind.
                switch destination {
                case .topic(let pattern):
                    buffer.writeInteger(UInt8(0))
                    buffer.writeLinkString(pattern)
                case .queue(let name):
                    buffer.writeInteger(UInt8(1))
                    buffer.writeLinkString(name)
                }
                buffer.writeInteger(UInt32(clamping: count))
            }
        case .interestAck(let epoch, let version):
            buffer.writeInteger(epoch)
            buffer.writeInteger(version)
        case .interestDigest(let epoch, let version, let yourEpoch, let yourVersion):
            buffer.writeInteger(epoch)
            buffer.writeInteger(version)
            buffer.writeInteger(yourEpoch)
            buffer.writeInteger(yourVersion)
        case .forward(let message):
            Self.write(message, into: &buffer)
        case .handoff(let id, let queue, let message, let redelivered, let hops):
            buffer.writeInteger(id)
            buffer.writeLinkString(queue)
            buffer.writeInteger(UInt8(redelivered ? 1 : 0))
            buffer.writeInteger(hops)
            Self.write(message, into: &buffer)
        case .handoffAck(let id):
            buffer.writeInteger(id)
        case .sequenced(let seq, let inner):
            buffer.writeInteger(seq)
            // The inner message's body without its type and length: the type says which.
            if let inner {
                var body = ByteBuffer()
                inner.encode(into: &body, version: version)
                buffer.writeImmutableBuffer(body.getSlice(at: 5, length: body.readableBytes - 5)!)
            } else {
                // One whose destination didn't parse (a node never sends it; a round trip
                // does): an empty destination reads back the same way.
                buffer.writeInteger(UInt32(0))
                buffer.writeLinkString("")
                buffer.writeInteger(UInt32(0))
                buffer.writeLinkBytes(ByteBuffer())
            }
        case .resume(let senderEpoch, let receiverEpoch, let received):
            buffer.writeInteger(senderEpoch)
            buffer.writeInteger(receiverEpoch)
            buffer.writeInteger(received)
        case .received(let senderEpoch, let receiverEpoch, let seq):
            buffer.writeInteger(senderEpoch)
            buffer.writeInteger(receiverEpoch)
            buffer.writeInteger(seq)
        case .gap(let gap):
            buffer.writeInteger(gap.first)
            buffer.writeInteger(gap.last)
            buffer.writeInteger(gap.lost)
            buffer.writeInteger(gap.reason.rawValue)
            buffer.writeInteger(UInt8(gap.keys == nil ? 1 : 0))
            let keys = gap.keys.map { $0.sorted() } ?? []
            buffer.writeInteger(UInt32(keys.count))
            for key in keys { buffer.writeLinkString(key) }
        case .replication(let payload):
            buffer.writeImmutableBuffer(payload)
        }
        buffer.setInteger(UInt32(buffer.writerIndex - start), at: lengthIndex)
    }

    /// A forward's body: what a ``PeerOutbox`` holds, encoded once for every peer.
    static func forwardBody(_ message: MessageEnvelope) -> ByteBuffer {
        var body = ByteBuffer()
        write(message, into: &body)
        return body
    }

    /// Appends a forward from its body (``forwardBody(_:)``): wire version 2's unnumbered form.
    static func writeForward(body: ByteBuffer, into buffer: inout ByteBuffer) {
        buffer.writeInteger(TypeCode.forward.rawValue)
        buffer.writeInteger(UInt32(body.readableBytes))
        buffer.writeImmutableBuffer(body)
    }

    /// Appends a numbered forward or hand-off from its body as an outbox holds it (the body of
    /// a `forward` or `handoff` message), without building the message again: one body
    /// encoded once serves every peer.
    static func writeSequenced(
        seq: UInt64,
        handoff: Bool,
        body: ByteBuffer,
        into buffer: inout ByteBuffer
    ) {
        buffer.writeInteger((handoff ? TypeCode.sequencedHandoff : .sequencedForward).rawValue)
        buffer.writeInteger(UInt32(8 + body.readableBytes))
        buffer.writeInteger(seq)
        buffer.writeImmutableBuffer(body)
    }

    private static func write(_ updates: [MemberUpdate], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(updates.count))
        for update in updates {
            buffer.writeLinkString(update.node.name)
            buffer.writeInteger(update.epoch)
            buffer.writeLinkString(update.address)
            buffer.writeInteger(update.incarnation)
            buffer.writeInteger(update.status.rawValue)
        }
    }

    /// The destination goes as its header value (`/topic/NAME`), written in two parts so that
    /// no string is built per message.
    static func write(_ message: MessageEnvelope, into buffer: inout ByteBuffer) {
        let (prefix, name) = (message.destination.prefix, message.destination.name)
        buffer.writeInteger(UInt32(prefix.utf8.count + name.utf8.count))
        buffer.writeString(prefix)
        buffer.writeString(name)
        buffer.writeLinkString(message.messageID)
        buffer.writeInteger(UInt32(message.headers.count))
        for (name, value) in message.headers {
            buffer.writeLinkString(name)
            buffer.writeLinkString(value)
        }
        buffer.writeLinkBytes(message.body)
    }
}

// MARK: - Decoding

extension LinkMessage {
    /// Reads every message of a frame's payload.
    ///
    /// - Returns: the messages, in order. Messages of unknown types are skipped.
    /// - Throws: ``LinkWire/Malformed`` when the payload is truncated or inconsistent.
    public static func decodeAll(
        _ payload: inout ByteBuffer,
        into messages: inout [LinkMessage]
    ) throws(LinkWire.Malformed) {
        while payload.readableBytes > 0 {
            let code: UInt8 = try payload.readLinkInteger()
            let length = Int(try payload.readLinkInteger(as: UInt32.self))
            guard var body = payload.readSlice(length: length) else { throw LinkWire.Malformed("truncated message") }
            guard let type = TypeCode(rawValue: code), let message = try decode(type, &body) else { continue }
            messages.append(message)
        }
    }

    /// - Returns: `nil` for a forward or hand-off whose destination is no `/topic/` or
    ///   `/queue/` one. Only a broken or foreign peer sends that; the message is skipped and
    ///   the link, with the rest of its traffic, stays.
    private static func decode(_ type: TypeCode, _ body: inout ByteBuffer) throws(LinkWire.Malformed) -> LinkMessage? {
        switch type {
        case .hello:
            let minVersion: UInt16 = try body.readLinkInteger()
            let maxVersion: UInt16 = try body.readLinkInteger()
            let capabilities: UInt64 = try body.readLinkInteger()
            let clusterName = try body.readLinkString()
            let node = NodeID(try body.readLinkString())
            let epoch: UInt64 = try body.readLinkInteger()
            let address = try body.readLinkString()
            let nonceLength = Int(try body.readLinkInteger(as: UInt32.self))
            guard nonceLength <= 1_024, let nonce = body.readBytes(length: nonceLength) else {
                throw LinkWire.Malformed("bad nonce")
            }
            return .hello(
                LinkHello(
                    minVersion: minVersion,
                    maxVersion: maxVersion,
                    capabilities: capabilities,
                    clusterName: clusterName,
                    node: node,
                    epoch: epoch,
                    address: address,
                    nonce: nonce
                )
            )
        case .challenge:
            let minVersion: UInt16 = try body.readLinkInteger()
            let maxVersion: UInt16 = try body.readLinkInteger()
            let nonceLength = Int(try body.readLinkInteger(as: UInt32.self))
            guard nonceLength <= 1_024, let nonce = body.readBytes(length: nonceLength) else {
                throw LinkWire.Malformed("bad nonce")
            }
            return .challenge(minVersion: minVersion, maxVersion: maxVersion, nonce: nonce)
        case .proof:
            let length = Int(try body.readLinkInteger(as: UInt32.self))
            guard length <= 1_024, let mac = body.readBytes(length: length) else {
                throw LinkWire.Malformed("bad proof")
            }
            return .proof(mac)
        case .refuse:
            return .refuse(try body.readLinkString())
        case .heartbeat:
            return .heartbeat
        case .nodeInfo:
            return .nodeInfo(adminAddress: try body.readLinkString())
        case .adminRequest:
            return .adminRequest(action: try body.readLinkString())
        case .ping:
            return .ping(sequence: try body.readLinkInteger(), gossip: try readUpdates(&body))
        case .ack:
            return .ack(sequence: try body.readLinkInteger(), gossip: try readUpdates(&body))
        case .pingRequest:
            let sequence: UInt64 = try body.readLinkInteger()
            let target = NodeID(try body.readLinkString())
            return .pingRequest(sequence: sequence, target: target, gossip: try readUpdates(&body))
        case .members:
            return .members(try readUpdates(&body))
        case .interestDelta, .interestSnapshot:
            let epoch: UInt64 = try body.readLinkInteger()
            let version: UInt64 = try body.readLinkInteger()
            let count = try body.readLinkCount()
            var entries: [(Destination, Int)] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let kind: UInt8 = try body.readLinkInteger()
                let name = try body.readLinkString()
                let value = Int(try body.readLinkInteger(as: UInt32.self))
                switch kind {
                case 0: entries.append((.topic(name), value))
                case 1: entries.append((.queue(name), value))
                default: throw LinkWire.Malformed("unknown interest kind \(kind)")
                }
            }
            return type == .interestDelta
                ? .interestDelta(epoch: epoch, version: version, changes: entries)
                : .interestSnapshot(epoch: epoch, version: version, entries: entries)
        case .interestAck:
            return .interestAck(epoch: try body.readLinkInteger(), version: try body.readLinkInteger())
        case .interestDigest:
            return .interestDigest(
                epoch: try body.readLinkInteger(),
                version: try body.readLinkInteger(),
                yourEpoch: try body.readLinkInteger(),
                yourVersion: try body.readLinkInteger()
            )
        case .forward:
            return try readMessage(&body).map { .forward($0) }
        case .handoff:
            let id: UInt64 = try body.readLinkInteger()
            let queue = try body.readLinkString()
            let redelivered: UInt8 = try body.readLinkInteger()
            let hops: UInt8 = try body.readLinkInteger()
            return try readMessage(&body).map {
                .handoff(id: id, queue: queue, message: $0, redelivered: redelivered != 0, hops: hops)
            }
        case .handoffAck:
            return .handoffAck(id: try body.readLinkInteger())
        case .sequencedForward, .sequencedHandoff:
            let seq: UInt64 = try body.readLinkInteger()
            let inner = try decode(type == .sequencedForward ? .forward : .handoff, &body)
            return .sequenced(seq: seq, inner)
        case .resume:
            return .resume(
                senderEpoch: try body.readLinkInteger(),
                receiverEpoch: try body.readLinkInteger(),
                received: try body.readLinkInteger()
            )
        case .received:
            return .received(
                senderEpoch: try body.readLinkInteger(),
                receiverEpoch: try body.readLinkInteger(),
                seq: try body.readLinkInteger()
            )
        case .gap:
            let first: UInt64 = try body.readLinkInteger()
            let last: UInt64 = try body.readLinkInteger()
            let lost: UInt32 = try body.readLinkInteger()
            let rawReason: UInt8 = try body.readLinkInteger()
            let anyTopic: UInt8 = try body.readLinkInteger()
            let count = try body.readLinkCount()
            guard count <= SequenceGap.maxKeys, first <= last, let reason = SequenceGap.Reason(rawValue: rawReason)
            else { throw LinkWire.Malformed("bad gap") }
            var keys = Set<String>(minimumCapacity: count)
            for _ in 0..<count { keys.insert(try body.readLinkString()) }
            return .gap(
                SequenceGap(first: first, last: last, lost: lost, reason: reason, keys: anyTopic != 0 ? nil : keys)
            )
        case .replication:
            return .replication(body.readSlice(length: body.readableBytes)!)
        }
    }

    private static func readUpdates(_ body: inout ByteBuffer) throws(LinkWire.Malformed) -> [MemberUpdate] {
        let count = try body.readLinkCount()
        var updates: [MemberUpdate] = []
        updates.reserveCapacity(count)
        for _ in 0..<count {
            let node = NodeID(try body.readLinkString())
            let epoch: UInt64 = try body.readLinkInteger()
            let address = try body.readLinkString()
            let incarnation: UInt64 = try body.readLinkInteger()
            let rawStatus: UInt8 = try body.readLinkInteger()
            guard let status = MemberUpdate.Status(rawValue: rawStatus) else {
                throw LinkWire.Malformed("unknown member status")
            }
            updates.append(
                MemberUpdate(node: node, epoch: epoch, address: address, incarnation: incarnation, status: status)
            )
        }
        return updates
    }

    /// - Returns: `nil` when the destination doesn't parse (the rest is read all the same,
    ///   so a truncated message is still malformed).
    /// The routing key of the topic a forward's body (``forwardBody(_:)``) is published to;
    /// `nil` when it names no topic.
    static func topicKey(ofForward body: ByteBuffer) -> String? {
        var body = body
        guard let text = try? body.readLinkString(), case .topic(let key)? = try? Destination(canonical: text) else {
            return nil
        }
        return key
    }

    static func readMessage(_ body: inout ByteBuffer) throws(LinkWire.Malformed) -> MessageEnvelope? {
        let destination = try body.readLinkString()
        let messageID = try body.readLinkString()
        let count = try body.readLinkCount()
        var headers = StompHeaders(minimumCapacity: count)
        for _ in 0..<count {
            headers.add(try body.readLinkString(), try body.readLinkString())
        }
        let payload = try body.readLinkBytes()
        guard let destination = try? Destination(canonical: destination) else { return nil }
        return MessageEnvelope(destination: destination, messageID: messageID, headers: headers, body: payload)
    }
}
