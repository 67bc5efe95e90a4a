import AdminSchema
import Foundation
import Testing

@testable import clusterctl

/// Rates come from two samples of a node's history; `top` renders one row per member.
@Suite struct StatsRatesTests {
    static func sample(
        at seconds: Double,
        published: Int,
        delivered: Int = 0,
        raw: Int = 0,
        wire: Int = 0
    )
        -> AdminModels.StatsSample
    {
        AdminModels.StatsSample(
            uptimeSeconds: seconds,
            messagesPublished: published,
            messagesDelivered: delivered,
            connections: 2,
            linkRawBytes: raw,
            linkWireBytes: wire
        )
    }

    static func stats(_ samples: [AdminModels.StatsSample]) -> AdminModels.Stats {
        AdminModels.Stats(node: "a", intervalSeconds: 1, capacity: 300, samples: samples)
    }

    @Test func needsTwoSamples() {
        #expect(Self.stats([]).rates() == nil)
        #expect(Self.stats([Self.sample(at: 1, published: 5)]).rates() == nil)
    }

    @Test func averagesOverTheWindowAskedFor() {
        // 10/s for five seconds, then 100/s for one: a window of 1 sees the burst, 5 mostly not.
        var samples = (0...5).map { Self.sample(at: Double($0), published: $0 * 10, raw: $0 * 1_000, wire: $0 * 250) }
        samples.append(Self.sample(at: 6, published: 150, raw: 6_000, wire: 1_500))
        let recent = Self.stats(samples).rates(overLast: 1)
        #expect(recent?.published == 100)
        #expect(recent?.linkRawBytes == 1_000)
        #expect(recent?.linkWireBytes == 250)
        #expect(Self.stats(samples).rates(overLast: 5)?.published == (150.0 - 10) / 5)
        // A window longer than the history uses all of it.
        #expect(Self.stats(samples).rates(overLast: 100)?.published == 150.0 / 6)
    }

    @Test func aCounterThatFellCountsAsNoTraffic() {
        // Link totals drop when a link closes; a rate is never negative.
        let rates = AdminModels.StatsRates(
            from: Self.sample(at: 1, published: 10, raw: 5_000),
            to: Self.sample(at: 2, published: 10, raw: 1_000)
        )
        #expect(rates.linkRawBytes == 0)
        #expect(
            AdminModels.StatsRates(from: Self.sample(at: 2, published: 0), to: Self.sample(at: 2, published: 9))
                == .zero
        )
    }
}

@Suite struct TopFrameTests {
    struct Unreachable: Error {}

    static func member(_ name: String, status: String = "alive", isSelf: Bool = false) -> AdminModels.Member {
        AdminModels.Member(
            node: name,
            address: "10.0.0.1:7946",
            status: status,
            incarnation: 1,
            epoch: 1,
            isSelf: isSelf,
            admin: "127.0.0.1:8222"
        )
    }

    @Test func rendersAMemberPerRowWithItsRatesAndTheTotals() {
        let busy = StatsRatesTests.stats([
            StatsRatesTests.sample(at: 1, published: 0, delivered: 0, raw: 0, wire: 0),
            StatsRatesTests.sample(at: 2, published: 40, delivered: 80, raw: 4_096, wire: 1_024),
        ])
        let frame = TopFrame(
            rows: [
                .init(member: Self.member("node-a", isSelf: true), stats: .success(busy)),
                .init(member: Self.member("node-b"), stats: .failure(Unreachable())),
                .init(member: Self.member("node-c", status: "dead"), stats: nil),
            ],
            window: 5
        )
        let lines = frame.render(now: Date()).split(separator: "\n").map(String.init)
        #expect(lines[0].contains("3 members"))
        #expect(lines[0].contains("2 connections"))
        #expect(lines[0].contains("published 40.0/s"))
        #expect(lines.contains { $0.hasPrefix("node-a *") && $0.contains("80.0") && $0.contains("4.0 KiB") })
        #expect(lines.contains { $0.hasPrefix("node-b") && $0.contains("unreachable") })
        #expect(lines.contains { $0.hasPrefix("node-c") && $0.contains("dead") })
    }

    @Test(arguments: [(0.0, "0 B"), (1_023.0, "1023 B"), (1_536.0, "1.5 KiB"), (3 * 1_048_576.0, "3.0 MiB")])
    func bytesPerSecondReadAsAPersonWould(rate: Double, shown: String) {
        #expect(TopFrame.bytes(rate) == shown)
    }
}
