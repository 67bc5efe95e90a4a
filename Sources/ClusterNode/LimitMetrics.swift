import Metrics
import NIOCore

/// Publishes every configured bound as `node_limit{name="<key>"}` at start-up, beside the
/// gauges of current use (`stomp_connections`, `stomp_pending_connections`,
/// `stomp_outbound_bytes`, `stomp_inbound_bytes`, `stomp_queued_bytes`, `stomp_queues`), so that a dashboard can
/// show how close the node is to each bound without knowing its configuration.
enum LimitMetrics {
    static func record(_ configuration: NodeConfiguration) {
        let io = configuration.io
        let session = io.session
        let router = configuration.router
        var limits: [(String, Int)] = [
            ("limits.connections", io.maxConnections),
            ("limits.pending-connections", io.maxPendingConnections),
            ("limits.connections-per-ip", io.maxConnectionsPerAddress),
            ("limits.pending-logins", configuration.auth.maxPendingLogins),
            ("limits.frame-size", io.frameLimits.maxFrameSize),
            ("limits.body-size", io.frameLimits.maxBodySize),
            ("limits.header-count", io.frameLimits.maxHeaderCount),
            ("limits.header-bytes", io.frameLimits.maxHeaderBytes),
            ("limits.websocket-message-size", io.maxWebSocketMessageSize),
            ("limits.outbound-bytes", io.maxOutboundBytes),
            ("limits.node-outbound-bytes", io.maxNodeOutboundBytes),
            ("limits.durable-writes-in-flight", io.maxDurableWritesInFlight),
            ("limits.node-inbound-bytes", io.maxNodeInboundBytes),
            ("limits.subscriptions", session.maxSubscriptions),
            ("limits.unacked", session.maxUnacked),
            ("limits.unacked-bytes", router.maxUnackedBytes),
            ("limits.transaction-bytes", session.maxTransactionBytes),
            ("limits.destination-length", session.maxDestinationLength),
            ("limits.destination-words", session.maxDestinationWords),
            ("limits.queue-depth", router.maxQueueDepth),
            ("limits.queue-bytes", router.maxQueueBytes),
            ("limits.queues", router.maxQueues),
            ("limits.temp-queues", router.maxTemporaryQueuesPerConnection),
            ("timeouts.upgrade-ms", milliseconds(io.upgradeTimeout)),
            ("timeouts.tls-handshake-ms", milliseconds(io.tlsHandshakeTimeout)),
            ("timeouts.connect-ms", milliseconds(io.connectTimeout)),
            ("admin.max-page-size", configuration.admin.maxPageSize),
            ("admin.stats-samples", configuration.admin.statsSamples),
            ("data.max-bytes", Int(configuration.durable.log.maxBytes)),
            ("data.segment-bytes", configuration.durable.log.segmentBytes),
            ("data.min-free-bytes", Int(configuration.durable.minFreeBytes)),
            ("replication.send-timeout-ms", milliseconds(configuration.durable.sendTimeout)),
            ("replication.factor", configuration.durable.replicationFactor),
            ("replication.replace-after-ms", milliseconds(configuration.durable.replaceAfter ?? .zero)),
        ]
        if let cluster = configuration.cluster {
            limits.append(("cluster.handshake-timeout-ms", milliseconds(cluster.handshakeTimeout)))
            limits.append(("cluster.handshake-frame-size", cluster.handshakeFrameSize))
            limits.append(("cluster.outage-grace-ms", milliseconds(cluster.outageGrace)))
            limits.append(("cluster.outbox-bytes", cluster.outboxBytes))
            limits.append(("cluster.outbox-node-bytes", cluster.outboxNodeBytes))
        }
        for (name, value) in limits {
            Gauge(label: "node_limit", dimensions: [("name", name)]).record(value)
        }
    }

    private static func milliseconds(_ amount: TimeAmount) -> Int {
        Int(amount.nanoseconds / 1_000_000)
    }
}
