import CoreMetrics
import StompRouting

/// The client-side metrics of a node, through swift-metrics. Without a metrics backend
/// bootstrapped they cost nothing.
struct StompMetrics: Sendable {
    private let connections = Gauge(label: "stomp_connections")
    private let connectionsTotal = Counter(label: "stomp_connections_opened_total")
    private let slowConsumers = Counter(label: "stomp_slow_consumer_disconnects_total")
    private let frameErrors: [StompProtocolError.Kind: Counter]

    init() {
        var errors: [StompProtocolError.Kind: Counter] = [:]
        for kind in StompProtocolError.Kind.allCases {
            errors[kind] = Counter(label: "stomp_frame_errors_total", dimensions: [("kind", kind.rawValue)])
        }
        self.frameErrors = errors
    }

    /// - Parameter open: connections open now, this one included.
    func connectionOpened(open: Int) {
        connectionsTotal.increment()
        connections.record(open)
    }

    /// - Parameter open: connections open now.
    func connectionClosed(open: Int) {
        connections.record(open)
    }

    func slowConsumerDisconnected() {
        slowConsumers.increment()
    }

    func frameError(_ kind: StompProtocolError.Kind) {
        frameErrors[kind]?.increment()
    }
}
