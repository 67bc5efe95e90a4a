import DequeModule
import Logging
import Metrics
import NIOCore
import Replication
import StompRouting

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The durable queues of one node: the write-ahead log under `data.dir` and one
/// ``ReplicatedQueue`` per queue that ever got a `persistent:true` SEND, driven on the
/// broker's loop. It does the ``DurableWork`` the router asks for, hands committed messages
/// to the router's consumers (``RouterClusterOperation/acceptDurable(queue:_:id:redelivered:)``)
/// and tells the broker when each write a connection waits for is durable.
///
/// Confined to the broker's event loop: every method is called there, and every completion
/// runs there. See `Sources/Replication/REPLICATION.md` for the promise it keeps.
public final class DurableQueues: @unchecked Sendable {
    public struct Settings: Sendable {
        /// The log's directory (`data.dir`).
        public var directory: String
        public var log: WriteAheadLog.Settings
        /// How long a durable write may take before its connection gets an ERROR
        /// (`replication.send-timeout-ms`).
        public var sendTimeout: TimeAmount
        /// Durable queues the node holds (`limits.queues`, as for in-memory queues).
        public var maxQueues: Int
        /// Persistent SENDs are refused while the data dir's file system has less free
        /// (`data.min-free-bytes`), so that the log never meets a full disk mid-batch.
        public var minFreeBytes: Int64
        /// Messages of one queue handed to this node's consumers and not yet settled: the
        /// router holds no more of a durable queue than this.
        public var dispatchWindow: Int
        /// Replicas of each durable queue (`replication.factor`), or the cluster's size when
        /// smaller, when the queue is made.
        public var replicationFactor: Int
        /// A replica's node away this long is replaced by the next node placement ranks
        /// (`replication.replace-after-ms`); `nil`: never.
        public var replaceAfter: TimeAmount?

        public init(
            directory: String,
            log: WriteAheadLog.Settings = WriteAheadLog.Settings(),
            sendTimeout: TimeAmount = .seconds(5),
            maxQueues: Int = 10_000,
            minFreeBytes: Int64 = 64 << 20,
            dispatchWindow: Int = 1_024,
            replicationFactor: Int = 3,
            replaceAfter: TimeAmount? = .seconds(60)
        ) {
            self.directory = directory
            self.log = log
            self.sendTimeout = sendTimeout
            self.maxQueues = maxQueues
            self.minFreeBytes = minFreeBytes
            self.dispatchWindow = dispatchWindow
            self.replicationFactor = replicationFactor
            self.replaceAfter = replaceAfter
        }
    }

    public typealias Completion = (Result<Void, StompProtocolError>) -> Void

    /// A proposal some connection waits for.
    private struct Proposal {
        var queue: String
        var completions: [Completion]
    }

    public let eventLoop: any EventLoop
    public let settings: Settings
    private let node: ReplicaID
    private let logger: Logger
    /// `nil` when the data dir can't be used: `unavailable` says why.
    private let store: DurableStore?
    private let unavailable: String?
    private(set) var queues: [String: DurableQueue] = [:]
    /// Local consumers per queue, as the router's interest reports them (durable or not: a
    /// queue may get its first persistent message after its consumers came).
    private var consumers: [String: Int] = [:]
    private var remoteConsumers: [String: Int] = [:]
    private var proposals: [UInt64: Proposal] = [:]
    /// Tokens in the order they were made, which is their deadlines' order too.
    private var deadlines = Deque<(token: UInt64, deadline: NIODeadline)>()
    private var nextToken: UInt64 = 0
    /// Settles gathered during one dispatch of the broker, proposed together by ``flush()``.
    private var settles: [String: (ids: [UInt64], completions: [Completion])] = [:]
    private var timer: RepeatedTask?
    private var nextHousekeeping = NIODeadline.now()
    private var freeBytes = Int64.max
    /// When each replica node of a queue this node leads was first seen away; an entry goes
    /// once its node is back or no such queue names it.
    private var awaySince: [ReplicaID: NIODeadline] = [:]
    /// Queues this node doesn't hold but has writes for, while it asks the other nodes
    /// whether one holds them; each ends within ``lookupTimeout``, and counts against
    /// `limits.queues` (it may make the queue).
    private var lookups: [String: QueueLookup] = [:]
    private var lastLookupID: UInt64 = 0
    private let metrics = DurableMetrics()
    private let queueMetrics = DurableQueueMetrics()
    /// Where committed messages go: the router of this node (set by the broker).
    var deliver: (([RouterClusterOperation]) -> Void)?
    /// The other replicas, through the cluster link; `nil` on a node without a cluster.
    private var link: (any ReplicationLink)?
    /// Forwarded commands go no further than this many nodes from where they came in: to a
    /// placement replica, to a node that holds the queue (``QueueLookup``), to its leader, and
    /// one to spare for a leader that just changed.
    private static let maxHops: UInt8 = 4
    /// Commands one queue keeps while it has no leader, beyond those its clients wait for.
    private static let maxParked = 10_000
    /// Queues this node leads that may have a learner catching up at once.
    private static let maxNewcomers = 32
    /// Times a removed replica is told it may drop its copy.
    private static let removalNotices = 3
    /// How long writes for a queue this node doesn't hold wait for the other nodes to say
    /// whether one of them holds it: a quarter of `replication.send-timeout-ms`, so that they
    /// still have the rest to commit.
    private var lookupTimeout: TimeAmount { .nanoseconds(settings.sendTimeout.nanoseconds / 4) }

    /// What every queue's reshaping this second shares.
    private struct ReshapeRound {
        var live: [ReplicaID]
        /// Replicas away longer than `replication.replace-after-ms`.
        var gone: Set<ReplicaID>
        /// Learners that may still be added this round (``maxNewcomers`` at once).
        var newcomersLeft: Int
    }

    /// Opens the log and starts every queue it holds.
    /// - Throws: ``Replication/LogOpenError/corrupt(path:offset:reason:)`` or
    ///   ``Replication/ReplicaLogRecovery/Malformed``: the node must not serve what it can't
    ///   read. A data dir that can't be used at all is not thrown: the node serves everything
    ///   else, and persistent SENDs get an ERROR saying why.
    public init(settings: Settings, node: String, eventLoop: any EventLoop, logger: Logger) throws {
        self.settings = settings
        self.node = ReplicaID(node)
        self.eventLoop = eventLoop
        self.logger = logger
        do {
            store = try DurableStore(directory: settings.directory, settings: settings.log, eventLoop: eventLoop)
            unavailable = nil
        } catch LogOpenError.unavailable(let reason) {
            logger.error(
                "durable queues unavailable: persistent messages will be refused",
                metadata: ["data.dir": "\(settings.directory)", "error": "\(reason)"]
            )
            store = nil
            unavailable = reason
        }
        let now = NIODeadline.now()
        for (name, group) in store?.recovered ?? [:] {
            queues[name] = makeQueue(name, recovered: group, now: now)
        }
        if let store, !queues.isEmpty {
            logger.info(
                "durable queues read back",
                metadata: [
                    "data.dir": "\(settings.directory)", "queues": "\(queues.count)",
                    "log.bytes": "\(store.statistics.diskBytes)",
                ]
            )
        }
    }

    /// Starts the clock that drives elections, timeouts and compaction. On the broker's loop.
    public func start() {
        eventLoop.preconditionInEventLoop()
        for queue in queues.values {
            carry(queue.replica.tick(now: .now()), of: queue)
            // Its only voter: nothing to wait for before it leads again.
            if queue.replica.raft.members.voters == [node] { carry(queue.replica.electNow(now: .now()), of: queue) }
        }
        timer = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(100)) {
            [self] _ in tick()
        }
    }

    /// Connects the queues to their replicas on other nodes. On the broker's loop, before
    /// ``start()``.
    public func attach(link: any ReplicationLink) {
        eventLoop.preconditionInEventLoop()
        self.link = link
    }

    /// A peer's ``ReplicationMessage``, from the cluster link. On the broker's loop.
    public func received(_ payload: ByteBuffer, from peer: String) {
        eventLoop.preconditionInEventLoop()
        guard let message = ReplicationMessage(decoding: payload) else {
            metrics.unreadableMessages.increment()
            return
        }
        switch message {
        case .raft(let envelope):
            guard let queue = queues[envelope.group] ?? replicaQueue(envelope.group, for: envelope.message) else {
                return
            }
            let sender = ReplicaID(peer)
            carry(queue.replica.receive(envelope.message, from: sender, now: .now()), of: queue)
            // A replica this queue no longer has (back after it was replaced, or moved off):
            // told it may drop its copy, once that is safe.
            if let removal = queue.replica.raft.removal(of: sender) {
                link?.send(ReplicationMessage.removed(queue: queue.name, removal).encoded, to: peer)
            }
        case .removed(let name, let removal):
            guard let queue = queues[name], queue.replica.raft.mayForget(after: removal) else { return }
            drop(queue, removedBy: peer)
        case .lookup(let name, let id, let askerMakes):
            let answer: QueueLookup.Answer =
                if let queue = queues[name] {
                    queue.replica.raft.leader == nil ? .heldWithoutLeader : .heldWithLeader
                } else {
                    lookups[name]?.answer(peer, askerMakes: askerMakes, me: node, makes: wouldMake(name)) ?? .notHeld
                }
            link?.send(ReplicationMessage.lookupAnswer(queue: name, id: id, answer).encoded, to: peer)
        case .lookupAnswer(let name, let id, let answer):
            if let outcome = lookups[name]?.answered(by: peer, to: id, answer) { endLookup(name, outcome) }
        case .command(let token, let hops, let name, let command):
            var completions: [Completion] = []
            if let link, token != 0 {
                // The sender waits for this (token 0: no one does).
                completions.append { result in
                    var failure: ReplicationMessage.Failure?
                    if case .failure(let error) = result {
                        failure = ReplicationMessage.Failure(
                            kind: error.kind.rawValue,
                            summary: error.summary,
                            detail: error.detail
                        )
                    }
                    link.send(ReplicationMessage.outcome(token: token, error: failure).encoded, to: peer)
                }
            }
            var admission = WriteAheadLog.Admission.control
            switch command {
            case .enqueue(let payload):
                if let refusal = refusal(forEnqueueTo: name, bytes: payload.readableBytes) {
                    for completion in completions { completion(.failure(refusal)) }
                    return
                }
                // Only new messages count against data.max-bytes: settles must get through.
                admission = .payload
            case .bind:
                // It may make the queue.
                if let refusal = refusal(forEnqueueTo: name, bytes: 0) {
                    for completion in completions { completion(.failure(refusal)) }
                    return
                }
                completions = completions.map(afterBindingPropagates)
            case .settle, .requeue, .move, .unbind:
                break
            }
            submit(command, to: name, admission: admission, hops: hops, completions: completions)
        case .deliver(let name, let id, let redelivered, let payload):
            guard let envelope = DurableMessageCodec.decode(payload, queue: name) else {
                metrics.unreadableMessages.increment()
                return
            }
            // The router settles it or gives it back; either goes to the leader as a command.
            deliver?([.acceptDurable(queue: name, envelope, id: id, redelivered: redelivered)])
        case .outcome(let token, let failure):
            finish(
                token,
                failure.map {
                    .failure(
                        StompProtocolError(
                            StompProtocolError.Kind(rawValue: $0.kind) ?? .durableUnavailable,
                            $0.summary,
                            detail: $0.detail
                        )
                    )
                } ?? .success(())
            )
        }
    }

    /// Before the node leaves the cluster: each queue it leads hands its leadership to its most
    /// up-to-date follower, so that no client waits for an election. Called again until it
    /// says none is left (a transfer gives up after an election timeout, and is retried).
    /// - Returns: how many queues this node still leads.
    public func handOverLeadership() -> Int {
        eventLoop.preconditionInEventLoop()
        let live = Set(link?.liveNodes ?? [])
        var leading = 0
        for queue in queues.values where queue.replica.raft.role == .leader {
            let raft = queue.replica.raft
            let followers = raft.progress.filter { !$0.value.isLearner && live.contains($0.key.name) }
            guard let target = followers.max(by: { $0.value.matchIndex < $1.value.matchIndex })?.key else { continue }
            leading += 1
            guard !raft.isTransferringLeadership else { continue }
            logger.info(
                "durable queue leadership handed over",
                metadata: ["queue": "\(queue.name)", "to": "\(target)"]
            )
            carry(queue.replica.transferLeadership(to: target, now: .now()).effects, of: queue)
        }
        return leading
    }

    /// Stops the clock and closes the log once what was appended is on disk.
    public func close() {
        eventLoop.preconditionInEventLoop()
        timer?.cancel()
        timer = nil
        store?.close()
    }

    /// Queues held and the log's figures, for the admin API and `/metrics`.
    public var statistics: (queues: Int, messages: Int, bytes: Int, log: WriteAheadLog.Statistics?) {
        let (messages, bytes) = queues.values.reduce((0, 0)) {
            ($0.0 + $1.replica.state.count, $0.1 + $1.replica.state.bytes)
        }
        return (queues.count, messages, bytes, store?.statistics)
    }

    // MARK: - From the router

    /// Does `work`; `completion` (if any) runs once it is durable, or with the ERROR for the
    /// connection that waits for it.
    func perform(_ work: DurableWork, completion: Completion?) {
        switch work {
        case .enqueue(let name, let envelope):
            let payload = DurableMessageCodec.encode(envelope)
            if let refusal = refusal(forEnqueueTo: name, bytes: payload.readableBytes) {
                completion?(.failure(refusal))
                return
            }
            submit(
                .enqueue(payload),
                to: name,
                admission: .payload,
                hops: 0,
                completions: completion.map { [$0] } ?? []
            )
        case .settle(let name, let ids):
            // Of this node's leadership, or sent here by the leader of a queue elsewhere: the
            // settle goes to whoever leads now.
            queues[name]?.out.subtract(ids)
            settles[name, default: ([], [])].ids += ids
            if let completion { settles[name]!.completions.append(completion) }
        case .giveBack(let name, let ids, let delivered):
            guard let queue = queues[name], queue.replica.raft.role == .leader else {
                // Sent here by the queue's leader on another node: it takes them back (as
                // delivered, since this node can't tell which of them its consumers saw).
                queues[name]?.out.subtract(ids)
                for chunk in ids.chunks(of: QueueCommand.maxIDs) {
                    submit(.requeue(chunk), to: name, admission: .control, hops: 0, completions: [])
                }
                return
            }
            for id in ids { queue.out.remove(id) }
            if delivered {
                // Ready again once the requeue is committed, which marks them redelivered for
                // whichever node delivers them next.
                for chunk in ids.chunks(of: QueueCommand.maxIDs) {
                    submit(.requeue(chunk), to: name, admission: .control, hops: 0, completions: [])
                }
            } else {
                // Not handed out again now: the router just said it has no one for them. The
                // next consumer (or the clock) does.
                queue.returnToFront(ids)
            }
        case .bind(let name, let pattern):
            if let refusal = refusal(forEnqueueTo: name, bytes: 0) {
                completion?(.failure(refusal))
                return
            }
            let completions = completion.map { [afterBindingPropagates($0)] } ?? []
            submit(.bind(pattern), to: name, admission: .control, hops: 0, completions: completions)
        case .unbind(let name):
            submit(.unbind, to: name, admission: .control, hops: 0, completions: completion.map { [$0] } ?? [])
        }
    }

    /// Local consumers of the queue `name` changed by `delta`.
    func consumersChanged(queue name: String, delta: Int) {
        let count = consumers[name, default: 0] + delta
        consumers[name] = count > 0 ? count : nil
        if count > 0, let queue = queues[name] { pump(queue) }
    }

    /// Consumers of the queue `name` on other nodes are now `count`: the router hands the
    /// queue's messages to them when it has no consumer of its own.
    func remoteConsumersChanged(queue name: String, count: Int) {
        remoteConsumers[name] = count > 0 ? count : nil
        if count > 0, let queue = queues[name] { pump(queue) }
    }

    /// Proposes the settles gathered since the last flush: one entry per queue (per
    /// ``Replication/QueueCommand/maxIDs``), however many ACKs a dispatch carried.
    func flush() {
        guard !settles.isEmpty else { return }
        let gathered = settles
        settles.removeAll(keepingCapacity: true)
        for (name, settle) in gathered {
            let chunks = settle.ids.chunks(of: QueueCommand.maxIDs)
            for (position, chunk) in chunks.enumerated() {
                // Raft commits in order, so the last chunk's commit vouches for all of them.
                let completions = position == chunks.count - 1 ? settle.completions : []
                submit(.settle(chunk), to: name, admission: .control, hops: 0, completions: completions)
            }
            if let queue = queues[name] { pump(queue) }
        }
    }

    // MARK: - Proposals

    private func refusal(forEnqueueTo name: String, bytes: Int) -> StompProtocolError? {
        guard let store else {
            return StompProtocolError(
                .durableUnavailable,
                "durable queues unavailable",
                detail:
                    "This node cannot store persistent messages: \(unavailable ?? "its data dir can't be used") (data.dir \(settings.directory))."
            )
        }
        if let queue = queues[name] {
            if let broken = queue.broken { return Self.brokenError(name, broken) }
            if isCutOff(queue) {
                metrics.refused(.durableUnavailable)
                return Self.noQuorumError(
                    name,
                    "Fewer than a majority of the replicas of /queue/\(name) (\(queue.replica.raft.members.voters.map(\.name).sorted().joined(separator: ", "))) are up as this node sees the cluster: a write could not be made durable."
                )
            }
            // Messages waiting for the queue to have a leader are held in memory only: a
            // queue cut off from its majority refuses more rather than holding more.
            if !queue.parked.isEmpty, queue.parkedBytes + bytes > settings.log.maxBytes / 16 {
                metrics.refused(.durableUnavailable)
                return Self.noQuorumError(
                    name,
                    "/queue/\(name) has no leader reachable from this node, and the \(queue.parkedBytes) bytes of messages waiting for one reached 1/16 of data.max-bytes (\(settings.log.maxBytes / 16))."
                )
            }
        } else if lookups[name] == nil, queues.count + lookups.count >= settings.maxQueues {
            return StompProtocolError(
                .tooManyQueues,
                "too many queues",
                detail:
                    "This node already holds (or looks up) its limit of \(settings.maxQueues) durable queues (limits.queues)."
            )
        } else if case let waiting = lookups.values.reduce(0, { $0 + $1.bytes }),
            waiting > 0, waiting + bytes > settings.log.maxBytes / 16
        {
            // Like messages waiting for a leader: held in memory only, and as briefly.
            metrics.refused(.durableUnavailable)
            return Self.noQuorumError(
                name,
                "/queue/\(name) is being looked for on the other nodes, and the \(waiting) bytes of messages waiting for such lookups reached 1/16 of data.max-bytes (\(settings.log.maxBytes / 16))."
            )
        }
        // With room for a few records' framing to spare, so that the log itself never refuses
        // a write the queue's replica already counts on.
        let log = store.statistics
        let needed = log.diskBytes + log.pendingBytes + Int64(bytes) + 64 << 10
        if needed > settings.log.maxBytes {
            metrics.refused(.dataLimit)
            return StompProtocolError(
                .dataLimit,
                "durable log full",
                detail:
                    "The durable log holds its limit of \(settings.log.maxBytes) bytes (data.max-bytes); try again once consumers catch up."
            )
        }
        if freeBytes < settings.minFreeBytes + Int64(bytes) {
            metrics.refused(.diskFull)
            return StompProtocolError(
                .diskFull,
                "disk full",
                detail:
                    "The file system of \(settings.directory) has \(freeBytes) bytes free, less than data.min-free-bytes (\(settings.minFreeBytes))."
            )
        }
        return nil
    }

    /// A queue this node doesn't lead, with fewer of its voters up (as membership sees them,
    /// this node counted) than a majority: a write could not commit, so it is refused now
    /// rather than left to time out. (Writes already on their way are in doubt: they time out.)
    /// A replica that doesn't know its voters yet (just made for a leader's entries) can't
    /// tell.
    private func isCutOff(_ queue: DurableQueue) -> Bool {
        let members = queue.replica.raft.members
        guard let link, queue.replica.raft.role != .leader, !members.voters.isEmpty else { return false }
        let live = link.liveNodes
        return members.voters.count(where: { live.contains($0.name) }) < members.quorum
    }

    /// A node that sees fewer than a majority of the members it knows up (membership remembers
    /// the dead ones for a minute) makes no queue: the queue may live on the other side of
    /// the partition, and a second group of its name would meet the first when it heals.
    private func cutOffRefusal(making name: String) -> StompProtocolError? {
        guard let link else { return nil }
        let live = link.liveNodes.count
        let known = live + link.deadNodes.count
        guard live * 2 <= known else { return nil }
        metrics.refused(.durableUnavailable)
        return Self.noQuorumError(
            name,
            "This node sees \(live) of the \(known) members it knows up: cut off from the majority, it makes no new durable queue (/queue/\(name) may exist on the other side)."
        )
    }

    /// A write that can't be made durable now: not enough of the queue's replicas (or of the
    /// cluster) are reachable from this node.
    private static func noQuorumError(_ name: String, _ detail: String) -> StompProtocolError {
        StompProtocolError(.durableUnavailable, "no quorum for /queue/\(name)", detail: detail)
    }

    /// A write that will never be made: its client may send it again.
    private static func lostError(_ detail: String) -> StompProtocolError {
        StompProtocolError(.durableUnavailable, "durable write lost", detail: detail)
    }

    private static func brokenError(_ name: String, _ reason: String) -> StompProtocolError {
        StompProtocolError(
            .durableUnavailable,
            "durable queue unavailable",
            detail: "/queue/\(name) takes no writes until the node restarts: \(reason)."
        )
    }

    /// Has `command` committed in the queue `name`: proposed here when this node leads it,
    /// else passed to the node that does (or, for a queue this node doesn't hold, to one of
    /// its replicas), else kept until this node leads or learns who does.
    private func submit(
        _ command: QueueCommand,
        to name: String,
        admission: WriteAheadLog.Admission,
        hops: UInt8,
        completions: [Completion]
    ) {
        let write = QueueLookup.Waiting(
            command: command,
            admission: admission,
            hops: hops,
            token: makeToken(name, completions)
        )
        route(write, to: name, mayLookUp: true)
    }

    /// - Parameter mayLookUp: for a queue this node doesn't hold, the other nodes are asked
    ///   first whether one of them holds it (``QueueLookup``): it may live on nodes that
    ///   placement no longer ranks first (made while fewer were up), and making it again would
    ///   make a second group of the same name. `false` once that was asked.
    private func route(_ write: QueueLookup.Waiting, to name: String, mayLookUp: Bool) {
        let (command, hops, token) = (write.command, write.hops, write.token)
        if let queue = queues[name] {
            if let token { queue.tokens.insert(token) }
            if queue.replica.raft.role != .leader, let leader = queue.replica.raft.leader, leader != node,
                hops < Self.maxHops, forward(command, to: leader, queue: name, hops: hops + 1, token: token)
            {
                return
            }
            propose(command, on: queue, admission: write.admission, token: token)
            return
        }
        // (Lookups are bounded like the queues they may make; beyond, a write goes by placement.)
        if mayLookUp, lookups[name] != nil || lookups.count < settings.maxQueues {
            lookUp(name, for: write)
            return
        }
        let replicas = placement(of: name)
        // Only a new message or a durable subscription makes a queue (checked against
        // limits.queues before).
        if command.makesQueue, replicas.contains(node) {
            if let refusal = cutOffRefusal(making: name) {
                fail(token, refusal)
                return
            }
            _ = newQueue(name, members: replicas, electNow: true)
            route(write, to: name, mayLookUp: false)
            return
        }
        // Any other replica passes it on to the leader it knows.
        for replica in replicas where replica != node && hops < Self.maxHops {
            if forward(command, to: replica, queue: name, hops: hops + 1, token: token) { return }
        }
        fail(token, Self.noQuorumError(name, "No replica of /queue/\(name) is reachable from this node."))
    }

    /// Holds `write` back until the other live nodes said whether one of them holds the queue
    /// `name` (a node that can't be reached can't say: it is taken to hold nothing).
    private func lookUp(_ name: String, for write: QueueLookup.Waiting) {
        if let lookup = lookups[name] {
            guard lookup.waiting.count < Self.maxParked else {
                // Settles and requeues, which skip ``refusal(forEnqueueTo:bytes:)``: their
                // messages are delivered again, as after a failover.
                fail(write.token, Self.noQuorumError(name, "Too many writes wait for /queue/\(name) to be found."))
                return
            }
            lookups[name]!.add(write)
            return
        }
        let others = Set((link?.liveNodes ?? []).filter { $0 != node.name })
        lastLookupID += 1
        var lookup = QueueLookup(id: lastLookupID, asking: others, deadline: .now() + lookupTimeout)
        lookup.add(write)
        let ask = ReplicationMessage.lookup(queue: name, id: lookup.id, makes: wouldMake(name)).encoded
        var outcome: QueueLookup.Outcome? = others.isEmpty ? .heldNowhere : nil
        for peer in others.sorted() where link?.send(ask, to: peer) != true {
            outcome = lookup.answered(by: peer, to: lookup.id, .notHeld)
        }
        lookups[name] = lookup
        if let outcome { endLookup(name, outcome) }
    }

    /// Whether this node would make the queue `name` if no node holds it: it is among the
    /// replicas placement picks, as this node sees the members, and it can store them.
    private func wouldMake(_ name: String) -> Bool {
        store != nil && placement(of: name).contains(node)
    }

    /// The writes that waited for the lookup of `name` go where its outcome says.
    private func endLookup(_ name: String, _ outcome: QueueLookup.Outcome, timedOut: Bool = false) {
        guard let lookup = lookups.removeValue(forKey: name) else { return }
        metrics.lookedUp(outcome, timedOut: timedOut)
        // One whose client was told it timed out is not made behind its back.
        let writes = lookup.waiting.filter { write in write.token.map { proposals[$0] != nil } ?? true }
        guard case .passTo(let holder) = outcome else {
            if timedOut {
                logger.warning(
                    "durable queue looked up without every node's answer: taken to be held nowhere",
                    metadata: ["queue": "\(name)", "unanswered": "\(lookup.unanswered.sorted())"]
                )
            }
            for write in writes { route(write, to: name, mayLookUp: false) }
            return
        }
        for write in writes {
            if write.hops < Self.maxHops,
                forward(write.command, to: ReplicaID(holder), queue: name, hops: write.hops + 1, token: write.token)
            {
                continue
            }
            let detail =
                "\(holder) holds /queue/\(name) and is not reachable from this node (or the write already went through \(Self.maxHops) nodes)."
            fail(write.token, Self.noQuorumError(name, detail))
        }
    }

    /// Passes `command` to `replica`, saying it came `hops` nodes so far; `false` when no
    /// link to it is up (a leader that just died): the caller keeps it until a leader is
    /// known again.
    private func forward(
        _ command: QueueCommand,
        to replica: ReplicaID,
        queue name: String,
        hops: UInt8,
        token: UInt64?
    ) -> Bool {
        let message = ReplicationMessage.command(token: token ?? 0, hops: hops, queue: name, command)
        return link?.send(message.encoded, to: replica.name) ?? false
    }

    /// A token for `completions`, answered by ``finish(_:_:)`` or at its deadline; `nil` when
    /// no one waits.
    private func makeToken(_ name: String, _ completions: [Completion]) -> UInt64? {
        guard !completions.isEmpty else { return nil }
        nextToken += 1
        proposals[nextToken] = Proposal(queue: name, completions: completions)
        deadlines.append((nextToken, .now() + settings.sendTimeout))
        queues[name]?.tokens.insert(nextToken)
        return nextToken
    }

    private func propose(
        _ command: QueueCommand,
        on queue: DurableQueue,
        admission: WriteAheadLog.Admission,
        token: UInt64?
    ) {
        if let broken = queue.broken {
            fail(token, Self.brokenError(queue.name, broken))
            return
        }
        guard queue.replica.raft.role == .leader else {
            // Not elected yet (a new queue, or just after a restart): made once it is, or
            // passed on once a leader is known.
            queue.park(DurableQueue.Parked(command: command, token: token, admission: admission))
            return
        }
        let (result, effects) = queue.replica.propose(command, token: token, now: .now())
        switch result {
        case .accepted:
            carry(effects, of: queue, admission: admission)
        case .notLeader, .rejected:
            carry(effects, of: queue)
            queue.park(DurableQueue.Parked(command: command, token: token, admission: admission))
        }
    }

    private func proposeParked(_ queue: DurableQueue) {
        let parked = queue.takeParked()
        let leader = queue.replica.raft.leader
        for entry in parked {
            // One whose client was already told it timed out is not made behind its back.
            if let token = entry.token, proposals[token] == nil { continue }
            if queue.replica.raft.role != .leader, let leader, leader != node {
                if !forward(entry.command, to: leader, queue: queue.name, hops: 1, token: entry.token) {
                    queue.park(entry)
                }
                continue
            }
            let (result, effects) = queue.replica.propose(entry.command, token: entry.token, now: .now())
            if case .accepted = result {
                carry(effects, of: queue, admission: entry.admission)
            } else {
                carry(effects, of: queue)
                queue.park(entry)
            }
        }
    }

    private func finish(_ token: UInt64, _ result: Result<Void, StompProtocolError>) {
        guard let proposal = proposals.removeValue(forKey: token) else { return }
        queues[proposal.queue]?.tokens.remove(token)
        for completion in proposal.completions { completion(result) }
    }

    /// The ERROR for whoever waits for a write (`nil`: no one).
    private func fail(_ token: UInt64?, _ error: StompProtocolError) {
        if let token { finish(token, .failure(error)) }
    }

    // MARK: - The replicas' effects

    private func carry(
        _ effects: [ReplicatedQueue.Effect],
        of queue: DurableQueue,
        admission: WriteAheadLog.Admission = .control
    ) {
        // A write that completes after the queue's replica was dropped: nothing to do.
        guard queues[queue.name] === queue else { return }
        var becameLeader = false  // or learnt who leads
        // Parked proposals are made after the other effects: the leader's first entry (its
        // no-op) is among them, and the log must hold it before theirs.
        defer {
            if becameLeader { proposeParked(queue) }
            announceBinding(of: queue)
        }
        for effect in effects {
            switch effect {
            case .write(let records, let durability):
                guard let store else { continue }
                store.write(records, admission: admission) { [self] result in
                    switch result {
                    case .success:
                        if let durability, queue.broken == nil { carry(queue.replica.written(durability), of: queue) }
                    case .failure(let error):
                        breakDown(queue, error)
                    }
                }
            case .send(let message, let replica):
                let envelope = RaftEnvelope(group: queue.name, message: message)
                link?.send(ReplicationMessage.raft(envelope).encoded, to: replica.name)
            case .committed(let token):
                finish(token, .success(()))
            case .lost(let token):
                finish(
                    token,
                    .failure(Self.lostError("/queue/\(queue.name) changed leader before this write was committed."))
                )
            case .ready(let ids):
                // Only the leader hands messages out; a follower that becomes leader is told
                // every message again when it applies its term's first entry.
                guard queue.replica.raft.role == .leader else { continue }
                // Requeued by the node they were sent to: no longer out there.
                for target in queue.outAt.keys { queue.outAt[target]!.subtract(ids) }
                queue.makeReady(ids)
                pump(queue)
            case .roleChanged(let role, let term, let leader):
                // Parked commands go to the leader, whether this node or another.
                becameLeader = leader != nil
                // What this node sent to others as leader is the next leader's business (it
                // hands every unsettled message out again).
                if role != .leader {
                    queue.departed.removeAll()
                    queue.outAt.removeAll()
                    queue.outAtLink.removeAll()
                    queue.forgetReady()
                }
                // Elections' steps (pre-candidate, candidate) are debug: a node cut off from its
                // peers goes through them for every queue it holds, again and again.
                logger.log(
                    level: role == .leader || leader != nil ? .info : .debug,
                    "durable queue leader",
                    metadata: [
                        "queue": "\(queue.name)", "leader": "\(leader?.name ?? "none")", "term": "\(term)",
                        "role": "\(role)",
                    ]
                )
            }
        }
    }

    /// A binding's success is told once the cluster knows of it: the leader's router announces
    /// the pattern's interest right after the commit (``announceBinding(of:)``), and once every
    /// peer holds it, a message published anywhere reaches the queue, as a SUBSCRIBE's RECEIPT
    /// promises. (The leader answers the node that forwarded the binding only then, too.)
    private func afterBindingPropagates(_ completion: @escaping Completion) -> Completion {
        { [self] result in
            guard case .success = result, let link else { return completion(result) }
            // On the next tick: the announcement follows the commit within this one. (Same
            // loop throughout, which the bound values check.)
            let bound = NIOLoopBound((link, completion), eventLoop: eventLoop)
            eventLoop.execute { bound.value.0.afterInterestPropagated { bound.value.1(result) } }
        }
    }

    /// Tells the router which topic pattern this queue takes messages from while this node
    /// leads it (and has applied its log: the binding is current), and that it no longer does
    /// once it doesn't: only the leader's router enqueues topic messages, so each is enqueued
    /// once.
    private func announceBinding(of queue: DurableQueue) {
        let binding = queue.replica.mayDispatch && queue.broken == nil ? queue.replica.state.binding : nil
        guard binding != queue.announcedBinding else { return }
        queue.announcedBinding = binding
        logger.info(
            "durable subscription bound here",
            metadata: ["queue": "\(queue.name)", "pattern": "\(binding ?? "none")"]
        )
        deliver?([.durableBinding(queue: queue.name, pattern: binding)])
    }

    /// A write of the queue's log failed: what its replica believes durable may not be, so it
    /// takes no more writes until a restart reads back what really is on disk. Every write
    /// waiting for it gets an ERROR; what it already holds is still delivered.
    private func breakDown(_ queue: DurableQueue, _ error: LogAppendError) {
        // A write that fails after the queue's replica was dropped: nothing of it is left here.
        guard queue.broken == nil, queues[queue.name] === queue else { return }
        queue.broken = error.description
        logger.error(
            "durable queue stops taking writes until the node restarts",
            metadata: ["queue": "\(queue.name)", "error": "\(error)"]
        )
        metrics.brokenQueues.increment()
        // Its router stops enqueueing topic messages in it (announceBinding checks `broken`).
        announceBinding(of: queue)
        let failure = Self.brokenError(queue.name, error.description)
        for token in queue.tokens.sorted() { finish(token, .failure(failure)) }
        _ = queue.takeParked()
    }

    // MARK: - Dispatch

    /// On the leader: hands ready messages to the nodes with consumers of the queue, this one
    /// through its router, the others through the link, round robin, each up to
    /// ``Settings/dispatchWindow`` messages not yet settled or given back.
    private func pump(_ queue: DurableQueue) {
        guard queue.replica.mayDispatch, !queue.ready.isEmpty else { return }
        var targets: [String] = []
        if consumers[queue.name] != nil { targets.append(node.name) }
        if remoteConsumers[queue.name] != nil, let link {
            targets += link.consumers(ofQueue: queue.name).filter { $0.value > 0 }.keys.sorted()
        }
        var unreachable = Set<String>()
        var batch: [RouterClusterOperation] = []
        while !queue.ready.isEmpty, let target = nextTarget(of: queue, among: targets, skipping: unreachable) {
            let id = queue.nextReady()!
            guard !queue.out.contains(id), let message = queue.replica.state.message(id) else { continue }
            if target == node.name {
                guard let envelope = DurableMessageCodec.decode(message.payload, queue: queue.name) else {
                    logger.error(
                        "unreadable durable message skipped",
                        metadata: ["queue": "\(queue.name)", "id": "\(id)"]
                    )
                    continue
                }
                queue.out.insert(id)
                batch.append(.acceptDurable(queue: queue.name, envelope, id: id, redelivered: message.redelivered))
            } else {
                let delivery = ReplicationMessage.deliver(
                    queue: queue.name,
                    id: id,
                    redelivered: message.redelivered,
                    payload: message.payload
                )
                if let link, let number = link.linkNumber(to: target), link.send(delivery.encoded, to: target) {
                    if queue.outAtLink[target] != number { reclaim(from: target, of: queue) }
                    queue.outAtLink[target] = number
                    queue.outAt[target, default: []].insert(id)
                } else {
                    queue.returnToFront([id])
                    unreachable.insert(target)
                }
            }
        }
        if !batch.isEmpty { deliver?(batch) }
    }

    /// The next of `targets` with room, round robin from where the last one left off.
    private func nextTarget(of queue: DurableQueue, among targets: [String], skipping: Set<String>) -> String? {
        guard !targets.isEmpty else { return nil }
        for offset in 0..<targets.count {
            let target = targets[(queue.nextNode + offset) % targets.count]
            guard !skipping.contains(target) else { continue }
            let held: Int
            if target == node.name {
                held = queue.out.count
            } else {
                if queue.outAt[target, default: []].count >= settings.dispatchWindow {
                    // Settles made on other nodes are not reported here one by one: drop the
                    // settled ones now that it matters.
                    queue.outAt[target] = queue.outAt[target]!.filter { queue.replica.state.message($0) != nil }
                }
                held = queue.outAt[target, default: []].count
            }
            if held < settings.dispatchWindow {
                queue.nextNode = (queue.nextNode + offset + 1) % targets.count
                return target
            }
        }
        return nil
    }

    /// On the leader: what was sent over a link that is gone (its node died, or the link went
    /// down, however briefly) goes out again. Some of it may have arrived: delivered twice,
    /// the second time `redelivered:true`, rather than left out there for ever.
    private func reclaimFromLostLinks(_ queue: DurableQueue) {
        guard let link, !queue.outAt.isEmpty, queue.replica.raft.role == .leader else { return }
        for target in queue.outAt.keys where link.linkNumber(to: target) != queue.outAtLink[target] {
            reclaim(from: target, of: queue)
        }
    }

    private func reclaim(from target: String, of queue: DurableQueue) {
        queue.outAtLink[target] = nil
        guard let ids = queue.outAt.removeValue(forKey: target), !ids.isEmpty else { return }
        logger.info(
            "durable messages sent over a lost link go out again",
            metadata: ["queue": "\(queue.name)", "cluster.peer": "\(target)", "messages": "\(ids.count)"]
        )
        for chunk in ids.sorted().chunks(of: QueueCommand.maxIDs) {
            submit(.requeue(chunk), to: queue.name, admission: .control, hops: 0, completions: [])
        }
    }

    // MARK: - Queues

    /// The nodes of the queues this node leads that have been away longer than
    /// `replication.replace-after-ms` (none when it is off).
    private func goneReplicas(now: NIODeadline) -> Set<ReplicaID> {
        guard let link else { return [] }
        let live = Set(link.liveNodes.map { ReplicaID($0) })
        var named = Set<ReplicaID>()
        for queue in queues.values where queue.replica.raft.role == .leader {
            named.formUnion(queue.replica.raft.members.voters)
            named.formUnion(queue.replica.raft.members.learners)
        }
        let away = named.subtracting(live)
        awaySince = awaySince.filter { away.contains($0.key) }
        for replica in away where awaySince[replica] == nil { awaySince[replica] = now }
        guard let replaceAfter = settings.replaceAfter else { return [] }
        return Set(awaySince.filter { now - $0.value >= replaceAfter }.keys)
    }

    /// On the leader: brings the queue's replica set towards the one placement ranks first
    /// among the live nodes and the replicas away for less than `replication.replace-after-ms`
    /// (``ReplicaSetPlan``), one step at a time: a newcomer joins as a learner and votes once
    /// it caught up; only then does the replica it replaces go (a voter is never removed
    /// without one). So a queue made on fewer nodes grows as members join, a node gone for
    /// good is replaced, a new node takes its share, and one that returns takes its place
    /// back: placement stays where every node looks for a queue.
    private func reshapeReplicaSet(of queue: DurableQueue, in round: inout ReshapeRound, now: NIODeadline) {
        let raft = queue.replica.raft
        let wanted = ReplicaSetPlan.wanted(
            of: queue.name,
            members: raft.members,
            live: round.live,
            gone: round.gone,
            factor: max(1, settings.replicationFactor)
        )
        // Those heard from within the shortest election timeout.
        let heardSince = now - .milliseconds(raft.settings.electionTimeout.lowerBound)
        let step = ReplicaSetPlan.nextStep(
            members: raft.members,
            wanted: wanted,
            leader: node,
            matchIndex: raft.progress.filter { $0.value.lastHeard >= heardSince }.mapValues(\.matchIndex),
            lastIndex: raft.lastIndex,
            // A node that joins is the newcomer of most queues at once: they catch up a few at a
            // time.
            mayAddLearner: round.newcomersLeft > 0
        )
        switch step {
        case nil:
            return
        case .transferLeadership(let successor):
            guard !raft.isTransferringLeadership else { return }
            logger.info(
                "durable queue leadership handed over",
                metadata: ["queue": "\(queue.name)", "to": "\(successor)", "reason": "leaves the replica set"]
            )
            carry(queue.replica.transferLeadership(to: successor, now: now).effects, of: queue)
        case .change(let change):
            if case .addLearner = change { round.newcomersLeft -= 1 }
            let (result, effects) = queue.replica.proposeMembers(change, now: now)
            carry(effects, of: queue)
            guard case .accepted = result else { return }
            if case .remove(let replica) = change { queue.departed[replica] = Self.removalNotices }
            metrics.replicaSetChanged(change)
            logger.info(
                "durable queue replica set changes",
                metadata: [
                    "queue": "\(queue.name)", "change": "\(change)",
                    "gone": "\(round.gone.intersection(raft.members.all).sorted())",
                ]
            )
        }
    }

    /// On the leader: each replica it removed is told it may drop its copy, once every voter
    /// holds the configuration without it (``Replication/RaftRemoval``). One that can't be
    /// reached now is told when it next speaks to this leader (``received(_:from:)``).
    private func tellDeparted(of queue: DurableQueue) {
        guard let link, !queue.departed.isEmpty else { return }
        for (replica, left) in queue.departed {
            if queue.replica.raft.members.contains(replica) {
                queue.departed[replica] = nil  // taken back since
            } else if let removal = queue.replica.raft.removal(of: replica),
                link.send(ReplicationMessage.removed(queue: queue.name, removal).encoded, to: replica.name)
            {
                // A few times, a second apart: a link may lose one.
                queue.departed[replica] = left > 1 ? left - 1 : nil
            }
        }
    }

    /// This node's replica was removed from the queue's replica set, and its leader says every
    /// voter holds that: the copy goes, from memory now and from the log with a `forget`
    /// record.
    private func drop(_ queue: DurableQueue, removedBy leader: String) {
        queues[queue.name] = nil
        store?.write([.forget(group: queue.name)], admission: .control) { _ in }
        metrics.droppedReplicas.increment()
        logger.info(
            "durable queue replica dropped: no longer in its replica set",
            metadata: ["queue": "\(queue.name)", "leader": "\(leader)", "messages": "\(queue.replica.state.count)"]
        )
        if queue.announcedBinding != nil {
            queue.announcedBinding = nil
            deliver?([.durableBinding(queue: queue.name, pattern: nil)])
        }
        // What waited for a leader goes to the one that spoke. What this replica forwarded
        // before gets its outcome from the leader, or times out.
        for entry in queue.takeParked() {
            if let token = entry.token, proposals[token] == nil { continue }
            if !forward(entry.command, to: ReplicaID(leader), queue: queue.name, hops: 0, token: entry.token),
                let token = entry.token
            {
                let detail =
                    "This node's replica of /queue/\(queue.name) left its replica set before the write was made."
                finish(token, .failure(Self.lostError(detail)))
            }
        }
    }

    /// The replicas a new queue `name` gets: the same on every node that sees the same members.
    private func placement(of name: String) -> [ReplicaID] {
        let nodes = (link?.liveNodes ?? [node.name]).map { ReplicaID($0) }
        return ReplicaPlacement.replicas(of: name, among: nodes, factor: max(1, settings.replicationFactor))
    }

    /// A queue this node doesn't hold yet, for a peer's Raft message. From a leader (entries or
    /// a snapshot), this node was added to the queue's replica set: it starts knowing no
    /// configuration and learns it from the leader's log, as a learner first. From a
    /// candidate, the queue is new and its first replica to see a SEND made it: this node is
    /// a replica if placement says so.
    private func replicaQueue(_ name: String, for message: RaftMessage) -> DurableQueue? {
        guard queues.count < settings.maxQueues, store != nil else { return nil }
        let replicas = placement(of: name)
        switch message {
        case .appendEntries, .installSnapshot:
            // The group's first configuration is no entry of its log: a replica of it that
            // missed the election starts from placement's, as its creator did. A newcomer the
            // leader added starts from none and learns its configuration from the log.
            return newQueue(name, members: replicas.contains(node) ? replicas : [], catchingUp: true)
        default:
            return replicas.contains(node) ? newQueue(name, members: replicas) : nil
        }
    }

    /// - Parameters:
    ///   - electNow: this node makes the queue for a client's write: it stands for election
    ///     at once, rather than keep the write waiting an election timeout.
    ///   - catchingUp: made for a leader's entries: it neither votes nor stands until it holds
    ///     what that leader committed (``Replication/RaftInstance/catchingUp``).
    private func newQueue(
        _ name: String,
        members: [ReplicaID],
        electNow: Bool = false,
        catchingUp: Bool = false
    ) -> DurableQueue {
        let configuration = RaftMembers(voters: Set(members))
        let queue = makeQueue(name, recovered: nil, members: configuration, catchingUp: catchingUp, now: .now())
        queues[name] = queue
        // The group's first configuration, written before anything else of it: after a
        // restart it is read back rather than worked out again from whoever is up by then.
        let bootstrap = RaftSnapshotBase(index: 0, term: 0, members: configuration, state: ByteBuffer())
        store?.write([.snapshot(group: name, bootstrap, keepsLaterEntries: true)], admission: .control) { _ in }
        carry(queue.replica.tick(now: .now()), of: queue)
        if electNow { carry(queue.replica.electNow(now: .now()), of: queue) }
        return queue
    }

    private func makeQueue(
        _ name: String,
        recovered: ReplicaLogRecovery.Group?,
        members: RaftMembers? = nil,
        catchingUp: Bool = false,
        now: NIODeadline
    ) -> DurableQueue {
        let members = recovered?.snapshot?.members ?? members ?? RaftMembers(voters: [node])
        // The usual timeouts even for a queue whose only voter is this node: it may grow, and
        // check-quorum and transfers need them. Such a queue elects at once instead
        // (``start()``, ``newQueue(_:members:electNow:)``).
        let raft = RaftSettings()
        let replica = ReplicatedQueue(
            group: name,
            id: node,
            recovered: recovered,
            members: members,
            catchingUp: catchingUp,
            settings: raft,
            now: now
        )
        return DurableQueue(name: name, replica: replica)
    }

    // MARK: - The clock

    private func tick() {
        let now = NIODeadline.now()
        for queue in queues.values where queue.broken == nil {
            carry(queue.replica.tick(now: now), of: queue)
            reclaimFromLostLinks(queue)
            // What was given back for want of a consumer, once one is there again.
            pump(queue)
        }
        while let first = deadlines.first, first.deadline <= now {
            deadlines.removeFirst()
            guard proposals[first.token] != nil else { continue }
            metrics.refused(.replicationTimeout)
            finish(
                first.token,
                .failure(
                    StompProtocolError(
                        .replicationTimeout,
                        "durable write timed out",
                        detail:
                            "The write was not durable within \(settings.sendTimeout.nanoseconds / 1_000_000) ms (replication.send-timeout-ms)."
                    )
                )
            )
        }
        for (name, lookup) in lookups where lookup.deadline <= now {
            endLookup(name, lookup.timedOut(), timedOut: true)
        }
        for queue in queues.values where !queue.parked.isEmpty {
            // Whose client was told it timed out: never made behind its back, and not kept.
            queue.dropParked { entry in entry.token.map { proposals[$0] == nil } ?? false }
            if queue.parked.count > Self.maxParked {
                // Settles and requeues no one waits for (auto-acks, consumers gone): dropped,
                // their messages are delivered again, as a failover would.
                queue.dropParked { $0.token == nil }
            }
        }
        if now >= nextHousekeeping {
            nextHousekeeping = now + .seconds(1)
            housekeeping(now: now)
        }
    }

    /// Once a second: the file system's free space, compaction, and the gauges.
    private func housekeeping(now: NIODeadline) {
        guard let store else { return }
        var info = statvfs()
        if statvfs(settings.directory, &info) == 0 {
            freeBytes = Int64(info.f_bavail) * Int64(info.f_frsize)
        }
        if let link {
            let moving = queues.values.filter {
                $0.replica.raft.role == .leader && !$0.replica.raft.members.learners.isEmpty
            }
            var round = ReshapeRound(
                live: link.liveNodes.map { ReplicaID($0) },
                gone: goneReplicas(now: now),
                newcomersLeft: Self.maxNewcomers - moving.count
            )
            for queue in queues.values where queue.replica.mayDispatch && queue.broken == nil {
                reshapeReplicaSet(of: queue, in: &round, now: now)
                tellDeparted(of: queue)
            }
        }
        let figures = statistics
        metrics.update(queues: figures.queues, messages: figures.messages, bytes: figures.bytes, log: figures.log)
        queueMetrics.update(led: ledQueueViews)
        // A broken queue's replica no longer knows what its log holds: nothing is removed
        // until the restart that reads it back.
        guard !queues.values.contains(where: { $0.broken != nil }) else { return }
        // Compaction costs a small record; a log past half its bound compacts every queue that
        // moved at all, so that acknowledged messages give their space back even when few
        // entries followed them (a full log takes no new messages to push it along).
        let pressed = figures.log.map { $0.diskBytes > settings.log.maxBytes / 2 } ?? false
        for queue in queues.values {
            carry(queue.replica.compact(minimumEntries: pressed ? 1 : 256), of: queue)
        }
        let pinned = store.reclaimSpace { [queues] name in queues[name]?.replica.checkpoint }
        for (name, moveBefore) in pinned {
            guard let queue = queues[name] else { continue }
            carry(queue.replica.moveMessages(before: moveBefore, limit: 256, now: now), of: queue)
        }
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements.
    fileprivate func chunks(of size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}
