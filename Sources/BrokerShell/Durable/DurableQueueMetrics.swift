import Metrics

/// Per-queue gauges of the durable queues this node leads, so that each queue is reported
/// once across the cluster (by its leader), with the same figures as `/v1/durable-queues`:
/// `stomp_durable_queue_messages`, `_ready`, `_unacked`, `_bytes`, `_term` (by `queue`) and
/// `stomp_durable_queue_replica_lag` (by `queue` and `replica`). Set once a second. A queue
/// whose leadership moved away (or that is gone) takes its series with it; the largest
/// ``maxQueues`` queues by messages are reported, the rest only through the admin API, so
/// that a node's scrape stays bounded however many queues it leads.
final class DurableQueueMetrics {
    static let maxQueues = 1_000

    private struct Series {
        var messages: Gauge
        var ready: Gauge
        var unacked: Gauge
        var bytes: Gauge
        var term: Gauge
        var lag: [String: Gauge] = [:]

        init(queue: String) {
            let dimensions = [("queue", queue)]
            messages = Gauge(label: "stomp_durable_queue_messages", dimensions: dimensions)
            ready = Gauge(label: "stomp_durable_queue_ready", dimensions: dimensions)
            unacked = Gauge(label: "stomp_durable_queue_unacked", dimensions: dimensions)
            bytes = Gauge(label: "stomp_durable_queue_bytes", dimensions: dimensions)
            term = Gauge(label: "stomp_durable_queue_term", dimensions: dimensions)
        }

        func destroy() {
            for gauge in [messages, ready, unacked, bytes, term] + Array(lag.values) { gauge.destroy() }
        }
    }

    private var series: [String: Series] = [:]

    /// `led`: the queues this node leads now, as the admin API shows them.
    func update(led: [DurableQueues.QueueView]) {
        let reported =
            led.count <= Self.maxQueues ? led : Array(led.sorted { $0.messages > $1.messages }.prefix(Self.maxQueues))
        let names = Set(reported.map(\.name))
        for (name, gone) in series where !names.contains(name) {
            gone.destroy()
            series[name] = nil
        }
        for view in reported {
            var queue = series[view.name] ?? Series(queue: view.name)
            queue.messages.record(view.messages)
            queue.ready.record(view.ready)
            queue.unacked.record(view.unacked)
            queue.bytes.record(view.bytes)
            queue.term.record(Int64(clamping: view.term))
            for (replica, gauge) in queue.lag where view.lag[replica] == nil {
                gauge.destroy()
                queue.lag[replica] = nil
            }
            for (replica, lag) in view.lag {
                if queue.lag[replica] == nil {
                    queue.lag[replica] = Gauge(
                        label: "stomp_durable_queue_replica_lag",
                        dimensions: [("queue", view.name), ("replica", replica)]
                    )
                }
                queue.lag[replica]!.record(Int64(clamping: lag))
            }
            series[view.name] = queue
        }
    }
}
