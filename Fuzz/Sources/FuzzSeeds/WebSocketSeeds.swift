/// Client byte streams for `FuzzWebSocket`: HTTP requests, and upgrades followed by
/// WebSocket frames carrying STOMP. Frames are masked, as a client's must be, with the key
/// 0 so that the payload bytes are the plain text the fuzzer can mutate.
enum WebSocketSeeds {
    static func upgrade(path: String = "/ws", protocols: String? = "v12.stomp, v11.stomp, v10.stomp") -> [UInt8] {
        var request = "GET \(path) HTTP/1.1\r\nHost: localhost:15674\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        if let protocols { request += "Sec-WebSocket-Protocol: \(protocols)\r\n" }
        return Array((request + "\r\n").utf8)
    }

    /// One client frame: `opcode` 1 text, 2 binary, 0 continuation, 8 close, 9 ping.
    static func frame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
        var bytes: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        if payload.count < 126 {
            bytes.append(0x80 | UInt8(payload.count))
        } else {
            bytes += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        }
        return bytes + [0, 0, 0, 0] + payload
    }

    static func text(_ stomp: String, fin: Bool = true) -> [UInt8] {
        frame(1, Array(stomp.utf8), fin: fin)
    }

    static let connect = "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:1000,1000\n\n\0"

    static let all: [(String, [UInt8])] = [
        (
            "upgrade-subscribe-send",
            upgrade() + text(connect) + text("SUBSCRIBE\nid:0\ndestination:/topic/a\nreceipt:r\n\n\0")
                + text("SEND\ndestination:/topic/a\n\nhello\0") + text("DISCONNECT\nreceipt:bye\n\n\0")
        ),
        (
            "fragmented-and-batched",
            upgrade(protocols: "v11.stomp")
                + text(
                    "CONNECT\naccept-version:1.1\nhost:/\n\n\0SUBSCRIBE\nid:q\ndestination:/queue/q\nack:client\n\n\0"
                )
                + text("SEND\ndestination:/queue/q\n", fin: false) + frame(0, Array("\nbody\0".utf8))
                + text("SEND\ndestination:/queue/q\n\n") + text("split\0") + text("\n")
                + text("ACK\nsubscription:q\nmessage-id:m-1\n\n\0")
        ),
        (
            "binary-ping-close",
            upgrade(protocols: nil) + frame(2, Array(connect.utf8)) + frame(9, Array("ping".utf8))
                + frame(2, Array("SEND\ndestination:/topic/b\ncontent-length:2\n\n\u{0}\u{1}\0".utf8))
                + frame(8, [0x03, 0xE8])
        ),
        (
            "large-frame",
            upgrade(protocols: "v10.stomp") + text(connect)
                + text("SEND\ndestination:/topic/big\n\n" + String(repeating: "x", count: 300) + "\0")
        ),
        ("plain-request-on-ws-path", Array("GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)),
        (
            "plain-request-elsewhere",
            Array("POST /other?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi".utf8)
        ),
        ("upgrade-on-wrong-path", upgrade(path: "/nope") + text(connect)),
    ]
}
