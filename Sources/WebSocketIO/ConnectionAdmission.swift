import CoreMetrics
import NIOCore
import Synchronization

/// Who may hold a connection to this node, counted from any event loop.
///
/// A connection is *pending* from the moment it is accepted until its STOMP session is
/// established (WebSocket upgrade, TLS handshake and CONNECT all happen while pending), and
/// *connected* after. The two are counted against separate limits: sockets that never speak
/// would otherwise take every slot from real clients. Pending connections have a smaller
/// limit of their own and a deadline (the handshake timeouts), so they can't pile up either.
/// An optional limit per remote address bounds what one host can take of both.
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
    enum Refusal: String, Error, Sendable {
        case pendingLimit = "pending_limit"
        case addressLimit = "address_limit"
        case connectionLimit = "connection_limit"
    }

    let limits: Limits
    private let connected = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
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
    var pendingCount: Int { pending.load(ordering: .relaxed) }

    /// Admits a newly accepted connection as pending.
    ///
    /// - Parameter address: the remote address, for the per-address limit.
    /// - Returns: the connection's ticket, or why it is refused.
    func admit(address: SocketAddress?) -> Result<AdmissionTicket, Refusal> {
        let host = limits.perAddress > 0 ? address?.ipAddress : nil
        if let host {
            let admitted = perAddress.withLock { counts in
                let count = counts[host, default: 0]
                guard count < limits.perAddress else { return false }
                counts[host] = count + 1
                return true
            }
            guard admitted else { return refuse(.addressLimit) }
        }
        guard Self.acquire(pending, limit: limits.pendingConnections) else {
            if let host { releaseAddress(host) }
            return refuse(.pendingLimit)
        }
        metrics.pending.record(pendingCount)
        return .success(AdmissionTicket(admission: self, host: host))
    }

    private func refuse(_ refusal: Refusal) -> Result<AdmissionTicket, Refusal> {
        metrics.refused[refusal]?.increment()
        return .failure(refusal)
    }

    // MARK: - For tickets

    /// Moves a pending connection to the connected count.
    fileprivate func promote() -> Bool {
        guard Self.acquire(connected, limit: limits.connections) else {
            metrics.refused[.connectionLimit]?.increment()
            return false
        }
        pending.subtract(1, ordering: .relaxed)
        metrics.opened.increment()
        metrics.connected.record(connectedCount)
        metrics.pending.record(pendingCount)
        return true
    }

    fileprivate func release(connected wasConnected: Bool, host: String?) {
        if wasConnected {
            connected.subtract(1, ordering: .relaxed)
            metrics.connected.record(connectedCount)
        } else {
            pending.subtract(1, ordering: .relaxed)
            metrics.pending.record(pendingCount)
        }
        if let host { releaseAddress(host) }
    }

    private func releaseAddress(_ host: String) {
        perAddress.withLock { counts in
            let count = counts[host, default: 1] - 1
            counts[host] = count > 0 ? count : nil
        }
    }

    private static func acquire(_ counter: borrowing Atomic<Int>, limit: Int) -> Bool {
        if counter.add(1, ordering: .relaxed).newValue <= limit { return true }
        counter.subtract(1, ordering: .relaxed)
        return false
    }

    private struct Metrics: Sendable {
        let connected = Gauge(label: "stomp_connections")
        let pending = Gauge(label: "stomp_pending_connections")
        let opened = Counter(label: "stomp_connections_opened_total")
        let refused: [Refusal: Counter] = [
            .pendingLimit: Counter(label: "stomp_connections_refused_total", dimensions: [("reason", Refusal.pendingLimit.rawValue)]),
            .addressLimit: Counter(label: "stomp_connections_refused_total", dimensions: [("reason", Refusal.addressLimit.rawValue)]),
            .connectionLimit: Counter(label: "stomp_connections_refused_total", dimensions: [("reason", Refusal.connectionLimit.rawValue)]),
        ]
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
    private let host: String?
    private var state = State.pending

    fileprivate init(admission: ConnectionAdmission, host: String?) {
        self.admission = admission
        self.host = host
    }

    /// The session is established: count it as a client.
    ///
    /// - Returns: `false` when the node already serves its limit of clients.
    func promote() -> Bool {
        guard state == .pending else { return state == .connected }
        guard admission.promote() else { return false }
        state = .connected
        return true
    }

    /// The connection closed.
    func release() {
        guard state != .released else { return }
        admission.release(connected: state == .connected, host: host)
        state = .released
    }
}
