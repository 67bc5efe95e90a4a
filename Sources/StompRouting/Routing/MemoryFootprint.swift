import NIOCore

// What held messages weigh, for the byte budgets (transactions, queues, unacknowledged
// deliveries), and how a held body lets go of the read buffer it was sliced from.

extension ByteBuffer {
    /// The same bytes in storage of their own when this buffer is a small part of a much
    /// larger one, as a body sliced from a read buffer that held other frames is. A message
    /// held for long (in a queue, a transaction, awaiting its ACK) would otherwise keep that
    /// whole read buffer alive.
    public func compacted() -> ByteBuffer {
        let slack = Swift.max(1_024, readableBytes / 4)
        guard storageCapacity > readableBytes + slack else { return self }
        var copy = ByteBuffer()
        copy.reserveCapacity(readableBytes)
        copy.writeImmutableBuffer(self)
        return copy
    }
}

extension StompHeaders {
    /// Bytes of the names and values, with a little for each line's separators.
    var footprint: Int {
        var bytes = 0
        for header in self { bytes += header.name.utf8.count + header.value.utf8.count + 2 }
        return bytes
    }
}

/// What holding a message costs: body, headers and destination name, with a little for the
/// bookkeeping around them. One formula for a SEND held in a transaction and a message held
/// by the router, so that what one adds to a budget the other takes away exactly.
func messageFootprint(body: ByteBuffer, headers: StompHeaders, destination: Destination) -> Int {
    body.readableBytes + headers.footprint + destination.name.utf8.count + 32
}

extension PublishRequest {
    var footprint: Int { messageFootprint(body: body, headers: headers, destination: destination) }
}

extension AckRequest {
    var footprint: Int {
        (ackID?.utf8.count ?? 0) + (messageID?.utf8.count ?? 0) + (subscription?.utf8.count ?? 0) + 32
    }
}

extension TransactionalOperation {
    /// What holding this frame until COMMIT costs.
    var footprint: Int {
        switch self {
        case .send(let request): return request.footprint
        case .ack(let request), .nack(let request): return request.footprint
        }
    }
}
