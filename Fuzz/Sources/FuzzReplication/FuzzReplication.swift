import NIOCore
import Replication

/// libFuzzer entry point: every reader of the durable queues' bytes, on bytes a peer sends
/// (Raft messages on the link) or a damaged disk returns (log segments and their records).
/// The first byte picks the reader; the rest is its input.
///
/// Besides crashes it checks that whatever reads survives the way back through the real
/// writer: a difference would mean two replicas could read one message or record differently.
///
/// - Parameters:
///   - data: the input.
///   - size: its length in bytes.
/// - Returns: 0, as libFuzzer requires; a bug traps instead.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = ByteBuffer(bytes: UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch data[0] % 4 {
    case 0: raftMessage(input)
    case 1: logRecord(input)
    case 2: segment(input)
    default: queue(input)
    }
    return 0
}

private func raftMessage(_ bytes: ByteBuffer) {
    guard let envelope = RaftEnvelope(decoding: bytes) else { return }
    var encoded = ByteBuffer()
    envelope.encode(into: &encoded)
    precondition(RaftEnvelope(decoding: encoded) == envelope, "\(envelope) changed on its way back")
}

/// A record's kind, then its body.
private func logRecord(_ bytes: ByteBuffer) {
    var body = bytes
    guard let kind = body.readInteger(as: UInt8.self), let record = ReplicaRecord(LogRecord(kind: kind, body: body))
    else { return }
    precondition(ReplicaRecord(record.logRecord) == record, "\(record) changed on its way back")
    var recovery = ReplicaLogRecovery()
    try? recovery.replay(RecoveredRecord(position: LogPosition(segment: 1, offset: 16), record: record.logRecord))
}

/// A whole segment file, read as the newest and as an older one.
private func segment(_ bytes: ByteBuffer) {
    for isNewest in [true, false] {
        guard let scan = try? SegmentScan.scan(bytes, number: 1, isNewest: isNewest) else { continue }
        precondition(scan.validBytes <= bytes.readableBytes, "more valid bytes than the file holds")
        guard scan.validBytes >= LogRecordFormat.segmentHeaderBytes else { continue }
        // The header's reserved bytes are not read, so only the records are compared.
        var rewritten = ByteBuffer()
        for recovered in scan.records { LogRecordFormat.write(recovered.record, into: &rewritten) }
        let header = LogRecordFormat.segmentHeaderBytes
        let original = bytes.getSlice(at: bytes.readerIndex + header, length: scan.validBytes - header)
        precondition(rewritten == original, "records changed on their way back")
    }
}

/// A queue command, and the same bytes as a queue snapshot.
private func queue(_ bytes: ByteBuffer) {
    if let command = QueueCommand(decoding: bytes) {
        precondition(QueueCommand(decoding: command.encoded) == command, "\(command) changed on its way back")
        var state = DurableQueueState()
        state.apply(.enqueue(ByteBuffer(string: "m")), at: 1)
        state.apply(command, at: 2)
    }
    if var state = DurableQueueState(snapshot: bytes, at: 10) {
        state.apply(.settle([1, 2, 3]), at: 11)
        _ = state.firstNeededIndex
    }
}
