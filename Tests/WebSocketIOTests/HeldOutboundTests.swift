import NIOCore
import StompRouting
import Testing

@testable import WebSocketIO

/// Frames behind a RECEIPT that waits for the cluster or behind a durable write: released in
/// order, one hold at a time, and counted while held.
@Suite struct HeldOutboundTests {
    private func frame(_ text: String) -> OutboundFrame {
        OutboundFrame(bytes: ByteBuffer(string: text), isText: true)
    }

    private func text(_ outbound: inout OutboundBuffer) -> String {
        outbound.take().map { String(buffer: $0) } ?? ""
    }

    @Test func framesWaitBehindTheReceiptAndFollowItOut() {
        var held = HeldOutbound(framing: .stream)
        var outbound = OutboundBuffer(framing: .stream)
        #expect(!held.isHolding)
        held.hold(frame("R1|"))
        held.append(frame("a|"))
        held.append(frame("b|"))
        #expect(held.isHolding)
        #expect(held.byteCount == 7)
        held.releaseFirst(into: &outbound)
        #expect(text(&outbound) == "R1|a|b|")
        #expect(!held.isHolding)
        #expect(held.byteCount == 0)
    }

    @Test func eachReleaseLetsOutOneReceiptAndWhatFollowedIt() {
        var held = HeldOutbound(framing: .stream)
        var outbound = OutboundBuffer(framing: .stream)
        held.hold(frame("R1|"))
        held.append(frame("a|"))
        held.hold(frame("R2|"))
        held.append(frame("b|"))
        held.releaseFirst(into: &outbound)
        #expect(text(&outbound) == "R1|a|")
        #expect(held.isHolding)
        #expect(held.byteCount == 5)
        held.releaseFirst(into: &outbound)
        #expect(text(&outbound) == "R2|b|")
        // A release with nothing held (the connection already let everything go) is harmless.
        held.releaseFirst(into: &outbound)
        #expect(text(&outbound) == "")
    }

    @Test func whatWasAlreadyQueuedStaysAhead() {
        var held = HeldOutbound(framing: .stream)
        var outbound = OutboundBuffer(framing: .stream)
        outbound.append(frame("earlier|"))
        held.hold(frame("R|"))
        held.append(frame("later|"))
        held.releaseForClose(into: &outbound)
        #expect(text(&outbound) == "earlier|R|later|")
    }

    @Test func heldWebSocketFramesKeepTheirFraming() {
        var held = HeldOutbound(framing: .webSocket)
        var outbound = OutboundBuffer(framing: .webSocket)
        held.hold(frame("R"))
        held.append(frame("abc"))
        held.releaseFirst(into: &outbound)
        var direct = OutboundBuffer(framing: .webSocket)
        direct.append(frame("R"))
        direct.append(frame("abc"))
        #expect(outbound.take() == direct.take())
    }

    @Test func discardingDropsEverythingHeld() {
        var held = HeldOutbound(framing: .stream)
        var outbound = OutboundBuffer(framing: .stream)
        held.hold(frame("R|"))
        held.append(frame("a|"))
        held.discard()
        #expect(!held.isHolding)
        #expect(held.byteCount == 0)
        held.releaseForClose(into: &outbound)
        #expect(text(&outbound) == "")
    }

    @Test func aDurableWriteHoldsWhatFollowsAndItsOwnReceipt() {
        var held = HeldOutbound(framing: .stream)
        var outbound = OutboundBuffer(framing: .stream)
        held.holdForWrite()
        held.append(frame("R-send|"))
        #expect(held.isHolding && held.awaitsWrite)
        held.releaseFirst(into: &outbound)
        #expect(text(&outbound) == "R-send|")
        #expect(!held.isHolding && !held.awaitsWrite)
    }

    @Test func aCloseReleasesTheClustersReceiptsButNothingFromAnUnfinishedWriteOn() {
        var held = HeldOutbound(framing: .stream)
        var outbound = OutboundBuffer(framing: .stream)
        held.hold(frame("R-sub|"))
        held.append(frame("m1|"))
        held.holdForWrite()
        held.append(frame("R-send|"))
        held.hold(frame("R-sub2|"))
        held.releaseForClose(into: &outbound)
        #expect(text(&outbound) == "R-sub|m1|")
        #expect(!held.isHolding)
        #expect(held.byteCount == 0)
        #expect(held.writeCount == 0)
    }

    @Test func writesAreCountedUntilTheirReleaseButReceiptsAreNot() {
        var held = HeldOutbound(framing: .stream)
        var outbound = OutboundBuffer(framing: .stream)
        held.holdForWrite()
        held.hold(frame("R-sub|"))
        held.holdForWrite()
        #expect(held.writeCount == 2)
        held.releaseFirst(into: &outbound)
        #expect(held.writeCount == 1)
        held.releaseFirst(into: &outbound)
        #expect(held.writeCount == 1, "a subscription's receipt is no write")
        held.releaseFirst(into: &outbound)
        #expect(held.writeCount == 0 && !held.awaitsWrite)
    }
}
