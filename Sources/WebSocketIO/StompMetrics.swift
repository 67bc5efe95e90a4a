import CoreMetrics
import StompRouting

/// The client-side metrics of a node, through swift-metrics. Without a metrics backend
/// bootstrapped they cost nothing.
struct StompMetrics: Sendable {
    private let slowConsumers = Counter(label: "stomp_slow_consumer_disconnects_total")
    private let frameErrors: [StompProtocolError.Kind: Counter]

    init() {
        var errors: [StompProtocolError.Kind: Counter] = [:]
        for kind in StompProtocolError.Kind.allCases {
            errors[kind] = Counter(label: "stomp_frame_errors_total", dimensions: [("kind", kind.rawValue)])
        }
        self.frameErrors = errors
    }

    func slowConsumerDisconnected() {
        slowConsumers.increment()
    }

    func frameError(_ kind: StompProtocolError.Kind) {
        frameErrors[kind]?.increment()
    }
}
