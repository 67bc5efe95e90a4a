import Metrics
import Replication
import StompRouting

/// The durable queues' figures for `/metrics`: gauges set once a second, counters of what was
/// refused as it happens.
final class DurableMetrics {
    private let queues = Gauge(label: "stomp_durable_queues")
    private let messages = Gauge(label: "stomp_durable_messages")
    private let messageBytes = Gauge(label: "stomp_durable_message_bytes")
    private let logBytes = Gauge(label: "stomp_durable_log_bytes")
    private let logSegments = Gauge(label: "stomp_durable_log_segments")
    private let syncs = Counter(label: "stomp_durable_log_syncs_total")
    private let writtenBytes = Counter(label: "stomp_durable_log_written_bytes_total")
    /// Queues that stopped taking writes after a failed write of the log.
    let brokenQueues = Counter(label: "stomp_durable_broken_queues_total")
    /// Replication messages from peers that this build can't read (a newer node's).
    let unreadableMessages = Counter(label: "stomp_durable_unreadable_messages_total")
    /// Replicas this node dropped on their leader's word that their replica set no longer has
    /// them.
    let droppedReplicas = Counter(label: "stomp_durable_dropped_replicas_total")
    private var refusals: [StompProtocolError.Kind: Counter] = [:]
    private var replicaSetChanges: [String: Counter] = [:]
    private var lookups: [String: Counter] = [:]
    private var lastLog: WriteAheadLog.Statistics?

    /// A persistent SEND refused for the bound `kind` names.
    func refused(_ kind: StompProtocolError.Kind) {
        if refusals[kind] == nil {
            refusals[kind] = Counter(label: "stomp_durable_refused_total", dimensions: [("reason", kind.rawValue)])
        }
        refusals[kind]!.increment()
    }

    /// A change of a queue's replica set this node proposed as its leader.
    func replicaSetChanged(_ change: RaftInstance.MemberChange) {
        let kind =
            switch change {
            case .addLearner: "add_learner"
            case .promote: "promote"
            case .remove: "remove"
            }
        if replicaSetChanges[kind] == nil {
            replicaSetChanges[kind] = Counter(
                label: "stomp_durable_replica_set_changes_total",
                dimensions: [("change", kind)]
            )
        }
        replicaSetChanges[kind]!.increment()
    }

    /// How a lookup of a queue this node doesn't hold ended: `passed` to a node that holds
    /// it, `held_nowhere`, or `unanswered` (some node did not answer, and was taken to hold
    /// nothing).
    func lookedUp(_ outcome: QueueLookup.Outcome, timedOut: Bool) {
        let kind =
            switch outcome {
            case .passTo: "passed"
            case .heldNowhere: timedOut ? "unanswered" : "held_nowhere"
            }
        if lookups[kind] == nil {
            lookups[kind] = Counter(label: "stomp_durable_queue_lookups_total", dimensions: [("outcome", kind)])
        }
        lookups[kind]!.increment()
    }

    func update(queues: Int, messages: Int, bytes: Int, log: WriteAheadLog.Statistics?) {
        self.queues.record(queues)
        self.messages.record(messages)
        messageBytes.record(bytes)
        guard let log else { return }
        logBytes.record(log.diskBytes)
        logSegments.record(log.segments)
        let last = (syncs: lastLog?.syncs ?? 0, bytes: lastLog?.bytesWritten ?? 0)
        if log.syncs > last.syncs { syncs.increment(by: Int(log.syncs - last.syncs)) }
        if log.bytesWritten > last.bytes { writtenBytes.increment(by: Int(log.bytesWritten - last.bytes)) }
        lastLog = log
    }
}
