import NIOCore
import Testing

@testable import StompRouting

@Suite("Heartbeat negotiation")
struct HeartbeatNegotiationTests {
    @Test(
        "negotiated intervals (server 10 s, 10 s, grace 1.5)",
        arguments: [
            // client (cx, cy), expected send interval ms, expected receive timeout ms
            ((0, 0), Int64?.none, Int64?.none),
            ((5_000, 5_000), 10_000, 15_000),
            ((0, 5_000), 10_000, nil),
            ((5_000, 0), nil, 15_000),
            ((20_000, 30_000), 30_000, 30_000),
            ((1, 1), 10_000, 15_000),
        ] as [((Int, Int), Int64?, Int64?)]
    )
    func negotiation(client: (Int, Int), send: Int64?, receive: Int64?) {
        let heartbeat = Heartbeat(
            client: (send: client.0, receive: client.1),
            serverSend: .seconds(10),
            serverReceive: .seconds(10),
            graceFactor: 1.5
        )
        #expect(heartbeat.sendInterval == send.map { .milliseconds($0) })
        #expect(heartbeat.receiveTimeout == receive.map { .milliseconds($0) })
    }

    @Test("a server side of zero turns that direction off")
    func serverZero() {
        let noSend = Heartbeat(
            client: (send: 5_000, receive: 5_000),
            serverSend: .zero,
            serverReceive: .seconds(10),
            graceFactor: 1.5
        )
        #expect(noSend.sendInterval == nil)
        #expect(noSend.receiveTimeout == .seconds(15))
        let noReceive = Heartbeat(
            client: (send: 5_000, receive: 5_000),
            serverSend: .seconds(10),
            serverReceive: .zero,
            graceFactor: 1.5
        )
        #expect(noReceive.sendInterval == .seconds(10))
        #expect(noReceive.receiveTimeout == nil)
    }

    @Test("a grace factor below 1 counts as 1")
    func graceAtLeastOne() {
        let heartbeat = Heartbeat(
            client: (send: 5_000, receive: 0),
            serverSend: .seconds(1),
            serverReceive: .seconds(1),
            graceFactor: 0.5
        )
        #expect(heartbeat.receiveTimeout == .seconds(5))
    }

    @Test(
        "parsing the heart-beat header",
        arguments: [
            ("0,0", (0, 0)),
            ("5000,10000", (5_000, 10_000)),
            (" 10 , 20 ", (10, 20)),
            ("86400000,0", (86_400_000, 0)),
        ] as [(String, (Int, Int))]
    )
    func parseValid(value: String, expected: (Int, Int)) throws {
        let parsed = try #require(Heartbeat.parse(value))
        #expect(parsed.send == expected.0)
        #expect(parsed.receive == expected.1)
    }

    @Test(
        "rejecting a malformed heart-beat header",
        arguments: ["", "1", "1,2,3", "a,1", "-1,1", "1,-1", ",", "1,", "86400001,0", "1.5,2"]
    )
    func parseInvalid(value: String) {
        #expect(Heartbeat.parse(value) == nil)
    }

    @Test("tick interval: a quarter of the shortest interval, at least 10 ms")
    func tickInterval() {
        #expect(Heartbeat.none.tickInterval == nil)
        #expect(
            Heartbeat(sendInterval: .seconds(10), receiveTimeout: .seconds(15)).tickInterval == .milliseconds(2_500)
        )
        #expect(Heartbeat(sendInterval: nil, receiveTimeout: .seconds(4)).tickInterval == .seconds(1))
        #expect(Heartbeat(sendInterval: .milliseconds(20), receiveTimeout: nil).tickInterval == .milliseconds(10))
    }
}

@Suite("SessionStateMachine heart-beats")
struct SessionHeartbeatTests {
    /// A session connected at t = 0 with the client offering `heart-beat: 5000,5000` against the
    /// default server settings (10 s, 10 s, grace 1.5): beat every 10 s, time out after 15 s.
    private func connected(heartBeat: String = "5000,5000") -> SessionStateMachine {
        var driver = SessionDriver()
        driver.connect(acceptVersion: "1.2", heartBeat: heartBeat)
        return driver.session
    }

    @Test("CONNECT negotiates the intervals and reports them")
    func negotiated() {
        var driver = SessionDriver()
        let actions = driver.connect(acceptVersion: "1.2", heartBeat: "5000,5000")
        #expect(actions.first == .connected(.v1_2, Heartbeat(sendInterval: .seconds(10), receiveTimeout: .seconds(15))))
    }

    @Test("client 0,0 negotiates no heart-beats: ticks never act")
    func noHeartbeats() {
        var session = connected(heartBeat: "0,0")
        #expect(session.tick(now: at(3_600)) == .none)
    }

    @Test("a beat is due when nothing was sent for the interval, not before")
    func sendsHeartbeat() {
        var session = connected()
        session.bytesReceived(now: at(9))
        #expect(session.tick(now: at(9, plus: .milliseconds(999))) == .none)
        #expect(session.tick(now: at(10)) == .sendHeartbeat)
        session.bytesSent(now: at(10))
        session.bytesReceived(now: at(10))
        #expect(session.tick(now: at(15)) == .none)
        #expect(session.tick(now: at(20)) == .sendHeartbeat)
    }

    @Test("any bytes sent postpone the beat")
    func bytesSentPostpone() {
        var session = connected()
        session.bytesSent(now: at(7))
        session.bytesReceived(now: at(12))
        #expect(session.tick(now: at(12)) == .none)
        #expect(session.tick(now: at(17)) == .sendHeartbeat)
    }

    @Test("silence beyond the timeout fails with heartbeatTimeout, not before")
    func timeout() throws {
        var session = connected()
        session.bytesSent(now: at(14))
        #expect(session.tick(now: at(15)) == .none)
        guard case .fail(let error) = session.tick(now: at(15, plus: .milliseconds(1))) else {
            Issue.record("expected a heart-beat timeout")
            return
        }
        #expect(error.kind == .heartbeatTimeout)
        // The session is closed: later ticks and frames do nothing.
        #expect(session.tick(now: at(100)) == .none)
        var actions: [SessionStateMachine.Action] = []
        session.frameReceived(
            StompFrame(.send, headers: [StompHeader.destination: "/queue/a"]),
            now: at(100),
            into: &actions
        )
        #expect(actions.isEmpty)
    }

    @Test("bytesReceived resets the silence")
    func bytesReceivedResets() {
        var session = connected()
        session.bytesSent(now: at(14))
        session.bytesReceived(now: at(14))
        #expect(session.tick(now: at(16)) == .none)
        session.bytesSent(now: at(24))
        #expect(session.tick(now: at(29)) == .none)
        guard case .fail(let error) = session.tick(now: at(29, plus: .nanoseconds(1))) else {
            Issue.record("expected a heart-beat timeout")
            return
        }
        #expect(error.kind == .heartbeatTimeout)
    }

    @Test("a client that only wants beats is never timed out")
    func receiveOnly() {
        var session = connected(heartBeat: "0,5000")
        #expect(session.tick(now: at(10)) == .sendHeartbeat)
        session.bytesSent(now: at(10))
        #expect(session.tick(now: at(1_000, plus: .nanoseconds(-1))) == .sendHeartbeat)
    }

    @Test("ticks before CONNECT do nothing")
    func tickBeforeConnect() {
        var session = SessionStateMachine(settings: .init(), sessionID: "s")
        #expect(session.tick(now: at(1_000)) == .none)
    }
}
