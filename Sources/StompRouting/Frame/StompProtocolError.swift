import NIOCore

/// A violation of the protocol or of a limit. Every one of them ends the connection with an
/// ERROR frame whose `message` header is `summary` and whose body is `detail`.
///
/// This is the single place where a failure becomes what the client reads (see
/// ``errorFrame(version:)``), so each error reads the same from the codec, the session and
/// the router.
public struct StompProtocolError: Error, Sendable, Equatable {
    /// A stable, low-cardinality name for metrics and logs.
    public enum Kind: String, Sendable, CaseIterable {
        case malformedFrame = "malformed_frame"
        case unknownCommand = "unknown_command"
        case frameTooLarge = "frame_too_large"
        case bodyTooLarge = "body_too_large"
        case tooManyHeaders = "too_many_headers"
        case headersTooLarge = "headers_too_large"
        case headerLineTooLong = "header_line_too_long"
        case invalidHeader = "invalid_header"
        case notConnected = "not_connected"
        case alreadyConnected = "already_connected"
        case unsupportedVersion = "unsupported_version"
        case unexpectedFrame = "unexpected_frame"
        case unexpectedBody = "unexpected_body"
        case missingHeader = "missing_header"
        case invalidDestination = "invalid_destination"
        case destinationTooLong = "destination_too_long"
        case duplicateSubscription = "duplicate_subscription"
        case unknownSubscription = "unknown_subscription"
        case tooManySubscriptions = "too_many_subscriptions"
        case unknownTransaction = "unknown_transaction"
        case duplicateTransaction = "duplicate_transaction"
        case transactionLimit = "transaction_limit"
        case transactionBytesLimit = "transaction_bytes_limit"
        case unknownAck = "unknown_ack"
        case unackedLimit = "unacked_limit"
        case unackedBytesLimit = "unacked_bytes_limit"
        case queueFull = "queue_full"
        case queueBytesLimit = "queue_bytes_limit"
        case tooManyQueues = "too_many_queues"
        /// A `reply-to:/temp-queue/NAME` past `limits.temp-queues` of one connection.
        case tooManyTemporaryQueues = "too_many_temp_queues"
        case heartbeatTimeout = "heartbeat_timeout"
        case connectTimeout = "connect_timeout"
        case slowConsumer = "slow_consumer"
        /// Topic messages a peer node could not forward here (an outage past its grace, or
        /// more held for this node than its bound): the subscriber is told and let go.
        case messagesLost = "messages_lost"
        /// A frame still arriving while the node holds `limits.node-inbound-bytes` of them.
        case nodeInboundBytesLimit = "node_inbound_bytes_limit"
        case tooManyConnections = "too_many_connections"
        case notAuthorized = "not_authorized"
        /// A CONNECT while too many logins are being checked (`limits.pending-logins`).
        case serverBusy = "server_busy"
        /// The token a connection logged in with expired while it was open.
        case credentialsExpired = "credentials_expired"
        /// A SUBSCRIBE that no read permission covers.
        case readDenied = "read_denied"
        /// A SEND that no write permission matches.
        case writeDenied = "write_denied"
        case shuttingDown = "shutting_down"
        /// A persistent SEND on a node that can't store it (its data dir can't be used).
        case durableUnavailable = "durable_unavailable"
        /// A persistent SEND while the durable log holds `data.max-bytes`.
        case dataLimit = "data_limit"
        /// A persistent SEND while the data dir's file system has less than
        /// `data.min-free-bytes` free.
        case diskFull = "disk_full"
        /// A durable write not done within `replication.send-timeout-ms`.
        case replicationTimeout = "replication_timeout"
    }

    public var kind: Kind
    /// One line for the `message` header.
    public var summary: String
    /// A readable explanation for the body.
    public var detail: String
    /// The `receipt` of the frame that caused the error, echoed as `receipt-id`.
    public var receiptID: String?

    public init(_ kind: Kind, _ summary: String, detail: String? = nil, receiptID: String? = nil) {
        self.kind = kind
        self.summary = summary
        self.detail = detail ?? summary
        self.receiptID = receiptID
    }

    /// The ERROR frame that tells the client what went wrong.
    public func errorFrame(version: StompVersion) -> StompFrame {
        var headers: StompHeaders = [
            StompHeader.message: summary,
            StompHeader.contentType: "text/plain",
        ]
        if let receiptID { headers.add(StompHeader.receiptID, receiptID) }
        if kind == .unsupportedVersion {
            // The spec asks for the versions the server does support.
            headers.add(StompHeader.version, StompVersion.allCases.map(\.headerValue).joined(separator: ","))
        }
        var body = ByteBuffer()
        body.writeString(detail)
        body.writeString("\n")
        return StompFrame(.error, headers: headers, body: body)
    }

    /// The same error, now answering the frame that carried `receipt`.
    func answering(receipt: String?) -> StompProtocolError {
        var copy = self
        copy.receiptID = receipt
        return copy
    }
}
