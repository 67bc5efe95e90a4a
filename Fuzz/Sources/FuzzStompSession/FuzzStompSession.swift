import NIOCore
import StompRouting

/// libFuzzer entry point: the STOMP core as a node drives it, from raw client bytes to the
/// router's deliveries, with no I/O.
///
/// The input is the byte stream of two client connections: a `0xFE` byte (which valid UTF-8
/// never contains, so it can't be part of a header) passes the following bytes to the other
/// connection. Two connections are what queues, competing consumers, and redelivery when a
/// consumer goes away need.
///
/// - Parameters:
///   - data: the input.
///   - size: its length in bytes.
/// - Returns: 0, as libFuzzer requires; a bug traps instead.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var node = SessionHarness()
    var connection = 0
    var start = 0
    for index in 0...size where index == size || data[index] == 0xFE {
        node.received(UnsafeBufferPointer(start: data + start, count: index - start), on: connection)
        connection = 1 - connection
        start = index + 1
    }
    node.finish()
    return 0
}
