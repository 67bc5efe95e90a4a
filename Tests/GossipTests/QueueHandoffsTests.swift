import NIOCore
import StompRouting
import Testing

@testable import Gossip

/// Which peer takes a queue message, with a seeded generator: in proportion to consumers,
/// nobody when no peer has one (unless leaving), and what a peer that went away held comes
/// back in the order it was handed over.
@Suite struct QueueHandoffsTests {
    static let (a, b, c) = (NodeID("a"), NodeID("b"), NodeID("c"))

    static func message(_ index: Int) -> MessageEnvelope {
        MessageEnvelope(destination: .queue("jobs"), messageID: "m-\(index)", headers: [:], body: ByteBuffer())
    }

    @Test func peersAreChosenInProportionToTheirConsumers() {
        var handoffs = QueueHandoffs(random: SplitMix64(seed: 7))
        var chosen: [NodeID: Int] = [:]
        let rounds = 10_000
        for index in 0..<rounds {
            let decision = handoffs.offer(
                Self.message(index),
                consumers: [Self.a: 1, Self.b: 3, Self.c: 0],
                linked: [Self.a, Self.b, Self.c]
            )
            guard case .send(_, let peer) = decision else {
                Issue.record("kept a message although peers have consumers")
                return
            }
            chosen[peer, default: 0] += 1
        }
        #expect(chosen[Self.c] == nil)
        let shareOfB = Double(chosen[Self.b] ?? 0) / Double(rounds)
        #expect(abs(shareOfB - 0.75) < 0.03, "b took \(shareOfB)")
        #expect(handoffs.pendingCount == rounds)
    }

    @Test func withoutConsumersAMessageStaysUnlessTheNodeIsLeaving() {
        var handoffs = QueueHandoffs(random: SplitMix64(seed: 1))
        let kept = handoffs.offer(Self.message(1), consumers: [:], linked: [Self.b])
        #expect(kept == .keepHere)
        handoffs.evacuating = true
        let sent = handoffs.offer(Self.message(1), consumers: [:], linked: [Self.b])
        #expect(sent == .send(id: 1, to: Self.b))
        let alone = handoffs.offer(Self.message(2), consumers: [:], linked: [])
        #expect(alone == .keepHere)
    }

    @Test func anAcknowledgedHandOffIsNoLongerThisNodes() {
        var handoffs = QueueHandoffs(random: SplitMix64(seed: 1))
        guard
            case .send(let id, _) = handoffs.offer(Self.message(1), consumers: [Self.b: 1], linked: [Self.b])
        else {
            Issue.record("not sent")
            return
        }
        handoffs.acknowledged(id)
        #expect(handoffs.pendingCount == 0)
        #expect(handoffs.reclaim(from: Self.b).isEmpty)
    }

    @Test func aGonePeersMessagesComeBackInTheOrderTheyWereHandedOver() {
        var handoffs = QueueHandoffs(random: SplitMix64(seed: 3))
        for index in 0..<200 {
            _ = handoffs.offer(
                Self.message(index),
                consumers: [Self.b: 1, Self.c: 1],
                linked: [Self.b, Self.c],
                redelivered: index.isMultiple(of: 2),
                hops: 1
            )
        }
        let back = handoffs.reclaim(from: Self.b)
        #expect(!back.isEmpty && back.allSatisfy { $0.peer == Self.b && $0.hops == 1 })
        let indices = back.map { Int($0.message.messageID.dropFirst(2))! }
        #expect(indices == indices.sorted())
        #expect(back.allSatisfy { $0.redelivered == Int($0.message.messageID.dropFirst(2))!.isMultiple(of: 2) })
        #expect(handoffs.pendingCount == 200 - back.count)
        #expect(handoffs.reclaim(from: Self.b).isEmpty)
    }

    @Test func aMessageGainsAHopOnEachArrivalUntilItMayTravelNoFurther() {
        #expect(QueueHandoffs.hopsOnArrival(0) == 1)
        #expect(QueueHandoffs.hopsOnArrival(254) == 255)
        #expect(QueueHandoffs.hopsOnArrival(.max) == .max)
    }
}

extension QueueHandoffs {
    /// A message of queue `jobs` offered to the cluster.
    fileprivate mutating func offer(
        _ message: MessageEnvelope,
        consumers: [NodeID: Int],
        linked: [NodeID],
        redelivered: Bool = false,
        hops: UInt8 = 0
    ) -> Decision {
        handOff(queue: "jobs", message, redelivered: redelivered, hops: hops, consumers: consumers, linkedPeers: linked)
    }
}
