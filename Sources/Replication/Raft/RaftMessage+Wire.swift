import NIOCore

/// The bytes of a Raft message on the cluster link, after the group it is for:
///
/// ```
/// group name (UInt16 length, UTF-8) | type UInt8 | term UInt64 | fields of the type
/// ```
///
/// Entries, members and snapshot bases are in ``RaftCodec``'s encoding, as in the log. A
/// reader returns `nil` for anything malformed (and never traps): a peer may run a newer
/// build or a buggy one.
public struct RaftEnvelope: Sendable, Equatable {
    public var group: String
    public var message: RaftMessage

    public init(group: String, message: RaftMessage) {
        self.group = group
        self.message = message
    }

    /// Most entries one appendEntries may carry on the wire (the sender's batches are smaller).
    public static let maxEntries = 65_536

    private enum Kind: UInt8 {
        case preVote = 1
        case preVoteResponse = 2
        case vote = 3
        case voteResponse = 4
        case appendEntries = 5
        case appendResponse = 6
        case appendRejected = 7
        case installSnapshot = 8
        case timeoutNow = 9
    }

    public func encode(into buffer: inout ByteBuffer) {
        RaftCodec.writeName(group, into: &buffer)
        switch message {
        case .preVote(let term, let lastIndex, let lastTerm):
            Self.header(.preVote, term, into: &buffer)
            buffer.writeMultipleIntegers(lastIndex, lastTerm)
        case .preVoteResponse(let term, let granted):
            Self.header(.preVoteResponse, term, into: &buffer)
            buffer.writeInteger(UInt8(granted ? 1 : 0))
        case .vote(let term, let lastIndex, let lastTerm, let transfer):
            Self.header(.vote, term, into: &buffer)
            buffer.writeMultipleIntegers(lastIndex, lastTerm, UInt8(transfer ? 1 : 0))
        case .voteResponse(let term, let granted):
            Self.header(.voteResponse, term, into: &buffer)
            buffer.writeInteger(UInt8(granted ? 1 : 0))
        case .appendEntries(let term, let prevIndex, let prevTerm, let entries, let leaderCommit):
            Self.header(.appendEntries, term, into: &buffer)
            buffer.writeMultipleIntegers(prevIndex, prevTerm, leaderCommit, UInt32(entries.count))
            for entry in entries { RaftCodec.write(entry, into: &buffer) }
        case .appendResponse(let term, let matchIndex):
            Self.header(.appendResponse, term, into: &buffer)
            buffer.writeInteger(matchIndex)
        case .appendRejected(let term, let hintIndex, let hintTerm):
            Self.header(.appendRejected, term, into: &buffer)
            buffer.writeMultipleIntegers(hintIndex, hintTerm)
        case .installSnapshot(let term, let base):
            Self.header(.installSnapshot, term, into: &buffer)
            RaftCodec.write(base, into: &buffer)
        case .timeoutNow(let term):
            Self.header(.timeoutNow, term, into: &buffer)
        }
    }

    private static func header(_ kind: Kind, _ term: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(term)
    }

    /// Reads one envelope, which must fill `bytes` exactly.
    public init?(decoding bytes: ByteBuffer) {
        var buffer = bytes
        guard let group = RaftCodec.readName(&buffer), let raw = buffer.readInteger(as: UInt8.self),
            let kind = Kind(rawValue: raw), let term = buffer.readInteger(as: UInt64.self),
            let message = Self.readMessage(kind, term: term, from: &buffer), buffer.readableBytes == 0
        else { return nil }
        self.init(group: group, message: message)
    }

    private static func readFlag(_ buffer: inout ByteBuffer) -> Bool? {
        switch buffer.readInteger(as: UInt8.self) {
        case 0: false
        case 1: true
        default: nil
        }
    }

    private static func readMessage(_ kind: Kind, term: UInt64, from buffer: inout ByteBuffer) -> RaftMessage? {
        switch kind {
        case .preVote:
            guard let (lastIndex, lastTerm) = buffer.readMultipleIntegers(as: (UInt64, UInt64).self) else { return nil }
            return .preVote(term: term, lastIndex: lastIndex, lastTerm: lastTerm)
        case .preVoteResponse:
            return readFlag(&buffer).map { .preVoteResponse(term: term, granted: $0) }
        case .vote:
            guard let (lastIndex, lastTerm) = buffer.readMultipleIntegers(as: (UInt64, UInt64).self),
                let transfer = readFlag(&buffer)
            else { return nil }
            return .vote(term: term, lastIndex: lastIndex, lastTerm: lastTerm, transfer: transfer)
        case .voteResponse:
            return readFlag(&buffer).map { .voteResponse(term: term, granted: $0) }
        case .appendEntries:
            guard
                let (prevIndex, prevTerm, leaderCommit, count) = buffer.readMultipleIntegers(
                    as: (UInt64, UInt64, UInt64, UInt32).self
                ), count <= maxEntries
            else { return nil }
            var entries: [RaftEntry] = []
            for _ in 0..<count {
                guard let entry = RaftCodec.readEntry(&buffer) else { return nil }
                entries.append(entry)
            }
            return .appendEntries(
                term: term,
                prevIndex: prevIndex,
                prevTerm: prevTerm,
                entries: entries,
                leaderCommit: leaderCommit
            )
        case .appendResponse:
            return buffer.readInteger(as: UInt64.self).map { .appendResponse(term: term, matchIndex: $0) }
        case .appendRejected:
            guard let (hintIndex, hintTerm) = buffer.readMultipleIntegers(as: (UInt64, UInt64).self) else { return nil }
            return .appendRejected(term: term, hintIndex: hintIndex, hintTerm: hintTerm)
        case .installSnapshot:
            return RaftCodec.readSnapshotBase(&buffer).map { .installSnapshot(term: term, base: $0) }
        case .timeoutNow:
            return .timeoutNow(term: term)
        }
    }
}
