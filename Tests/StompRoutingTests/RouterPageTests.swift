import Testing

@testable import StompRouting

/// ``PageSelection`` against the obvious answer (sort everything, slice), for small inputs of
/// every shape: the admin API trusts it to neither repeat nor skip an item across pages.
@Suite struct PageSelectionTests {
    @Test(arguments: [0, 1, 2, 15, 16, 17, 100, 1_000])
    func pagesOfKeysAreTheSlicesOfTheSortedKeys(count: Int) {
        // Distinct keys in a scrambled order: multiplying by an odd constant is a bijection of
        // UInt64, and the seed varies the order from one count to the next.
        let unique = (0..<count).map { (UInt64($0) &+ UInt64(count)) &* 0x9E37_79B9_7F4A_7C15 }
        let sorted = unique.sorted()
        for limit in [1, 7, 16, 50] {
            var offset = 0
            var seen: [UInt64] = []
            while offset <= unique.count {
                let page = PageSelection.page(of: unique, offset: offset, limit: limit)
                #expect(page == Array(sorted[min(offset, sorted.count)..<min(offset + limit, sorted.count)]))
                seen += page
                offset += limit
            }
            #expect(seen == sorted)
        }
    }

    @Test func sortedReversedAndHugeOffsetsAreFine() {
        let ascending = Array(0..<5_000)
        #expect(PageSelection.page(of: ascending, offset: 4_990, limit: 20) == Array(4_990..<5_000))
        #expect(PageSelection.page(of: ascending.reversed(), offset: 10, limit: 3) == [10, 11, 12])
        #expect(PageSelection.page(of: ascending, offset: 5_000, limit: 20).isEmpty)
        #expect(PageSelection.page(of: ascending, offset: Int.max, limit: Int.max).isEmpty)
        #expect(PageSelection.page(of: ascending, offset: 4_999, limit: Int.max) == [4_999])
        #expect(PageSelection.page(of: ascending, offset: 0, limit: 0).isEmpty)
    }

    @Test func weightedPagesPickTheGroupsThePageCutsThroughAndWhereEachStarts() {
        // Groups "a" (3), "b" (0), "c" (2), "d" (4), in scrambled order: positions a 0..<3, c 3..<5, d 5..<9.
        let items: [(key: String, weight: Int)] = [("d", 4), ("b", 0), ("a", 3), ("c", 2)]
        let (picked, total) = PageSelection.page(of: items, offset: 2, limit: 4)
        #expect(total == 9)
        #expect(picked.map(\.key) == ["a", "c", "d"])
        #expect(picked.map(\.start) == [0, 3, 5])
        #expect(PageSelection.page(of: items, offset: 9, limit: 4).picked.isEmpty)
        // A group of weight 0 takes no place, even where the page starts.
        #expect(PageSelection.page(of: items, offset: 3, limit: 1).picked.map(\.key) == ["c"])
    }
}

/// The router answers one page of its connections, subscriptions and queues without copying
/// the rest: at 100,000 connections a page holds exactly `limit` rows and the right `total`,
/// and walking the pages visits every row once, in a stable order.
@Suite struct RouterPageTests {
    /// A router with `connections` connections, connection `i` (id `7i + 3`) holding
    /// `subscriptions(i)` subscriptions (ids `s0`...), `i % 4` unless told otherwise: some
    /// connections have none, so subscription pages cut across uneven groups.
    static func router(
        connections: Int,
        queues: Int = 0,
        subscriptions: (Int) -> Int = { $0 % 4 }
    ) -> Router {
        let router = Router(settings: .init(messageIDPrefix: "n-", maxQueues: max(queues, 1)))
        var outputs: [RouterOutput] = []
        // Ids out of order, as connections from several loops reach the router.
        for index in (0..<connections).reversed() {
            let id = ConnectionID(UInt64(index) * 7 + 3)
            router.handle(.open(.v1_2), from: id, receipt: nil, into: &outputs)
            for number in 0..<subscriptions(index) {
                let destination: Destination =
                    queues > 0 && number == 0 ? .queue("q\(index % queues)") : .topic("t.\(index).\(number)")
                let request = SubscribeRequest(id: "s\(number)", destination: destination, ackMode: .auto, prefetch: 1)
                router.handle(.subscribe(request), from: id, receipt: nil, into: &outputs)
            }
            outputs.removeAll(keepingCapacity: true)
        }
        return router
    }

    @Test func aPageOfAHundredThousandConnectionsHoldsLimitRowsAndTheTotal() {
        // Subscriptions on one connection in ten (i % 40 < 4 holds i % 4 of them), which keeps
        // building the router quick in a debug build.
        let router = Self.router(connections: 100_000) { $0 % 40 < 4 ? $0 % 4 : 0 }
        let first = router.connectionPage(offset: 0, limit: 50)
        #expect(first.total == 100_000)
        #expect(first.items.map(\.id.rawValue) == (0..<50).map { UInt64($0) * 7 + 3 })
        #expect(first.items[1].subscriptions.map(\.id) == ["s0"])
        #expect(first.items[4].subscriptions.isEmpty)
        #expect(first.items[3].subscriptions.map(\.id) == ["s0", "s1", "s2"])
        #expect(first.items[3].subscriptions[2].destination == "/topic/t.3.2")

        let middle = router.connectionPage(offset: 61_234, limit: 1_000)
        #expect(middle.items.count == 1_000 && middle.total == 100_000)
        #expect(middle.items.first?.id.rawValue == 61_234 * 7 + 3)
        #expect(middle.items.last?.id.rawValue == 62_233 * 7 + 3)

        let last = router.connectionPage(offset: 99_990, limit: 50)
        #expect(last.items.map(\.id.rawValue) == (99_990..<100_000).map { UInt64($0) * 7 + 3 })
        #expect(router.connectionPage(offset: 100_000, limit: 50).items.isEmpty)
        #expect(router.connectionPage(offset: 1 << 40, limit: 50).total == 100_000)

        // 15,000 subscriptions: 0 + 1 + 2 + 3 in each 40 connections; the last is 99,963's s2.
        let subscriptions = router.subscriptionPage(offset: 14_990, limit: 50)
        #expect(subscriptions.total == 15_000)
        #expect(subscriptions.items.count == 10)
        #expect(subscriptions.items.last?.connection.rawValue == 99_963 * 7 + 3)
        #expect(subscriptions.items.last?.subscription.id == "s2")
        let page = router.subscriptionPage(offset: 7_501, limit: 1_000)
        #expect(page.items.count == 1_000 && page.total == 15_000)
        // 7,501 = 1,250 groups of 6, then 1: past connection 50,001's only subscription, the
        // page starts at 50,002's first.
        #expect(page.items.first.map { "\($0.connection.rawValue)/\($0.subscription.id)" } == "\(50_002 * 7 + 3)/s0")
        #expect(router.subscriptionPage(offset: 15_000, limit: 50).items.isEmpty)
    }

    @Test func walkingThePagesVisitsEveryConnectionAndSubscriptionOnce() {
        let router = Self.router(connections: 3_000, queues: 40)
        var connections: [UInt64] = []
        for offset in stride(from: 0, through: 3_000, by: 97) {
            let page = router.connectionPage(offset: offset, limit: 97)
            #expect(page.total == 3_000)
            #expect(page.items.count == min(97, max(3_000 - offset, 0)))
            connections += page.items.map(\.id.rawValue)
        }
        #expect(connections == (0..<3_000).map { UInt64($0) * 7 + 3 })

        var rows: [String] = []
        var offset = 0
        var total = 0
        repeat {
            let page = router.subscriptionPage(offset: offset, limit: 61)
            total = page.total
            #expect(page.items.count == min(61, total - offset))
            rows += page.items.map { "\($0.connection.rawValue)/\($0.subscription.id)" }
            offset += 61
        } while offset < total
        let expected = (0..<3_000).flatMap { index in (0..<(index % 4)).map { "\(index * 7 + 3)/s\($0)" } }
        #expect(total == expected.count)
        #expect(rows == expected)
    }

    @Test func queuePagesListLocalAndRemoteQueuesByName() {
        let router = Self.router(connections: 400, queues: 40)
        var outputs: [RouterOutput] = []
        router.handle(.remoteQueueConsumers(queue: "elsewhere", count: 3), into: &outputs)
        router.handle(.remoteQueueConsumers(queue: "q7", count: 2), into: &outputs)
        // Queue k has consumers when connections k, k + 40, ... subscribe, which they do only
        // when k % 4 != 0 (a connection i holds i % 4 subscriptions, the first a queue's).
        let held = (0..<40).filter { $0 % 4 != 0 }.map { "q\($0)" }
        var names: [String] = []
        for offset in stride(from: 0, to: 40, by: 8) {
            let page = router.queuePage(offset: offset, limit: 8)
            #expect(page.total == held.count + 1)
            names += page.items.map(\.name)
        }
        #expect(names == (["elsewhere"] + held).sorted())
        let q7 = router.queuePage(offset: 0, limit: 50).items.first { $0.name == "q7" }
        // Connections 7, 47, 87, ... whose index % 4 != 0 subscribe to q7: 7, 47, 87 ... below 400.
        let consumers = stride(from: 7, to: 400, by: 40).filter { $0 % 4 != 0 }.count
        #expect(
            q7
                == RouterSnapshot.Queue(
                    name: "q7",
                    localConsumers: consumers,
                    remoteConsumers: 2,
                    pending: 0,
                    unacked: 0
                )
        )
        #expect(router.queuePage(offset: held.count + 1, limit: 8).items.isEmpty)
    }

    @Test func localSubscribersAreFoundThroughTheRoutersOwnIndex() {
        let router = Self.router(connections: 40, queues: 4)
        #expect(router.hasLocalSubscriber(for: .topic("t.6.1")))
        #expect(!router.hasLocalSubscriber(for: .topic("t.6.3")))
        #expect(router.hasLocalSubscriber(for: .queue("q1")))
        #expect(!router.hasLocalSubscriber(for: .queue("nobody")))
    }
}
