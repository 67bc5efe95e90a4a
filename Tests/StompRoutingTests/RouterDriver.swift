import NIOCore
import Testing

@testable import StompRouting

/// A ``RouterOutput`` with its bytes decoded, so tests compare frames rather than bytes.
enum RouterEvent: Equatable, CustomStringConvertible {
    case deliver(ConnectionID, StompFrame, isText: Bool)
    case fail(ConnectionID, StompProtocolError.Kind, receiptID: String?)
    case close(ConnectionID)

    var connection: ConnectionID {
        switch self {
        case .deliver(let connection, _, _), .fail(let connection, _, _), .close(let connection): return connection
        }
    }

    var frame: StompFrame? {
        if case .deliver(_, let frame, _) = self { return frame }
        return nil
    }

    var description: String {
        switch self {
        case .deliver(let connection, let frame, _):
            let headers = frame.headers.map { "\($0.name):\($0.value)" }.joined(separator: ",")
            return "deliver(\(connection), \(frame.command.rawValue)[\(headers)] \(String(buffer: frame.body)))"
        case .fail(let connection, let kind, let receipt):
            return "fail(\(connection), \(kind), receipt: \(receipt ?? "-"))"
        case .close(let connection):
            return "close(\(connection))"
        }
    }
}

/// Drives one ``Router`` and decodes what it delivers with each connection's version.
struct RouterDriver {
    var router: Router
    private(set) var versions: [ConnectionID: StompVersion] = [:]
    /// The raw bytes of the last deliveries, in order, for byte-level checks.
    private(set) var lastRawDeliveries: [(ConnectionID, ByteBuffer)] = []
    /// The outputs for the cluster of the last operation, in order.
    private(set) var lastClusterOutputs: [RouterOutput] = []
    /// Messages of the last operation dropped for a temporary queue that is gone.
    private(set) var lastUnroutable: [Destination] = []
    /// The work for the durable queues of the last operation, in order, with the connection
    /// each holds.
    private(set) var lastDurable: [(work: DurableWork, holding: ConnectionID?)] = []

    init(messageIDPrefix: String = "node1-", maxQueueDepth: Int = 10_000) {
        router = Router(settings: .init(messageIDPrefix: messageIDPrefix, maxQueueDepth: maxQueueDepth))
    }

    init(settings: Router.Settings) {
        router = Router(settings: settings)
    }

    init(router: Router) {
        self.router = router
    }

    /// Opens a connection (as its session's `.open` route would).
    @discardableResult
    mutating func open(_ id: UInt64, _ version: StompVersion = .v1_2) -> ConnectionID {
        let connection = ConnectionID(id)
        versions[connection] = version
        let events = run(.open(version), from: connection)
        #expect(events.isEmpty)
        return connection
    }

    @discardableResult
    mutating func run(
        _ operation: RouterOperation,
        from connection: ConnectionID,
        receipt: String? = nil
    ) -> [RouterEvent] {
        var outputs: [RouterOutput] = []
        router.handle(operation, from: connection, receipt: receipt, into: &outputs)
        return events(outputs)
    }

    /// Applies work from other nodes.
    @discardableResult
    mutating func run(_ operation: RouterClusterOperation) -> [RouterEvent] {
        var outputs: [RouterOutput] = []
        router.handle(operation, into: &outputs)
        return events(outputs)
    }

    /// Connection outputs become events; what is meant for the cluster (interest, forwards,
    /// hand-offs) is kept apart in `lastClusterOutputs`.
    private mutating func events(_ outputs: [RouterOutput]) -> [RouterEvent] {
        lastRawDeliveries = []
        lastClusterOutputs = []
        lastUnroutable = []
        lastDurable = []
        return outputs.compactMap { output in
            switch output {
            case .deliver(let connection, let delivery):
                var bytes = ByteBuffer()
                delivery.write(into: &bytes)
                #expect(bytes.readableBytes <= delivery.maximumSize)
                #expect(delivery.version == versions[connection] ?? .v1_2)
                lastRawDeliveries.append((connection, bytes))
                return .deliver(
                    connection,
                    decode(bytes, version: versions[connection] ?? .v1_2),
                    isText: delivery.isText
                )
            case .receipt(let connection, let frame, _):
                lastRawDeliveries.append((connection, frame.bytes))
                return .deliver(
                    connection,
                    decode(frame.bytes, version: versions[connection] ?? .v1_2),
                    isText: frame.isText
                )
            case .fail(let connection, let error):
                return .fail(connection, error.kind, receiptID: error.receiptID)
            case .close(let connection):
                return .close(connection)
            case .interest, .forward, .handOff:
                lastClusterOutputs.append(output)
                return nil
            case .unroutable(let destination):
                lastUnroutable.append(destination)
                return nil
            case .durable(let work, let holding):
                lastDurable.append((work, holding))
                return nil
            }
        }
    }

    @discardableResult
    mutating func subscribe(
        _ connection: ConnectionID,
        id: String,
        _ destination: String,
        ack: AckMode = .auto,
        prefetch: Int = 1_000,
        receipt: String? = nil
    ) -> [RouterEvent] {
        let request = SubscribeRequest(
            id: id,
            destination: try! Destination(parsing: destination),
            ackMode: ack,
            prefetch: prefetch
        )
        return run(.subscribe(request), from: connection, receipt: receipt)
    }

    @discardableResult
    mutating func send(
        _ connection: ConnectionID,
        _ destination: String,
        _ body: String = "",
        headers: StompHeaders = [:],
        receipt: String? = nil
    ) -> [RouterEvent] {
        run(.send(Self.publish(destination, body, headers: headers)), from: connection, receipt: receipt)
    }

    static func publish(_ destination: String, _ body: String = "", headers: StompHeaders = [:]) -> PublishRequest {
        PublishRequest(
            destination: try! Destination(parsing: destination),
            headers: headers,
            body: ByteBuffer(string: body)
        )
    }

    /// The single frame `bytes` must hold.
    private func decode(_ bytes: ByteBuffer, version: StompVersion) -> StompFrame {
        var decoder = StompFrameDecoder()
        decoder.version = version
        var input = bytes
        do {
            guard let frame = try decoder.nextFrame(from: &input) else {
                Issue.record("incomplete frame delivered: \(String(buffer: bytes).debugDescription)")
                return StompFrame(.error)
            }
            #expect(input.readableBytes == 0, "a delivery holds exactly one frame")
            return frame
        } catch {
            Issue.record("undecodable frame delivered (\(error)): \(String(buffer: bytes).debugDescription)")
            return StompFrame(.error)
        }
    }
}

extension Array where Element == RouterEvent {
    /// The MESSAGE frames delivered to `connection`, in order.
    func messages(to connection: ConnectionID) -> [StompFrame] {
        compactMap { $0.connection == connection ? $0.frame : nil }.filter { $0.command == .message }
    }

    /// Every MESSAGE frame, in order.
    var messages: [StompFrame] { compactMap(\.frame).filter { $0.command == .message } }

    /// The bodies of the MESSAGE frames delivered to `connection`.
    func bodies(to connection: ConnectionID) -> [String] {
        messages(to: connection).map { String(buffer: $0.body) }
    }

    /// (connection, body) of each MESSAGE, in order.
    var deliveries: [String] {
        compactMap { event in
            guard let frame = event.frame, frame.command == .message else { return nil }
            return "\(event.connection):\(String(buffer: frame.body))"
        }
    }
}

extension StompFrame {
    var messageID: String? { headers[StompHeader.messageID] }
    var ackID: String? { headers[StompHeader.ack] }
    var subscription: String? { headers[StompHeader.subscription] }
    var isRedelivered: Bool { headers[StompHeader.redelivered] == "true" }

    /// Whether this is the RECEIPT for `id`.
    func isReceipt(_ id: String) -> Bool { command == .receipt && headers[StompHeader.receiptID] == id }
}
