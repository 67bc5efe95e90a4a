import NIOCore

/// Identifies one client connection on this node for as long as it is open.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { String(rawValue) }
}

/// How a subscriber confirms the messages it receives.
public enum AckMode: String, Sendable {
    /// A message counts as consumed once it is written to the connection.
    case auto
    /// An ACK confirms the message it names and every earlier one on the same subscription.
    case client
    /// An ACK or NACK confirms exactly the message it names.
    case clientIndividual = "client-individual"
}

/// A SUBSCRIBE the session has validated.
public struct SubscribeRequest: Sendable, Equatable {
    public var id: String
    public var destination: Destination
    public var ackMode: AckMode
    /// The most messages this subscription may hold unacknowledged (for `client` and
    /// `client-individual`).
    public var prefetch: Int
    /// For a durable topic subscription: the durable queue that takes the topic's messages and
    /// keeps them while no client consumes it (see `DurableSubscriptionHeaders`).
    public var durableQueue: String?

    public init(id: String, destination: Destination, ackMode: AckMode, prefetch: Int, durableQueue: String? = nil) {
        self.id = id
        self.destination = destination
        self.ackMode = ackMode
        self.prefetch = prefetch
        self.durableQueue = durableQueue
    }
}

/// A SEND the session has validated. `headers` are the application's headers, without the
/// ones the broker writes itself.
public struct PublishRequest: Sendable, Equatable {
    public var destination: Destination
    public var headers: StompHeaders
    public var body: ByteBuffer

    public init(destination: Destination, headers: StompHeaders, body: ByteBuffer) {
        self.destination = destination
        self.headers = headers
        self.body = body
    }
}

/// What an ACK or NACK names. 1.2 clients name a delivery by its `ack` header (`id`); 1.1
/// clients by `message-id` and `subscription`; 1.0 clients by `message-id` alone.
public struct AckRequest: Sendable, Equatable {
    public var ackID: String?
    public var messageID: String?
    public var subscription: String?

    public init(ackID: String? = nil, messageID: String? = nil, subscription: String? = nil) {
        self.ackID = ackID
        self.messageID = messageID
        self.subscription = subscription
    }
}

/// A frame that a transaction holds until COMMIT.
public enum TransactionalOperation: Sendable, Equatable {
    case send(PublishRequest)
    case ack(AckRequest)
    case nack(AckRequest)
}

/// Work for the router, in the order a connection's frames arrived.
public enum RouterOperation: Sendable, Equatable {
    /// A connection finished its CONNECT handshake.
    case open(StompVersion)
    case subscribe(SubscribeRequest)
    case unsubscribe(id: String)
    /// An UNSUBSCRIBE that deletes the durable subscription behind it (for an ordinary
    /// subscription, the same as ``unsubscribe(id:)``).
    case deleteSubscription(id: String)
    case send(PublishRequest)
    case ack(AckRequest)
    case nack(AckRequest)
    /// Applies a transaction's operations at once.
    case commit([TransactionalOperation])
    /// Does nothing; its receipt confirms that every earlier frame has been processed.
    case barrier
    /// A DISCONNECT: after its receipt, the connection closes.
    case disconnect
    /// The connection is gone; its subscriptions end and its unacknowledged queue messages
    /// go to other consumers.
    case closed
}

/// Bytes ready for a connection's transport.
public struct OutboundFrame: Sendable {
    public var bytes: ByteBuffer
    /// Whether the bytes are valid UTF-8, so that a WebSocket transport may send them as a text
    /// message. Clients reject text messages that aren't, so such frames go out as binary.
    public var isText: Bool

    public init(bytes: ByteBuffer, isText: Bool) {
        self.bytes = bytes
        self.isText = isText
    }
}

/// A message as it crosses to another node: everything needed to deliver it there, with
/// the message-id it was given where it was published.
public struct MessageEnvelope: Sendable, Equatable {
    public var destination: Destination
    public var messageID: String
    public var headers: StompHeaders
    public var body: ByteBuffer

    public init(destination: Destination, messageID: String, headers: StompHeaders, body: ByteBuffer) {
        self.destination = destination
        self.messageID = messageID
        self.headers = headers
        self.body = body
    }
}

/// Work for the router that comes from other nodes rather than from a connection.
public enum RouterClusterOperation: Sendable, Equatable {
    /// A topic message published on another node: delivered to local subscribers only,
    /// never forwarded again (one hop, so no loops and no duplicates).
    case deliverForwarded(MessageEnvelope)
    /// A queue message whose ownership passed to this node; `hops` counts the hand-offs so
    /// far, this one included.
    case acceptHandoff(queue: String, MessageEnvelope, redelivered: Bool, hops: UInt8)
    /// The number of consumers of a queue on other nodes changed to `count`.
    case remoteQueueConsumers(queue: String, count: Int)
    /// The node is leaving: every queue message it holds goes to other nodes.
    case evacuate
    /// Topic messages a peer dropped instead of forwarding them here. Which ones the local
    /// subscribers missed can't be told, so each subscriber they concern gets an ERROR and is
    /// closed: no client keeps a healthy-looking connection across a gap.
    case forwardsLost(ForwardLoss)
    /// A message of a durable queue, committed, for this node's consumers of the queue. The
    /// durable queue keeps it until the router settles it (``DurableWork/settle(queue:ids:)``)
    /// or gives it back (``DurableWork/giveBack(queue:ids:delivered:)``).
    case acceptDurable(queue: String, MessageEnvelope, id: UInt64, redelivered: Bool)
    /// This node now leads the durable queue bound to `pattern` (a durable topic
    /// subscription's), so it enqueues the matching topic messages it sees; `nil`: no longer.
    /// Only the leader does, so that each message is enqueued once.
    case durableBinding(queue: String, pattern: String?)
}

/// What the router asks of the durable queues (`persistent:true` SENDs to a `/queue/`).
public enum DurableWork: Sendable, Equatable {
    /// Store and replicate this message; its SEND's connection waits until it is.
    case enqueue(queue: String, MessageEnvelope)
    /// These messages were acknowledged (or delivered in `auto` mode): never again.
    case settle(queue: String, ids: [UInt64])
    /// These messages are back from the router, which has no consumer for them now.
    /// `delivered`: they went out to a consumer that didn't acknowledge them, so their next
    /// delivery says `redelivered:true` whichever node makes it.
    case giveBack(queue: String, ids: [UInt64], delivered: Bool)
    /// A durable topic subscription: the queue takes the messages of topics matching
    /// `pattern` from now on; a SUBSCRIBE's connection waits until that is durable.
    case bind(queue: String, pattern: String)
    /// The durable subscription was deleted: its queue takes no more and drops what it holds.
    case unbind(queue: String)
}

/// Topic messages a peer dropped instead of forwarding them to this node.
public struct ForwardLoss: Sendable, Equatable {
    /// The peer that dropped them, as operators know it.
    public var peer: String
    /// How many at most (some may have arrived before); `nil` when the peer doesn't know.
    public var messages: UInt32?
    /// Why, in the peer's words: the setting whose bound was reached.
    public var reason: String
    /// Their routing keys (``Destination/topic(_:)``'s); `nil` for any topic.
    public var keys: Set<String>?

    public init(peer: String, messages: UInt32?, reason: String, keys: Set<String>?) {
        self.peer = peer
        self.messages = messages
        self.reason = reason
        self.keys = keys
    }

    /// What each subscriber concerned reads.
    public var error: StompProtocolError {
        let count = messages.map { "up to \($0) topic message(s)" } ?? "topic messages"
        return StompProtocolError(
            .messagesLost,
            "messages lost",
            detail:
                "Node \(peer) could not forward \(count) to this node (\(reason)); this subscription missed some. Reconnect and subscribe again."
        )
    }
}

/// What the router asks its shell to do.
public enum RouterOutput: Sendable {
    /// Write this MESSAGE to the connection.
    case deliver(ConnectionID, MessageDelivery)
    /// Write this RECEIPT to the connection. With `waitsForCluster` (a SUBSCRIBE's), it and
    /// everything after it for that connection wait until every peer knows of the
    /// subscription, so that it never promises too early and nothing overtakes it.
    case receipt(ConnectionID, OutboundFrame, waitsForCluster: Bool)
    /// Local subscriptions to a destination (a topic pattern or a queue) changed by `delta`.
    case interest(Destination, delta: Int)
    /// A topic message published here, for the peers whose subscribers want it.
    case forward(MessageEnvelope)
    /// A queue message for a peer with consumers, since none are here.
    case handOff(queue: String, MessageEnvelope, redelivered: Bool, hops: UInt8)
    /// Send the connection an ERROR for this reason, then close it.
    case fail(ConnectionID, StompProtocolError)
    /// Close the connection now that its DISCONNECT has been answered.
    case close(ConnectionID)
    /// A message for a temporary reply queue that no longer exists, dropped (as RabbitMQ
    /// drops it) and counted.
    case unroutable(Destination)
    /// Work for the durable queues. With `holding`, that connection's later frames (the
    /// RECEIPT of the frame that caused it included) wait until the work is durable, and the
    /// connection fails if it can't be.
    case durable(DurableWork, holding: ConnectionID?)
}
