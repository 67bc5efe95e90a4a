import NIOCore

/// The durable queues' storage on one node: the write-ahead log, what it held when the node
/// started, and which of its segments the queues still need. Confined to one event loop (the
/// one that runs the queues): every method is called there, and every completion comes back
/// there, in the order the records were appended.
public final class DurableStore {
    public let eventLoop: any EventLoop
    private let log: WriteAheadLog
    private var footprint: ReplicaLogFootprint
    /// What each group held when the log was opened; the node starts its queues from it.
    public let recovered: [String: ReplicaLogRecovery.Group]
    /// Space reclamation in progress (a checkpoint being written).
    private(set) var reclaiming = false

    /// Opens (or creates) the log in `directory` and reads it back.
    /// - Throws: ``LogOpenError`` (corrupt: the node must not start; unavailable: it may run
    ///   without durable queues) or ``ReplicaLogRecovery/Malformed``.
    public init(directory: String, settings: WriteAheadLog.Settings, eventLoop: any EventLoop) throws {
        var recovery = ReplicaLogRecovery()
        self.log = try WriteAheadLog.open(directory: directory, settings: settings) { try recovery.replay($0) }
        do {
            try recovery.finish()
        } catch {
            log.close()
            throw error
        }
        self.eventLoop = eventLoop
        self.footprint = recovery.footprint
        self.recovered = recovery.groups
    }

    public var statistics: WriteAheadLog.Statistics { log.statistics }
    public var directory: String { log.directory }

    /// Appends `records` and calls `done` on the store's loop once they are durable (or not).
    public func write(
        _ records: [ReplicaRecord],
        admission: WriteAheadLog.Admission,
        _ done: @escaping (Result<LogPosition, LogAppendError>) -> Void
    ) {
        eventLoop.preconditionInEventLoop()
        let loop = NIOLoopBound((self, done), eventLoop: eventLoop)
        log.append(records.map(\.logRecord), admission: admission) { [eventLoop] result in
            eventLoop.execute {
                let (store, done) = loop.value
                if case .success(let position) = result {
                    for record in records { store.footprint.wrote(record, in: position.segment) }
                }
                done(result)
            }
        }
    }

    /// Removes the segments no group needs. Groups whose hard state or snapshot base sit in an
    /// older segment are written again first (`checkpoint` gives their records, `nil` for a
    /// group this node no longer runs, which is then forgotten).
    /// - Returns: the groups whose entries hold the oldest segment back, with the index before
    ///   which their queues must move their messages (and then compact) to free it.
    @discardableResult
    public func reclaimSpace(checkpoint: (String) -> [ReplicaRecord]?) -> [(group: String, moveBefore: UInt64)] {
        eventLoop.preconditionInEventLoop()
        let current = log.currentSegment
        guard !reclaiming, statistics.segments > 1 else { return [] }
        let stale = footprint.groupsToCheckpoint(before: current)
        let records = stale.flatMap { checkpoint($0) ?? [.forget(group: $0)] }
        if records.isEmpty {
            log.deleteSegments(before: footprint.oldestNeededSegment ?? current)
        } else {
            reclaiming = true
            write(records, admission: .control) { [self] result in
                reclaiming = false
                guard case .success = result else { return }
                log.deleteSegments(before: footprint.oldestNeededSegment ?? current)
            }
        }
        return footprint.groupsHoldingTheOldestSegment()
    }

    public func close() {
        log.close()
    }
}
