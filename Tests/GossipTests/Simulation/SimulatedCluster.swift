import Gossip
import NIOCore
import StompRouting

/// A single-threaded cluster of sans-IO nodes on a simulated network and clock.
///
/// Each node runs a ``MembershipInstance``, a ``LocalInterest`` and an ``InterestTable``; the
/// cluster plays the part of the shell, following `ClusterShell`'s policies: directives become
/// messages delivered after a simulated delay (in order per direction, like a TCP link),
/// possibly dropped, never across a partition; `.connect` sets up a link after a connection
/// delay when both ends are up and can reach each other; a member declared dead or departed
/// has its interest dropped and its link closed; live members without a link are redialled
/// every second, dead ones every 5 s, seeds every second while a node has no link at all and
/// every 30 s otherwise. A killed node stops answering and its peers see its links close.
/// Interest changes go as deltas to every linked peer, a new link starts with a snapshot each
/// way, digests are exchanged periodically, and a gap is answered with a digest, which makes
/// the origin send a snapshot.
///
/// Time is milliseconds since the start; ``run(for:)`` advances it in steps, delivering due
/// messages at their own time and then ticking every live node. The network's randomness is
/// seeded; the membership instances iterate dictionaries, whose order Swift seeds per process
/// and per instance, so two runs may differ in detail (not in outcome).
final class SimulatedCluster {
    struct Configuration {
        var size: Int
        var seed: UInt64 = 1
        var settings = MembershipInstance.Settings()
        /// One-way delay of a message, in ms.
        var latency: ClosedRange<Int64> = 1...5
        /// How long a link takes to come up (TCP connect + handshake), in ms.
        var connectDelay: ClosedRange<Int64> = 5...50
        /// The chance that any one message is lost.
        var dropProbability: Double = 0
        /// The clock's step: every live node is ticked once per step.
        var step: Int64 = 50
        /// Nodes every node dials at start and redials (see ``seedInterval``).
        var seeds: [Int] = [0]
        /// How often a node redials the live members it has no link to.
        var reconnectInterval: Int64 = 1_000
        /// How often a node redials the members it holds dead (a healed partition relinks so).
        var deadRedialInterval: Int64 = 5_000
        /// How often a node redials its seeds: while it has no link, and once it has some.
        var seedInterval: (unlinked: Int64, linked: Int64) = (1_000, 30_000)
        /// How often each node sends an interest digest to every linked peer (nil: never).
        var digestInterval: Int64? = 5_000
        /// A graceful leave closes the links this long after announcing it.
        var leaveLinger: Int64 = 100

        init(size: Int) { self.size = size }
    }

    struct StatusEvent {
        var time: Int64
        var observer: Int
        var update: MemberUpdate
        var previous: MemberUpdate.Status?
    }

    final class Node {
        let index: Int
        let id: NodeID
        let address: String
        var epoch: UInt64
        /// Incremented at each (re)start: messages for an earlier life are lost.
        var boot = 0
        var up = true
        var muted = false
        /// Extra delay added to every message to or from this node (a saturated node).
        var extraDelay: ClosedRange<Int64>?
        var membership: MembershipInstance
        var interest: LocalInterest
        var table = InterestTable()
        var links = Set<Int>()

        init(index: Int, epoch: UInt64, settings: MembershipInstance.Settings, seed: UInt64) {
            self.index = index
            self.id = NodeID("n\(index)")
            self.address = "n\(index):7946"
            self.epoch = epoch
            membership = MembershipInstance(
                node: id,
                epoch: epoch,
                address: address,
                settings: settings,
                random: SplitMix64(seed: seed)
            )
            interest = LocalInterest(epoch: epoch)
        }
    }

    private enum Event {
        case deliver(from: Int, to: Int, boot: Int, message: LinkMessage)
        case establish(Int, Int)
        case linkClosed(at: Int, peer: Int, boot: Int)
        case shutdown(Int, boot: Int)
    }

    private struct Scheduled {
        var time: Int64
        var order: UInt64
        var event: Event

        func precedes(_ other: Scheduled) -> Bool {
            time < other.time || (time == other.time && order < other.order)
        }
    }

    let configuration: Configuration
    private(set) var nodes: [Node] = []
    private(set) var now: Int64 = 0
    private(set) var history: [StatusEvent] = []
    private(set) var messagesSent = 0
    private(set) var messagesDropped = 0
    /// The group of each node while partitioned; nodes in different groups can't reach each other.
    private var partition: [Int]?
    private var index: [NodeID: Int] = [:]
    private var random: SplitMix64
    private var queue: [Scheduled] = []
    private var order: UInt64 = 0
    private var pendingLinks = Set<Pair>()
    private var lastDelivery: [Int: Int64] = [:]

    private struct Pair: Hashable {
        var low: Int, high: Int
        init(_ a: Int, _ b: Int) { (low, high) = a < b ? (a, b) : (b, a) }
    }

    init(_ configuration: Configuration) {
        self.configuration = configuration
        random = SplitMix64(seed: configuration.seed)
        for i in 0..<configuration.size {
            let node = Node(
                index: i,
                epoch: 1,
                settings: configuration.settings,
                seed: configuration.seed &* 1_000_003 &+ UInt64(i)
            )
            nodes.append(node)
            index[node.id] = i
        }
        for i in 0..<configuration.size { dialSeeds(of: i) }
    }

    static func deadline(_ milliseconds: Int64) -> NIODeadline {
        .uptimeNanoseconds(0) + .milliseconds(milliseconds)
    }

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
            let event = pop()
            now = event.time
            handle(event.event)
        }
        now = target
        for node in nodes where node.up {
            perform(node.membership.tick(now: Self.deadline(now)), of: node.index)
        }
        for node in nodes where node.up { redial(node.index) }
        if let interval = configuration.digestInterval, now % interval == 0 {
            for node in nodes where node.up {
                for peer in node.links.sorted() { sendDigest(from: node.index, to: peer) }
            }
        }
    }

    // MARK: - Faults

    /// The process dies: it stops answering, and each peer sees its link close.
    func kill(_ i: Int) {
        let node = nodes[i]
        guard node.up else { return }
        node.up = false
        for peer in node.links.sorted() {
            unlink(i, peer)
            schedule(
                .linkClosed(at: peer, peer: i, boot: nodes[peer].boot),
                at: now + randomDelay(configuration.latency)
            )
        }
    }

    /// The node starts again under the same id, at a later boot epoch, and dials its seeds.
    func restart(_ i: Int, epoch: UInt64) {
        let old = nodes[i]
        precondition(!old.up, "kill it first")
        let node = Node(
            index: i,
            epoch: epoch,
            settings: configuration.settings,
            seed: configuration.seed &* 7_919 &+ epoch &* 31 &+ UInt64(i)
        )
        node.boot = old.boot + 1
        node.extraDelay = old.extraDelay
        nodes[i] = node
        dialSeeds(of: i)
    }

    /// Graceful leave: peers are told, then the process exits shortly after.
    func leave(_ i: Int) {
        perform(nodes[i].membership.leave(), of: i)
        schedule(.shutdown(i, boot: nodes[i].boot), at: now + configuration.leaveLinger)
    }

    /// Splits the cluster: links across groups close at once and nothing crosses until ``heal()``.
    func partition(_ groups: [Set<Int>]) {
        var group = Array(repeating: -1, count: nodes.count)
        for (number, members) in groups.enumerated() {
            for member in members { group[member] = number }
        }
        partition = group
        for node in nodes {
            for peer in node.links.sorted() where peer > node.index && !canReach(node.index, peer) {
                unlink(node.index, peer)
                perform(
                    nodes[node.index].membership.linkClosed(node: nodes[peer].id, now: Self.deadline(now)),
                    of: node.index
                )
                perform(
                    nodes[peer].membership.linkClosed(node: nodes[node.index].id, now: Self.deadline(now)),
                    of: peer
                )
            }
        }
    }

    func heal() { partition = nil }

    /// Every message to or from `i` is lost while muted (a stalled process whose links stay up).
    func mute(_ i: Int, _ muted: Bool) { nodes[i].muted = muted }

    func setExtraDelay(_ i: Int, _ delay: ClosedRange<Int64>?) { nodes[i].extraDelay = delay }

    /// Feeds a message to node `i` as if `sender` had sent it, now.
    func inject(_ message: LinkMessage, to i: Int, from sender: Int) {
        perform(nodes[i].membership.received(message, from: nodes[sender].id, now: Self.deadline(now)), of: i)
    }

    // MARK: - Interest

    /// Local subscriptions of node `i` to `key` change by `delta`; peers hear of it if they must.
    func subscribe(_ i: Int, to key: Destination, by delta: Int = 1) {
        let node = nodes[i]
        guard let change = node.interest.adjust(key, by: delta) else { return }
        for peer in node.links.sorted() {
            transmit(
                .interestDelta(epoch: node.epoch, version: change.version, changes: [change.change]),
                from: i,
                to: peer
            )
        }
    }

    // MARK: - Observations

    func isLinked(_ a: Int, _ b: Int) -> Bool { nodes[a].links.contains(b) }

    /// Whether every live node holds every other live node as alive at its current epoch.
    var membershipConverged: Bool {
        let live = nodes.filter(\.up)
        for observer in live {
            for subject in live where subject.index != observer.index {
                guard let update = observer.membership.status(of: subject.id), update.status == .alive,
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
                guard let held = observer.table.version(of: subject.id), held.epoch == subject.epoch,
                    held.version == subject.interest.version
                else {
                    return false
                }
            }
        }
        return true
    }

    /// What `observer` holds about node `subject`.
    func view(of subject: Int, by observer: Int) -> MemberUpdate? {
        nodes[observer].membership.status(of: nodes[subject].id)
    }

    /// Status changes about `subject`, as seen by anyone, after `since`.
    func events(about subject: Int, since: Int64 = 0) -> [StatusEvent] {
        let id = nodes[subject].id
        return history.filter { $0.update.node == id && $0.time >= since }
    }

    // MARK: - The shell's part

    private func perform(_ directives: [MembershipInstance.Directive], of i: Int) {
        for directive in directives {
            switch directive {
            case .send(let message, let to):
                if let j = index[to], nodes[i].links.contains(j) { transmit(message, from: i, to: j) }
            case .broadcast(let message):
                for j in nodes[i].links.sorted() { transmit(message, from: i, to: j) }
            case .connect(let peer, _):
                if let j = index[peer] { requestLink(i, j) }
            case .statusChanged(let update, let previous):
                history.append(StatusEvent(time: now, observer: i, update: update, previous: previous))
                if update.status >= .dead, let j = index[update.node] {
                    // As the shell does: drop its interest and close its link.
                    nodes[i].table.remove(update.node)
                    if isLinked(i, j) {
                        unlink(i, j)
                        schedule(
                            .linkClosed(at: j, peer: i, boot: nodes[j].boot),
                            at: now + randomDelay(configuration.latency)
                        )
                    }
                }
            }
        }
    }

    private func transmit(_ message: LinkMessage, from i: Int, to j: Int) {
        messagesSent += 1
        if nodes[i].muted || nodes[j].muted
            || (configuration.dropProbability > 0
                && Double.random(in: 0..<1, using: &random) < configuration.dropProbability)
        {
            messagesDropped += 1
            return
        }
        var delay = randomDelay(configuration.latency)
        if let extra = nodes[i].extraDelay { delay += randomDelay(extra) }
        if let extra = nodes[j].extraDelay { delay += randomDelay(extra) }
        let key = i &* nodes.count &+ j
        let time = max(now + delay, lastDelivery[key] ?? 0)
        lastDelivery[key] = time
        schedule(.deliver(from: i, to: j, boot: nodes[j].boot, message: message), at: time)
    }

    private func handle(_ event: Event) {
        switch event {
        case .deliver(let from, let to, let boot, let message):
            let receiver = nodes[to]
            guard receiver.up, receiver.boot == boot, !receiver.muted, canReach(from, to) else {
                messagesDropped += 1
                return
            }
            deliver(message, from: from, to: to)

        case .establish(let a, let b):
            pendingLinks.remove(Pair(a, b))
            guard nodes[a].up, nodes[b].up, canReach(a, b), !isLinked(a, b) else { return }
            nodes[a].links.insert(b)
            nodes[b].links.insert(a)
            let time = Self.deadline(now)
            perform(
                nodes[a].membership.linkEstablished(
                    node: nodes[b].id,
                    epoch: nodes[b].epoch,
                    address: nodes[b].address,
                    now: time
                ),
                of: a
            )
            perform(
                nodes[b].membership.linkEstablished(
                    node: nodes[a].id,
                    epoch: nodes[a].epoch,
                    address: nodes[a].address,
                    now: time
                ),
                of: b
            )
            sendSnapshot(from: a, to: b)
            sendSnapshot(from: b, to: a)

        case .linkClosed(let at, let peer, let boot):
            guard nodes[at].up, nodes[at].boot == boot, !isLinked(at, peer) else { return }
            perform(nodes[at].membership.linkClosed(node: nodes[peer].id, now: Self.deadline(now)), of: at)

        case .shutdown(let i, let boot):
            if nodes[i].boot == boot { kill(i) }
        }
    }

    private func deliver(_ message: LinkMessage, from i: Int, to j: Int) {
        let receiver = nodes[j]
        let sender = nodes[i].id
        switch message {
        case .interestDelta(let epoch, let version, let changes):
            answer(
                receiver.table.applyDelta(from: sender, epoch: epoch, version: version, changes: changes),
                epoch: epoch,
                from: j,
                to: i
            )
        case .interestSnapshot(let epoch, let version, let entries):
            answer(
                receiver.table.applySnapshot(from: sender, epoch: epoch, version: version, entries: entries),
                epoch: epoch,
                from: j,
                to: i
            )
        case .interestAck:
            break
        case .interestDigest(let epoch, let version, let yourEpoch, let yourVersion):
            if yourEpoch != receiver.epoch || yourVersion != receiver.interest.version {
                sendSnapshot(from: j, to: i)
            }
            let held = receiver.table.version(of: sender)
            if held == nil || held!.epoch < epoch || (held!.epoch == epoch && held!.version < version) {
                sendDigest(from: j, to: i)
            }
        default:
            perform(receiver.membership.received(message, from: sender, now: Self.deadline(now)), of: j)
        }
    }

    private func answer(_ outcome: InterestTable.Outcome, epoch: UInt64, from j: Int, to i: Int) {
        switch outcome {
        case .applied(let version, _), .duplicate(let version):
            transmit(.interestAck(epoch: epoch, version: version), from: j, to: i)
        case .gap:
            sendDigest(from: j, to: i)
        case .stale:
            break
        }
    }

    private func sendSnapshot(from i: Int, to j: Int) {
        let node = nodes[i]
        transmit(
            .interestSnapshot(epoch: node.epoch, version: node.interest.version, entries: node.interest.snapshot),
            from: i,
            to: j
        )
    }

    private func sendDigest(from i: Int, to j: Int) {
        let node = nodes[i]
        let held = node.table.version(of: nodes[j].id)
        transmit(
            .interestDigest(
                epoch: node.epoch,
                version: node.interest.version,
                yourEpoch: held?.epoch ?? 0,
                yourVersion: held?.version ?? 0
            ),
            from: i,
            to: j
        )
    }

    private func requestLink(_ a: Int, _ b: Int) {
        guard a != b, nodes[a].up, !isLinked(a, b), pendingLinks.insert(Pair(a, b)).inserted else { return }
        schedule(.establish(a, b), at: now + randomDelay(configuration.connectDelay))
    }

    private func dialSeeds(of i: Int) {
        for seed in configuration.seeds where seed != i { requestLink(i, seed) }
    }

    /// What the shell does on its clock: redial live members without a link, now and then the
    /// members held dead, and the seeds (often while it has no link at all).
    private func redial(_ i: Int) {
        let node = nodes[i]
        if now % configuration.reconnectInterval == 0 {
            for member in node.membership.liveMembers {
                if let j = index[member], !isLinked(i, j) { requestLink(i, j) }
            }
        }
        if now % configuration.deadRedialInterval == 0 {
            for member in node.membership.deadMembers {
                if let j = index[member.node], !isLinked(i, j) { requestLink(i, j) }
            }
        }
        let seedInterval = node.links.isEmpty ? configuration.seedInterval.unlinked : configuration.seedInterval.linked
        if now % seedInterval == 0 { dialSeeds(of: i) }
    }

    private func unlink(_ a: Int, _ b: Int) {
        nodes[a].links.remove(b)
        nodes[b].links.remove(a)
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
        queue.append(Scheduled(time: time, order: order, event: event))
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
