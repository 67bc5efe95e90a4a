/// Client byte streams for `FuzzStompSession`: every client command, in each protocol
/// version, with the headers that steer the session and the router. Message ids (`m-N`) and
/// ack ids (`N`) are the ones the harness's router hands out, so acknowledgements hit.
enum StompSeeds {
    /// Separates the two connections' bytes in a `FuzzStompSession` input.
    static let nextConnection: [UInt8] = [0xFE]

    static func frames(_ frames: String...) -> [UInt8] {
        Array(frames.joined(separator: "\0").utf8) + [0]
    }

    static let all: [(String, [UInt8])] = [
        (
            "v12-topic-client-individual",
            frames(
                "CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n",
                "SUBSCRIBE\nid:0\ndestination:/topic/prices.*\nack:client-individual\nreceipt:r-1\n\n",
                "SEND\ndestination:/topic/prices.eur\ncontent-type:text/plain\nreceipt:r-2\n\n1.08",
                "ACK\nid:1\nreceipt:r-3\n\n",
                "UNSUBSCRIBE\nid:0\n\n",
                "DISCONNECT\nreceipt:r-4\n\n"
            )
        ),
        (
            "v10-queue-client-ack",
            frames(
                "CONNECT\nlogin:a\npasscode:b\n\n",
                "SUBSCRIBE\ndestination:/queue/jobs\nack:client\n\n",
                "SEND\ndestination:/queue/jobs\ncontent-length:3\n\na\0b",
                "SEND\ndestination:/queue/jobs\n\nsecond",
                "ACK\nmessage-id:m-2\n\n",
                "DISCONNECT\n\n"
            )
        ),
        (
            "v11-heartbeats-nack",
            Array("\n".utf8)
                + frames(
                    "STOMP\naccept-version:1.0,1.1\nhost:vhost\nheart-beat:1,1\n\n",
                    "SUBSCRIBE\nid:s\ndestination:/topic/chat.#\nack:client\nprefetch-count:2\n\n",
                    "SEND\ndestination:/topic/chat.room.1\nx-custom:a\\cb\n\nhi",
                    "NACK\nsubscription:s\nmessage-id:m-1\n\n"
                ) + Array("\n\r\n\n".utf8)
        ),
        (
            "v12-transaction-commit-abort",
            frames(
                "CONNECT\naccept-version:1.1,1.2\nhost:/\n\n",
                "SUBSCRIBE\nid:q\ndestination:/queue/orders\nack:client-individual\n\n",
                "BEGIN\ntransaction:t1\n\n",
                "SEND\ndestination:/queue/orders\ntransaction:t1\n\none",
                "SEND\ndestination:/topic/audit\ntransaction:t1\n\ntwo",
                "COMMIT\ntransaction:t1\nreceipt:c\n\n",
                "BEGIN\ntransaction:t2\n\n",
                "ACK\nid:1\ntransaction:t2\n\n",
                "ABORT\ntransaction:t2\n\n",
                "NACK\nid:1\n\n"
            )
        ),
        (
            "v12-escapes-and-content-length",
            frames(
                "CONNECT\naccept-version:1.2\nhost:/\n\n",
                "SUBSCRIBE\nid:e\ndestination:/topic/t\n\n",
                "SEND\ndestination:/topic/t\nx:a\\r\\n\\c\\\\b\ncontent-length:4\ncontent-type:application/octet-stream\n\n\0\u{1}\u{2}\u{3}",
                "SEND\r\ndestination:/topic/t\r\n\r\ncrlf"
            )
        ),
        (
            "two-connections-queue-redelivery",
            frames(
                "CONNECT\naccept-version:1.2\nhost:/\n\n",
                "SUBSCRIBE\nid:a\ndestination:/queue/work\nack:client\nprefetch-count:1\n\n"
            ) + nextConnection
                + frames(
                    "CONNECT\naccept-version:1.2\nhost:/\n\n",
                    "SUBSCRIBE\nid:b\ndestination:/queue/work\nack:client-individual\n\n",
                    "SEND\ndestination:/queue/work\n\n1",
                    "SEND\ndestination:/queue/work\n\n2",
                    "SEND\ndestination:/queue/work\n\n3"
                ) + nextConnection
                + frames(
                    "NACK\nid:1\n\n",
                    "UNSUBSCRIBE\nid:a\n\n"
                ) + nextConnection
                + frames(
                    "ACK\nid:2\n\n",
                    "DISCONNECT\nreceipt:bye\n\n"
                )
        ),
        (
            "not-connected-error",
            frames("SEND\ndestination:/topic/x\n\nnope")
        ),
        (
            "v12-bad-frames",
            frames(
                "CONNECT\naccept-version:1.2\nhost:/\n\n",
                "UNSUBSCRIBE\nid:unknown\n\n",
                "SUBSCRIBE\nid:1\ndestination:/exchange/x\n\n"
            )
        ),
    ]
}
