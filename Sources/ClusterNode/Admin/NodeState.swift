import Synchronization
import WebSocketIO

/// Where the node is in its life, as `/readyz` and `/v1/node` report it.
final class NodeState: Sendable {
    enum Phase: String, Sendable {
        /// Binding listeners, joining the cluster.
        case starting
        /// Serving.
        case running
        /// Turned away from the load balancer, moving clients and messages elsewhere.
        case draining
        case stopped
    }

    private let phase = Mutex(Phase.starting)
    private let ports = Mutex<[String: Int]>([:])
    let startedAt = ContinuousClock.now

    var current: Phase { phase.withLock { $0 } }

    func enter(_ next: Phase) { phase.withLock { $0 = next } }

    /// Moves to `.draining` unless already draining or stopped.
    ///
    /// - Returns: whether this call started the drain.
    func beginDrain() -> Bool {
        phase.withLock { phase in
            guard phase == .starting || phase == .running else { return false }
            phase = .draining
            return true
        }
    }

    var boundPorts: [String: Int] { ports.withLock { $0 } }

    func record(_ bound: StompServer.BoundPorts, cluster: Int?, admin: Int?) {
        var result: [String: Int] = [:]
        result["ws"] = bound.ws
        result["stomp"] = bound.stomp
        result["wss"] = bound.wss
        result["stomps"] = bound.stomps
        result["cluster"] = cluster
        result["admin"] = admin
        ports.withLock { $0 = result }
    }
}
