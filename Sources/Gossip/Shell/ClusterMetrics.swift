import CoreMetrics

/// The cluster's metrics, through swift-metrics (`cluster_` prefix).
final class ClusterMetrics: Sendable {
    private let rawSent: Counter
    private let wireSent: Counter
    private let forwarded: Counter
    private let handedOff: Counter
    private let droppedNoLink: Counter
    private let droppedBackpressure: Counter
    private let ackTimeouts: Counter
    private let propagation: Timer
    private let refused: Counter
    private let handshakeTimeouts: Counter
    private let dropped: [PeerSessions.DropReason: Counter]
    private let outages: Counter
    private let recoveries: Counter
    private let factory: any MetricsFactory

    /// - Parameter factory: the process's (bootstrapped) factory, or a test's own, which the
    ///   process-wide one can't be: it is bootstrapped once per process.
    init(factory: any MetricsFactory = MetricsSystem.factory) {
        rawSent = Counter(label: "cluster_link_bytes_raw_total", dimensions: [("direction", "out")], factory: factory)
        wireSent = Counter(label: "cluster_link_bytes_wire_total", dimensions: [("direction", "out")], factory: factory)
        forwarded = Counter(label: "cluster_messages_forwarded_total", factory: factory)
        handedOff = Counter(label: "cluster_queue_handoffs_total", factory: factory)
        droppedNoLink = Counter(
            label: "cluster_forward_dropped_total",
            dimensions: [("reason", "no_link")],
            factory: factory
        )
        droppedBackpressure = Counter(
            label: "cluster_forward_dropped_total",
            dimensions: [("reason", "link_backpressure")],
            factory: factory
        )
        ackTimeouts = Counter(label: "cluster_interest_ack_timeouts_total", factory: factory)
        propagation = Timer(label: "cluster_interest_propagation_seconds", factory: factory)
        refused = Counter(label: "cluster_links_refused_total", factory: factory)
        handshakeTimeouts = Counter(label: "cluster_link_handshake_timeouts_total", factory: factory)
        dropped = Dictionary(
            uniqueKeysWithValues: PeerSessions.DropReason.allCases.map { reason in
                (
                    reason,
                    Counter(
                        label: "cluster_forward_dropped_total",
                        dimensions: [("reason", reason.rawValue)],
                        factory: factory
                    )
                )
            }
        )
        outages = Counter(label: "cluster_peer_outages_total", factory: factory)
        recoveries = Counter(label: "cluster_peer_recoveries_total", factory: factory)
        self.factory = factory
    }

    func linkBytesSent(raw: Int, wire: Int) {
        rawSent.increment(by: raw)
        wireSent.increment(by: wire)
    }

    func messageForwarded() { forwarded.increment() }
    func messagesForwarded(_ count: Int) { if count > 0 { forwarded.increment(by: count) } }
    func forwardsDropped(_ count: Int, reason: PeerSessions.DropReason) { dropped[reason]?.increment(by: count) }
    func peerOutage() { outages.increment() }
    func peerRecovered() { recoveries.increment() }

    /// Topic messages dropped from what was held for `peer`, for `reason`
    /// (`cluster_outbox_dropped_total{peer,reason}`; the node's total per reason is
    /// `cluster_forward_dropped_total{reason}`).
    func outboxDropCounter(for peer: NodeID, reason: PeerSessions.DropReason) -> Counter {
        Counter(
            label: "cluster_outbox_dropped_total",
            dimensions: [("peer", peer.name), ("reason", reason.rawValue)],
            factory: factory
        )
    }

    /// The gauges of what is held for `peer` (``PeerSessions``): bytes and messages.
    func outboxGauges(for peer: NodeID) -> OutboxGauges {
        let dimensions = [("peer", peer.name)]
        return OutboxGauges(
            bytes: Gauge(label: "cluster_outbox_bytes", dimensions: dimensions, factory: factory),
            messages: Gauge(label: "cluster_outbox_messages", dimensions: dimensions, factory: factory)
        )
    }
    func queueHandedOff() { handedOff.increment() }
    func forwardDroppedNoLink() { droppedNoLink.increment() }
    func forwardDroppedBackpressure() { droppedBackpressure.increment() }
    func interestAckTimedOut() { ackTimeouts.increment() }
    func interestPropagated(after nanoseconds: Int64) { propagation.recordNanoseconds(nanoseconds) }
    func linkRefused() { refused.increment() }
    func linkHandshakeTimedOut() { handshakeTimeouts.increment() }
}

/// What is held for one peer, as gauges; destroyed when its session ends.
struct OutboxGauges {
    let bytes: Gauge
    let messages: Gauge

    func destroy() {
        bytes.destroy()
        messages.destroy()
    }
}
