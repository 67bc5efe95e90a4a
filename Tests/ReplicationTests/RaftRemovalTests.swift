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
