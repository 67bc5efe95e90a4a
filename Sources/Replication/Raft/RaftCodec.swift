import NIOCore

/// The bytes of Raft's values, big-endian, as the durable log stores them (and the link will
/// carry them). Readers return `nil` on anything malformed and never trap: the bytes may come
/// from a damaged disk or a buggy peer.
public enum RaftCodec {
    /// Longest group or replica name: a queue name within STOMP's header bounds, a node id.
    public static let maxNameBytes = Int(UInt16.max)
    /// Most members a configuration may list on the wire.
    public static let maxMembers = 1_024

    public static func writeName(_ name: String, into buffer: inout ByteBuffer) {
        precondition(name.utf8.count <= maxNameBytes, "name over \(maxNameBytes) bytes")
        buffer.writeInteger(UInt16(name.utf8.count))
        buffer.writeString(name)
    }

    public static func readName(_ buffer: inout ByteBuffer) -> String? {
        guard let length = buffer.readInteger(as: UInt16.self) else { return nil }
        return buffer.readString(length: Int(length))
    }

    public static func writeBytes(_ bytes: ByteBuffer, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(bytes.readableBytes))
        buffer.writeImmutableBuffer(bytes)
    }

    public static func readBytes(_ buffer: inout ByteBuffer) -> ByteBuffer? {
        guard let length = buffer.readInteger(as: UInt32.self) else { return nil }
        return buffer.readSlice(length: Int(length))
    }

    public static func write(_ members: RaftMembers, into buffer: inout ByteBuffer) {
        for group in [members.voters, members.learners] {
            buffer.writeInteger(UInt16(group.count))
            for replica in group.sorted() { writeName(replica.name, into: &buffer) }
        }
    }

    public static func readMembers(_ buffer: inout ByteBuffer) -> RaftMembers? {
        var groups: [Set<ReplicaID>] = []
        for _ in 0..<2 {
            guard let count = buffer.readInteger(as: UInt16.self), Int(count) <= maxMembers else { return nil }
            var group = Set<ReplicaID>()
            for _ in 0..<count {
                guard let name = readName(&buffer) else { return nil }
                group.insert(ReplicaID(name))
            }
            groups.append(group)
        }
        return RaftMembers(voters: groups[0], learners: groups[1])
    }

    private enum ContentTag: UInt8 {
        case noop = 0
        case command = 1
        case members = 2
    }

    public static func write(_ entry: RaftEntry, into buffer: inout ByteBuffer) {
        buffer.writeInteger(entry.term)
        buffer.writeInteger(entry.index)
        switch entry.content {
        case .noop:
            buffer.writeInteger(ContentTag.noop.rawValue)
        case .command(let command):
            buffer.writeInteger(ContentTag.command.rawValue)
            writeBytes(command, into: &buffer)
        case .members(let members):
            buffer.writeInteger(ContentTag.members.rawValue)
            write(members, into: &buffer)
        }
    }

    public static func readEntry(_ buffer: inout ByteBuffer) -> RaftEntry? {
        guard let term = buffer.readInteger(as: UInt64.self), let index = buffer.readInteger(as: UInt64.self),
            let raw = buffer.readInteger(as: UInt8.self), let tag = ContentTag(rawValue: raw)
        else { return nil }
        switch tag {
        case .noop:
            return RaftEntry(term: term, index: index, content: .noop)
        case .command:
            guard let command = readBytes(&buffer) else { return nil }
            return RaftEntry(term: term, index: index, content: .command(command))
        case .members:
            guard let members = readMembers(&buffer) else { return nil }
            return RaftEntry(term: term, index: index, content: .members(members))
        }
    }

    public static func write(_ state: RaftHardState, into buffer: inout ByteBuffer) {
        buffer.writeInteger(state.term)
        if let vote = state.votedFor {
            buffer.writeInteger(UInt8(1))
            writeName(vote.name, into: &buffer)
        } else {
            buffer.writeInteger(UInt8(0))
        }
    }

    public static func readHardState(_ buffer: inout ByteBuffer) -> RaftHardState? {
        guard let term = buffer.readInteger(as: UInt64.self), let voted = buffer.readInteger(as: UInt8.self) else {
            return nil
        }
        switch voted {
        case 0: return RaftHardState(term: term)
        case 1: return readName(&buffer).map { RaftHardState(term: term, votedFor: ReplicaID($0)) }
        default: return nil
        }
    }

    public static func write(_ base: RaftSnapshotBase, into buffer: inout ByteBuffer) {
        buffer.writeInteger(base.index)
        buffer.writeInteger(base.term)
        write(base.members, into: &buffer)
        writeBytes(base.state, into: &buffer)
    }

    public static func readSnapshotBase(_ buffer: inout ByteBuffer) -> RaftSnapshotBase? {
        guard let index = buffer.readInteger(as: UInt64.self), let term = buffer.readInteger(as: UInt64.self),
            let members = readMembers(&buffer), let state = readBytes(&buffer)
        else { return nil }
        return RaftSnapshotBase(index: index, term: term, members: members, state: state)
    }
}
