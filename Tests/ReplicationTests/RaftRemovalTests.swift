import NIOCore
import Testing

@testable import Replication

/// When a replica the group removed may drop its copy: only on its leader's word, once every
/// voter (not only a majority) holds the configuration without it, and never when the replica
/// knows of a newer configuration than that (it was taken back).
@Suite struct RaftRemovalTests {
    /// a, b and c vote; d joins, is promoted, and c (cut off) is removed.
    private static func groupThatReplacedC(holdingBackB: Bool) -> (RaftTestGroup, removedAt: UInt64) {
        let group = RaftTestGroup(["a", "b", "c", "d"], voters: ["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        let (c, d) = (replica("c"), replica("d"))
        group.run("a") { $0.proposeMembers(.addLearner(d), now: group.now).directives }
        group.advance(500)
        group.run("a") { $0.proposeMembers(.promote(d), now: group.now).directives }
        group.advance(500)
        group.isolated = ["c"]
        if holdingBackB { group.manualPersistence = ["b"] }
        var removedAt: UInt64 = 0
        group.run("a") { instance in
            let (result, directives) = instance.proposeMembers(.remove(c), now: group.now)
            if case .accepted(let index, _) = result { removedAt = index }
            return directives
        }
        group.advance(300)
        return (group, removedAt)
    }

    @Test func aRemovedReplicaIsToldOnlyOnceEveryVoterHoldsItsRemoval() {
        let (group, removedAt) = Self.groupThatReplacedC(holdingBackB: true)
        let c = replica("c")
        #expect(removedAt > 0)
        // Committed by a and d, a majority of a, b, d; b doesn't hold it yet.
        #expect(group["a"].commitIndex >= removedAt)
        #expect(group["a"].members.voters == [replica("a"), replica("b"), replica("d")])
        #expect(group["a"].removal(of: c) == nil)
        group.manualPersistence = []
        group.flushPersistence(of: "b")
        group.advance(300)
        let removal = group["a"].removal(of: c)
        #expect(removal == RaftRemoval(term: group["a"].term, membersIndex: removedAt))
        // Only the leader says so, and only of a replica that is no member.
        #expect(group["b"].removal(of: c) == nil)
        #expect(group["a"].removal(of: replica("b")) == nil)
        #expect(group["a"].removal(of: replica("a")) == nil)
        // c missed its removal: it may forget.
        #expect(group["c"].members.voters.contains(c))
        #expect(removal.map { group["c"].mayForget(after: $0) } == true)
    }

    @Test func aReplicaRefusesAStaleOrOlderRemoval() {
        let (group, removedAt) = Self.groupThatReplacedC(holdingBackB: false)
        let c = group["c"]
        #expect(c.mayForget(after: RaftRemoval(term: c.term, membersIndex: removedAt)))
        // From an older term than it knows.
        #expect(!c.mayForget(after: RaftRemoval(term: c.term - 1, membersIndex: removedAt)))
        // About a configuration no newer than its own, which names it.
        #expect(!c.mayForget(after: RaftRemoval(term: c.term, membersIndex: c.membersIndex)))
        #expect(!group["a"].mayForget(after: RaftRemoval(term: group["a"].term, membersIndex: removedAt)))
    }

    @Test func aReplicaTakenBackRefusesItsOldRemoval() {
        let (group, removedAt) = Self.groupThatReplacedC(holdingBackB: false)
        let old = group["a"].removal(of: replica("c"))
        #expect(old != nil)
        group.isolated = []
        group.run("a") { $0.proposeMembers(.addLearner(replica("c")), now: group.now).directives }
        group.advance(500)
        #expect(group["c"].members.learners.contains(replica("c")))
        #expect(group["c"].membersIndex > removedAt)
        #expect(old.map { group["c"].mayForget(after: $0) } == false)
        #expect(group["a"].removal(of: replica("c")) == nil)
    }
}

/// A replica whose node dropped its copy, made again, must not help a candidate of an older
/// configuration to a majority: made anew (from placement, for a vote request or a client's
/// write) it helps only candidates that hold no entry either until it took part in the group;
/// made for a leader's entries, it neither votes nor stands until it holds what that leader
/// committed.
@Suite struct RaftRemadeReplicaTests {
    static let voters = RaftMembers(voters: ["a", "b", "c"])

    private static func granted(_ directives: [RaftInstance.Directive]) -> Bool? {
        for case .send(.preVoteResponse(_, let granted), _) in directives { return granted }
        return nil
    }

    @Test func aReplicaThatNeverTookPartHelpsOnlyAGroupsFirstElection() {
        var empty = RaftInstance(id: "b", initialMembers: Self.voters, now: time(0), random: SplitMix64(seed: 3))
        // A removed replica that missed its removal, with the log of an older configuration.
        let stale = empty.receive(.preVote(term: 4, lastIndex: 120, lastTerm: 3), from: "c", now: time(5_000))
        #expect(Self.granted(stale) == false)
        let first = empty.receive(.preVote(term: 1, lastIndex: 0, lastTerm: 0), from: "c", now: time(5_000))
        #expect(Self.granted(first) == true)
        // The real vote, too.
        var fresh = RaftInstance(id: "b", initialMembers: Self.voters, now: time(0), random: SplitMix64(seed: 4))
        let vote = fresh.receive(
            .vote(term: 4, lastIndex: 120, lastTerm: 3, transfer: false),
            from: "c",
            now: time(5_000)
        )
        #expect(vote.contains(.send(.voteResponse(term: 0, granted: false), to: "c")))
        // One that took part (it voted in the first election) but holds no entry yet helps
        // anyone as up to date as it is: the group's first leader may die with its first entry
        // on some replicas only.
        var voted = RaftInstance(
            id: "b",
            hardState: RaftHardState(term: 1, votedFor: "a"),
            initialMembers: Self.voters,
            now: time(0),
            random: SplitMix64(seed: 3)
        )
        let next = voted.receive(.preVote(term: 2, lastIndex: 1, lastTerm: 1), from: "c", now: time(5_000))
        #expect(Self.granted(next) == true)
    }

    @Test func aReplicaMadeForALeadersEntriesNeitherVotesNorStandsUntilItCaughtUp() {
        var joining = RaftInstance(
            id: "b",
            initialMembers: Self.voters,
            catchingUp: true,
            now: time(0),
            random: SplitMix64(seed: 5)
        )
        // Past any election timeout: it doesn't stand.
        #expect(joining.tick(now: time(10_000)).sent.isEmpty)
        #expect(joining.role == .follower)
        // The start of the log, while the leader has committed more.
        let entries = (1...3).map { RaftEntry(term: 1, index: $0, content: .command(command("m\($0)"))) }
        _ = joining.receive(
            .appendEntries(term: 1, prevIndex: 0, prevTerm: 0, entries: entries, leaderCommit: 10),
            from: "a",
            now: time(10_000)
        )
        #expect(joining.catchingUp)
        let early = joining.receive(.preVote(term: 2, lastIndex: 50, lastTerm: 1), from: "c", now: time(20_000))
        #expect(Self.granted(early) == false)
        // The rest: it holds what the leader committed, and votes from then on.
        let rest = (4...10).map { RaftEntry(term: 1, index: $0, content: .command(command("m\($0)"))) }
        _ = joining.receive(
            .appendEntries(term: 1, prevIndex: 3, prevTerm: 1, entries: rest, leaderCommit: 10),
            from: "a",
            now: time(20_000)
        )
        #expect(!joining.catchingUp)
        let later = joining.receive(.preVote(term: 2, lastIndex: 50, lastTerm: 1), from: "c", now: time(40_000))
        #expect(Self.granted(later) == true)
    }
}
