import NIOCore

/// The heart-beat intervals one connection agreed on (STOMP 1.1+, "Heart-beating").
public struct Heartbeat: Sendable, Equatable {
    /// How often the server must send something; `nil` when it needn't.
    public var sendInterval: TimeAmount?
    /// How long the server waits for the client's next byte before it closes the connection:
    /// the client's interval plus a grace for network and scheduling delays. `nil` when the
    /// client sends no beats.
    public var receiveTimeout: TimeAmount?

    public static let none = Heartbeat(sendInterval: nil, receiveTimeout: nil)

    /// Negotiates from the client's `heart-beat: cx,cy` and the server's wishes.
    ///
    /// The server beats every max(sx, cy) when both are non-zero, and expects the client every
    /// max(cx, sy) when both are non-zero.
    ///
    /// - Parameters:
    ///   - client: `cx` (the client can send every cx ms) and `cy` (it wants beats every cy ms).
    ///   - serverSend: `sx`, the fastest the server offers to beat.
    ///   - serverReceive: `sy`, the rate the server would like to hear from the client.
    ///   - graceFactor: the receive timeout is the client's interval times this (at least 1).
    public init(
        client: (send: Int, receive: Int),
        serverSend: TimeAmount,
        serverReceive: TimeAmount,
        graceFactor: Double
    ) {
        let cx = Int64(client.send)
        let cy = Int64(client.receive)
        let sx = serverSend.nanoseconds / 1_000_000
        let sy = serverReceive.nanoseconds / 1_000_000
        self.sendInterval = (cy > 0 && sx > 0) ? .milliseconds(max(sx, cy)) : nil
        if cx > 0 && sy > 0 {
            let interval = Double(max(cx, sy))
            self.receiveTimeout = .milliseconds(Int64(interval * max(graceFactor, 1)))
        } else {
            self.receiveTimeout = nil
        }
    }

    public init(sendInterval: TimeAmount?, receiveTimeout: TimeAmount?) {
        self.sendInterval = sendInterval
        self.receiveTimeout = receiveTimeout
    }

    /// How often the shell should call ``SessionStateMachine/tick(now:)``: often enough to beat
    /// on time and to notice silence within a fraction of the timeout.
    public var tickInterval: TimeAmount? {
        let candidates = [sendInterval, receiveTimeout].compactMap { $0 }
        guard let shortest = candidates.min() else { return nil }
        return .nanoseconds(max(shortest.nanoseconds / 4, 10_000_000))
    }

    /// Parses a `heart-beat` header value: two non-negative integers of milliseconds.
    static func parse(_ value: String) -> (send: Int, receive: Int)? {
        let parts = value.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 2,
            let send = Int(parts[0].trimming(" ")), let receive = Int(parts[1].trimming(" ")),
            send >= 0, receive >= 0, send <= 86_400_000, receive <= 86_400_000
        else { return nil }
        return (send, receive)
    }
}
