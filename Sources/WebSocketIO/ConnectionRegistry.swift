import BrokerShell
import NIOCore
import StompRouting

/// The connections of one broker, by id, each reached on its own event loop: it carries the
/// router's outputs to them, crossing to each loop once per batch.
///
/// Confined to the broker's loop, like the router: connections register and leave through
/// tasks on that loop, submitted after the operations they sent, so nothing overtakes.
final class ConnectionRegistry: ClientConnections, @unchecked Sendable {
    let broker: Broker
    private var handlers: [ConnectionID: NIOLoopBound<StompConnectionHandler>] = [:]

    /// Attaches itself to `broker`, which then sends it every client output.
    init(broker: Broker) {
        self.broker = broker
        broker.attach(connections: self)
    }

    /// Starts carrying the router's outputs for `connection` to `handler`. Called before the
    /// connection's first operation is submitted; a node that is shutting down refuses it.
    func register(_ connection: ConnectionID, handler: NIOLoopBound<StompConnectionHandler>) {
        broker.onRouterLoop { broker in
            if let refusal = broker.refusal {
                self.carry([(handler, .fail(refusal))], to: handler.eventLoop)
                return
            }
            self.handlers[connection] = handler
        }
    }

    /// The connection closed: the router lets it go, and no output is carried to it again.
    func closed(_ connection: ConnectionID) {
        broker.submit([(.closed, receipt: nil)], from: connection)
        broker.onRouterLoop { _ in self.handlers[connection] = nil }
    }

    // MARK: - ClientConnections

    var connectionIDs: [ConnectionID] { Array(handlers.keys) }

    func contains(_ connection: ConnectionID) -> Bool { handlers[connection] != nil }

    /// Outputs for connections on the broker's loop are handed over directly; the rest are
    /// grouped per loop, so one task per loop carries all of a publish's deliveries there.
    func send(_ outputs: [RouterOutput], receiptsWait: Bool) -> Int {
        var messages = 0
        // Few loops: a short array beats a dictionary per batch.
        var remote: [(loop: any EventLoop, items: [(NIOLoopBound<StompConnectionHandler>, ConnectionOutput)])] = []
        for routerOutput in outputs {
            let connection: ConnectionID
            let output: ConnectionOutput
            switch routerOutput {
            case .deliver(let id, let delivery):
                messages += 1
                (connection, output) = (id, .message(delivery))
            case .fail(let id, let error):
                (connection, output) = (id, .fail(error))
            case .close(let id):
                (connection, output) = (id, .close)
            case .receipt(let id, let frame, let waitsForCluster):
                (connection, output) = (id, waitsForCluster && receiptsWait ? .heldReceipt(frame) : .frame(frame))
            case .durable(_, let holding?):
                (connection, output) = (holding, .holdForWrite)
            case .interest, .forward, .handOff, .unroutable, .durable:
                continue
            }
            guard let handler = handlers[connection] else { continue }
            switch output {
            case .fail: handlers[connection] = nil
            case .message, .frame, .heldReceipt, .holdForWrite, .releaseReceipt, .close: break
            }
            if handler.eventLoop === broker.eventLoop {
                handler.value.routerOutput(output)
            } else if let slot = remote.firstIndex(where: { $0.loop === handler.eventLoop }) {
                remote[slot].items.append((handler, output))
            } else {
                remote.append((handler.eventLoop, [(handler, output)]))
            }
        }
        for (loop, items) in remote { carry(items, to: loop) }
        return messages
    }

    func releaseReceipt(of connection: ConnectionID) {
        guard let handler = handlers[connection] else { return }
        if handler.eventLoop === broker.eventLoop {
            handler.value.routerOutput(.releaseReceipt)
        } else {
            carry([(handler, .releaseReceipt)], to: handler.eventLoop)
        }
    }

    /// One task carries `items` to their connections on `loop`, counted as queued work
    /// until it ran.
    private func carry(_ items: [(NIOLoopBound<StompConnectionHandler>, ConnectionOutput)], to loop: any EventLoop) {
        let flowControl = broker.flowControl
        flowControl.queued(items.count)
        loop.execute {
            for (handler, output) in items { handler.value.routerOutput(output) }
            flowControl.completed(items.count)
        }
    }
}
