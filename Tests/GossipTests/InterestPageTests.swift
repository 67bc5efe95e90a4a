import Gossip
import StompRouting
import Testing

/// `/v1/interest` answers one page of the entries of this node and of every peer, counted over
/// all of them: at 100 peers of 1,000 entries each a page holds exactly `limit` entries and
/// the right totals, and walking the pages visits every entry once, in a stable order.
@Suite struct InterestPageTests {
    /// Origin `p{i}` holds `entries(i)` entries: queues `q{j}` with count j + 1 for even j,
    /// topics `t.{j}` otherwise.
    static func held(_ name: String, entries: Int) -> InterestPage.Held {
        var table: [Destination: Int] = [:]
        for j in 0..<entries { table[j % 2 == 0 ? .queue("q\(j)") : .topic("t.\(j)")] = j % 2 == 0 ? j + 1 : 1 }
        return InterestPage.Held(node: NodeID(name), epoch: 7, version: UInt64(entries), entries: table)
    }

    /// The whole listing in order, the way a reader pages through it: "origin destination count".
    static func flattened(_ page: InterestPage) -> [String] {
        ([page.local] + page.peers).flatMap { origin in
            origin.entries.map { "\(origin.origin) \($0.destination) \($0.count)" }
        }
    }

    @Test func aPageOfAHundredThousandEntriesHoldsLimitEntriesAndTheTotals() {
        // Peers handed over in no particular order; 100 of them, p000 ... p099.
        let peers = (0..<100).reversed().map { Self.held("p" + String(1_000 + $0).dropFirst(), entries: 1_000) }
        let local = Self.held("self", entries: 500)

        let first = InterestPage(local: local, peers: peers, offset: 0, limit: 50)
        #expect(first.total == 100_500)
        #expect(first.local.total == 500 && first.local.entries.count == 50)
        #expect(first.peers.isEmpty)
        // Queues before topics, each by name (as text: q0, q10, q100, ...).
        #expect(first.local.entries.first?.destination == .queue("q0"))

        // 480 ..< 530: the last 20 of this node's, then p000's first 30.
        let straddling = InterestPage(local: local, peers: peers, offset: 480, limit: 50)
        #expect(straddling.local.entries.count == 20)
        #expect(straddling.peers.map(\.origin) == [NodeID("p000")])
        #expect(straddling.peers[0].entries.count == 30 && straddling.peers[0].total == 1_000)

        let deep = InterestPage(local: local, peers: peers, offset: 60_000, limit: 1_000)
        #expect(deep.peers.flatMap(\.entries).count == 1_000)
        #expect(deep.local.entries.isEmpty && deep.local.total == 500)  // this node's header stays
        #expect(deep.peers.map(\.origin) == [NodeID("p059"), NodeID("p060")])

        let last = InterestPage(local: local, peers: peers, offset: 100_490, limit: 50)
        #expect(last.peers.map(\.origin) == [NodeID("p099")] && last.peers[0].entries.count == 10)
        let past = InterestPage(local: local, peers: peers, offset: 100_500, limit: 50)
        #expect(past.peers.isEmpty && past.local.entries.isEmpty && past.total == 100_500)
    }

    @Test func walkingThePagesVisitsEveryEntryOnceInOrder() {
        let peers = [Self.held("b", entries: 0), Self.held("c", entries: 333), Self.held("a", entries: 71)]
        let local = Self.held("self", entries: 45)
        let whole = Self.flattened(InterestPage(local: local, peers: peers, offset: 0, limit: 1_000))
        #expect(whole.count == 449)
        // This node first, then the peers by name; the empty one holds no place.
        #expect(whole.first?.hasPrefix("self /queue/q0 ") == true)
        #expect(whole[45].hasPrefix("a ") && whole[45 + 71].hasPrefix("c "))
        // This node shows a topic as peers hold it (present); a queue with its consumer count.
        #expect(whole.contains("self /topic/t.1 1") && whole.contains("self /queue/q44 45"))

        for limit in [1, 10, 64] {
            var walked: [String] = []
            var offset = 0
            while offset < 449 {
                let page = InterestPage(local: local, peers: peers, offset: offset, limit: limit)
                #expect(page.total == 449)
                #expect(Self.flattened(page).count == min(limit, 449 - offset))
                walked += Self.flattened(page)
                offset += limit
            }
            #expect(walked == whole)
        }
    }
}
