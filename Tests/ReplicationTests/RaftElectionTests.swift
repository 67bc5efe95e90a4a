import NIOCore
import Testing

@testable import Replication

@Suite struct RaftElectionTests {
    @Test func aSingleVoterLeadsOnceItsOwnVoteIsDurable() {
        let group = RaftTestGroup(["a"])
        group.manualPersistence = ["a"]
        group.elect("a")
        #expect(group["a"].role == .candidate)
        #expect(group["a"].term == 1)
        #expect(
            group.heldPersistence[replica("a")]?.first
                == .persistHardState(RaftHardState(term: 1, votedFor: replica("a")))
        )
        group.flushPersistence(of: "a")
        #expect(group["a"].role == .leader)
        // The noop commits once the leader persisted it itself.
        #expect(group["a"].commitIndex == 0)
        group.flushPersistence(of: "a")
        #expect(group["a"].commitIndex == 1)
        #expect(group.applied[replica("a")]?.map(\.content) == [.noop])
    }

    @Test func threeReplicasElectOneLeaderThatCommitsANoop() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        #expect(group.leaders == [replica("a")])
        #expect(group["a"].term == 1)
        for name in ["b", "c"] {
            #expect(group[name].role == .follower)
            #expect(group[name].leader == replica("a"))
        }
        group.advance(300)
        for name in ["a", "b", "c"] {
            #expect(group[name].commitIndex == 1)
            #expect(group.applied[replica(name)]?.map(\.content) == [.noop])
        }
    }

    @Test func aNewGroupsFirstReplicaElectsItselfWithoutWaitingForATimeout() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.run("a") { $0.electNow(now: group.now) }
        group.deliverAll()
        #expect(group.leaders == [replica("a")], "before any clock moved")
        #expect(group["a"].term == 1)
        // Once a leader is known, or on the leader itself, it does nothing.
        #expect(group.run("b") { $0.electNow(now: group.now) }.isEmpty)
        #expect(group.run("a") { $0.electNow(now: group.now) }.isEmpty)
        #expect(group["a"].term == 1)
    }

    @Test func theFirstTimeoutElectsALeaderWithoutHelp() {
        let group = RaftTestGroup(["a", "b", "c", "d", "e"])
        group.advance(3_000)
        #expect(group.leaders.count == 1)
        #expect(group.leadersByTerm.values.allSatisfy { $0.count == 1 })
    }

    @Test func aPartitionedReplicaDoesNotBumpTheTermNorDisruptOnItsReturn() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.isolated = ["c"]
        group.advance(10_000)
        // Pre-vote: c asked many times, never got a majority, never incremented its term.
        #expect(group["c"].term == 1)
        #expect(group["c"].role == .preCandidate)
        group.isolated = []
        group.advance(3_000)
        #expect(group.leaders == [replica("a")])
        #expect(group["a"].term == 1)
        #expect(group["c"].role == .follower)
        #expect(group["c"].leader == replica("a"))
    }

    @Test func followersInTheLeaderLeaseIgnoreVoteRequests() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        let vote = group.run("b") {
            $0.receive(.vote(term: 7, lastIndex: 99, lastTerm: 5, transfer: false), from: replica("c"), now: group.now)
        }
        #expect(vote.isEmpty)
        #expect(group["b"].term == 1)
        let preVote = group.run("b") {
            $0.receive(.preVote(term: 7, lastIndex: 99, lastTerm: 5), from: replica("c"), now: group.now)
        }
        #expect(preVote.messages(to: replica("c")) == [.preVoteResponse(term: 1, granted: false)])
        // The leader itself ignores them too.
        let atLeader = group.run("a") {
            $0.receive(.vote(term: 7, lastIndex: 99, lastTerm: 5, transfer: false), from: replica("c"), now: group.now)
        }
        #expect(atLeader.isEmpty)
        #expect(group["a"].role == .leader)
    }

    @Test func strangersCannotAskForVotes() {
        let group = RaftTestGroup(["a", "b", "c"])
        let directives = group.run("b") {
            $0.receive(.preVote(term: 1, lastIndex: 0, lastTerm: 0), from: replica("x"), now: group.now)
        }
        #expect(directives.isEmpty)
    }

    @Test func aVoteIsSentOnlyOnceItsHardStateIsDurable() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.isolated = ["c"]
        group.manualPersistence = ["b"]
        group.elect("a")
        #expect(group["a"].role == .candidate)
        #expect(group["b"].votedFor == replica("a"))
        #expect(!group.delivered.contains { $0.message == .voteResponse(term: 1, granted: true) })
        group.flushPersistence(of: "b")
        group.deliverAll()
        #expect(group["a"].role == .leader)
    }

    @Test func aCandidateCountsItsOwnVoteOnlyOnceDurable() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.isolated = ["c"]
        group.manualPersistence = ["a"]
        group.elect("a")
        // b's vote arrived, but a's own is not durable: one of three.
        #expect(group.delivered.contains { $0.message == .voteResponse(term: 1, granted: true) })
        #expect(group["a"].role == .candidate)
        group.flushPersistence(of: "a")
        #expect(group["a"].role == .leader)
    }

    @Test func votesGoOnlyToLogsAtLeastAsUpToDate() {
        let group = RaftTestGroup(["a", "b", "c"])
        let entries = [RaftEntry(term: 1, index: 1, content: .noop), RaftEntry(term: 1, index: 2, content: .noop)]
        group.restore("b", hardState: RaftHardState(term: 1), entries: entries)
        let shorter = group.run("b") {
            $0.receive(.vote(term: 2, lastIndex: 1, lastTerm: 1, transfer: false), from: replica("a"), now: group.now)
        }
        #expect(shorter.messages(to: replica("a")) == [.voteResponse(term: 2, granted: false)])
        let preVote = group.run("b") {
            $0.receive(.preVote(term: 3, lastIndex: 1, lastTerm: 1), from: replica("a"), now: group.now)
        }
        #expect(preVote.messages(to: replica("a")) == [.preVoteResponse(term: 2, granted: false)])
        let newerTerm = group.run("b") {
            $0.receive(.vote(term: 3, lastIndex: 1, lastTerm: 2, transfer: false), from: replica("c"), now: group.now)
        }
        // Granted, but held until durable (it is, right away, in this group).
        #expect(newerTerm.hardStates == [RaftHardState(term: 3, votedFor: replica("c"))])
        #expect(group.queue.contains { $0.to == replica("c") && $0.message == .voteResponse(term: 3, granted: true) })
    }

    @Test func staleTermMessagesAreAnsweredWithTheCurrentTermAndChangeNothing() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        let directives = group.run("b") {
            $0.receive(
                .appendEntries(
                    term: 0,
                    prevIndex: 1,
                    prevTerm: 1,
                    entries: [RaftEntry(term: 0, index: 2, content: .noop)],
                    leaderCommit: 2
                ),
                from: replica("c"),
                now: group.now
            )
        }
        #expect(directives.persistedEntries.isEmpty)
        #expect(directives.messages(to: replica("c")) == [.appendRejected(term: 1, hintIndex: 1, hintTerm: 1)])
        #expect(group["b"].leader == replica("a"))
        #expect(group["b"].commitIndex == 1)
        // A deposed leader hearing a higher term steps down.
        let deposed = group.run("a") {
            $0.receive(.appendRejected(term: 5, hintIndex: 0, hintTerm: 0), from: replica("c"), now: group.now)
        }
        #expect(group["a"].role == .follower)
        #expect(group["a"].term == 5)
        #expect(deposed.contains(.roleChanged(.follower, term: 5, leader: nil)))
        #expect(deposed.hardStates == [RaftHardState(term: 5)])
    }

    @Test func checkQuorumDeposesALeaderCutOffFromTheMajority() {
        let group = RaftTestGroup(["a", "b", "c"])
        group.elect("a")
        group.advance(200)
        group.isolated = ["a"]
        group.advance(1_100)
        #expect(group["a"].role == .follower)
        #expect(group.propose("late", at: "a") == .notLeader(leaderHint: nil))
        group.advance(3_000)
        let leaders = group.leaders
        #expect(leaders.count == 1)
        #expect(!leaders.contains(replica("a")))
        group.isolated = []
        group.advance(1_000)
        #expect(group["a"].leader == leaders.first)
        #expect(group.leadersByTerm.values.allSatisfy { $0.count == 1 })
    }
}
