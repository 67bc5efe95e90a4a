import CoreMetrics
import DequeModule
import NIOCore
import Synchronization

/// Who may hold a connection to this node, counted from any event loop.
///
/// A connection is *pending* from the moment it is accepted until its STOMP session is
/// established (WebSocket upgrade, TLS handshake and CONNECT all happen while pending), and
/// *connected* after. The two are counted against separate limits: sockets that never speak
/// would otherwise take every slot from real clients. Pending connections have a limit of
/// their own and a deadline (the handshake timeouts); when the limit is reached, the oldest
/// pending connection is closed to make room for the new one, so that a flood of silent
/// sockets can't keep a real client out either: a real client completes its handshake in
/// milliseconds, and is never the oldest for long. An optional limit per remote address
/// bounds what one host can take of both.
final class ConnectionAdmission: Sendable {
    /// The limits, from the node's settings.
    struct Limits: Sendable {
        /// Connected clients (`limits.connections`).
        var connections: Int
        /// Connections that have not completed CONNECT yet (`limits.pending-connections`).
        var pendingConnections: Int
        /// Connections, pending or connected, from one remote address
        /// (`limits.connections-per-ip`); 0 for no limit.
        var perAddress: Int
    }

    /// Why a connection was turned away.
    enum Refusal: String, Error, Sendable, CaseIterable {
        /// Evicted from the pending connections, the oldest when a newer one needed room.
        case pendingLimit = "pending_limit"
        case addressLimit = "address_limit"
        case connectionLimit = "connection_limit"
    }

    /// Pending connections in the order they were accepted. Entries leave when their
    /// connection is promoted, closes or is evicted; `order` may hold ids that already left,
    /// which are skipped, and is compacted when they outnumber the live ones.
    private struct Pending {
        var channels: [UInt64: any Channel] = [:]
        var order = Deque<UInt64>()
        var nextID: UInt64 = 0
    }

    let limits: Limits
    private let connected = Atomic<Int>(0)
    private let pending = Mutex(Pending())
    /// Connections per remote address; an entry goes when its count reaches zero, so the
    /// map never holds more entries than there are connections.
    private let perAddress = Mutex<[String: Int]>([:])
    private let metrics = Metrics()

    init(limits: Limits) {
        self.limits = limits
    }

    /// Clients connected now.
    var connectedCount: Int { connected.load(ordering: .relaxed) }
    /// Connections still in their handshakes now.
    var pendingCount: Int { pending.withLock { $0.channels.count } }

    /// Admits a newly accepted connection as pending, closing the oldest pending connection
    /// if there is no room.
    ///
    /// - Parameter channel: the connection.
    /// - Returns: the connection's ticket, or why it is refused.
    func admit(_ channel: any Channel) -> Result<AdmissionTicket, Refusal> {
        let host = limits.perAddress > 0 ? channel.remoteAddress?.ipAddress : nil
        if let host {
            let admitted = perAddress.withLock { counts in
                let count = counts[host, default: 0]
                guard count < limits.perAddress else { return false }
                counts[host] = count + 1
                return true
            }
            guard admitted else {
                metrics.refused[.addressLimit]?.increment()
                return .failure(.addressLimit)
            }
        }
        let (id, evicted, count) = pending.withLock { pending in
            var evicted: (any Channel)?
            if pending.channels.count >= limits.pendingConnections {
                while let oldest = pending.order.popFirst() {
                    if let channel = pending.channels.removeValue(forKey: oldest) {
                        evicted = channel
                        break
                    }
                }
            }
            pending.nextID += 1
            pending.channels[pending.nextID] = channel
            pending.order.append(pending.nextID)
            return (pending.nextID, evicted, pending.channels.count)
        }
        if let evicted {
            metrics.refused[.pendingLimit]?.increment()
            evicted.close(promise: nil)
        }
        metrics.pending.record(count)
        return .success(AdmissionTicket(admission: self, id: id, host: host))
    }

    // MARK: - For tickets

    /// Moves a pending connection to the connected count.
    ///
    /// - Returns: `false` when the node serves its limit of clients already; the
    ///   connection then stays pending, on its way out.
    fileprivate func promote(_ id: UInt64) -> Bool {
        guard connected.add(1, ordering: .relaxed).newValue <= limits.connections else {
            connected.subtract(1, ordering: .relaxed)
            metrics.refused[.connectionLimit]?.increment()
            return false
        }
        leavePending(id)
        metrics.opened.increment()
        metrics.connected.record(connectedCount)
        return true
    }

    fileprivate func release(_ id: UInt64, connected wasConnected: Bool, host: String?) {
        if wasConnected {
            connected.subtract(1, ordering: .relaxed)
            metrics.connected.record(connectedCount)
        } else {
            leavePending(id)
        }
        if let host {
            perAddress.withLock { counts in
                let count = counts[host, default: 1] - 1
                counts[host] = count > 0 ? count : nil
            }
        }
    }

    private func leavePending(_ id: UInt64) {
        let count = pending.withLock { pending in
            pending.channels[id] = nil
            if pending.order.count > 2 * pending.channels.count + 64 {
                pending.order.removeAll { pending.channels[$0] == nil }
            }
            return pending.channels.count
        }
        metrics.pending.record(count)
    }

    private struct Metrics: Sendable {
        let connected = Gauge(label: "stomp_connections")
        let pending = Gauge(label: "stomp_pending_connections")
        let opened = Counter(label: "stomp_connections_opened_total")
        let refused = Dictionary(
            uniqueKeysWithValues: Refusal.allCases.map {
                ($0, Counter(label: "stomp_connections_refused_total", dimensions: [("reason", $0.rawValue)]))
            }
        )
    }
}

/// One connection's hold on the node's connection slots: pending at first, connected once
/// its session is established, released exactly once when the channel closes.
///
/// Used on the connection's event loop only.
final class AdmissionTicket {
    private enum State {
        case pending
        case connected
        case released
    }

    private let admission: ConnectionAdmission
    private let id: UInt64
    private let host: String?
    private var state = State.pending

    fileprivate init(admission: ConnectionAdmission, id: UInt64, host: String?) {
        self.admission = admission
        self.id = id
        self.host = host
    }

    /// The session is established: count it as a client.
    ///
    /// - Returns: `false` when the node already serves its limit of clients.
    func promote() -> Bool {
        guard state == .pending else { return state == .connected }
        guard admission.promote(id) else { return false }
        state = .connected
        return true
    }

    /// The connection closed.
    func release() {
        guard state != .released else { return }
        admission.release(id, connected: state == .connected, host: host)
        state = .released
    }
}
