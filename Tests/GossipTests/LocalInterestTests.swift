import Gossip
import StompRouting
import Testing

@Suite("Local interest aggregation")
struct LocalInterestTests {
    @Test func aThousandSubscriptionsToOnePatternAreOneEntry() {
        var interest = LocalInterest(epoch: 7)
        var announced: [(version: UInt64, key: Destination, count: Int)] = []
        for _ in 0..<1_000 {
            if let change = interest.adjust(.topic("prices.*"), by: 1) {
                announced.append((change.version, change.change.0, change.change.1))
            }
        }
        #expect(announced.count == 1)
        #expect(
            announced.first?.version == 1 && announced.first?.key == .topic("prices.*") && announced.first?.count == 1
        )
        #expect(interest.count(of: .topic("prices.*")) == 1_000)
        #expect(interest.version == 1)

        for _ in 0..<999 {
            #expect(interest.adjust(.topic("prices.*"), by: -1) == nil)
        }
        let withdrawal = interest.adjust(.topic("prices.*"), by: -1)
        #expect(withdrawal?.version == 2)
        #expect(withdrawal?.change.0 == .topic("prices.*") && withdrawal?.change.1 == 0)
        #expect(interest.version == 2)
        #expect(interest.count(of: .topic("prices.*")) == 0)
        #expect(interest.snapshot.isEmpty)
        #expect(interest.epoch == 7)
    }

    @Test func queuesAnnounceEveryCountChange() {
        var interest = LocalInterest(epoch: 1)
        var counts: [Int] = []
        var versions: [UInt64] = []
        for delta in [1, 1, 1, -1, 5, -6] {
            guard let change = interest.adjust(.queue("jobs"), by: delta) else {
                Issue.record("a queue count change must be announced")
                continue
            }
            #expect(change.change.0 == .queue("jobs"))
            counts.append(change.change.1)
            versions.append(change.version)
        }
        #expect(counts == [1, 2, 3, 2, 7, 1])
        #expect(versions == [1, 2, 3, 4, 5, 6])
        // Back to zero is announced as 0; a change by 0 isn't a change.
        #expect(interest.adjust(.queue("jobs"), by: 0) == nil)
        let last = interest.adjust(.queue("jobs"), by: -1)
        #expect(last?.version == 7 && last?.change.1 == 0)
        #expect(interest.count(of: .queue("jobs")) == 0)
    }

    @Test func countsNeverGoNegative() {
        var interest = LocalInterest(epoch: 1)
        #expect(interest.adjust(.topic("a"), by: -1) == nil)
        #expect(interest.adjust(.queue("q"), by: -3) == nil)
        #expect(interest.version == 0)
        #expect(interest.adjust(.topic("a"), by: 1)?.version == 1)
    }

    @Test func versionsIncreaseByOnePerAnnouncementAcrossKeys() {
        var interest = LocalInterest(epoch: 3)
        var versions: [UInt64] = []
        let steps: [(Destination, Int)] = [
            (.topic("a.b"), 1), (.topic("a.b"), 1), (.queue("q"), 2), (.topic("c.#"), 1),
            (.topic("a.b"), -1), (.topic("a.b"), -1), (.queue("q"), -1), (.topic("c.#"), 3),
        ]
        for (key, delta) in steps {
            if let change = interest.adjust(key, by: delta) { versions.append(change.version) }
        }
        #expect(versions == [1, 2, 3, 4, 5])
        #expect(interest.version == 5)
    }

    @Test func snapshotHoldsPresenceForTopicsAndCountsForQueues() {
        var interest = LocalInterest(epoch: 1)
        for _ in 0..<3 { _ = interest.adjust(.topic("a.*"), by: 1) }
        _ = interest.adjust(.topic("b.#"), by: 1)
        _ = interest.adjust(.queue("jobs"), by: 4)
        _ = interest.adjust(.queue("mail"), by: 1)
        _ = interest.adjust(.queue("mail"), by: -1)
        _ = interest.adjust(.topic("gone"), by: 2)
        _ = interest.adjust(.topic("gone"), by: -2)
        let snapshot = Dictionary(uniqueKeysWithValues: interest.snapshot.map { ($0.0, $0.1) })
        #expect(snapshot == [.topic("a.*"): 1, .topic("b.#"): 1, .queue("jobs"): 4])
        #expect(interest.count(of: .topic("a.*")) == 3)
    }
}
