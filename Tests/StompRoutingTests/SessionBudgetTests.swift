import NIOCore
import Testing

@testable import StompRouting

/// The session's bounds in bytes and words: what open transactions hold, and how long a
/// destination may be.
@Suite("SessionStateMachine: budgets")
struct SessionBudgetTests {
    private func connected(_ settings: SessionStateMachine.Settings) -> SessionDriver {
        var driver = SessionDriver(settings: settings)
        driver.connect()
        return driver
    }

    private static let kilobyte = String(repeating: "x", count: 1_024)

    @Test("open transactions are bounded in bytes over the whole connection")
    func transactionBytes() {
        var driver = connected(.init(maxTransactionBytes: 3 * 1_100))
        _ = driver.receive(.begin, [("transaction", "t")])
        _ = driver.receive(.begin, [("transaction", "u")])
        #expect(
            driver.receive(.send, [("destination", "/queue/a"), ("transaction", "t")], body: Self.kilobyte).isEmpty
        )
        #expect(
            driver.receive(.send, [("destination", "/queue/a"), ("transaction", "u")], body: Self.kilobyte).isEmpty
        )
        #expect(
            driver.receive(.send, [("destination", "/queue/a"), ("transaction", "t")], body: Self.kilobyte).isEmpty
        )
        let error = SessionDriver.failure(
            driver.receive(.send, [("destination", "/queue/a"), ("transaction", "u")], body: Self.kilobyte)
        )
        #expect(error?.kind == .transactionBytesLimit)
        #expect(error?.detail.contains("limits.transaction-bytes") == true, "the ERROR names the budget")
    }

    @Test("COMMIT and ABORT give a transaction's bytes back")
    func transactionBytesAreGivenBack() {
        var driver = connected(.init(maxTransactionBytes: 2 * 1_100))
        for round in 0..<5 {
            _ = driver.receive(.begin, [("transaction", "t\(round)")])
            #expect(
                driver.receive(.send, [("destination", "/queue/a"), ("transaction", "t\(round)")], body: Self.kilobyte)
                    .isEmpty
            )
            #expect(
                driver.receive(.send, [("destination", "/queue/a"), ("transaction", "t\(round)")], body: Self.kilobyte)
                    .isEmpty
            )
            let end: StompCommand = round.isMultiple(of: 2) ? .commit : .abort
            #expect(SessionDriver.failure(driver.receive(end, [("transaction", "t\(round)")])) == nil)
        }
    }

    @Test("a transaction's bodies are copied out of the read buffer they arrived in")
    func transactionBodiesAreCompacted() throws {
        var driver = connected(.init())
        _ = driver.receive(.begin, [("transaction", "t")])
        var readBuffer = ByteBuffer(repeating: UInt8(ascii: "b"), count: 64 * 1_024)
        let slice = readBuffer.readSlice(length: 16)
        let body = try #require(slice)
        let send = StompFrame(
            .send,
            headers: StompHeaders([("destination", "/queue/a"), ("transaction", "t")]),
            body: body
        )
        #expect(driver.receive(send).isEmpty)
        let actions = driver.receive(.commit, [("transaction", "t")])
        guard case .route(.commit(let operations), _) = actions.first, case .send(let request) = operations.first else {
            Issue.record("expected the commit, got \(actions)")
            return
        }
        #expect(String(buffer: request.body) == String(repeating: "b", count: 16))
        #expect(request.body.storageCapacity < 1_024)
    }

    @Test("a destination longer than its limit is refused, naming the limit")
    func destinationLength() {
        var driver = connected(.init(maxDestinationLength: 32))
        #expect(driver.receive(.send, [("destination", "/topic/" + String(repeating: "a", count: 25))]).count == 1)
        let error = SessionDriver.failure(
            driver.receive(.send, [("destination", "/topic/" + String(repeating: "a", count: 26))])
        )
        #expect(error?.kind == .destinationTooLong)
        #expect(error?.detail.contains("limits.destination-length") == true)
    }

    @Test("a topic or pattern with more words than its limit is refused, for SEND and SUBSCRIBE alike")
    func destinationWords() {
        let fine = "/topic/" + Array(repeating: "a", count: 8).joined(separator: ".")
        let tooMany = "/topic/" + Array(repeating: "#", count: 9).joined(separator: ".")
        var driver = connected(.init(maxDestinationWords: 8))
        #expect(driver.receive(.subscribe, [("destination", fine), ("id", "1")]).count == 1)
        #expect(
            SessionDriver.failure(driver.receive(.subscribe, [("destination", tooMany), ("id", "2")]))?.kind
                == .destinationTooLong
        )
        var sender = connected(.init(maxDestinationWords: 8))
        #expect(
            SessionDriver.failure(sender.receive(.send, [("destination", fine + ".a")]))?.kind == .destinationTooLong
        )
        // A queue's name is not split into words.
        var queueSender = connected(.init(maxDestinationWords: 8))
        #expect(
            queueSender.receive(
                .send,
                [("destination", "/queue/" + Array(repeating: "a", count: 20).joined(separator: "."))]
            ).count == 1
        )
    }
}
