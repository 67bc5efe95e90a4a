import NIOCore
import Replication

/// Seeds for `FuzzReplication`: a selector byte (0 Raft message, 1 log record, 2 segment,
/// 3 queue command), then bytes from the real writers.
enum ReplicationSeeds {
    static let members = RaftMembers(voters: ["n1", "n2", "n3"], learners: ["n4"])
    static let entries = [
        RaftEntry(term: 2, index: 7, content: .noop),
        RaftEntry(term: 2, index: 8, content: .command(QueueCommand.enqueue(ByteBuffer(string: "hello")).encoded)),
        RaftEntry(term: 2, index: 9, content: .members(members)),
    ]
    static let base = RaftSnapshotBase(
        index: 6,
        term: 1,
        members: members,
        state: ByteBuffer(bytes: [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3])
    )

    static var all: [(String, [UInt8])] {
        var seeds: [(String, [UInt8])] = []
        let messages: [(String, RaftMessage)] = [
            ("pre-vote", .preVote(term: 3, lastIndex: 9, lastTerm: 2)),
            ("vote", .vote(term: 3, lastIndex: 9, lastTerm: 2, transfer: false)),
            ("vote-response", .voteResponse(term: 3, granted: true)),
            ("append", .appendEntries(term: 2, prevIndex: 6, prevTerm: 1, entries: entries, leaderCommit: 8)),
            ("append-response", .appendResponse(term: 2, matchIndex: 9)),
            ("append-rejected", .appendRejected(term: 2, hintIndex: 5, hintTerm: 1)),
            ("snapshot", .installSnapshot(term: 2, base: base)),
            ("timeout-now", .timeoutNow(term: 4)),
        ]
        for (name, message) in messages {
            var bytes = ByteBuffer(bytes: [0])
            RaftEnvelope(group: "/queue/orders", message: message).encode(into: &bytes)
            seeds.append(("raft-\(name)", Array(bytes.readableBytesView)))
        }
        let records: [(String, ReplicaRecord)] = [
            ("entries", .entries(group: "/queue/orders", entries)),
            ("truncate", .truncate(group: "/queue/orders", after: 7)),
            ("hard-state", .hardState(group: "/queue/orders", RaftHardState(term: 3, votedFor: "n2"))),
            ("snapshot", .snapshot(group: "/queue/orders", base, keepsLaterEntries: true)),
            ("forget", .forget(group: "/queue/orders")),
        ]
        var segment = ByteBuffer(bytes: [2])
        LogRecordFormat.writeSegmentHeader(number: 1, into: &segment)
        for (name, record) in records {
            let logRecord = record.logRecord
            var bytes = ByteBuffer(bytes: [1, logRecord.kind])
            bytes.writeImmutableBuffer(logRecord.body)
            seeds.append(("record-\(name)", Array(bytes.readableBytesView)))
            LogRecordFormat.write(logRecord, into: &segment)
        }
        seeds.append(("segment", Array(segment.readableBytesView)))
        let commands: [(String, QueueCommand)] = [
            ("enqueue", .enqueue(ByteBuffer(string: "hello"))),
            ("settle", .settle([1, 2])),
            ("requeue", .requeue([1])),
            ("move", .move(id: 1, payload: ByteBuffer(string: "hello"))),
        ]
        for (name, command) in commands {
            seeds.append(("queue-\(name)", [3] + Array(command.encoded.readableBytesView)))
        }
        return seeds
    }
}
