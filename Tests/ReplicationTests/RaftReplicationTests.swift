import NIOCore
import Testing

@testable import Replication

@Suite struct RaftReplicationTests {
    @Test func aProposalCommitsOnceAMajorityPersistedIt() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        group.manualPersistence = ["b", "c"]
        #expect(group.propose("x", at: "a") == .accepted(index: 2, term: 1))
        group.deliverAll()
        // Only the leader has it durably: one of three.
        #expect(group["a"].commitIndex == 1)
        group.flushPersistence(of: "b")
        group.deliverAll()
        #expect(group["a"].commitIndex == 2)
        #expect(group.texts("a") == ["x"])
        group.manualPersistence = []
        group.flushPersistence(of: "c")
        group.advance(300)
        #expect(group.texts("b") == ["x"])
        #expect(group.texts("c") == ["x"])
    }

    @Test func theLeaderSendsBeforeItsOwnWriteButCountsItselfOnlyWhenDurable() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        group.isolated = ["c"]
        group.manualPersistence = ["a"]
        let (_, directives) = group.nodes[replica("a")]!.propose(command("x"), now: group.now)
        group.process(replica("a"), directives)
        // Persist and send in the same breath.
        #expect(directives.persistedEntries.map(\.index) == [2])
        #expect(directives.messages(to: replica("b")).contains { if case .appendEntries = $0 { true } else { false } })
        group.deliverAll()
        #expect(group["a"].progress[replica("b")]?.matchIndex == 2)
        #expect(group["a"].commitIndex == 1)
        group.flushPersistence(of: "a")
        #expect(group["a"].commitIndex == 2)
    }

    @Test func aFollowerAcknowledgesOnlyWhatIsDurable() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        group.manualPersistence = ["b"]
        group.propose("x", at: "a")
        group.deliverAll()
        let acks = { () -> [UInt64] in
            group.delivered.compactMap {
                guard $0.from == replica("b"), case .appendResponse(_, let match) = $0.message else { return nil }
                return match
            }
        }
        #expect(acks().allSatisfy { $0 <= 1 })
        #expect(group["a"].progress[replica("b")]?.matchIndex == 1)
        group.flushPersistence(of: "b")
        group.deliverAll()
        #expect(acks().contains(2))
        #expect(group["a"].progress[replica("b")]?.matchIndex == 2)
    }

    @Test func aConflictingSuffixIsTruncatedAndReplaced() {
        let group = RaftTestGroup(["a", "b", "c"])
        let common = [
            RaftEntry(term: 1, index: 1, content: .noop),
            RaftEntry(term: 1, index: 2, content: .command(command("one"))),
        ]
        group.restore(
            "a",
            hardState: RaftHardState(term: 3),
            entries: common + [RaftEntry(term: 3, index: 3, content: .command(command("three")))]
        )
        group.restore(
            "b",
            hardState: RaftHardState(term: 2),
            entries: common + [
                RaftEntry(term: 2, index: 3, content: .command(command("stale1"))),
                RaftEntry(term: 2, index: 4, content: .command(command("stale2"))),
            ]
        )
        group.restore("c", hardState: RaftHardState(term: 2), entries: common)
        group.elect("a")
        #expect(group["a"].role == .leader)
        #expect(group["a"].term == 4)
        let persists = group.history[replica("b")]!.filter { if case .persist = $0 { true } else { false } }
        #expect(persists == [.persist(entries: group["a"].log.entries(from: 3), truncatingAfter: 2)])
        group.advance(300)
        #expect(group["b"].log.entries(from: 1) == group["a"].log.entries(from: 1))
        #expect(group.durable[replica("b")]!.entries == group["a"].log.entries(from: 1))
        #expect(group.texts("b") == ["one", "three"])
        #expect(group["b"].commitIndex == 4)
    }

    @Test func entriesOfEarlierTermsCommitOnlyWithOneOfTheCurrentTerm() {
        // Raft §5.4.2 (Figure 8): a majority holding an entry of an earlier term is not enough.
        let group = RaftTestGroup(["a", "b", "c"])
        let entries = [
            RaftEntry(term: 1, index: 1, content: .noop),
            RaftEntry(term: 2, index: 2, content: .command(command("old"))),
        ]
        group.restore("a", hardState: RaftHardState(term: 2), entries: entries)
        group.restore("b", hardState: RaftHardState(term: 2), entries: Array(entries.prefix(1)))
        group.isolated = ["c"]
        group.manualPersistence = ["b"]
        group.elect("a")
        group.flushPersistence(of: "b")  // its vote
        group.deliverAll()
        #expect(group["a"].role == .leader)
        #expect(group["a"].term == 3)
        #expect(group["a"].lastIndex == 3)
        let a = replica("a")
        let b = replica("b")
        group.process(a, group.nodes[a]!.receive(.appendResponse(term: 3, matchIndex: 2), from: b, now: group.now))
        #expect(group["a"].commitIndex == 0)
        group.process(a, group.nodes[a]!.receive(.appendResponse(term: 3, matchIndex: 3), from: b, now: group.now))
        #expect(group["a"].commitIndex == 3)
        #expect(group.texts("a") == ["old"])
    }

    @Test func thePipelineToAFollowerIsBounded() {
        var settings = RaftSettings()
        settings.maxInFlightAppends = 2
        settings.maxEntriesPerAppend = 1
        let group = RaftTestGroup(["a", "b", "c"], settings: settings)
        group.elect("a")
        group.advance(200)
        group.manualPersistence = ["b"]
        group.queue = []
        for n in 0..<6 { group.propose("p\(n)", at: "a") }
        let appends = group.queue.filter {
            guard $0.to == replica("b"), case .appendEntries(_, _, _, let entries, _) = $0.message else { return false }
            return !entries.isEmpty
        }
        #expect(appends.count == 2)
        group.manualPersistence = []
        group.flushPersistence(of: "b")
        group.advance(500)
        #expect(group.texts("b") == (0..<6).map { "p\($0)" })
    }

    @Test func aFollowerBehindCatchesUpWithBatchesBoundedInSize() {
        var settings = RaftSettings()
        settings.maxBytesPerAppend = 200
        let group = RaftTestGroup(["a", "b", "c"], settings: settings)
        group.elect("a")
        group.isolated = ["c"]
        for n in 0..<40 { group.propose(String(repeating: "\(n % 10)", count: 50), at: "a") }
        group.advance(200)
        group.isolated = []
        group.delivered = []
        group.advance(2_000)
        #expect(group["c"].commitIndex == group["a"].commitIndex)
        #expect(group.texts("c") == group.texts("a"))
        let batches = group.delivered.compactMap { delivery -> Int? in
            guard case .appendEntries(_, _, _, let entries, _) = delivery.message else { return nil }
            return entries.count
        }
        #expect(batches.allSatisfy { $0 <= 3 })
    }

    @Test func aLostReportOfAnOverwrittenWriteIsIgnored() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        let b = replica("b")
        // The report names an entry (index 1, term 7) that the log does not hold.
        let directives = group.nodes[b]!.persisted(through: 1, term: 7)
        #expect(directives.isEmpty)
        #expect(group["b"].persistedIndex == 1)
        #expect(group.nodes[b]!.persisted(through: 5, term: 1).isEmpty)
        #expect(group["b"].persistedIndex == 1)
    }
}
