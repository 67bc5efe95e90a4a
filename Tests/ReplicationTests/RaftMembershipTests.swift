import NIOCore
import Testing

@testable import Replication

@Suite struct RaftSnapshotTests {
    @Test func compactionNeedsAppliedAndDurableEntries() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        group.manualPersistence = ["a"]
        group.propose("x", at: "a")
        let a = replica("a")
        #expect(group.nodes[a]!.compact(through: 2, state: command("S")) == nil)
        #expect(group.nodes[a]!.compact(through: 0, state: command("S")) == nil)
        let base = group.nodes[a]!.compact(through: 1, state: command("S"))
        #expect(base?.index == 1)
        #expect(base?.term == 1)
        #expect(base?.members == RaftMembers(voters: [a, replica("b"), replica("c")]))
        #expect(group["a"].snapshotIndex == 1)
        #expect(group["a"].entry(at: 1) == nil)
        #expect(group["a"].entry(at: 2)?.text == "x")
    }

    @Test func aLaggingFollowerInstallsTheLeadersSnapshot() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.isolated = ["c"]
        for n in 0..<20 { group.propose("p\(n)", at: "a") }
        group.advance(300)
        let a = replica("a")
        let applied = group["a"].appliedIndex
        #expect(applied == 21)
        let base = group.nodes[a]!.compact(through: applied, state: command("state after 21"))
        #expect(base != nil)
        group.propose("after", at: "a")
        group.isolated = []
        group.advance(1_000)
        let c = replica("c")
        #expect(group.installed[c]?.map(\.index) == [21])
        #expect(group.installed[c]?.first?.state == command("state after 21"))
        #expect(group.durable[c]!.snapshot?.index == 21)
        #expect(group["c"].commitIndex == group["a"].commitIndex)
        #expect(group.texts("c") == ["after"])
        #expect(group["a"].progress[c]?.matchIndex == group["a"].lastIndex)
    }

    @Test func aRestartedReplicaResumesFromItsSnapshot() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        for n in 0..<5 { group.propose("p\(n)", at: "a") }
        group.advance(300)
        let b = replica("b")
        let base = group.nodes[b]!.compact(through: 4, state: command("S4"))!
        let entries = group["b"].log.entries(from: 5)
        let restarted = RaftInstance(
            id: b,
            hardState: group["b"].hardState,
            snapshot: base,
            entries: entries,
            initialMembers: RaftMembers(voters: []),
            now: group.now
        )
        #expect(restarted.commitIndex == 4)
        #expect(restarted.appliedIndex == 4)
        #expect(restarted.lastIndex == 6)
        #expect(restarted.members == base.members)
        group.nodes[b] = restarted
        group.applied[b] = []
        group.advance(300)
        #expect(group.texts("b") == ["p3", "p4"])
    }
}

@Suite struct RaftMembershipTests {
    @Test func aLearnerCatchesUpThenIsPromoted() {
        let group = RaftTestGroup(["a", "b", "c"])
        let d = replica("d")
        // A new replica knows no configuration: it learns it from the leader.
        group.nodes[d] = RaftInstance(
            id: d,
            initialMembers: RaftMembers(voters: []),
            now: group.now,
            random: SplitMix64(seed: 4)
        )
        group.durable[d] = (RaftHardState(), nil, [])
        group.elect("a")
        for n in 0..<10 { group.propose("p\(n)", at: "a") }
        group.advance(200)
        let a = replica("a")
        let (added, directives) = group.nodes[a]!.proposeMembers(.addLearner(d), now: group.now)
        group.process(a, directives)
        #expect(group["a"].members.learners == [d])
        // One change at a time.
        let (second, _) = group.nodes[a]!.proposeMembers(.remove(replica("c")), now: group.now)
        #expect(second == .rejected(.changeInProgress))
        group.advance(1_000)
        guard case .accepted(let index, _) = added else {
            Issue.record("not accepted: \(added)")
            return
        }
        #expect(group["a"].commitIndex >= index)
        #expect(group["d"].commitIndex == group["a"].commitIndex)
        #expect(group.texts("d") == group.texts("a"))
        #expect(group["d"].members.learners == [d])
        #expect(group["a"].progress[d]?.isLearner == true)
        // A learner never campaigns.
        group.isolated = ["d"]
        group.advance(5_000)
        #expect(group["d"].role == .follower)
        #expect(group["d"].term == 1)
        group.isolated = []
        group.advance(500)
        #expect(group.run("a") { $0.proposeMembers(.promote(d), now: group.now).directives }.isEmpty == false)
        group.advance(500)
        #expect(group["a"].members.voters == [a, replica("b"), replica("c"), d])
        #expect(group["d"].members.voters.contains(d))
        // Four voters: three make a majority, so losing one still commits.
        group.isolated = ["c"]
        group.propose("four", at: "a")
        group.advance(300)
        #expect(group.texts("d").last == "four")
    }

    @Test func invalidChangesAreRejected() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        let a = replica("a")
        #expect(
            group.nodes[a]!.proposeMembers(.addLearner(replica("b")), now: group.now).result
                == .rejected(.invalidChange)
        )
        #expect(
            group.nodes[a]!.proposeMembers(.promote(replica("x")), now: group.now).result == .rejected(.invalidChange)
        )
        #expect(
            group.nodes[a]!.proposeMembers(.remove(replica("x")), now: group.now).result == .rejected(.invalidChange)
        )
        #expect(
            group.nodes[replica("b")]!.proposeMembers(.remove(replica("c")), now: group.now).result
                == .notLeader(leaderHint: a)
        )
    }

    @Test func aLeaderThatRemovesItselfStepsDownOnceTheChangeCommits() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        let a = replica("a")
        group.manualPersistence = ["b", "c"]
        let (result, directives) = group.nodes[a]!.proposeMembers(.remove(a), now: group.now)
        #expect(result == .accepted(index: 2, term: 1))
        #expect(directives.contains(.membersChanged(RaftMembers(voters: [replica("b"), replica("c")]))))
        group.process(a, directives)
        group.deliverAll()
        // Managing the group without counting itself: nothing commits until b and c persist.
        #expect(group["a"].role == .leader)
        #expect(group["a"].commitIndex == 1)
        group.manualPersistence = []
        group.flushPersistence(of: "b")
        group.deliverAll()
        #expect(group["a"].commitIndex == 1)
        group.flushPersistence(of: "c")
        group.deliverAll()
        #expect(group["a"].role == .follower)
        // It named its most up-to-date successor, which took over at once.
        let leaders = group.leaders
        #expect(leaders.count == 1)
        #expect(!leaders.contains(a))
        group.advance(5_000)
        #expect(group.leaders == leaders)
        #expect(group["a"].role == .follower)
        #expect(group.propose("without a", at: leaders[0].name) == .accepted(index: 4, term: 2))
    }

    @Test func leadershipMovesToACaughtUpTarget() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        group.isolated = ["c"]
        for n in 0..<5 { group.propose("p\(n)", at: "a") }
        group.advance(100)
        group.isolated = []
        let (result, directives) = group.nodes[replica("a")]!.transferLeadership(to: replica("c"), now: group.now)
        #expect(result == .started)
        group.process(replica("a"), directives)
        #expect(group.propose("during", at: "a") == .rejected(.transferring))
        group.deliverAll()
        #expect(group.leaders == [replica("c")])
        #expect(group["c"].term == 2)
        #expect(group["a"].role == .follower)
        group.advance(300)
        #expect(group.texts("c") == (0..<5).map { "p\($0)" })
    }

    @Test func aTransferGivesUpAfterAnElectionTimeout() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        group.isolated = ["c"]
        let (result, directives) = group.nodes[replica("a")]!.transferLeadership(to: replica("c"), now: group.now)
        #expect(result == .started)
        group.process(replica("a"), directives)
        #expect(group["a"].isTransferringLeadership)
        group.advance(2_100)
        #expect(group["a"].role == .leader)
        #expect(!group["a"].isTransferringLeadership)
        #expect(group.propose("after", at: "a") == .accepted(index: 2, term: 1))
    }
}
