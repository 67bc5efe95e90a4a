import NIOCore
import StompRouting

/// What operators see and ask for: the admin API's view of the cluster, and requests passed
/// between members.
extension ClusterShell {
    // MARK: - Operators

    /// Sets this node's admin API address and tells every peer.
    public func advertiseAdminAddress(_ address: String) async {
        try? await eventLoop.submit { [self] in
            admin.ownAddress = address
            for link in links.values { link.send(.nodeInfo(adminAddress: address)) }
        }.get()
    }

    /// What to do when a peer passes on an operator's request for this node.
    public func onAdminRequest(_ handler: @escaping @Sendable (String) -> Void) {
        eventLoop.execute { [self] in admin.requestHandler = handler }
    }

    /// Passes an operator's request to a member over its link.
    ///
    /// - Returns: whether a link to that member was up to carry it.
    public func requestAdminAction(_ action: String, of member: NodeID) async -> Bool {
        (try? await eventLoop.submit { [self] () -> Bool in
            guard let link = links[member] else { return false }
            link.send(.adminRequest(action: action))
            link.flushBatches()
            return true
        }.get()) ?? false
    }

    // MARK: - Status

    /// A snapshot of the cluster as this node sees it.
    public struct Status: Sendable {
        public struct Link: Sendable {
            public var peer: NodeID
            public var address: String
            public var outbound: Bool
            /// The wire version the link's handshake settled on.
            public var wireVersion: UInt16
            public var counters: LinkCounters
        }

        public var node: NodeID
        public var epoch: UInt64
        public var incarnation: UInt64
        public var localHealth: Int
        public var members: [MemberUpdate]
        public var links: [Link]
        /// Interest entries held for peers, over all of them (``interestPage(offset:limit:)``
        /// lists them).
        public var remoteInterestEntries: Int
        /// Joined: linked to enough members once (``ClusterSettings/minimumMembers``), and
        /// now to every live member, holding its interest snapshot.
        public var isJoined: Bool
        /// Why the node isn't joined yet, for `/readyz` and clusterctl; `nil` when it is.
        public var notJoinedReason: String?
        /// Members' admin API addresses, this node's included, as far as they are known.
        public var adminAddresses: [NodeID: String]
    }

    /// A snapshot of the cluster as this node sees it, without the interest entries: cheap
    /// enough for every readiness probe.
    public func status() async -> Status? {
        try? await eventLoop.submit { [self] in
            let reason = instance.notJoinedReason(seeds: settings.seeds)
            var adminAddresses = admin.peerAddresses
            if !admin.ownAddress.isEmpty { adminAddresses[settings.node] = admin.ownAddress }
            return Status(
                node: settings.node,
                epoch: settings.epoch,
                incarnation: instance.membership.incarnation,
                localHealth: instance.membership.localHealth,
                members: instance.membership.allMembers,
                links: links.values.compactMap { link in
                    guard let peer = link.peer, let wireVersion = link.wireVersion else { return nil }
                    return Status.Link(
                        peer: peer.node,
                        address: peer.address,
                        outbound: link.isOutbound,
                        wireVersion: wireVersion,
                        counters: link.counters
                    )
                }.sorted { $0.peer < $1.peer },
                remoteInterestEntries: instance.interest.remote.entryCount,
                isJoined: reason == nil,
                notJoinedReason: reason,
                adminAddresses: adminAddresses
            )
        }.get()
    }

    /// One page of the members, in node id order.
    public struct MemberPage: Sendable {
        public var node: NodeID
        public var total: Int
        public var members: [MemberUpdate]
        /// The admin API addresses of the members on the page, as far as they are known.
        public var adminAddresses: [NodeID: String]
        /// The sessions this node holds with the members on the page (none for itself).
        public var sessions: [NodeID: Session]
    }

    /// What this node holds for one peer, and whether it reaches it.
    public struct Session: Sendable, Equatable {
        /// Alive and linked: forwards go out as they are published.
        public var reachable: Bool
        /// Bytes and topic messages held for the peer until it acknowledges them.
        public var heldBytes: Int
        public var heldMessages: Int
        /// How long the peer has been unreachable, if it is.
        public var outage: TimeAmount?
    }

    /// One page of the members as this node sees it, itself included.
    ///
    /// - Parameters:
    ///   - offset: how many members come before the page.
    ///   - limit: the most members the page holds.
    /// - Returns: the page, or `nil` when the shell has stopped.
    public func memberPage(offset: Int, limit: Int) async -> MemberPage? {
        try? await eventLoop.submit { [self] in
            let all = instance.membership.allMembers
            let page = Set(PageSelection.page(of: all.map(\.node), offset: offset, limit: limit))
            let members = all.filter { page.contains($0.node) }.sorted { $0.node < $1.node }
            var addresses: [NodeID: String] = [:]
            for member in members {
                addresses[member.node] =
                    member.node == settings.node
                    ? (admin.ownAddress.isEmpty ? nil : admin.ownAddress) : admin.peerAddresses[member.node]
            }
            let now = NIODeadline.now()
            var sessions: [NodeID: Session] = [:]
            for member in members {
                guard let state = instance.sessions.state(of: member.node) else { continue }
                sessions[member.node] = Session(
                    reachable: state.reachable,
                    heldBytes: state.heldBytes,
                    heldMessages: state.heldMessages,
                    outage: state.outageSince.map { now - $0 }
                )
            }
            return MemberPage(
                node: settings.node,
                total: all.count,
                members: members,
                adminAddresses: addresses,
                sessions: sessions
            )
        }.get()
    }

    /// One page of the interest entries of this node and every peer, counted over all origins
    /// (see ``InterestPage``).
    ///
    /// - Parameters:
    ///   - offset: how many entries (over all origins, in listing order) come before the page.
    ///   - limit: the most entries the page holds.
    /// - Returns: the page, or `nil` when the shell has stopped.
    public func interestPage(offset: Int, limit: Int) async -> InterestPage? {
        try? await eventLoop.submit { [self] in
            let local = instance.interest.local
            let remote = instance.interest.remote.entriesByOrigin
            return InterestPage(
                local: .init(node: settings.node, epoch: local.epoch, version: local.version, entries: local.entries),
                peers: remote.map {
                    .init(node: $0.key, epoch: $0.value.epoch, version: $0.value.version, entries: $0.value.entries)
                },
                offset: offset,
                limit: limit
            )
        }.get()
    }

    /// The byte counters of every established link, added up: a cheap reading for the admin
    /// API's once-a-second history, which must not build the whole ``status()`` each time.
    /// A link that closes takes its counts with it, so the totals can drop.
    public func linkTraffic() async -> LinkCounters {
        (try? await eventLoop.submit { [self] in
            links.values.reduce(into: LinkCounters()) { total, link in
                total.framesSent += link.counters.framesSent
                total.framesReceived += link.counters.framesReceived
                total.rawBytesSent += link.counters.rawBytesSent
                total.wireBytesSent += link.counters.wireBytesSent
                total.rawBytesReceived += link.counters.rawBytesReceived
                total.wireBytesReceived += link.counters.wireBytesReceived
            }
        }.get()) ?? LinkCounters()
    }

    /// Which peers would receive a message for `destination` (the admin API's "why").
    public func routing(for destination: Destination) async -> [NodeID: String] {
        (try? await eventLoop.submit { [self] () -> [NodeID: String] in
            switch destination {
            case .topic(let key):
                var peers = Set<NodeID>()
                instance.interest.remote.peers(forTopic: key, into: &peers)
                var reasons: [NodeID: String] = [:]
                for peer in peers {
                    let patterns =
                        instance.interest.remote.entriesByOrigin[peer]?.entries.keys.compactMap { entry -> String? in
                            if case .topic(let pattern) = entry, TopicTrie<Int>.matches(pattern: pattern, key: key) {
                                return entry.description
                            }
                            return nil
                        } ?? []
                    reasons[peer] = "subscribed to " + patterns.sorted().joined(separator: ", ")
                }
                return reasons
            case .queue(let name):
                return instance.interest.remote.consumers(ofQueue: name).mapValues {
                    "\($0) consumer(s) of /queue/\(name)"
                }
            }
        }.get()) ?? [:]
    }
}

/// The admin API's addresses, as members told each other, and what runs a request a peer
/// passed on. Confined to the shell's loop.
struct ClusterAdminState {
    /// This node's admin API address, told to every peer.
    var ownAddress = ""
    /// Peers' admin API addresses; an entry goes when its member is declared dead or leaves.
    var peerAddresses: [NodeID: String] = [:]
    /// Runs an operator's request that arrived from another member ("drain", "leave").
    var requestHandler: (@Sendable (String) -> Void)?

    /// A peer told its admin address. Shown to operators and dialled by clusterctl: only a
    /// plausible host:port is kept.
    mutating func peerTold(_ address: String, from peer: NodeID) {
        let plausible =
            address.utf8.count <= 300 && address.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
            && SeedResolver.split(address) != nil
        peerAddresses[peer] = plausible ? address : nil
    }
}
