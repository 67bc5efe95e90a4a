import AdminSchema
import BrokerShell
import CoreMetrics
import Gossip
import Synchronization
import WebSocketIO

/// The node's counters sampled on a timer into a ``SampleRing``, for `GET /v1/stats`: the
/// console's charts and `clusterctl top` read rates over the last minutes from here.
///
/// Memory is fixed (`admin.stats-samples` samples); the timer task is the only writer, and
/// it ends with the node.
final class StatsHistory: Sendable {
    private let ring: Mutex<SampleRing<AdminModels.StatsSample>>
    private let interval: Duration
    private let startedAt: ContinuousClock.Instant
    private let held = Gauge(label: "admin_stats_samples")

    /// - Parameters:
    ///   - capacity: samples kept (`admin.stats-samples`).
    ///   - interval: time between samples (`admin.stats-interval-ms`).
    ///   - startedAt: the node's start, which samples' `uptimeSeconds` count from.
    init(capacity: Int, interval: Duration, startedAt: ContinuousClock.Instant) {
        ring = Mutex(SampleRing(capacity: capacity))
        self.interval = interval
        self.startedAt = startedAt
    }

    /// The document `GET /v1/stats` answers.
    func stats(node: String) -> AdminModels.Stats {
        let (capacity, samples) = ring.withLock { ($0.capacity, $0.elements) }
        return AdminModels.Stats(
            node: node,
            intervalSeconds: Self.seconds(interval),
            capacity: capacity,
            samples: samples
        )
    }

    /// Samples every `interval` until the task is cancelled.
    func run(broker: Broker, server: StompServer, cluster: ClusterShell?) async {
        while !Task.isCancelled {
            let links = await cluster?.linkTraffic()
            let sample = AdminModels.StatsSample(
                uptimeSeconds: Self.seconds(ContinuousClock.now - startedAt),
                messagesPublished: broker.messagesPublished,
                messagesDelivered: broker.messagesDelivered,
                connections: server.openConnections,
                linkRawBytes: links.map { $0.rawBytesSent + $0.rawBytesReceived } ?? 0,
                linkWireBytes: links.map { $0.wireBytesSent + $0.wireBytesReceived } ?? 0
            )
            let count = ring.withLock { ring in
                ring.append(sample)
                return ring.count
            }
            held.record(count)
            try? await Task.sleep(for: interval)
        }
    }

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
