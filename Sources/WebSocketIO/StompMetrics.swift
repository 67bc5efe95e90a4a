import CoreMetrics
import StompRouting

/// The client-side metrics of a node, through swift-metrics. Without a metrics backend
/// bootstrapped they cost nothing.
struct StompMetrics: Sendable {
    private let slowConsumers = Counter(label: "stomp_slow_consumer_disconnects_total")
    /// Publishers paused at `limits.durable-writes-in-flight`.
    private let durableWritePauses = Counter(label: "stomp_durable_write_pauses_total")
    private let frameErrors: [StompProtocolError.Kind: Counter]
    /// Frames refused by permissions, by what they tried.
    private let subscribesDenied = Counter(label: "stomp_access_denied_total", dimensions: [("action", "subscribe")])
    private let sendsDenied = Counter(label: "stomp_access_denied_total", dimensions: [("action", "send")])

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

    func pausedForDurableWrites() {
        durableWritePauses.increment()
    }

    func frameError(_ kind: StompProtocolError.Kind) {
        frameErrors[kind]?.increment()
        switch kind {
        case .readDenied: subscribesDenied.increment()
        case .writeDenied: sendsDenied.increment()
        default: break
        }
    }
}
