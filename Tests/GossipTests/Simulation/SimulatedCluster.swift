import NIOCore
import StompRouting

@testable import Gossip

/// A single-threaded cluster of sans-IO nodes on a simulated network and clock.
///
/// Each node is a ``ClusterInstance``, the type `ClusterShell` drives: membership (SWIM),
/// interest and its acknowledgements (with the SUBSCRIBE receipts waiting for them), queue
/// hand-offs, and how each reacts to the others. With it, the node's ``LinkPolicy`` (when to
/// dial whom, with the real backoff and its jitter, and which of two links to a peer stays).
/// The cluster plays only the shell's part, step by step as `ClusterShell` and
/// `ClusterShell+Links` do it, since the shell itself is bound to NIO:
///
/// - the clock (`tick()`): the instance hears when frames last arrived on each link
///   (`heard(from:at:)`) and ticks, then missing peers are dialled (`dialMissingPeers`: live
///   members without a link, dead ones when ``LinkPolicy/deadRedialDue(now:)``, the seeds when
///   ``LinkPolicy/seedsDue(now:linked:)``; `dial` asks ``LinkPolicy/startDial(_:now:force:)``);
/// - links (`linkEstablished`, `linkClosed`): ``LinkPolicy/keepsNewLink`` settles a second link
///   to a peer, the replaced one is closed, the link kept gets the node's next number, and the
///   instance hears of it; it hears of the close of every link it was told of, the peer's
///   current one or one replaced (it takes back only what went over that one). Closing the
///   replaced link before telling the instance of the new one, as the shell does, means that
///   with a plain TCP close (below) the instance takes it for the peer's current link;
/// - frames (`received`): those on the peer's current link go to the instance, and on a link
///   replaced but still open, hand-off acknowledgements only;
/// - the directives (`perform`): `.send`, `.broadcast` and `.closeLink` act on the simulated
///   links, `.connect` dials, `.route` goes to a minimal router (below), `.release` records the
///   receipt, `.memberChanged` the status history.
///
/// Every protocol decision comes from the instances and the link policy.
///
/// The network. A dial is a simulated TCP connection: accepted or refused after
/// ``Configuration/connectDelay`` (refused when the address's node is down or on the other
/// side of a partition), and the dialler's ``LinkPolicy`` hears `dialEnded(failed:)` either
/// way. Then `LinkHandshake`'s exchange: the listener is established when the dialler's proof
/// arrives (three trips), the dialler when the listener's hello and proof reach it. Both nodes
/// of a pair may dial at once and see the two links come up in either order. Frames travel in
/// order per direction after ``Configuration/latency`` (plus a node's extra delay) and are
/// lost with ``dropProbability``, or to and from a muted node. A lost hand-off frame
/// (`.handoff`, `.handoffAck`) breaks its link instead: those count on the link (TCP) never
/// losing a frame while it stays up. A node closing a link (the tie-break, a member declared
/// dead, a leave) lets the frames it already sent arrive before the other end sees the close.
/// By default the closing end hears of its close at once, as NIO reports a plain TCP channel's
/// close within `close()`; with ``Configuration/tlsClose`` it goes on receiving until the
/// peer's answer to its close arrives, as NIOSSL's handler does awaiting the peer's
/// close_notify. A broken link (``resetLink(_:_:)``, a partition, a killed process) loses
/// everything in flight. A partition breaks the links across it at once (a real one leaves
/// them silent until membership declares death). A handshake not done within
/// ``Configuration/handshakeTimeout`` is closed. Heart-beats, `.nodeInfo` and the silent-link
/// timeout are not simulated; each tick tells the instance when frames last arrived on the
/// links that received any since the previous tick (the shell tells it for every link, but
/// `heard` keeps the latest time).
///
/// Clients. ``subscribe(_:to:by:receipt:)`` changes a node's local interest; with a receipt
/// it waits in the node's instance and lands in ``receipts`` when released, with the peers
/// that held less than its version at that moment. ``publish(_:toQueue:)`` is a publish on a
/// node with no local consumer of the queue: the instance picks the peer and the `.handoff`
/// goes over the link; the peer's instance has the router accept it and answers
/// `.handoffAck`. The router is minimal: `.acceptHandoff` makes the node own the message
/// (from a peer, kept for want of one, or reclaimed after a link dropped or a member died),
/// `.remoteQueueConsumers` is recorded, and it never hands a message on again nor consumes
/// one, so ownership can be checked: a node owns the messages it holds and those it handed
/// off and awaits the ack of. After every step each published message must have an owner
/// (unless every owner was killed), each node's pending hand-off count must match the
/// hand-offs it was seen to send and not yet see acknowledged or reclaimed, and a reclaim must
/// give back a message the node handed off; when a link closes, nothing that went over it may
/// stay pending (``violations``).
///
/// Time is milliseconds since the start; ``run(for:)`` advances it in steps, delivering due
/// events at their own time and then ticking every live node once (every 50 ms by default;
/// the shell ticks every 100 ms). The network's and each instance's randomness is seeded; the
/// instances also iterate dictionaries, whose order Swift seeds per process, so two runs may
/// differ in detail unless the process runs with `SWIFT_DETERMINISTIC_HASHING=1`.
final class SimulatedCluster {
    struct Configuration {
        var size: Int
        var seed: UInt64 = 1
        var settings = MembershipInstance.Settings()
        /// One-way delay of a message, in ms.
        var latency: ClosedRange<Int64> = 1...5
        /// How long a TCP connection takes to be accepted or refused, in ms; the handshake then
        /// takes four trips of ``latency``.
        var connectDelay: ClosedRange<Int64> = 5...50
        /// The chance that any one message is lost.
        var dropProbability: Double = 0
        /// The clock's step: every live node is ticked once per step.
        var step: Int64 = 50
        /// The nodes whose addresses every node has as seeds.
        var seeds: [Int] = [0]
        /// Reconnection backoff and dialling cadences, the shell's defaults
        /// (`ClusterSettings.reconnectBackoffMinimum`/`Maximum`).
        var linkPolicy = LinkPolicy.Settings(backoffMinimum: .milliseconds(100), backoffMaximum: .seconds(5))
        /// How often each node sends an interest digest to every linked peer (nil: never).
        var digestInterval: Int64? = 5_000
        /// How long a SUBSCRIBE's receipt waits for the peers' acknowledgements, in ms.
        var interestAckTimeout: Int64 = 2_000
        /// A link whose handshake isn't done after this long is closed, in ms.
        var handshakeTimeout: Int64 = 5_000
        /// A graceful leave closes the links this long after announcing it.
        var leaveLinger: Int64 = 100
        /// Links close as over TLS: the end closing an established link goes on receiving (and
        /// the shell hears of the close) until the peer's answer to its close_notify arrives.
        var tlsClose = false
        /// How long a peer's session holds topic messages while it is unreachable, in ms
        /// (`cluster.outage-grace-ms`).
        var outageGrace: Int64 = 30_000

        init(size: Int) { self.size = size }
    }

    struct StatusEvent {
        var time: Int64
        var observer: Int
        var update: MemberUpdate
        var previous: MemberUpdate.Status?
    }

    /// A SUBSCRIBE's receipt, held by a node's instance until its peers acknowledged.
    struct Receipt {
        var id: String
        var node: Int
        /// The version of the node's interest it waits for.
        var version: UInt64
        var requestedAt: Int64
    }

    /// A receipt the node's instance let go, and what the peers held at that moment.
    struct ReceiptRelease {
        var receipt: Receipt
        var time: Int64
        /// `nil` when nothing needed waiting for (released as it was asked for).
        var outcome: InterestSync<Receipt>.Outcome?
        /// Peers the node held live that hold it alive at its epoch but held less than the
        /// receipt's version of its interest when it was released.
        var laggards: [String]

        var propagated: Bool {
            if case .timedOut = outcome { return false }
            return true
        }
    }

    /// A queue message a node owns: published there, or accepted from a peer or a reclaim.
    struct HeldMessage {
        var queue: String
        var redelivered: Bool
        var hops: UInt8
    }

    /// One simulated TCP connection, from its acceptance to its close. End 0 dialled, end 1
    /// listened.
    final class Connection {
        let id: Int
        let nodes: [Int]
        /// Each end's boot epoch, as its hello announces it.
        let epochs: [UInt64]
        /// Each end's process (``Node/boot``).
        let boots: [Int]
        let dialedAddress: String
        var established = [false, false]
        /// Each end's number for the link (`LinkChannelHandler.number`): 0 until that end
        /// keeps it, and for good if the tie-break refused it there.
        var number: [UInt64] = [0, 0]
        var open = [true, true]
        /// Per end: it closed the link and awaits the peer's close_notify (``Configuration/tlsClose``).
        var closing = [false, false]
        /// Broken (reset, partition, a killed process): whatever is in flight is lost.
        var broken = false
        /// Per receiving end: when the last frame sent towards it arrives (TCP keeps order).
        var lastArrival: [Int64] = [0, 0]
        /// Per end: when a frame last arrived there (the shell's `lastReceived`).
        var lastReceived: [Int64]

        init(id: Int, nodes: [Node], dialedAddress: String, now: Int64) {
            self.id = id
            self.nodes = nodes.map(\.index)
            self.epochs = nodes.map(\.epoch)
            self.boots = nodes.map(\.boot)
            self.dialedAddress = dialedAddress
            self.lastReceived = [now, now]
        }

        func end(of node: Int) -> Int { nodes[0] == node ? 0 : 1 }
    }

    final class Node {
        let index: Int
        let id: NodeID
        let address: String
        let epoch: UInt64
        /// Incremented at each (re)start.
        let boot: Int
        var up = true
        var leaving = false
        var muted = false
        /// Extra delay added to every message to or from this node (a saturated node).
        var extraDelay: ClosedRange<Int64>?
        /// Membership, interest and hand-offs: the shell's `instance`.
        var instance: ClusterInstance<Receipt>
        var linkPolicy: LinkPolicy
        /// Established links, one per peer (the shell's `links`).
        var links: [NodeID: Connection] = [:] {
            didSet { unlinkedCache = nil }
        }
        /// Every open connection, established or in its handshake (the shell's `openLinks`).
        var openConnections: [Int: Connection] = [:]
        /// The number the last link kept got (the shell's `linksEstablished`).
        var linksEstablished: UInt64 = 0
        /// Peers whose link received frames since the last tick told the instance
        /// (`heard(from:at:)` keeps the latest time, so telling it the same time again is moot).
        var heardSince: Set<NodeID> = []
        /// `membership.liveMembers`, which only a status change (`.memberChanged`) can change:
        /// kept until one comes, as dialling asks for it on every tick.
        var liveCache: [NodeID]? {
            didSet { unlinkedCache = nil }
        }
        /// The live members without a link, kept until either changes.
        private var unlinkedCache: [NodeID]?
        /// Queue messages this node owns, by message id.
        var held: [String: HeldMessage] = [:]
        /// What the router was told of each queue's consumers on other nodes.
        var remoteConsumers: [String: Int] = [:]
        /// The hand-offs this node was seen to send and not yet seen acknowledged or reclaimed,
        /// by the instance's id for them, with the connection each went on: what its pending
        /// count must count.
        var handedOff: [UInt64: (peer: NodeID, messageID: String, connection: Int)] = [:]
        /// The hand-offs this node reclaimed, by id: an acknowledgement of one that arrives
        /// later shows the peer had taken it.
        var reclaimedHandoffs: [UInt64: String] = [:]

        var membership: MembershipInstance { instance.membership }
        /// Interest: this node's, its peers', and the receipts waiting.
        var sync: InterestSync<Receipt> { instance.interest }
        /// This node's own interest.
        var interest: LocalInterest { instance.interest.local }
        /// What this node holds of its peers' interest.
        var table: InterestTable { instance.interest.remote }

        init(index: Int, epoch: UInt64, boot: Int, configuration: Configuration, seed: UInt64, now: Int64) {
            self.index = index
            self.id = NodeID("n\(index)")
            self.address = SimulatedCluster.address(of: index)
            self.epoch = epoch
            self.boot = boot
            let time = SimulatedCluster.deadline(now)
            instance = ClusterInstance(
                node: id,
                epoch: epoch,
                address: address,
                settings: ClusterInstance.Settings(
                    membership: configuration.settings,
                    acknowledgementTimeout: .milliseconds(configuration.interestAckTimeout),
                    digestInterval: configuration.digestInterval.map { .milliseconds($0) } ?? .nanoseconds(.max),
                    sessions: PeerSessions.Settings(outageGrace: .milliseconds(configuration.outageGrace))
                ),
                now: time,
                membershipRandom: SplitMix64(seed: seed),
                handoffRandom: SplitMix64(seed: seed ^ 0x4841_4E44_4F46_4653)
            )
            linkPolicy = LinkPolicy(
                settings: configuration.linkPolicy,
                now: time,
                random: SplitMix64(seed: seed ^ 0x4C49_4E4B_504F_4C49)
            )
            // As the shell does once its listener is bound.
            linkPolicy.noteOwnAddress(address)
        }

        func sortedLinks() -> [(peer: NodeID, connection: Connection)] {
            links.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        }

        var liveMembers: [NodeID] {
            if let liveCache { return liveCache }
            let live = instance.membership.liveMembers
            liveCache = live
            return live
        }

        /// The live members this node has no link to, in id order.
        var unlinkedMembers: [NodeID] {
            if let unlinkedCache { return unlinkedCache }
            let unlinked = liveMembers.filter { links[$0] == nil }
            unlinkedCache = unlinked
            return unlinked
        }
    }

    private typealias Directive = ClusterInstance<Receipt>.Directive

    private enum Event {
        /// A dial's TCP connection attempt ends.
        case connect(dialer: Int, boot: Int, address: String)
        /// The other end's last handshake message reaches `end` (the listener first).
        case handshake(Connection, end: Int)
        case handshakeTimeout(Connection)
        case deliver(Connection, to: Int, message: LinkMessage)
        /// The other end's close_notify reaches `end` (``Configuration/tlsClose``).
        case closeNotify(Connection, to: Int)
        /// `end` sees the connection close.
        case closed(Connection, end: Int)
        case shutdown(Int, boot: Int)
    }

    /// An entry of the event heap; the event itself waits in `events[slot]`, so that moving
    /// entries about the heap copies no payload.
    private struct Scheduled {
        var time: Int64
        var order: UInt64
        var slot: Int

        func precedes(_ other: Scheduled) -> Bool {
            time < other.time || (time == other.time && order < other.order)
        }
    }

    let configuration: Configuration
    /// Told of every link and hand-off event, for following a failing seed.
    var trace: ((String) -> Void)?
    /// The chance that any one message is lost; may change while the cluster runs.
    var dropProbability: Double
    private(set) var nodes: [Node] = []
    private(set) var now: Int64 = 0
    private(set) var history: [StatusEvent] = []
    private(set) var messagesSent = 0
    private(set) var messagesDropped = 0
    /// Dials started, and those refused (the node down or unreachable).
    private(set) var dials = (started: 0, refused: 0)
    /// Links established while the node held another to the same peer (``LinkPolicy/keepsNewLink``).
    private(set) var tieBreaks = 0
    /// Every receipt released, in order.
    private(set) var receipts: [ReceiptRelease] = []
    /// Queue messages published, in order.
    private(set) var published: [String] = []
    /// Hand-offs sent, acknowledged, reclaimed, and acceptances of a message the node already held.
    private(set) var handoffCounts = (sent: 0, acknowledged: 0, reclaimed: 0, duplicates: 0)
    /// Hand-offs still waiting for their acknowledgement on a link when the tie-break replaced
    /// it; links no longer the node's link to that peer (replaced, or the peer let go) whose
    /// close the instance heard of, and of those, the ones it heard of before the link that
    /// replaced them (so it took them for the peer's current link); and the hand-off
    /// acknowledgements that arrived on one still open.
    private(set) var replacedLinks = (handoffs: 0, closed: 0, closedAsCurrent: 0, acknowledgements: 0)
    /// A topic message published by ``publish(_:toTopic:)``: by which node, its number there,
    /// the nodes whose sessions held it, and whether some session dropped it at once.
    struct TopicPublish {
        var node: Int
        var number: Int
        var heldFor: [Int]
        var dropped: Bool
    }

    private(set) var topicPublished: [TopicPublish] = []
    /// Topic messages delivered, by receiving node: publisher and number, in order.
    private(set) var topicDelivered: [Int: [(publisher: Int, number: Int)]] = [:]
    /// The peers' sessions (issue 15): links broken for a protocol violation, outages seen,
    /// interest dropped past the grace, topic messages dropped, delivered, and losses reported.
    private(set) var sessionCounts = (
        brokenLinks: 0, outages: 0, interestsExpired: 0, dropped: 0, delivered: 0, lossesReported: 0
    )
    /// Messages whose every owner was killed (or left) while holding them.
    private(set) var lostWithCrash: Set<String> = []
    /// Messages whose hand-off acknowledgement never reached the sender in time: it reclaims
    /// (or may yet reclaim) one the peer took, QueueHandoffs' documented price of never
    /// losing one.
    private(set) var acknowledgementsLost: Set<String> = []
    /// What the checks found: a message with no owner, a node whose pending hand-off count
    /// disagrees with the hand-offs it sent and got back, a reclaim of something not handed
    /// off, or a hand-off left pending when its link closed.
    private(set) var violations: [String] = []
    /// The group of each node while partitioned; nodes in different groups can't reach each other.
    private var partition: [Int]?
    private var index: [NodeID: Int] = [:]
    private var addresses: [String: Int] = [:]
    private var random: SplitMix64
    private var queue: [Scheduled] = []
    private var events: [Event?] = []
    private var freeSlots: [Int] = []
    private var order: UInt64 = 0
    /// Connections open at either end.
    private var connections: [Int: Connection] = [:]
    private var nextConnection = 0
    private var unowned = Set<String>()

    init(_ configuration: Configuration) {
        self.configuration = configuration
        dropProbability = configuration.dropProbability
        random = SplitMix64(seed: configuration.seed)
        for i in 0..<configuration.size {
            let node = Node(
                index: i,
                epoch: 1,
                boot: 0,
                configuration: configuration,
                seed: configuration.seed &* 1_000_003 &+ UInt64(i),
                now: now
            )
            nodes.append(node)
            index[node.id] = i
            addresses[node.address] = i
        }
        // Each shell's clock ticks as it starts: that dials the seeds.
        for i in 0..<configuration.size { tick(i) }
    }

    static func deadline(_ milliseconds: Int64) -> NIODeadline {
        .uptimeNanoseconds(0) + .milliseconds(milliseconds)
    }

    static func address(of node: Int) -> String { "n\(node):7946" }

    // MARK: - Driving

    /// Advances the clock by `duration` ms.
    func run(for duration: Int64) {
        let end = now + duration
        while now < end { step() }
    }

    /// Advances the clock until `condition` holds (checked after each step) or `limit` ms have
    /// passed. Returns the time it took, or nil if it didn't happen.
    @discardableResult
    func run(until limit: Int64, _ condition: (SimulatedCluster) -> Bool) -> Int64? {
        let start = now
        if condition(self) { return 0 }
        while now - start < limit {
            step()
            if condition(self) { return now - start }
        }
        return nil
    }

    private func step() {
        let target = now + configuration.step
        while let next = queue.first, next.time <= target {
            let scheduled = pop()
            now = scheduled.time
            let event = events[scheduled.slot]!
            events[scheduled.slot] = nil
            freeSlots.append(scheduled.slot)
            handle(event)
        }
        now = target
        for node in nodes where node.up { tick(node.index) }
        if !published.isEmpty { checkOwnership() }
        // The cache of live members stands for what the shell asks membership every tick.
        if nodes.count <= 10 {
            for node in nodes
            where node.up && node.liveCache != nil && node.liveCache != node.instance.membership.liveMembers {
                violations.append("t=\(now) \(node.id)'s cached live members went stale")
                node.liveCache = nil
            }
        }
    }

    // MARK: - Faults

    /// The process dies: it stops answering, its connections break (each peer sees its link
    /// close), and the queue messages it alone held are lost with it.
    func kill(_ i: Int) {
        let node = nodes[i]
        guard node.up else { return }
        noteCrash(of: i)
        node.up = false
        for connection in node.openConnections.values.sorted(by: { $0.id < $1.id }) {
            connection.open[connection.end(of: i)] = false
            breakConnection(connection)
            if !connection.open.contains(true) { connections[connection.id] = nil }
        }
        node.openConnections = [:]
    }

    /// The node starts again under the same id, at a later boot epoch, and its clock's first
    /// tick dials its seeds.
    func restart(_ i: Int, epoch: UInt64) {
        let old = nodes[i]
        precondition(!old.up, "kill it first")
        let node = Node(
            index: i,
            epoch: epoch,
            boot: old.boot + 1,
            configuration: configuration,
            seed: configuration.seed &* 7_919 &+ epoch &* 31 &+ UInt64(i),
            now: now
        )
        node.extraDelay = old.extraDelay
        nodes[i] = node
        tick(i)
    }

    /// Graceful leave (the shell's `leave()`): peers are told, then the process closes its
    /// links and exits shortly after.
    func leave(_ i: Int) {
        let node = nodes[i]
        node.leaving = true
        perform(node.instance.leave(now: Self.deadline(now)), of: i)
        schedule(.shutdown(i, boot: node.boot), at: now + configuration.leaveLinger)
    }

    /// Splits the cluster: links across groups break at once and nothing crosses until ``heal()``.
    func partition(_ groups: [Set<Int>]) {
        var group = Array(repeating: -1, count: nodes.count)
        for (number, members) in groups.enumerated() {
            for member in members { group[member] = number }
        }
        partition = group
        for connection in connections.values.sorted(by: { $0.id < $1.id })
        where !canReach(connection.nodes[0], connection.nodes[1]) {
            breakConnection(connection, noticed: 0...0)
        }
    }

    func heal() { partition = nil }

    /// The connections between `a` and `b` break (a reset, a middlebox dropping the flow):
    /// what is in flight is lost and each end sees its link close.
    func resetLink(_ a: Int, _ b: Int) {
        for connection in connections.values.sorted(by: { $0.id < $1.id })
        where Set(connection.nodes) == [a, b] {
            breakConnection(connection)
        }
    }

    /// Every message to or from `i` is lost while muted (a stalled process whose links stay up).
    func mute(_ i: Int, _ muted: Bool) { nodes[i].muted = muted }

    func setExtraDelay(_ i: Int, _ delay: ClosedRange<Int64>?) { nodes[i].extraDelay = delay }

    /// Feeds a message to node `i` as if `sender` had sent it on its link, now.
    func inject(_ message: LinkMessage, to i: Int, from sender: Int) {
        let time = Self.deadline(now)
        perform(
            nodes[i].instance.received(message, from: nodes[sender].id, peerEpoch: nodes[sender].epoch, now: time),
            of: i
        )
    }

    // MARK: - Clients

    /// Local subscriptions of node `i` to `key` change by `delta`; peers hear of it if they
    /// must (the shell's `interestChanged`). With a `receipt`, the SUBSCRIBE asked for one:
    /// it waits in the node's instance until every live peer acknowledged the node's interest
    /// as it is now, or the timeout (the shell's `afterInterestPropagated`; see ``receipts``).
    func subscribe(_ i: Int, to key: Destination, by delta: Int = 1, receipt: String? = nil) {
        let node = nodes[i]
        if let message = node.instance.interestChanged(key, by: delta) {
            for (_, connection) in node.sortedLinks() { send(message, on: connection, from: i) }
        }
        guard let receipt else { return }
        let waiting = Receipt(id: receipt, node: i, version: node.instance.interest.local.version, requestedAt: now)
        if let ready = node.instance.waitForPropagation(waiting, now: Self.deadline(now)) {
            record(ready, outcome: nil, live: node.liveMembers)
        }
    }

    /// A client of node `i` sends a message to `queue`, which has no consumer on that node:
    /// the shell hands it off (or keeps it when no peer can take it).
    ///
    /// - Returns: the message's id.
    @discardableResult
    /// Node `i` publishes the next of its numbered topic messages to `key`, as
    /// `ClusterShell.forward` does: held in the session of every peer with interest, then
    /// written on the links that can take it.
    func publish(_ i: Int, toTopic key: String) {
        let node = nodes[i]
        let number = topicPublished.filter { $0.node == i }.count
        let message = MessageEnvelope(
            destination: .topic(key),
            messageID: "n\(i)-t\(number)",
            headers: [:],
            body: ByteBuffer()
        )
        var peers = Set<NodeID>()
        node.instance.interest.remote.peers(forTopic: key, into: &peers)
        let sessions = node.instance.sessions
        let held = peers.sorted().filter { sessions.sequences($0) }
        let outcome = sessions.append(forward: LinkMessage.forwardBody(message), to: held)
        topicPublished.append(
            TopicPublish(
                node: i,
                number: number,
                heldFor: held.compactMap { index(of: $0) },
                dropped: outcome.dropped > 0
            )
        )
        if outcome.effectsWaiting { perform(node.instance.sessionEffects(now: Self.deadline(now)), of: i) }
        for peer in held { pump(peer, of: i) }
    }

    private func index(of node: NodeID) -> Int? { nodes.firstIndex { $0.id == node } }

    /// What became of the topic messages published (``publish(_:toTopic:)``), per receiving
    /// node: messages held for it and never delivered, delivered more than once, and
    /// delivered after a later one of the same publisher.
    func topicOutcome() -> (lost: Int, duplicated: Int, reordered: Int) {
        var lost = 0
        var duplicated = 0
        var reordered = 0
        for receiver in nodes.indices {
            let got = topicDelivered[receiver] ?? []
            for publisher in nodes.indices {
                let numbers = got.filter { $0.publisher == publisher }.map(\.number)
                duplicated += numbers.count - Set(numbers).count
                reordered += zip(numbers, numbers.dropFirst()).filter { $0.1 < $0.0 }.count
                let delivered = Set(numbers)
                lost +=
                    topicPublished.filter {
                        $0.node == publisher && $0.heldFor.contains(receiver) && !delivered.contains($0.number)
                    }.count
            }
        }
        return (lost, duplicated, reordered)
    }

    func publish(_ i: Int, toQueue queue: String) -> String {
        let id = "m\(published.count + 1)"
        published.append(id)
        let message = MessageEnvelope(destination: .queue(queue), messageID: id, headers: [:], body: ByteBuffer())
        let directive = nodes[i].instance.handOff(queue: queue, message, redelivered: false, hops: 0)
        perform([directive], of: i, accepting: true)
        return id
    }

    // MARK: - Observations

    func isLinked(_ a: Int, _ b: Int) -> Bool { nodes[a].links[nodes[b].id] != nil }

    /// Whether every live node holds every other live node as alive at its current epoch.
    var membershipConverged: Bool {
        let live = nodes.filter(\.up)
        for observer in live {
            for subject in live where subject.index != observer.index {
                guard let update = observer.instance.membership.status(of: subject.id), update.status == .alive,
                    update.epoch == subject.epoch
                else {
                    return false
                }
            }
        }
        return true
    }

    /// Whether every live node holds every other live node's interest at its current version.
    var interestConverged: Bool {
        let live = nodes.filter(\.up)
        for observer in live {
            for subject in live where subject.index != observer.index {
                guard let held = observer.instance.interest.remote.version(of: subject.id),
                    held.epoch == subject.epoch,
                    held.version == subject.instance.interest.local.version
                else {
                    return false
                }
            }
        }
        return true
    }

    /// Pairs of live nodes that don't hold the very same single link to each other (one holds
    /// a link the other doesn't, or each holds another), and connections still open that are
    /// no one's link; empty when every pair agrees.
    var linkDisagreements: [String] {
        var found: [String] = []
        var kept = Set<Int>()
        let live = nodes.filter(\.up)
        for a in live {
            for b in live where a.index < b.index {
                let ab = a.links[b.id]
                let ba = b.links[a.id]
                if let ab { kept.insert(ab.id) }
                if ab !== ba {
                    found.append(
                        "\(a.id)->\(b.id) \(ab.map { "#\($0.id)" } ?? "none"), back \(ba.map { "#\($0.id)" } ?? "none")"
                    )
                }
            }
        }
        for connection in connections.values.sorted(by: { $0.id < $1.id })
        where connection.open.contains(true) && !kept.contains(connection.id) {
            found.append("connection #\(connection.id) \(connection.nodes) open \(connection.open) but no one's link")
        }
        return found
    }

    /// Live nodes whose router was told a number of a queue's consumers on other nodes that
    /// differs from what the node's interest table holds; empty when every router is up to date.
    var routerDisagreements: [String] {
        var found: [String] = []
        for node in nodes where node.up {
            let table = node.instance.interest.remote
            var queues = Set(node.remoteConsumers.keys)
            for origin in table.entriesByOrigin.values {
                for case .queue(let name) in origin.entries.keys { queues.insert(name) }
            }
            for queue in queues.sorted() {
                let held = table.consumers(ofQueue: queue).values.reduce(0, +)
                if node.remoteConsumers[queue, default: 0] != held {
                    found.append(
                        "\(node.id)'s router counts \(node.remoteConsumers[queue] ?? 0) for \(queue), the table \(held)"
                    )
                }
            }
        }
        return found
    }

    /// Hand-offs sent and not yet acknowledged, over every live node.
    var pendingHandoffs: Int { nodes.filter(\.up).reduce(0) { $0 + $1.instance.pendingHandoffs } }

    /// Pending hand-offs sent over a connection that is no longer the node's link to that
    /// peer (the tie-break replaced it, or the peer was let go): they come back when that
    /// connection closes, or stop pending when an acknowledgement arrives on it.
    var orphanedHandoffs: [(node: Int, peer: NodeID, messageID: String)] {
        nodes.filter(\.up).flatMap { node in
            node.handedOff.values.filter { node.links[$0.peer]?.id != $0.connection }.map {
                (node.index, $0.peer, $0.messageID)
            }
        }.sorted { $0.messageID < $1.messageID }
    }

    /// The live nodes that own `messageID`: hold it, or handed it off and await the ack.
    func owners(of messageID: String) -> [Int] {
        nodes.filter { node in
            node.up && (node.held[messageID] != nil || node.handedOff.values.contains { $0.messageID == messageID })
        }.map(\.index)
    }

    /// What `observer` holds about node `subject`.
    func view(of subject: Int, by observer: Int) -> MemberUpdate? {
        nodes[observer].instance.membership.status(of: nodes[subject].id)
    }

    /// Status changes about `subject`, as seen by anyone, after `since`.
    func events(about subject: Int, since: Int64 = 0) -> [StatusEvent] {
        let id = nodes[subject].id
        return history.filter { $0.update.node == id && $0.time >= since }
    }

    // MARK: - The shell's clock (ClusterShell.tick)

    private func tick(_ i: Int) {
        let node = nodes[i]
        guard node.up, !node.leaving else { return }
        // As the shell does for every link; only those that received something since can matter.
        for peer in node.heardSince {
            guard let connection = node.links[peer] else { continue }
            node.instance.heard(from: peer, at: Self.deadline(connection.lastReceived[connection.end(of: i)]))
        }
        node.heardSince.removeAll(keepingCapacity: true)
        perform(node.instance.tick(now: Self.deadline(now)), of: i)
        dialMissingPeers(i)
    }

    // MARK: - Dialling (ClusterShell.dialMissingPeers, dial)

    private func dialMissingPeers(_ i: Int) {
        let node = nodes[i]
        for peer in node.unlinkedMembers {
            if let address = node.instance.membership.status(of: peer)?.address { dial(i, address, force: false) }
        }
        if node.linkPolicy.deadRedialDue(now: Self.deadline(now)) {
            for member in node.instance.membership.deadMembers.sorted(by: { $0.node < $1.node })
            where node.links[member.node] == nil {
                dial(i, member.address, force: false)
            }
        }
        if !configuration.seeds.isEmpty, node.linkPolicy.seedsDue(now: Self.deadline(now), linked: !node.links.isEmpty)
        {
            var linked = Set(node.openConnections.values.filter { $0.nodes[0] == i }.map(\.dialedAddress))
            linked.formUnion(node.links.keys.compactMap { index[$0] }.map(Self.address(of:)))
            for seed in configuration.seeds where !linked.contains(Self.address(of: seed)) {
                dial(i, Self.address(of: seed), force: false)
            }
        }
    }

    private func dial(_ i: Int, _ address: String, force: Bool) {
        let node = nodes[i]
        guard !node.leaving, node.linkPolicy.startDial(address, now: Self.deadline(now), force: force) else { return }
        dials.started += 1
        trace?("t=\(now) \(node.id) dials \(address)\(force ? " (membership asked)" : "")")
        schedule(
            .connect(dialer: i, boot: node.boot, address: address),
            at: now + randomDelay(configuration.connectDelay)
        )
    }

    /// The TCP connection attempt ended: refused, or accepted and handshaking.
    private func connected(_ i: Int, boot: Int, address: String) {
        let dialer = nodes[i]
        guard dialer.up, dialer.boot == boot else { return }  // the process that dialled is gone
        guard let j = addresses[address], j != i, nodes[j].up, canReach(i, j) else {
            dials.refused += 1
            dialer.linkPolicy.dialEnded(address, failed: true, now: Self.deadline(now))
            return
        }
        dialer.linkPolicy.dialEnded(address, failed: false, now: Self.deadline(now))
        nextConnection += 1
        let connection = Connection(id: nextConnection, nodes: [dialer, nodes[j]], dialedAddress: address, now: now)
        connections[connection.id] = connection
        dialer.openConnections[connection.id] = connection
        nodes[j].openConnections[connection.id] = connection
        schedule(.handshakeTimeout(connection), at: now + configuration.handshakeTimeout)
        // LinkHandshake: the dialler's hello, the listener's challenge, the dialler's proof; the
        // listener is established on that proof, the dialler on the listener's hello and proof.
        let proof = now + transmissionDelay(i, j) + transmissionDelay(j, i) + transmissionDelay(i, j)
        connection.lastArrival = [proof, proof]
        schedule(.handshake(connection, end: 1), at: proof)
    }

    // MARK: - Directives (ClusterShell.perform)

    /// Carries out node `i`'s directives. A `.route(.acceptHandoff)` is a reclaim, unless
    /// `accepting`: the directives answer a peer's hand-off, or a publish no peer could take.
    private func perform(_ directives: [Directive], of i: Int, accepting: Bool = false) {
        let node = nodes[i]
        for directive in directives {
            switch directive {
            case .send(let message, let peer):
                if case .handoff(let id, _, let envelope, _, _) = message {
                    handoffCounts.sent += 1
                    node.handedOff[id] = (peer, envelope.messageID, node.links[peer]?.id ?? 0)
                    trace?(
                        "t=\(now) \(node.id) hands \(envelope.messageID) to \(peer) as \(id) on #\(node.links[peer]?.id ?? 0)"
                    )
                }
                if let connection = node.links[peer] { send(message, on: connection, from: i) }
            case .broadcast(let message):
                for (_, connection) in node.sortedLinks() { send(message, on: connection, from: i) }
            case .connect(_, let address):
                dial(i, address, force: true)
            case .closeLink(let peer):
                if let connection = node.links.removeValue(forKey: peer) {
                    close(connection, at: connection.end(of: i))
                }
            case .route(let operation):
                route(operation, at: i, accepting: accepting)
            case .release(let receipt, let outcome):
                record(receipt, outcome: outcome, live: node.liveMembers)
            case .memberChanged(let update, let previous, _):
                node.liveCache = nil
                history.append(StatusEvent(time: now, observer: i, update: update, previous: previous))
            case .pump(let peer):
                pump(peer, of: i)
            case .breakLink(let peer, let number, let reason):
                trace?("t=\(now) \(node.id) breaks link \(number) to \(peer): \(reason)")
                sessionCounts.brokenLinks += 1
                if let connection = node.links[peer], connection.number[connection.end(of: i)] == number {
                    close(connection, at: connection.end(of: i))
                }
            case .congested:
                break
            case .reachability(_, let reachable, _):
                if !reachable { sessionCounts.outages += 1 }
            case .interestExpired:
                sessionCounts.interestsExpired += 1
            case .dropped(_, _, let messages):
                sessionCounts.dropped += messages
            }
        }
    }

    /// Writes what node `i`'s session with `peer` has ready, as the shell's pump does (the
    /// simulated link is always writable).
    private func pump(_ peer: NodeID, of i: Int) {
        let node = nodes[i]
        guard let connection = node.links[peer] else { return }
        while let (seq, entry) = node.instance.sessions.nextToWrite(for: peer) {
            switch entry {
            case .forward(var body):
                send(
                    .sequenced(seq: seq, (try? LinkMessage.readMessage(&body)).flatMap { $0 }.map { .forward($0) }),
                    on: connection,
                    from: i
                )
            case .handoff:
                violations.append("t=\(now) \(node.id) holds a hand-off in its session with \(peer)")
            case .gap(let gap):
                send(.gap(gap), on: connection, from: i)
            }
        }
    }

    // MARK: - Link events (ClusterShell.linkEstablished, linkClosed)

    private func handshakeDone(_ connection: Connection, at end: Int) {
        guard !connection.broken, connection.open[end], !connection.established[end] else { return }
        let (i, j) = (connection.nodes[end], connection.nodes[1 - end])
        // A stalled process doesn't answer its handshake either; the timeout closes it.
        guard !nodes[i].muted, !nodes[j].muted else { return }
        connection.established[end] = true
        connection.lastReceived[end] = now
        if !connection.established[1 - end] {
            schedule(.handshake(connection, end: 1 - end), at: arrival(on: connection, towards: 1 - end))
        }
        linkEstablished(connection, at: end)
    }

    private func linkEstablished(_ connection: Connection, at end: Int) {
        let node = nodes[connection.nodes[end]]
        let peerIndex = connection.nodes[1 - end]
        let peer = nodes[peerIndex].id
        let peerEpoch = connection.epochs[1 - end]
        node.linkPolicy.linkEstablished(dialedAddress: end == 0 ? connection.dialedAddress : nil)
        if let existing = node.links[peer], existing !== connection {
            let keepNew = LinkPolicy.keepsNewLink(
                existingPeerEpoch: existing.epochs[1 - existing.end(of: node.index)],
                newPeerEpoch: peerEpoch,
                newLinkDialedHere: end == 0,
                localNode: node.id,
                peer: peer
            )
            tieBreaks += 1
            trace?(
                "t=\(now) \(node.id) tie-break: #\(existing.id) held, #\(connection.id) (dialled \(end == 0 ? "here" : "there")) \(keepNew ? "replaces it" : "refused")"
            )
            if !keepNew {
                close(connection, at: end)
                return
            }
            replacedLinks.handoffs += node.handedOff.values.filter { $0.connection == existing.id }.count
        }
        let replaced = node.links[peer]
        node.links[peer] = connection
        node.linksEstablished += 1
        connection.number[end] = node.linksEstablished
        node.heardSince.insert(peer)
        trace?("t=\(now) \(node.id) link #\(connection.id) to \(peer) up")
        perform(
            node.instance.linkEstablished(
                to: peer,
                epoch: peerEpoch,
                address: Self.address(of: peerIndex),
                link: connection.number[end],
                resumable: true,
                now: Self.deadline(now)
            ),
            of: node.index
        )
        // As the shell does: closed once the instance holds the new link.
        if let replaced, replaced !== connection { close(replaced, at: replaced.end(of: node.index)) }
    }

    private func linkClosed(_ connection: Connection, at end: Int) {
        let node = nodes[connection.nodes[end]]
        node.openConnections[connection.id] = nil
        if !connection.open[1 - end] { connections[connection.id] = nil }
        guard connection.established[end] else {
            if end == 0 {
                node.linkPolicy.linkClosedBeforeHandshake(
                    dialedAddress: connection.dialedAddress,
                    now: Self.deadline(now)
                )
            }
            return
        }
        // A link the tie-break refused at once was never this node's to use.
        guard connection.number[end] != 0 else { return }
        let peer = nodes[connection.nodes[1 - end]].id
        if node.links[peer] === connection {
            node.links[peer] = nil
            trace?("t=\(now) \(node.id) link #\(connection.id) to \(peer) down")
        } else {
            replacedLinks.closed += 1
            if node.instance.links[peer] == connection.number[end] { replacedLinks.closedAsCurrent += 1 }
            trace?("t=\(now) \(node.id) link #\(connection.id) to \(peer), no longer its link, closed")
        }
        perform(
            node.instance.linkClosed(
                to: peer,
                epoch: connection.epochs[1 - end],
                link: connection.number[end],
                now: Self.deadline(now),
                leaving: node.leaving
            ),
            of: node.index
        )
        for (id, handoff) in node.handedOff.sorted(by: { $0.key < $1.key }) where handoff.connection == connection.id {
            violations.append(
                "t=\(now) \(node.id)'s hand-off \(id) of \(handoff.messageID) went over #\(connection.id), which closed, and still waits"
            )
        }
    }

    /// This end closes the connection: frames it already sent still arrive, then the other
    /// end sees the close. With ``Configuration/tlsClose``, an established end goes on
    /// receiving until the other end's answer to its close_notify arrives (or the close the
    /// other end already sent, or the broken connection's).
    private func close(_ connection: Connection, at end: Int) {
        guard connection.open[end], !connection.closing[end] else { return }
        guard configuration.tlsClose, connection.established[end] else {
            closeNow(connection, at: end)
            return
        }
        connection.closing[end] = true
        if connection.open[1 - end], !connection.broken {
            schedule(.closeNotify(connection, to: 1 - end), at: arrival(on: connection, towards: 1 - end))
        }
    }

    /// This end's close takes effect now; the other end sees it after the frames in flight.
    private func closeNow(_ connection: Connection, at end: Int) {
        guard connection.open[end] else { return }
        connection.open[end] = false
        if connection.open[1 - end] {
            schedule(.closed(connection, end: 1 - end), at: arrival(on: connection, towards: 1 - end))
        }
        linkClosed(connection, at: end)
    }

    /// The connection breaks: every frame in flight is lost and each end still open sees the
    /// close after `noticed` ms (by default a message's latency).
    private func breakConnection(_ connection: Connection, noticed: ClosedRange<Int64>? = nil) {
        guard !connection.broken else { return }
        connection.broken = true
        for end in 0...1 where connection.open[end] {
            schedule(.closed(connection, end: end), at: now + randomDelay(noticed ?? configuration.latency))
        }
        if !connection.open.contains(true) { connections[connection.id] = nil }
    }

    // MARK: - Frames (ClusterShell.received)

    private func send(_ message: LinkMessage, on connection: Connection, from i: Int) {
        let end = connection.end(of: i)
        guard connection.open[end], !connection.closing[end], !connection.broken else { return }
        messagesSent += 1
        let j = connection.nodes[1 - end]
        if nodes[i].muted || nodes[j].muted
            || (dropProbability > 0 && Double.random(in: 0..<1, using: &random) < dropProbability)
        {
            lost(message, on: connection, towards: 1 - end)
            return
        }
        schedule(.deliver(connection, to: 1 - end, message: message), at: arrival(on: connection, towards: 1 - end))
    }

    /// A frame that never arrives. A hand-off frame breaks its link instead: they go over a
    /// link that never loses a frame it goes on carrying.
    private func lost(_ message: LinkMessage, on connection: Connection, towards end: Int) {
        messagesDropped += 1
        noteAcknowledgementLost(message, on: connection, at: end)
        switch message {
        // So does a session's: TCP loses nothing on a connection that stays up.
        case .handoff, .handoffAck, .sequenced, .gap, .resume, .received: breakConnection(connection)
        default: break
        }
    }

    private func arrived(_ message: LinkMessage, on connection: Connection, at end: Int) {
        let node = nodes[connection.nodes[end]]
        guard !connection.broken, connection.open[end], node.up else {
            messagesDropped += 1
            noteAcknowledgementLost(message, on: connection, at: end)
            return
        }
        guard !node.muted else {
            lost(message, on: connection, towards: end)
            return
        }
        connection.lastReceived[end] = now
        let peer = nodes[connection.nodes[1 - end]].id
        let peerEpoch = connection.epochs[1 - end]
        let time = Self.deadline(now)
        guard connection.established[end], node.links[peer] === connection else {
            // A replaced link still brings acknowledgements of the hand-offs that went over it.
            if case .handoffAck(let id) = message, connection.established[end], connection.number[end] != 0 {
                replacedLinks.acknowledgements += 1
                acknowledged(id, at: node, on: connection)
                perform(node.instance.received(message, from: peer, peerEpoch: peerEpoch, now: time), of: node.index)
                return
            }
            if case .handoff = message {
                trace?("t=\(now) \(node.id) ignores a hand-off on #\(connection.id), not its link")
            }
            noteAcknowledgementLost(message, on: connection, at: end)
            return
        }
        node.heardSince.insert(peer)
        switch message {
        case .handoff(let id, _, let envelope, _, _):
            trace?("t=\(now) \(node.id) takes \(envelope.messageID) (hand-off \(id)) on #\(connection.id)")
            perform(
                node.instance.received(message, from: peer, peerEpoch: peerEpoch, now: time),
                of: node.index,
                accepting: true
            )
        case .handoffAck(let id):
            acknowledged(id, at: node, on: connection)
            perform(node.instance.received(message, from: peer, peerEpoch: peerEpoch, now: time), of: node.index)
        default:
            perform(node.instance.received(message, from: peer, peerEpoch: peerEpoch, now: time), of: node.index)
        }
    }

    // MARK: - The router (RouterClusterOperation), and what it owns

    private func route(_ operation: RouterClusterOperation, at i: Int, accepting: Bool) {
        let node = nodes[i]
        switch operation {
        case .acceptHandoff(let queue, let message, let redelivered, let hops):
            if !accepting { reclaimed(message.messageID, at: node) }
            if node.held[message.messageID] != nil { handoffCounts.duplicates += 1 }
            node.held[message.messageID] = HeldMessage(queue: queue, redelivered: redelivered, hops: hops)
        case .remoteQueueConsumers(let queue, let count):
            node.remoteConsumers[queue] = count
        case .deliverForwarded(let message):
            sessionCounts.delivered += 1
            // "n<publisher>-t<number>"
            let parts = message.messageID.dropFirst().split(separator: "-t")
            if parts.count == 2, let publisher = Int(parts[0]), let number = Int(parts[1]) {
                topicDelivered[i, default: []].append((publisher, number))
            }
        case .forwardsLost:
            sessionCounts.lossesReported += 1
        case .evacuate, .acceptDurable, .durableBinding:
            // No node evacuates; the cluster carries no durable queue's messages.
            break
        }
    }

    /// Hand-off `id` of `node` was acknowledged (arriving on `connection`).
    private func acknowledged(_ id: UInt64, at node: Node, on connection: Connection) {
        trace?("t=\(now) \(node.id) hand-off \(id) acknowledged on #\(connection.id)")
        if node.handedOff.removeValue(forKey: id) != nil {
            handoffCounts.acknowledged += 1
        } else if let messageID = node.reclaimedHandoffs[id] {
            // Too late: the node took it back already, and the peer holds it too.
            acknowledgementsLost.insert(messageID)
        }
    }

    /// The instance gave back a message `node` handed off: it must be one still waiting.
    private func reclaimed(_ messageID: String, at node: Node) {
        guard let (id, handoff) = node.handedOff.first(where: { $0.value.messageID == messageID }) else {
            violations.append("t=\(now) \(node.id) reclaimed \(messageID), which it had no hand-off of waiting")
            return
        }
        trace?("t=\(now) \(node.id) reclaims \(messageID) (hand-off \(id)) from \(handoff.peer)")
        node.handedOff[id] = nil
        node.reclaimedHandoffs[id] = messageID
        handoffCounts.reclaimed += 1
    }

    /// A `.handoffAck` towards `end` that won't be processed: the node there may reclaim (or
    /// may have reclaimed) the message its peer took.
    private func noteAcknowledgementLost(_ message: LinkMessage, on connection: Connection, at end: Int) {
        let node = nodes[connection.nodes[end]]
        guard case .handoffAck(let id) = message, node.up, node.boot == connection.boots[end],
            let messageID = node.handedOff[id]?.messageID ?? node.reclaimedHandoffs[id]
        else { return }
        acknowledgementsLost.insert(messageID)
    }

    /// Messages that only the killed node `i` owned are lost with it.
    private func noteCrash(of i: Int) {
        let node = nodes[i]
        let mine = Set(node.held.keys).union(node.handedOff.values.map(\.messageID))
        for id in mine where owners(of: id) == [i] { lostWithCrash.insert(id) }
    }

    private func checkOwnership() {
        var owned = Set<String>()
        for node in nodes where node.up {
            owned.formUnion(node.held.keys)
            owned.formUnion(node.handedOff.values.map(\.messageID))
            if node.instance.pendingHandoffs != node.handedOff.count {
                violations.append(
                    "t=\(now) \(node.id) has \(node.instance.pendingHandoffs) hand-offs pending, sent and not settled \(node.handedOff.count)"
                )
            }
        }
        for id in published where !owned.contains(id) && !lostWithCrash.contains(id) && !unowned.contains(id) {
            unowned.insert(id)
            violations.append("t=\(now) \(id) is owned by no node")
        }
    }

    // MARK: - Subscribe receipts

    /// Records a released receipt with the peers that, at this moment, hold the node alive
    /// but less than the receipt's version of its interest.
    private func record(_ receipt: Receipt, outcome: InterestSync<Receipt>.Outcome?, live: [NodeID]) {
        let node = nodes[receipt.node]
        var laggards: [String] = []
        for peer in live {
            guard let p = index[peer], nodes[p].up,
                let seen = nodes[p].instance.membership.status(of: node.id), seen.status <= .suspect,
                seen.epoch == node.epoch
            else { continue }
            let held = nodes[p].instance.interest.remote.version(of: node.id)
            if held?.epoch != node.epoch || (held?.version ?? 0) < receipt.version {
                laggards.append(
                    "\(peer) (epoch \(nodes[p].epoch)) holds \(held.map { "\($0.epoch).\($0.version)" } ?? "nothing")"
                )
            }
        }
        receipts.append(ReceiptRelease(receipt: receipt, time: now, outcome: outcome, laggards: laggards))
    }

    // MARK: - The network

    private func handle(_ event: Event) {
        switch event {
        case .connect(let dialer, let boot, let address):
            connected(dialer, boot: boot, address: address)
        case .handshake(let connection, let end):
            handshakeDone(connection, at: end)
        case .handshakeTimeout(let connection):
            for end in 0...1 where connection.open[end] && !connection.established[end] {
                close(connection, at: end)
            }
        case .deliver(let connection, let end, let message):
            arrived(message, on: connection, at: end)
        case .closeNotify(let connection, let end):
            // This end answers with its own close_notify and closes; the answer reaches the
            // other end after what this end sent before.
            guard !connection.broken else { return }
            closeNow(connection, at: end)
        case .closed(let connection, let end):
            guard connection.open[end] else { return }
            connection.open[end] = false
            linkClosed(connection, at: end)
        case .shutdown(let i, let boot):
            let node = nodes[i]
            guard node.up, node.boot == boot else { return }
            for connection in node.openConnections.values.sorted(by: { $0.id < $1.id }) {
                closeNow(connection, at: connection.end(of: i))
            }
            noteCrash(of: i)
            node.up = false
        }
    }

    /// When a frame sent now towards `end` arrives: after a message's delay, and after every
    /// frame sent before it in that direction.
    private func arrival(on connection: Connection, towards end: Int) -> Int64 {
        let time = max(
            now + transmissionDelay(connection.nodes[1 - end], connection.nodes[end]),
            connection.lastArrival[end]
        )
        connection.lastArrival[end] = time
        return time
    }

    private func transmissionDelay(_ i: Int, _ j: Int) -> Int64 {
        var delay = randomDelay(configuration.latency)
        if let extra = nodes[i].extraDelay { delay += randomDelay(extra) }
        if let extra = nodes[j].extraDelay { delay += randomDelay(extra) }
        return delay
    }

    private func canReach(_ a: Int, _ b: Int) -> Bool {
        guard let partition else { return true }
        return partition[a] == partition[b]
    }

    private func randomDelay(_ range: ClosedRange<Int64>) -> Int64 {
        range.lowerBound == range.upperBound ? range.lowerBound : Int64.random(in: range, using: &random)
    }

    // MARK: - Event queue (a binary heap ordered by time, then by scheduling order)

    private func schedule(_ event: Event, at time: Int64) {
        order += 1
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            events[slot] = event
        } else {
            slot = events.count
            events.append(event)
        }
        queue.append(Scheduled(time: time, order: order, slot: slot))
        var child = queue.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard queue[child].precedes(queue[parent]) else { break }
            queue.swapAt(child, parent)
            child = parent
        }
    }

    private func pop() -> Scheduled {
        let first = queue[0]
        let last = queue.removeLast()
        if !queue.isEmpty {
            queue[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < queue.count, queue[left].precedes(queue[smallest]) { smallest = left }
                if right < queue.count, queue[right].precedes(queue[smallest]) { smallest = right }
                if smallest == parent { break }
                queue.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first
    }
}
