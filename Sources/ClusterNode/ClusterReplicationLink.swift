import BrokerShell
import Gossip
import NIOCore

/// The cluster shell as the durable queues' link to their replicas on other nodes.
final class ClusterReplicationLink: ReplicationLink {
    private let shell: ClusterShell

    init(shell: ClusterShell) {
        self.shell = shell
    }

    var liveNodes: [String] { shell.liveNodes.map(\.name) }

    var deadNodes: [String] { shell.deadNodes.map(\.name) }

    func send(_ payload: ByteBuffer, to node: String) -> Bool {
        shell.sendReplication(payload, to: NodeID(node))
    }

    func consumers(ofQueue name: String) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: shell.queueConsumers(name).map { ($0.key.name, $0.value) })
    }

    func linkNumber(to node: String) -> UInt64? {
        shell.linkNumber(to: NodeID(node))
    }

    func afterInterestPropagated(_ body: @escaping () -> Void) {
        shell.afterInterestPropagated(body)
    }
}
