import Gossip
import StompRouting
import Testing

@Suite("Interest table")
struct InterestTableTests {
    let a = NodeID("a"), b = NodeID("b"), c = NodeID("c"), d = NodeID("d")

    func peers(_ table: InterestTable, _ key: String) -> Set<NodeID> {
        var result = Set<NodeID>()
        table.peers(forTopic: key, into: &result)
        return result
    }

    func entries(_ table: InterestTable, _ node: NodeID) -> [Destination: Int]? {
        table.entriesByOrigin[node]?.entries
    }

    @Test func deltasInOrderApply() {
        let table = InterestTable()
        #expect(
            table.applyDelta(from: a, epoch: 1, version: 1, changes: [(.topic("prices.eur"), 1)])
                == .applied(version: 1, queues: [])
        )
        #expect(
            table.applyDelta(from: a, epoch: 1, version: 2, changes: [(.queue("jobs"), 3)])
                == .applied(version: 2, queues: ["jobs"])
        )
        #expect(
            table.applyDelta(from: a, epoch: 1, version: 3, changes: [(.topic("news.#"), 1), (.queue("jobs"), 4)])
                == .applied(version: 3, queues: ["jobs"])
        )
        #expect(peers(table, "prices.eur") == [a])
        #expect(peers(table, "news.sport.football") == [a])
        #expect(peers(table, "prices.usd").isEmpty)
        #expect(table.consumers(ofQueue: "jobs") == [a: 4])
        #expect(table.version(of: a)?.epoch == 1 && table.version(of: a)?.version == 3)
        #expect(table.entryCount == 3)

        // Withdrawals.
        #expect(
            table.applyDelta(from: a, epoch: 1, version: 4, changes: [(.topic("prices.eur"), 0), (.queue("jobs"), 0)])
                == .applied(version: 4, queues: ["jobs"])
        )
        #expect(peers(table, "prices.eur").isEmpty)
        #expect(table.consumers(ofQueue: "jobs").isEmpty)
        #expect(entries(table, a) == [.topic("news.#"): 1])
        #expect(table.entryCount == 1)
    }

    @Test func duplicatesAckAgainWithoutChange() {
        let table = InterestTable()
        _ = table.applyDelta(from: a, epoch: 1, version: 1, changes: [(.topic("x"), 1)])
        _ = table.applyDelta(from: a, epoch: 1, version: 2, changes: [(.queue("q"), 2)])
        // The first delta again, e.g. resent after a reconnect: it must not withdraw or re-add anything.
        #expect(table.applyDelta(from: a, epoch: 1, version: 1, changes: [(.topic("x"), 0)]) == .duplicate(version: 2))
        #expect(table.applyDelta(from: a, epoch: 1, version: 2, changes: [(.queue("q"), 9)]) == .duplicate(version: 2))
        #expect(peers(table, "x") == [a])
        #expect(table.consumers(ofQueue: "q") == [a: 2])
        #expect(table.version(of: a)?.version == 2)
    }

    @Test func aGapAsksForASnapshot() {
        let table = InterestTable()
        // Unknown origin, not starting at 1.
        #expect(table.applyDelta(from: a, epoch: 1, version: 2, changes: [(.topic("x"), 1)]) == .gap)
        #expect(table.version(of: a) == nil)
        #expect(peers(table, "x").isEmpty)

        _ = table.applyDelta(from: a, epoch: 1, version: 1, changes: [(.topic("x"), 1)])
        #expect(table.applyDelta(from: a, epoch: 1, version: 3, changes: [(.topic("y"), 1)]) == .gap)
        #expect(peers(table, "y").isEmpty)
        #expect(table.version(of: a)?.version == 1)
        // The missing delta then applies as usual.
        #expect(
            table.applyDelta(from: a, epoch: 1, version: 2, changes: [(.topic("z"), 1)])
                == .applied(version: 2, queues: [])
        )
    }

    @Test func aSnapshotReplacesEverything() {
        let table = InterestTable()
        _ = table.applyDelta(from: a, epoch: 1, version: 1, changes: [(.topic("old.*"), 1)])
        _ = table.applyDelta(from: a, epoch: 1, version: 2, changes: [(.queue("q"), 2)])
        #expect(
            table.applySnapshot(from: a, epoch: 1, version: 7, entries: [(.topic("new.#"), 1), (.queue("r"), 5)])
                == .applied(version: 7, queues: ["q", "r"])
        )
        #expect(peers(table, "old.x").isEmpty)
        #expect(peers(table, "new.x.y") == [a])
        #expect(table.consumers(ofQueue: "q").isEmpty)
        #expect(table.consumers(ofQueue: "r") == [a: 5])
        #expect(entries(table, a) == [.topic("new.#"): 1, .queue("r"): 5])

        // The same snapshot again is a duplicate; an older one is stale; deltas continue from it.
        #expect(table.applySnapshot(from: a, epoch: 1, version: 7, entries: []) == .duplicate(version: 7))
        #expect(table.applySnapshot(from: a, epoch: 1, version: 6, entries: []) == .stale)
        #expect(entries(table, a) == [.topic("new.#"): 1, .queue("r"): 5])
        #expect(
            table.applyDelta(from: a, epoch: 1, version: 8, changes: [(.queue("r"), 0)])
                == .applied(version: 8, queues: ["r"])
        )
        #expect(table.consumers(ofQueue: "r").isEmpty)

        // A snapshot of an unknown origin, and an empty snapshot that clears an origin.
        #expect(table.applySnapshot(from: b, epoch: 4, version: 0, entries: []) == .applied(version: 0, queues: []))
        #expect(table.version(of: b)?.epoch == 4)
        #expect(table.applySnapshot(from: a, epoch: 1, version: 9, entries: []) == .applied(version: 9, queues: []))
        #expect(peers(table, "new.x").isEmpty)
        #expect(entries(table, a) == [:])
    }

    @Test func aHigherEpochStartingAtVersionOneRestartsTheOrigin() {
        let table = InterestTable()
        _ = table.applyDelta(from: a, epoch: 1, version: 1, changes: [(.topic("before"), 1)])
        _ = table.applyDelta(from: a, epoch: 1, version: 2, changes: [(.queue("q"), 2)])
        _ = table.applyDelta(from: a, epoch: 1, version: 3, changes: [(.queue("kept"), 1)])
        // The restarted node's first change: what the old boot announced is gone.
        let outcome = table.applyDelta(
            from: a,
            epoch: 2,
            version: 1,
            changes: [(.topic("after"), 1), (.queue("kept"), 4)]
        )
        #expect(table.version(of: a)?.epoch == 2 && table.version(of: a)?.version == 1)
        #expect(peers(table, "before").isEmpty)
        #expect(peers(table, "after") == [a])
        #expect(table.consumers(ofQueue: "q").isEmpty)
        #expect(table.consumers(ofQueue: "kept") == [a: 4])
        #expect(entries(table, a) == [.topic("after"): 1, .queue("kept"): 4])
        // Consumers of "q" on `a` went from 2 to 0: the caller must hear of it to reroute that queue.
        #expect(outcome == .applied(version: 1, queues: ["q", "kept"]))

        // A higher epoch that doesn't start at 1 is a gap (its snapshot will follow).
        #expect(table.applyDelta(from: a, epoch: 3, version: 2, changes: [(.topic("x"), 1)]) == .gap)
        #expect(table.version(of: a)?.epoch == 2)
    }

    @Test func aStaleEpochIsIgnored() {
        let table = InterestTable()
        _ = table.applySnapshot(from: a, epoch: 5, version: 3, entries: [(.topic("t"), 1), (.queue("q"), 1)])
        #expect(table.applyDelta(from: a, epoch: 4, version: 4, changes: [(.topic("t"), 0)]) == .stale)
        #expect(table.applyDelta(from: a, epoch: 4, version: 1, changes: [(.topic("u"), 1)]) == .stale)
        #expect(table.applySnapshot(from: a, epoch: 4, version: 100, entries: []) == .stale)
        #expect(peers(table, "t") == [a])
        #expect(peers(table, "u").isEmpty)
        #expect(table.consumers(ofQueue: "q") == [a: 1])
        #expect(table.version(of: a)?.epoch == 5 && table.version(of: a)?.version == 3)
    }

    @Test func removingAnOriginDropsItsInterest() {
        let table = InterestTable()
        _ = table.applySnapshot(
            from: a,
            epoch: 1,
            version: 2,
            entries: [(.topic("a.*"), 1), (.topic("shared"), 1), (.queue("q1"), 3), (.queue("q2"), 1)]
        )
        _ = table.applySnapshot(from: b, epoch: 1, version: 1, entries: [(.topic("shared"), 1), (.queue("q1"), 2)])
        #expect(table.remove(a) == ["q1", "q2"])
        #expect(table.version(of: a) == nil)
        #expect(peers(table, "a.x").isEmpty)
        #expect(peers(table, "shared") == [b])
        #expect(table.consumers(ofQueue: "q1") == [b: 2])
        #expect(table.consumers(ofQueue: "q2").isEmpty)
        #expect(table.entryCount == 2)
        // Removing again is harmless; the origin may come back from scratch.
        #expect(table.remove(a).isEmpty)
        #expect(table.applyDelta(from: a, epoch: 1, version: 3, changes: [(.topic("a.*"), 1)]) == .gap)
        #expect(
            table.applyDelta(from: a, epoch: 1, version: 1, changes: [(.topic("a.*"), 1)])
                == .applied(version: 1, queues: [])
        )
        #expect(peers(table, "a.x") == [a])
    }

    @Test func wildcardsMatchAndEachPeerComesOnce() {
        let table = InterestTable()
        _ = table.applySnapshot(
            from: a,
            epoch: 1,
            version: 1,
            entries: [(.topic("prices.*"), 1), (.topic("prices.#"), 1), (.topic("prices.eur"), 1), (.topic("#"), 1)]
        )
        _ = table.applySnapshot(from: b, epoch: 1, version: 1, entries: [(.topic("*.eur.#"), 1)])
        _ = table.applySnapshot(from: c, epoch: 1, version: 1, entries: [(.topic("news.*.today"), 1)])
        _ = table.applySnapshot(from: d, epoch: 1, version: 1, entries: [(.topic("prices.#.close"), 1)])

        var result = Set<NodeID>()
        table.peers(forTopic: "prices.eur", into: &result)
        #expect(result == [a, b])

        #expect(peers(table, "prices.eur.spot") == [a, b])
        #expect(peers(table, "prices") == [a])  // `#` matches zero words
        #expect(peers(table, "news.world.today") == [a, c])
        #expect(peers(table, "news.today") == [a])  // `*` needs exactly one word
        #expect(peers(table, "news.a.b.today") == [a])
        #expect(peers(table, "prices.close") == [a, d])
        #expect(peers(table, "prices.eur.x.close") == [a, b, d])
        #expect(peers(table, "x.eur") == [a, b])

        // The result accumulates into what the caller passes.
        var accumulated: Set<NodeID> = [NodeID("local")]
        table.peers(forTopic: "news.x.today", into: &accumulated)
        #expect(accumulated == [NodeID("local"), a, c])

        // Withdrawing one of a's overlapping patterns keeps it for the others.
        _ = table.applyDelta(from: a, epoch: 1, version: 2, changes: [(.topic("#"), 0)])
        #expect(peers(table, "prices.eur") == [a, b])
        #expect(peers(table, "news.world.today") == [c])
    }

    @Test func consumersOfQueuePerPeer() {
        let table = InterestTable()
        _ = table.applyDelta(from: a, epoch: 1, version: 1, changes: [(.queue("jobs"), 3)])
        _ = table.applyDelta(from: b, epoch: 1, version: 1, changes: [(.queue("jobs"), 1), (.queue("mail"), 2)])
        #expect(table.consumers(ofQueue: "jobs") == [a: 3, b: 1])
        #expect(table.consumers(ofQueue: "mail") == [b: 2])
        #expect(table.consumers(ofQueue: "none").isEmpty)
        #expect(
            table.applyDelta(from: b, epoch: 1, version: 2, changes: [(.queue("jobs"), 0)])
                == .applied(version: 2, queues: ["jobs"])
        )
        #expect(table.consumers(ofQueue: "jobs") == [a: 3])
        #expect(
            table.applyDelta(from: a, epoch: 1, version: 2, changes: [(.queue("jobs"), 5)])
                == .applied(version: 2, queues: ["jobs"])
        )
        #expect(table.consumers(ofQueue: "jobs") == [a: 5])
    }
}
