import NIOCore
import StompRouting

/// Keeps this node's interest and its peers' in step: announces local changes, applies the
/// peers' deltas and snapshots, answers their digests, and tracks which version of this
/// node's interest each peer has acknowledged, so that a SUBSCRIBE's receipt waits until
/// every live peer would route matching messages here.
///
/// Sans-IO: it takes the link's interest messages and returns what to send back; time comes
/// in as an argument and the waiters' payload is the caller's (`Release`), so the cluster
/// shell and the simulation drive the same code.
struct InterestSync<Release> {
    /// What a peer's interest message asks of this node.
    struct Reaction {
        /// Messages for the peer that sent it, in order.
        var replies: [LinkMessage] = []
        /// Queues whose consumer count on that peer changed: the router re-weighs hand-offs.
        var queuesChanged: Set<String> = []
        /// The peer acknowledged a newer version of this node's interest: waiters may be due.
        var acknowledgementAdvanced = false
    }

    /// How a SUBSCRIBE's wait for its interest to reach the peers ended.
    enum Outcome: Equatable {
        /// Every live peer acknowledged the version, after this long.
        case propagated(after: TimeAmount)
        /// ``acknowledgementTimeout`` passed first; the receipt goes out anyway.
        case timedOut
    }

    private struct Waiter {
        var version: UInt64
        var since: NIODeadline
        var release: Release
    }

    private(set) var local: LocalInterest
    /// What each peer said it is interested in.
    let remote = InterestTable()
    /// How long a receipt waits for peers before it is released regardless.
    let acknowledgementTimeout: TimeAmount
    /// Per peer: which of its boots acknowledged, and the highest version of this node's
    /// interest it acknowledged. An entry goes when the peer is declared dead or links again
    /// from a new boot.
    private var acknowledged: [NodeID: (peerEpoch: UInt64, version: UInt64)] = [:]
    /// Receipts waiting for their version; each leaves when released or timed out, so the
    /// list is bounded by the receipts asked for within one timeout.
    private var waiters: [Waiter] = []

    init(epoch: UInt64, acknowledgementTimeout: TimeAmount) {
        self.local = LocalInterest(epoch: epoch)
        self.acknowledgementTimeout = acknowledgementTimeout
    }

    /// The whole of this node's interest, which a link starts from.
    var snapshot: LinkMessage {
        .interestSnapshot(epoch: local.epoch, version: local.version, entries: local.snapshot)
    }

    /// Receipts still waiting.
    var waitingCount: Int { waiters.count }

    // MARK: - This node's interest

    /// Local subscriptions to `destination` changed by `delta`.
    ///
    /// - Returns: the delta every linked peer must hear, or `nil` when the change is not
    ///   visible to peers (another subscriber to a topic already announced).
    mutating func localChanged(_ destination: Destination, by delta: Int) -> LinkMessage? {
        guard let (version, change) = local.adjust(destination, by: delta) else { return nil }
        return .interestDelta(epoch: local.epoch, version: version, changes: [change])
    }

    /// A link to `peer` (boot `peerEpoch`) is up.
    ///
    /// - Returns: the snapshot to send it first.
    mutating func linkEstablished(to peer: NodeID, peerEpoch: UInt64) -> LinkMessage {
        // Acknowledgements from an earlier boot say nothing of what this one holds.
        if acknowledged[peer]?.peerEpoch != peerEpoch { acknowledged[peer] = nil }
        return snapshot
    }

    /// `peer` was declared dead or left: its interest goes, and receipts no longer wait for it.
    ///
    /// - Returns: the queues it had consumers of.
    mutating func memberGone(_ peer: NodeID) -> Set<String> {
        acknowledged[peer] = nil
        return remote.remove(peer)
    }

    // MARK: - The peers' messages

    /// Reacts to an interest message (delta, snapshot, acknowledgement or digest) from
    /// `peer`, boot `peerEpoch`. Other messages get an empty reaction.
    mutating func received(_ message: LinkMessage, from peer: NodeID, peerEpoch: UInt64) -> Reaction {
        var reaction = Reaction()
        switch message {
        case .interestDelta(let epoch, let version, let changes):
            answer(
                remote.applyDelta(from: peer, epoch: epoch, version: version, changes: changes),
                epoch,
                peer,
                &reaction
            )

        case .interestSnapshot(let epoch, let version, let entries):
            let outcome = remote.applySnapshot(from: peer, epoch: epoch, version: version, entries: entries)
            answer(outcome, epoch, peer, &reaction)

        case .interestAck(let epoch, let version):
            // An acknowledgement of an earlier boot of this node is about interest it no longer has.
            guard epoch == local.epoch else { break }
            let previous = acknowledged[peer].map { $0.peerEpoch == peerEpoch ? $0.version : 0 } ?? 0
            acknowledged[peer] = (peerEpoch, max(previous, version))
            reaction.acknowledgementAdvanced = version > previous

        case .interestDigest(let epoch, let version, let yourEpoch, let yourVersion):
            // The peer holds another view of this node's interest than the current one: send it all.
            if yourEpoch != local.epoch || yourVersion != local.version { reaction.replies.append(snapshot) }
            // This node holds another view of the peer's: its digest makes the peer resend.
            if let held = remote.version(of: peer), held.epoch == epoch, held.version == version { break }
            reaction.replies.append(digest(for: peer))

        default:
            break
        }
        return reaction
    }

    private func answer(_ outcome: InterestTable.Outcome, _ epoch: UInt64, _ peer: NodeID, _ reaction: inout Reaction) {
        switch outcome {
        case .applied(let version, let queues):
            reaction.replies.append(.interestAck(epoch: epoch, version: version))
            reaction.queuesChanged = queues
        case .duplicate(let version):
            reaction.replies.append(.interestAck(epoch: epoch, version: version))
        case .gap:
            // A delta went missing: the digest makes the peer send its snapshot.
            reaction.replies.append(digest(for: peer))
        case .stale:
            break
        }
    }

    /// What this node holds of `peer`'s interest and which version of its own is current,
    /// sent now and then so that either side notices what it missed.
    func digest(for peer: NodeID) -> LinkMessage {
        let held = remote.version(of: peer)
        return .interestDigest(
            epoch: local.epoch,
            version: local.version,
            yourEpoch: held?.epoch ?? 0,
            yourVersion: held?.version ?? 0
        )
    }

    // MARK: - Receipts that wait for the peers

    /// Whether every peer in `live` acknowledged `version` of this node's interest.
    func isPropagated(_ version: UInt64, toEvery live: some Sequence<NodeID>) -> Bool {
        live.allSatisfy { (acknowledged[$0]?.version ?? 0) >= version }
    }

    /// Holds `release` until every live peer acknowledged the current version.
    ///
    /// - Returns: `release` back when nothing needs waiting for.
    mutating func waitForPropagation(
        _ release: Release,
        live: some Sequence<NodeID>,
        now: NIODeadline
    ) -> Release? {
        if isPropagated(local.version, toEvery: live) { return release }
        waiters.append(Waiter(version: local.version, since: now, release: release))
        return nil
    }

    /// The waiters whose version every peer in `live` acknowledged, or whose time is up, in
    /// the order they began waiting.
    mutating func releaseWaiters(live: some Collection<NodeID>, now: NIODeadline) -> [(Release, Outcome)] {
        guard !waiters.isEmpty else { return [] }
        var released: [(Release, Outcome)] = []
        var still: [Waiter] = []
        for waiter in waiters {
            if isPropagated(waiter.version, toEvery: live) {
                released.append((waiter.release, .propagated(after: now - waiter.since)))
            } else if now - waiter.since >= acknowledgementTimeout {
                released.append((waiter.release, .timedOut))
            } else {
                still.append(waiter)
            }
        }
        waiters = still
        return released
    }
}
