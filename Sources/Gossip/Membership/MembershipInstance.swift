import NIOCore

/// SWIM membership with suspicion and incarnation numbers, without I/O.
///
/// Each protocol period this node probes one member over its link: a `ping` it must `ack`
/// within the probe timeout; failing that, `k` other members are asked to probe it
/// (`pingRequest`), which tells a dead member from a slow link. A member no one could reach
/// becomes *suspect*; a suspect that doesn't refute (by announcing a higher incarnation)
/// within the suspicion timeout is declared *dead*. Updates spread piggy-backed on probes
/// and, since every pair of nodes has a link, are also broadcast when they matter.
///
/// Lifeguard's local health multiplier stretches this node's probe timeout when its own
/// probes keep failing, which is what a saturated node sees: it then waits longer rather
/// than suspecting healthy peers.
///
/// The shell feeds events with the current time and carries out the returned
/// ``Directive``s, as `SWIMInstance` does in swift-cluster-membership.
public struct MembershipInstance {
    public struct Settings: Sendable {
        /// One probe per period. Shorter detects faster and costs more messages.
        public var probeInterval: TimeAmount = .milliseconds(1_000)
        /// How long a direct ping waits for its ack, before the local health multiplier.
        public var probeTimeout: TimeAmount = .milliseconds(400)
        /// How long the indirect probes get after the direct one failed.
        public var indirectProbeTimeout: TimeAmount = .milliseconds(600)
        /// Members asked to probe a target that didn't answer directly.
        public var indirectProbeCount: Int = 3
        /// How long a suspect has to refute before it is declared dead.
        public var suspicionTimeout: TimeAmount = .milliseconds(2_000)
        /// Upper bound of the local health multiplier (Lifeguard).
        public var maxLocalHealth: Int = 6
        /// Updates piggy-backed on one message.
        public var maxGossipPerMessage: Int = 8
        /// Each update is piggy-backed this many times log2(n) before it is dropped.
        public var gossipRepeatFactor: Int = 3
        /// How long a dead or departed member is remembered, so stale gossip can't revive it.
        public var tombstoneRetention: TimeAmount = .seconds(60)

        public init() {}
    }

    /// What the shell must do.
    public enum Directive: Sendable, Equatable {
        /// Send over the link to this member; if there is no link, the message is lost and
        /// the protocol's timeouts take care of it.
        case send(LinkMessage, to: NodeID)
        /// Send to every member with a link.
        case broadcast(LinkMessage)
        /// Make sure a link to this member exists.
        case connect(NodeID, address: String)
        /// A member changed status (or appeared: `previous` is nil).
        case statusChanged(MemberUpdate, previous: MemberUpdate.Status?)
        /// A dead or departed member's tombstone expired: it is no longer known here.
        case forgotten(NodeID)
    }

    private struct Member {
        var update: MemberUpdate
        var suspectedAt: NIODeadline?
        var removedAt: NIODeadline?
    }

    private struct Probe {
        var target: NodeID
        var started: NIODeadline
        var deadline: NIODeadline
        var indirect: Bool
        /// Set when this probe runs on another member's behalf: answer them with their sequence.
        var onBehalfOf: (node: NodeID, sequence: UInt64)?
    }

    private struct Gossip {
        var update: MemberUpdate
        var remaining: Int
    }

    public let settings: Settings
    public let node: NodeID
    public let epoch: UInt64
    public let address: String
    public private(set) var incarnation: UInt64 = 0
    /// Lifeguard's local health multiplier: 0 when this node's probes succeed.
    public private(set) var localHealth = 0
    private var leaving = false
    private var members: [NodeID: Member] = [:]
    private var probeOrder: [NodeID] = []
    private var nextProbeAt: NIODeadline?
    private var probes: [UInt64: Probe] = [:]
    /// When something last arrived from each member over its link (see ``heard(from:at:)``).
    private var lastHeard: [NodeID: NIODeadline] = [:]
    private var nextSequence: UInt64 = 0
    private var gossip: [NodeID: Gossip] = [:]
    private var random: any RandomNumberGenerator

    public init(
        node: NodeID,
        epoch: UInt64,
        address: String,
        settings: Settings = Settings(),
        random: any RandomNumberGenerator = SystemRandomNumberGenerator()
    ) {
        self.node = node
        self.epoch = epoch
        self.address = address
        self.settings = settings
        self.random = random
    }

    // MARK: - Views

    /// This node as its peers should see it.
    public var myself: MemberUpdate {
        MemberUpdate(
            node: node,
            epoch: epoch,
            address: address,
            incarnation: incarnation,
            status: leaving ? .left : .alive
        )
    }

    /// Every member known, this node included, dead and departed ones while remembered
    /// (in no particular order: it is sent whole to every new link, so it isn't sorted).
    public var allMembers: [MemberUpdate] {
        [myself] + members.values.map(\.update)
    }

    /// Members considered up: alive or suspect, in node id order so that a seeded random
    /// generator makes the same choices every run.
    public var liveMembers: [NodeID] {
        members.values.filter { $0.update.status <= .suspect }.map(\.update.node).sorted()
    }

    /// Members declared dead (not departed) and still remembered. After a partition each side
    /// holds the other dead; redialling them is how the halves find each other again.
    public var deadMembers: [MemberUpdate] {
        members.values.filter { $0.update.status == .dead }.map(\.update)
    }

    public func status(of node: NodeID) -> MemberUpdate? { members[node]?.update }

    // MARK: - Links

    /// A link to `hello.node` completed its handshake: the peer is alive right now, at the
    /// epoch it announced.
    public mutating func linkEstablished(
        node peer: NodeID,
        epoch: UInt64,
        address: String,
        now: NIODeadline
    ) -> [Directive] {
        var directives: [Directive] = []
        let incarnation = members[peer].map { $0.update.epoch == epoch ? $0.update.incarnation : 0 } ?? 0
        apply(
            MemberUpdate(node: peer, epoch: epoch, address: address, incarnation: incarnation, status: .alive),
            now: now,
            into: &directives
        )
        directives.append(.send(.members(allMembers), to: peer))
        return directives
    }

    /// A link went down. If the member is still up, probe it now rather than at its turn: a
    /// killed process closes its sockets, and this is how its death is noticed in seconds.
    public mutating func linkClosed(node peer: NodeID, now: NIODeadline) -> [Directive] {
        var directives: [Directive] = []
        guard let member = members[peer], member.update.status <= .suspect else { return directives }
        guard !probes.values.contains(where: { $0.target == peer && $0.onBehalfOf == nil }) else { return directives }
        startProbe(of: peer, now: now, into: &directives)
        return directives
    }

    // MARK: - Messages

    /// A membership message arrived from `sender`.
    public mutating func received(_ message: LinkMessage, from sender: NodeID, now: NIODeadline) -> [Directive] {
        var directives: [Directive] = []
        switch message {
        case .ping(let sequence, let updates):
            merge(updates, now: now, into: &directives)
            directives.append(.send(.ack(sequence: sequence, gossip: takeGossip()), to: sender))
        case .ack(let sequence, let updates):
            merge(updates, now: now, into: &directives)
            guard let probe = probes.removeValue(forKey: sequence) else { break }
            settle(probe, into: &directives)
        case .pingRequest(let sequence, let target, let updates):
            merge(updates, now: now, into: &directives)
            nextSequence += 1
            probes[nextSequence] = Probe(
                target: target,
                started: now,
                deadline: now + settings.indirectProbeTimeout,
                indirect: true,
                onBehalfOf: (sender, sequence)
            )
            directives.append(.send(.ping(sequence: nextSequence, gossip: takeGossip()), to: target))
        case .members(let updates):
            merge(updates, now: now, into: &directives)
        default:
            break
        }
        return directives
    }

    // MARK: - Time

    /// Advances the protocol: starts the period's probe, escalates probes that timed out,
    /// and declares dead the suspects whose time is up.
    public mutating func tick(now: NIODeadline) -> [Directive] {
        var directives: [Directive] = []
        guard !leaving else { return directives }

        for (sequence, probe) in probes where probe.deadline <= now {
            guard probes[sequence] != nil else { continue }  // settled by an earlier one
            probes[sequence] = nil
            if let heard = lastHeard[probe.target], heard >= probe.started {
                settle(probe, into: &directives)
                continue
            }
            guard probe.onBehalfOf == nil else { continue }
            if probe.indirect {
                suspect(probe.target, now: now, into: &directives)
            } else {
                localHealth = min(localHealth + 1, settings.maxLocalHealth)
                escalate(probe, now: now, into: &directives)
            }
        }

        for (peer, member) in members {
            if member.update.status == .suspect, let since = member.suspectedAt,
                now - since >= settings.suspicionTimeout
            {
                var update = member.update
                update.status = .dead
                apply(update, now: now, into: &directives)
            }
            if let removedAt = member.removedAt, now - removedAt >= settings.tombstoneRetention {
                members[peer] = nil
                lastHeard[peer] = nil
                gossip[peer] = nil
                directives.append(.forgotten(peer))
            }
        }

        if nextProbeAt == nil || now >= nextProbeAt! {
            nextProbeAt = now + settings.probeInterval
            if let target = nextProbeTarget() {
                startProbe(of: target, now: now, into: &directives)
            }
        }
        return directives
    }

    /// This node is leaving: peers are told at once and stop probing it.
    public mutating func leave() -> [Directive] {
        leaving = true
        incarnation += 1
        return [.broadcast(.members([myself]))]
    }

    /// Frames from `peer` arrived at `time`.
    ///
    /// A probe of a member that was heard from after the probe began succeeded, ack or not:
    /// the member's process is running and reaching this node. Probes and acks share the
    /// link with forwarded messages, and when flow control holds a link full they wait
    /// behind its backlog; without this, a busy link would look like a dead member.
    public mutating func heard(from peer: NodeID, at time: NIODeadline) {
        guard members[peer] != nil else { return }
        if time > lastHeard[peer] ?? .distantPast { lastHeard[peer] = time }
    }

    // MARK: - Probing

    /// A probe succeeded: answer whoever asked for it, and let any other probe of the same
    /// target go, since one success settles them all.
    private mutating func settle(_ probe: Probe, into directives: inout [Directive]) {
        if let requester = probe.onBehalfOf {
            directives.append(.send(.ack(sequence: requester.sequence, gossip: takeGossip()), to: requester.node))
        } else if !probe.indirect {
            localHealth = max(localHealth - 1, 0)
        }
        probes = probes.filter { $0.value.target != probe.target || $0.value.onBehalfOf != nil }
    }

    private mutating func startProbe(of target: NodeID, now: NIODeadline, into directives: inout [Directive]) {
        nextSequence += 1
        let timeout = settings.probeTimeout * Int64(1 + localHealth)
        probes[nextSequence] = Probe(
            target: target,
            started: now,
            deadline: now + timeout,
            indirect: false,
            onBehalfOf: nil
        )
        directives.append(.send(.ping(sequence: nextSequence, gossip: takeGossip()), to: target))
    }

    /// The direct probe failed: ask others to try, or suspect the target if there is no one.
    private mutating func escalate(_ probe: Probe, now: NIODeadline, into directives: inout [Directive]) {
        var helpers = liveMembers.filter { $0 != probe.target && members[$0]?.update.status == .alive }
        helpers.shuffle(using: &random)
        helpers = Array(helpers.prefix(settings.indirectProbeCount))
        guard !helpers.isEmpty else {
            suspect(probe.target, now: now, into: &directives)
            return
        }
        nextSequence += 1
        probes[nextSequence] = Probe(
            target: probe.target,
            started: probe.started,
            deadline: now + settings.indirectProbeTimeout,
            indirect: true,
            onBehalfOf: nil
        )
        for helper in helpers {
            directives.append(
                .send(.pingRequest(sequence: nextSequence, target: probe.target, gossip: takeGossip()), to: helper)
            )
        }
    }

    private mutating func suspect(_ target: NodeID, now: NIODeadline, into directives: inout [Directive]) {
        guard var update = members[target]?.update, update.status == .alive else { return }
        update.status = .suspect
        apply(update, now: now, into: &directives)
    }

    /// Round robin over a shuffled list, reshuffled each round (SWIM's bounded detection time).
    private mutating func nextProbeTarget() -> NodeID? {
        for _ in 0..<2 {
            while let candidate = probeOrder.popLast() {
                if let member = members[candidate], member.update.status <= .suspect { return candidate }
            }
            probeOrder = liveMembers
            probeOrder.shuffle(using: &random)
        }
        return nil
    }

    // MARK: - Merging updates

    private mutating func merge(_ updates: [MemberUpdate], now: NIODeadline, into directives: inout [Directive]) {
        for update in updates { apply(update, now: now, into: &directives) }
    }

    /// Applies one update if it is newer than what is known, by SWIM's precedence: a later
    /// boot wins; within a boot a higher incarnation wins; at equal incarnation suspect beats
    /// alive; dead and left are final for that boot.
    private mutating func apply(_ update: MemberUpdate, now: NIODeadline, into directives: inout [Directive]) {
        if update.node == node {
            refuteIfNeeded(update, into: &directives)
            return
        }
        let previous = members[update.node]?.update
        if let previous {
            guard Self.supersedes(update, previous) else { return }
        }
        var member = Member(update: update)
        switch update.status {
        case .alive:
            break
        case .suspect:
            member.suspectedAt = (previous?.status == .suspect ? members[update.node]?.suspectedAt : nil) ?? now
        case .dead, .left:
            member.removedAt = now
            probes = probes.filter { $0.value.target != update.node }
        }
        members[update.node] = member
        gossip[update.node] = Gossip(update: update, remaining: gossipRepeats)
        if previous?.status != update.status || previous?.epoch != update.epoch {
            directives.append(.statusChanged(update, previous: previous?.status))
            if update.status != .alive {
                directives.append(.broadcast(.members([update])))
            }
        }
        if update.status == .alive, previous?.status != .alive || previous?.epoch != update.epoch {
            directives.append(.connect(update.node, address: update.address))
        }
    }

    /// Whether `new` replaces `old`. A member declared dead by mistake (a partition that
    /// healed) comes back by refuting with a higher incarnation; one that left stays gone
    /// until it boots again.
    static func supersedes(_ new: MemberUpdate, _ old: MemberUpdate) -> Bool {
        if new.epoch != old.epoch { return new.epoch > old.epoch }
        if old.status == .left { return false }
        switch new.status {
        case .alive:
            return new.incarnation > old.incarnation
        case .suspect:
            return old.status != .dead
                && (new.incarnation > old.incarnation || (new.incarnation == old.incarnation && old.status == .alive))
        case .dead:
            return old.status != .dead && new.incarnation >= old.incarnation
        case .left:
            return true
        }
    }

    /// Someone says this node is suspect or dead: announce a higher incarnation.
    private mutating func refuteIfNeeded(_ update: MemberUpdate, into directives: inout [Directive]) {
        guard update.epoch == epoch, update.status != .alive, update.incarnation >= incarnation, !leaving else {
            return
        }
        incarnation = update.incarnation + 1
        localHealth = min(localHealth + 1, settings.maxLocalHealth)
        gossip[node] = Gossip(update: myself, remaining: gossipRepeats)
        directives.append(.broadcast(.members([myself])))
    }

    // MARK: - Gossip

    private var gossipRepeats: Int {
        let n = members.count + 1
        return settings.gossipRepeatFactor * max(1, Int.bitWidth - n.leadingZeroBitCount)
    }

    /// The updates to piggy-back on the next message: those sent the fewest times first.
    private mutating func takeGossip() -> [MemberUpdate] {
        guard !gossip.isEmpty else { return [] }
        let chosen = gossip.values.sorted { ($0.remaining, $1.update.node) > ($1.remaining, $0.update.node) }.prefix(
            settings.maxGossipPerMessage
        )
        var updates: [MemberUpdate] = []
        for entry in chosen {
            updates.append(entry.update)
            let key = entry.update.node
            if entry.remaining <= 1 { gossip[key] = nil } else { gossip[key]!.remaining -= 1 }
        }
        return updates
    }
}
