import StompRouting

/// Which peer takes a queue message that no consumer here can, and the messages handed over
/// whose receipt the peer hasn't acknowledged yet: those are still this node's to lose.
///
/// Sans-IO: the shell passes the peers that may take a message and sends what this decides;
/// the weighted pick draws from an injected generator, so tests are repeatable.
struct QueueHandoffs {
    /// A message handed to `peer`, awaiting its acknowledgement.
    struct Pending: Equatable {
        var peer: NodeID
        var queue: String
        var message: MessageEnvelope
        var redelivered: Bool
        var hops: UInt8
        /// The link it went over (the shell's number for it): when a link to the same peer
        /// replaces that one, what went over the old one comes back as it closes.
        var link: UInt64 = 0
    }

    /// What becomes of a queue message offered to the cluster.
    enum Decision: Equatable {
        /// Send it to `peer` as hand-off `id`; it stays pending until acknowledged.
        case send(id: UInt64, to: NodeID)
        /// No peer can take it: it stays here (as a message that travelled as far as it may,
        /// so the router won't offer it again until a consumer appears).
        case keepHere
    }

    /// Leaving: with no consumer anywhere, any linked peer holding the message beats losing it.
    var evacuating = false
    /// By hand-off id, so that reclaiming keeps the order they were handed over in.
    private var pending: [UInt64: Pending] = [:]
    private var nextID: UInt64 = 0
    private var random: any RandomNumberGenerator

    init(random: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.random = random
    }

    /// Hand-offs not acknowledged yet.
    var pendingCount: Int { pending.count }

    /// Picks the peer for a queue message, in proportion to the consumers each has.
    ///
    /// - Parameters:
    ///   - consumers: consumers of `queue` per linked peer.
    ///   - linkedPeers: every linked peer, the candidates while evacuating.
    mutating func handOff(
        queue: String,
        _ message: MessageEnvelope,
        redelivered: Bool,
        hops: UInt8,
        consumers: [NodeID: Int],
        linkedPeers: some Collection<NodeID>,
        link: (NodeID) -> UInt64 = { _ in 0 }
    ) -> Decision {
        var candidates = consumers.filter { $0.value > 0 }
        if candidates.isEmpty, evacuating {
            candidates = Dictionary(uniqueKeysWithValues: linkedPeers.map { ($0, 1) })
        }
        let total = candidates.values.reduce(0, +)
        guard total > 0 else { return .keepHere }
        // Sorted, so that one seed always picks the same peer whatever the hash order.
        var pick = Int.random(in: 0..<total, using: &random)
        var chosen: NodeID?
        for (peer, count) in candidates.sorted(by: { $0.key < $1.key }) {
            if pick < count {
                chosen = peer
                break
            }
            pick -= count
        }
        guard let chosen else { return .keepHere }
        nextID += 1
        pending[nextID] = Pending(
            peer: chosen,
            queue: queue,
            message: message,
            redelivered: redelivered,
            hops: hops,
            link: link(chosen)
        )
        return .send(id: nextID, to: chosen)
    }

    /// The peer took hand-off `id`: the message is its own now.
    mutating func acknowledged(_ id: UInt64) {
        pending[id] = nil
    }

    /// `peer` went away before acknowledging these: they are this node's again, in the order
    /// they were handed over. (If it took one and only the ack was lost, that one may be
    /// delivered twice: the price of never losing it to a link failure.)
    mutating func reclaim(from peer: NodeID) -> [Pending] {
        let ids = pending.filter { $0.value.peer == peer }.keys.sorted()
        return ids.compactMap { pending.removeValue(forKey: $0) }
    }

    /// A link to `peer` that another link replaced has closed: what went over it and wasn't
    /// acknowledged is this node's again (what went over the new one still waits).
    mutating func reclaim(from peer: NodeID, over link: UInt64) -> [Pending] {
        let ids = pending.filter { $0.value.peer == peer && $0.value.link == link }.keys.sorted()
        return ids.compactMap { pending.removeValue(forKey: $0) }
    }

    /// The hop count a message accepted from a peer carries on: one more, unless it already
    /// travelled as far as it may.
    static func hopsOnArrival(_ hops: UInt8) -> UInt8 {
        hops == .max ? hops : hops + 1
    }
}
