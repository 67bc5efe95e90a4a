/// Messages a node dropped for a peer instead of sending them, in the sequence of its bulk
/// lane where they would have been (wire version 3, message type 37).
public struct SequenceGap: Sendable, Equatable {
    public enum Reason: UInt8, Sendable {
        /// The peer stayed unreachable past `cluster.outage-grace-ms`.
        case grace = 1
        /// The outbox reached `cluster.outbox-bytes`.
        case bytes = 2
        /// The node's outboxes together reached `cluster.outbox-node-bytes`.
        case nodeBytes = 3
        /// The sender no longer knew what it had sent the peer.
        case sessionUnknown = 4
    }

    /// Routing keys a gap names before it stands for every topic.
    public static let maxKeys = 1_024

    /// The first sequence number the gap stands for: entries that were written (the peer may
    /// hold some of them) and dropped after. 0 until the gap is written, when it stands for
    /// its own number only unless ``coveredFrom`` says more.
    public var first: UInt64 = 0
    /// Its own sequence number, the last it stands for; 0 until written.
    public var last: UInt64 = 0
    /// The first number of the written entries it replaced, if any (the sender's
    /// bookkeeping; not on the wire).
    var coveredFrom: UInt64?
    /// Messages dropped, at most: the peer may have processed some of those written.
    /// `UInt32.max` when unknown.
    public var lost: UInt32
    public var reason: Reason
    /// Routing keys of the topic messages dropped, for the peer to tell the subscribers they
    /// concern; `nil` for "any topic" (past ``maxKeys``).
    public var keys: Set<String>?

    public init(first: UInt64 = 0, last: UInt64 = 0, lost: UInt32, reason: Reason, keys: Set<String>?) {
        self.first = first
        self.last = last
        self.lost = lost
        self.reason = reason
        self.keys = keys
    }

    init(coveredFrom: UInt64?, lost: UInt32, reason: Reason, keys: Set<String>?) {
        self.init(lost: lost, reason: reason, keys: keys)
        self.coveredFrom = coveredFrom
    }

    /// What holding it costs in an outbox.
    var cost: Int { PeerOutbox.entryOverhead + (keys?.reduce(0) { $0 + $1.utf8.count } ?? 0) }

    /// Adds `more` messages dropped, of `moreKeys` (`nil`: any topic).
    mutating func merge(lost more: UInt32, keys moreKeys: Set<String>?) {
        let (sum, overflow) = lost.addingReportingOverflow(more)
        lost = overflow ? .max : sum
        guard let held = keys, let moreKeys else {
            keys = nil
            return
        }
        let merged = held.union(moreKeys)
        keys = merged.count > Self.maxKeys ? nil : merged
    }
}
