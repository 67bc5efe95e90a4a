import CoreMetrics

/// The cluster's metrics, through swift-metrics (`cluster_` prefix).
final class ClusterMetrics: Sendable {
    private let rawSent = Counter(label: "cluster_link_bytes_raw_total", dimensions: [("direction", "out")])
    private let wireSent = Counter(label: "cluster_link_bytes_wire_total", dimensions: [("direction", "out")])
    private let forwarded = Counter(label: "cluster_messages_forwarded_total")
    private let handedOff = Counter(label: "cluster_queue_handoffs_total")
    private let droppedNoLink = Counter(label: "cluster_forward_dropped_total", dimensions: [("reason", "no_link")])
    private let droppedBackpressure = Counter(
        label: "cluster_forward_dropped_total",
        dimensions: [("reason", "link_backpressure")]
    )
    private let ackTimeouts = Counter(label: "cluster_interest_ack_timeouts_total")
    private let propagation = Timer(label: "cluster_interest_propagation_seconds")
    private let refused = Counter(label: "cluster_links_refused_total")
    private let handshakeTimeouts = Counter(label: "cluster_link_handshake_timeouts_total")

    func linkBytesSent(raw: Int, wire: Int) {
        rawSent.increment(by: raw)
        wireSent.increment(by: wire)
    }

    func messageForwarded() { forwarded.increment() }
    func queueHandedOff() { handedOff.increment() }
    func forwardDroppedNoLink() { droppedNoLink.increment() }
    func forwardDroppedBackpressure() { droppedBackpressure.increment() }
    func interestAckTimedOut() { ackTimeouts.increment() }
    func interestPropagated(after nanoseconds: Int64) { propagation.recordNanoseconds(nanoseconds) }
    func linkRefused() { refused.increment() }
    func linkHandshakeTimedOut() { handshakeTimeouts.increment() }
}
