import NIOCore

/// When to dial which address, and which of two links between the same pair of nodes stays.
///
/// Sans-IO: the cluster shell reports what happened (a dial started or failed, a link came up
/// or reached this node itself) with the time, and asks before it dials; it does the dialling.
/// Randomness (the backoff's jitter) comes from an injected generator, so tests are repeatable.
struct LinkPolicy {
    struct Settings: Sendable {
        /// The first retry waits up to this; each failure doubles the ceiling.
        var backoffMinimum: TimeAmount
        /// The ceiling stops doubling here.
        var backoffMaximum: TimeAmount
        /// How often members declared dead are dialled again: a partition looks like death,
        /// and both halves must find each other once it heals.
        var deadRedialInterval: TimeAmount = .seconds(5)
        /// How often the seeds are resolved and dialled while this node is linked to nobody.
        var seedIntervalAlone: TimeAmount = .seconds(1)
        /// How often once it is linked: seeds then only find members gossip didn't name.
        var seedIntervalLinked: TimeAmount = .seconds(30)
    }

    private let settings: Settings
    /// Addresses that turned out to be this node (it may list itself as a seed).
    private(set) var ownAddresses: Set<String> = []
    /// Addresses being connected to now, from the dial to the end of the handshake; a second
    /// dial waits for the first. (Counting only until the connection is up let a slow
    /// handshake draw a new dial every tick, each replacing the link before at both ends.)
    private var dialing: Set<String> = []
    /// Per address that failed: failures in a row and when the next dial may start. An entry
    /// nothing has dialled for a while goes (see ``forgetsBackoffAfter``): members come and go
    /// with new addresses (a rescheduled container), and their old ones must not pile up.
    private var backoff: [String: (attempts: Int, notBefore: NIODeadline)] = [:]
    private var lastSeedAttempt: NIODeadline?
    private var lastDeadRedial: NIODeadline
    private var random: any RandomNumberGenerator

    init(settings: Settings, now: NIODeadline, random: any RandomNumberGenerator = SystemRandomNumberGenerator()) {
        self.settings = settings
        self.lastDeadRedial = now
        self.random = random
    }

    // MARK: - Dialling

    /// Whether to dial `address` now. It isn't when the address is this node, a dial to it
    /// is under way, or (unless `force`, for membership's own requests) its backoff runs.
    /// A `true` counts the address as being dialled until the connection fails
    /// (``dialEnded(_:failed:now:)``) or its handshake ends, either way.
    mutating func startDial(_ address: String, now: NIODeadline, force: Bool) -> Bool {
        guard !ownAddresses.contains(address), !dialing.contains(address) else { return false }
        if !force, let wait = backoff[address], now < wait.notBefore { return false }
        dialing.insert(address)
        return true
    }

    /// The connection attempt to `address` ended: a failed one is retried after the backoff;
    /// a connection that is up still counts as the dial until its handshake ends.
    mutating func dialEnded(_ address: String, failed: Bool, now: NIODeadline) {
        guard failed else { return }
        dialing.remove(address)
        scheduleRetry(address, now: now)
    }

    /// A dialled link closed before its handshake completed: retried after the backoff too.
    mutating func linkClosedBeforeHandshake(dialedAddress address: String, now: NIODeadline) {
        dialing.remove(address)
        scheduleRetry(address, now: now)
    }

    /// A link came up: whatever failed before at the address it was dialled at is forgotten.
    mutating func linkEstablished(dialedAddress address: String?) {
        guard let address else { return }
        dialing.remove(address)
        backoff[address] = nil
    }

    /// `address` is this node's own (its listener, or a seed that turned out to be itself).
    mutating func noteOwnAddress(_ address: String) {
        ownAddresses.insert(address)
    }

    /// When a dial to `address` may start again, if it waits.
    func retryTime(of address: String) -> NIODeadline? {
        backoff[address]?.notBefore
    }

    /// Addresses whose backoff is kept.
    var backoffCount: Int { backoff.count }

    /// How long after its retry time an address that nothing dialled again is forgotten. Dead
    /// members are redialled every few seconds, and each failure renews their entry, so only
    /// addresses nobody asks for any more reach this.
    var forgetsBackoffAfter: TimeAmount {
        max(settings.backoffMaximum, settings.deadRedialInterval, settings.seedIntervalLinked) * 2
    }

    /// Exponential backoff with full jitter, so that nodes restarting together don't redial
    /// in lockstep: the n-th failure in a row waits between the minimum and
    /// min(minimum << n, maximum).
    private mutating func scheduleRetry(_ address: String, now: NIODeadline) {
        let attempts = (backoff[address]?.attempts ?? 0) + 1
        let minimum = settings.backoffMinimum.nanoseconds
        let ceiling = max(min(minimum << min(attempts, 20), settings.backoffMaximum.nanoseconds), minimum)
        let delay = Int64.random(in: minimum...ceiling, using: &random)
        backoff[address] = (attempts, now + .nanoseconds(delay))
    }

    // MARK: - Cadence

    /// Whether members declared dead are due to be dialled again; if so, the next time
    /// starts now, and backoffs nothing renewed for long are forgotten.
    mutating func deadRedialDue(now: NIODeadline) -> Bool {
        guard now - lastDeadRedial >= settings.deadRedialInterval else { return false }
        lastDeadRedial = now
        let forgetBefore = now - forgetsBackoffAfter
        backoff = backoff.filter { $0.value.notBefore > forgetBefore }
        return true
    }

    /// Whether the seeds are due to be resolved and dialled: often while this node is linked
    /// to nobody (that is how it finds the cluster), seldom once it is.
    mutating func seedsDue(now: NIODeadline, linked: Bool) -> Bool {
        let interval = linked ? settings.seedIntervalLinked : settings.seedIntervalAlone
        if let last = lastSeedAttempt, now - last < interval { return false }
        lastSeedAttempt = now
        return true
    }

    // MARK: - Two links to one peer

    /// Whether a newly established link replaces the one already held to the same peer.
    ///
    /// Both nodes dialled at once: each end must keep the same link, or each would close
    /// the one the other keeps. The link the lower node id dialled stays, unless the peer
    /// rebooted (a newer epoch): then the new link wins, since the old one leads to a
    /// process that is gone.
    static func keepsNewLink(
        existingPeerEpoch: UInt64,
        newPeerEpoch: UInt64,
        newLinkDialedHere: Bool,
        localNode: NodeID,
        peer: NodeID
    ) -> Bool {
        if newPeerEpoch != existingPeerEpoch { return newPeerEpoch > existingPeerEpoch }
        let dialledByLowerID = newLinkDialedHere ? localNode < peer : peer < localNode
        return dialledByLowerID
    }
}
