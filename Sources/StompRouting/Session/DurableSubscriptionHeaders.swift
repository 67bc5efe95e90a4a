/// Which SUBSCRIBE to a topic asks for a durable subscription, and the queue that keeps its
/// messages while its client is away, in the headers of the brokers clients come from:
///
/// - RabbitMQ: `durable:true` (or the older `persistent:true`) with `auto-delete:false`. The
///   queue is `x-queue-name`, else `stomp-subscription-` and the subscription id (after the
///   CONNECT's `client-id`, when it named one).
/// - ActiveMQ: `activemq.subscriptionName` (Artemis also reads `durable-subscription-name`).
///   The queue is `CLIENT-ID.NAME`, as Artemis names it, or `NAME` without a `client-id`.
///
/// An UNSUBSCRIBE that carries `durable:true` (RabbitMQ) or the subscription name (ActiveMQ)
/// deletes the subscription; a plain one only ends this client's part in it.
enum DurableSubscriptionHeaders {
    static let durable = "durable"
    static let autoDelete = "auto-delete"
    static let queueName = "x-queue-name"
    static let activeMQName = "activemq.subscriptionName"
    static let artemisName = "durable-subscription-name"
    static let clientID = "client-id"
    static let rabbitMQPrefix = "stomp-subscription-"

    /// The queue behind the durable subscription a SUBSCRIBE asks for; `nil` for an ordinary one.
    static func queueName(subscribe headers: StompHeaders, id: String, clientID: String?) -> String? {
        if let name = headers[activeMQName] ?? headers[artemisName] {
            return clientID.map { "\($0).\(name)" } ?? name
        }
        guard headers[durable] == "true" || headers[StompHeader.persistent] == "true",
            headers[autoDelete] == "false"
        else { return nil }
        if let name = headers[queueName] { return name }
        return rabbitMQPrefix + (clientID.map { "\($0)-" } ?? "") + id
    }

    /// Whether an UNSUBSCRIBE deletes the durable subscription rather than leaving it.
    static func deletes(unsubscribe headers: StompHeaders) -> Bool {
        headers[durable] == "true" || headers[StompHeader.persistent] == "true" || headers[activeMQName] != nil
            || headers[artemisName] != nil
    }
}
