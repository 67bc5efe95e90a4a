import NIOCore
import Testing

@testable import Replication

@Suite struct ReplicaRecordTests {
    static let members = RaftMembers(voters: ["n1", "n2", "n3"], learners: ["n4"])

    static func entry(_ index: UInt64, term: UInt64 = 1, _ text: String = "m") -> RaftEntry {
        RaftEntry(term: term, index: index, content: .command(ByteBuffer(string: "\(text)\(index)")))
    }

    static func base(_ index: UInt64, term: UInt64 = 1) -> RaftSnapshotBase {
        RaftSnapshotBase(index: index, term: term, members: members, state: ByteBuffer(string: "state"))
    }

    @Test(arguments: [
        ReplicaRecord.entries(
            group: "/queue/jobs",
            [
                entry(1), RaftEntry(term: 2, index: 2, content: .noop),
                RaftEntry(term: 2, index: 3, content: .members(members)),
            ]
        ),
        .entries(group: "q", []),
        .truncate(group: "q", after: 17),
        .hardState(group: "q", RaftHardState(term: 9, votedFor: "n2")),
        .hardState(group: "q", RaftHardState(term: 3)),
        .snapshot(group: "q", base(40), keepsLaterEntries: true),
        .snapshot(group: "é/ü", base(41, term: 7), keepsLaterEntries: false),
        .forget(group: "q"),
    ])
    func recordsRoundTripThroughTheLogsFraming(_ record: ReplicaRecord) throws {
        var bytes = ByteBuffer()
        LogRecordFormat.write(record.logRecord, into: &bytes)
        let scanned = try SegmentScan.scan(Self.segmentHeader() + bytes, number: 1, isNewest: false)
        #expect(scanned.records.map { ReplicaRecord($0.record) } == [record])
    }

    @Test func recordsThisBuildDidNotWriteAreRefused() {
        var good = ReplicaRecord.hardState(group: "q", RaftHardState(term: 1, votedFor: "n1")).logRecord
        #expect(ReplicaRecord(LogRecord(kind: 99, body: good.body)) == nil)
        good.body.writeInteger(UInt8(0))  // a byte too many
        #expect(ReplicaRecord(good) == nil)
        var cut = ReplicaRecord.entries(group: "q", [Self.entry(1)]).logRecord
        cut.body.moveWriterIndex(to: cut.body.writerIndex - 1)
        #expect(ReplicaRecord(cut) == nil)
        #expect(ReplicaRecord(LogRecord(kind: 4, body: ByteBuffer(bytes: [0, 1, 0x71, 7]))) == nil)
    }

    static func segmentHeader() -> ByteBuffer {
        var header = ByteBuffer()
        LogRecordFormat.writeSegmentHeader(number: 1, into: &header)
        return header
    }

    static func replay(_ records: [(ReplicaRecord, segment: UInt64)]) throws -> ReplicaLogRecovery {
        var recovery = ReplicaLogRecovery()
        for (offset, (record, segment)) in records.enumerated() {
            try recovery.replay(
                RecoveredRecord(
                    position: LogPosition(segment: segment, offset: UInt64(offset)),
                    record: record.logRecord
                )
            )
        }
        return recovery
    }

    @Test func recoveryRebuildsEachGroupsHardStateSnapshotAndEntries() throws {
        let recovery = try Self.replay([
            (.hardState(group: "a", RaftHardState(term: 1, votedFor: "n1")), 1),
            (.entries(group: "a", [Self.entry(1), Self.entry(2), Self.entry(3)]), 1),
            (.entries(group: "b", [Self.entry(1)]), 1),
            (.truncate(group: "a", after: 1), 2),
            (.entries(group: "a", [Self.entry(2, term: 2, "x"), Self.entry(3, term: 2, "x")]), 2),
            (.hardState(group: "a", RaftHardState(term: 2)), 2),
            (.entries(group: "a", [Self.entry(3, term: 3, "y"), Self.entry(4, term: 3, "y")]), 2),
            (.snapshot(group: "a", Self.base(2, term: 2), keepsLaterEntries: true), 3),
            (.forget(group: "b"), 3),
            (.entries(group: "c", [Self.entry(1, term: 4)]), 3),
            (.snapshot(group: "c", Self.base(9, term: 4), keepsLaterEntries: false), 3),
            (.entries(group: "c", [Self.entry(10, term: 4)]), 3),
            // Entries kept from a removed segment's time, before the checkpoint of their base.
            (.entries(group: "d", [Self.entry(50), Self.entry(51)]), 5),
            (.snapshot(group: "d", Self.base(50), keepsLaterEntries: true), 6),
        ])
        try recovery.finish()
        #expect(recovery.groups["d"]!.entries == [Self.entry(51)])
        #expect(recovery.groups.keys.sorted() == ["a", "c", "d"])
        let a = recovery.groups["a"]!
        #expect(a.hardState == RaftHardState(term: 2))
        #expect(a.snapshot == Self.base(2, term: 2))
        #expect(a.entries == [Self.entry(3, term: 3, "y"), Self.entry(4, term: 3, "y")])
        #expect(recovery.groups["c"]!.entries == [Self.entry(10, term: 4)])
        #expect(recovery.groups["c"]!.snapshot?.index == 9)
    }

    @Test func aGroupWhoseEntriesDoNotMeetItsBaseStopsTheRecovery() throws {
        let recovery = try Self.replay([
            (.entries(group: "d", [Self.entry(50)]), 5),
            (.snapshot(group: "d", Self.base(30), keepsLaterEntries: true), 6),
        ])
        #expect(throws: ReplicaLogRecovery.Malformed(position: nil, reason: "group d: entries start at 50, after 30")) {
            try recovery.finish()
        }
    }

    /// Found by FuzzReplication: a record rewriting entries from before the group's first
    /// trapped the recovery; it is refused now.
    @Test func entriesThatReplaceMoreThanTheGroupHoldsStopTheRecovery() {
        #expect(
            throws: ReplicaLogRecovery.Malformed(
                position: LogPosition(segment: 4, offset: 1),
                reason: "group a: entry 2 replaces the log from before 7"
            )
        ) {
            try Self.replay([(.entries(group: "a", [Self.entry(7)]), 4), (.entries(group: "a", [Self.entry(2)]), 4)])
        }
    }

    @Test func aGapInAGroupsEntriesStopsTheRecoveryNamingTheRecord() {
        #expect(
            throws: ReplicaLogRecovery.Malformed(
                position: LogPosition(segment: 4, offset: 1),
                reason: "group a: entry 3 follows 1"
            )
        ) {
            try Self.replay([(.entries(group: "a", [Self.entry(1)]), 4), (.entries(group: "a", [Self.entry(3)]), 4)])
        }
        #expect(throws: ReplicaLogRecovery.Malformed.self) {
            var recovery = ReplicaLogRecovery()
            try recovery.replay(
                RecoveredRecord(
                    position: LogPosition(segment: 1, offset: 16),
                    record: LogRecord(kind: 42, body: ByteBuffer())
                )
            )
        }
    }

    @Test func theFootprintFollowsWhatEachGroupStillNeeds() {
        var footprint = ReplicaLogFootprint()
        #expect(footprint.oldestNeededSegment == nil)
        footprint.wrote(.hardState(group: "a", RaftHardState(term: 1)), in: 1)
        footprint.wrote(.entries(group: "a", [Self.entry(1), Self.entry(2)]), in: 1)
        footprint.wrote(.entries(group: "a", [Self.entry(3)]), in: 2)
        footprint.wrote(.entries(group: "b", [Self.entry(1)]), in: 3)
        #expect(footprint.oldestNeededSegment == 1)

        // Compacting through 2 frees the first run; the hard state still holds segment 1.
        footprint.wrote(.snapshot(group: "a", Self.base(2), keepsLaterEntries: true), in: 3)
        #expect(footprint.oldestNeededSegment == 1)
        #expect(footprint.groupsToCheckpoint(before: 3) == ["a"])
        #expect(footprint.groupsHoldingTheOldestSegment().isEmpty)  // its hard state does
        footprint.wrote(.hardState(group: "a", RaftHardState(term: 1)), in: 3)
        #expect(footprint.oldestNeededSegment == 2)
        #expect(footprint.groupsHoldingTheOldestSegment().map(\.group) == ["a"])
        #expect(footprint.groupsHoldingTheOldestSegment().first?.moveBefore == 4)

        // Compacting past its last entry frees every run of the group.
        footprint.wrote(.snapshot(group: "a", Self.base(3), keepsLaterEntries: true), in: 4)
        #expect(footprint.groupsHoldingTheOldestSegment().map(\.group) == ["b"])
        #expect(footprint.groupsHoldingTheOldestSegment().first?.moveBefore == 2)
        #expect(footprint.oldestNeededSegment == 3)
        footprint.wrote(.forget(group: "b"), in: 4)
        footprint.wrote(.truncate(group: "a", after: 3), in: 4)
        #expect(footprint.oldestNeededSegment == 3)  // a's hard state and snapshot
        #expect(footprint.groupsToCheckpoint(before: 4) == ["a"])
    }
}

private func + (lhs: ByteBuffer, rhs: ByteBuffer) -> ByteBuffer {
    var joined = lhs
    joined.writeImmutableBuffer(rhs)
    return joined
}
