import NIOCore
import Testing

@testable import Replication

@Suite struct RecordChecksumTests {
    @Test func matchesTheStandardCheckValue() {
        // CRC-32 (IEEE 802.3) of "123456789" is 0xCBF43926: the catalogue's check value.
        #expect(RecordChecksum.of(ByteBuffer(string: "123456789").readableBytesView) == 0xCBF4_3926)
    }
}
