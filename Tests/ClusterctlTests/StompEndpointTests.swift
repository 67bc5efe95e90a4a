import Testing

@testable import clusterctl

/// One parser serves `bench`, `pub` and `sub`: what each URL form means, and what is refused.
@Suite struct StompEndpointTests {
    struct Parsed: Sendable, CustomStringConvertible {
        var url: String
        var host: String
        var port: Int
        var transport: StompEndpoint.Transport
        /// What the endpoint prints, and sends as the `Host` header's value.
        var shown: String
        var authority: String
        var description: String { url }
    }

    static let accepted: [Parsed] = [
        .init(
            url: "ws://127.0.0.1:15674/ws",
            host: "127.0.0.1",
            port: 15674,
            transport: .webSocket(path: "/ws"),
            shown: "ws://127.0.0.1:15674/ws",
            authority: "127.0.0.1:15674"
        ),
        // The node serves STOMP over WebSocket at /ws: a URL without a path means it.
        .init(
            url: "ws://localhost:8080",
            host: "localhost",
            port: 8080,
            transport: .webSocket(path: "/ws"),
            shown: "ws://localhost:8080/ws",
            authority: "localhost:8080"
        ),
        .init(
            url: "ws://broker.example:443/stomp/v1?x=1",
            host: "broker.example",
            port: 443,
            transport: .webSocket(path: "/stomp/v1?x=1"),
            shown: "ws://broker.example:443/stomp/v1?x=1",
            authority: "broker.example:443"
        ),
        .init(
            url: "WS://h:1/",
            host: "h",
            port: 1,
            transport: .webSocket(path: "/"),
            shown: "ws://h:1/",
            authority: "h:1"
        ),
        .init(
            url: "ws://[::1]:15674/ws",
            host: "::1",
            port: 15674,
            transport: .webSocket(path: "/ws"),
            shown: "ws://[::1]:15674/ws",
            authority: "[::1]:15674"
        ),
        .init(
            url: "tcp://127.0.0.1:61613",
            host: "127.0.0.1",
            port: 61613,
            transport: .tcp,
            shown: "tcp://127.0.0.1:61613",
            authority: "127.0.0.1:61613"
        ),
        // STOMP over TCP has no path; one written anyway changes nothing.
        .init(
            url: "stomp://node-2:61613/ignored",
            host: "node-2",
            port: 61613,
            transport: .tcp,
            shown: "tcp://node-2:61613",
            authority: "node-2:61613"
        ),
        .init(
            url: "tcp://[fe80::1]:65535",
            host: "fe80::1",
            port: 65535,
            transport: .tcp,
            shown: "tcp://[fe80::1]:65535",
            authority: "[fe80::1]:65535"
        ),
    ]

    @Test(arguments: accepted)
    func aURLGivesItsHostPortAndTransport(_ expected: Parsed) throws {
        let endpoint = try StompEndpoint(expected.url)
        #expect(endpoint.host == expected.host)
        #expect(endpoint.port == expected.port)
        #expect(endpoint.transport == expected.transport)
        #expect(endpoint.description == expected.shown)
        #expect(endpoint.authority == expected.authority)
    }

    /// Each refusal says what was wrong, by a word of its message.
    static let refused: [(url: String, says: String)] = [
        ("127.0.0.1:15674", "not a URL"),
        ("http://127.0.0.1:15674/ws", "unsupported"),
        ("wss://127.0.0.1:15674/ws", "unsupported"),
        ("ws://127.0.0.1/ws", "port"),
        ("ws://127.0.0.1:/ws", "port"),
        ("ws://127.0.0.1:http/ws", "port"),
        ("tcp://127.0.0.1:0", "port"),
        ("tcp://127.0.0.1:65536", "port"),
        ("ws://:15674/ws", "no host"),
        ("ws://[::1/ws", "]"),
        ("ws://[::1]/ws", "port"),
    ]

    @Test(arguments: refused)
    func aMalformedURLIsRefusedSayingWhy(_ url: String, says: String) {
        let error = #expect(throws: StompEndpoint.Invalid.self) { try StompEndpoint(url) }
        #expect(error?.description.contains(says) == true, "\(error?.description ?? "no error")")
    }
}
