import AdminSchema
import ArgumentParser
import Foundation
import NIOCore
import StompRouting

/// Where a STOMP client of clusterctl connects: `--url`, or the WebSocket port the node's
/// admin API reports.
struct StompTarget: ParsableArguments {
    @OptionGroup var options: NodeOptions

    @Option(
        help:
            "STOMP URL, ws://host:port/ws or tcp://host:port (default: the node's ws port, on the admin URL's host)."
    )
    var url: String?

    func resolve() async throws -> StompEndpoint {
        if let url { return try StompEndpoint(url) }
        let node: AdminModels.Node = try await options.client.get("/v1/node")
        guard let port = node.ports["ws"] else {
            throw AdminClient.Failure(
                description: "\(options.client.baseURL) serves no WebSocket listener",
                exitCode: 3
            )
        }
        let host = URLComponents(string: options.client.baseURL)?.host ?? "127.0.0.1"
        // URLComponents gives an IPv6 host in its brackets; the endpoint wants it bare.
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return StompEndpoint(host: bare, port: port, transport: .webSocket(path: "/ws"))
    }
}

struct Pub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish messages to a destination over STOMP (WebSocket or TCP)."
    )

    @Argument(help: "Destination, e.g. /topic/chat.lobby or /queue/jobs.")
    var destination: String

    @Option(help: "How many messages.")
    var count = 1

    @Option(help: "The body; {n} is replaced by the message's number.")
    var body = "message {n}"

    @OptionGroup var target: StompTarget

    func run() async throws {
        try await reporting {
            let endpoint = try await target.resolve()
            let started = ContinuousClock.now
            try await StompSession.run(endpoint) { send, frames in
                for index in 1...max(count, 1) {
                    var headers: StompHeaders = [StompHeader.destination: destination]
                    // A receipt every 1000 messages and on the last keeps the broker's buffers
                    // bounded and confirms the whole run.
                    if index == count || index % 1_000 == 0 { headers.add(StompHeader.receipt, "r\(index)") }
                    try await send(
                        StompFrame(
                            .send,
                            headers: headers,
                            body: ByteBuffer(string: body.replacingOccurrences(of: "{n}", with: String(index)))
                        )
                    )
                    if headers[StompHeader.receipt] != nil {
                        guard let answer = try await frames.next() else {
                            throw StompClientError("the connection closed before the receipt")
                        }
                        guard answer.command == .receipt else {
                            throw StompClientError(
                                "the broker answered \(answer.command.rawValue): \(answer.headers["message"] ?? "")"
                            )
                        }
                    }
                }
            }
            let seconds = (ContinuousClock.now - started).components
            let elapsed = Double(seconds.seconds) + Double(seconds.attoseconds) / 1e18
            print("published \(count) message(s) to \(destination) in \(String(format: "%.3f", elapsed)) s")
        }
    }
}

struct Sub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Subscribe to a destination and print what arrives (a STOMP client over WebSocket or TCP)."
    )

    @Argument(help: "Destination or pattern, e.g. /topic/chat.# or /queue/jobs.")
    var destination: String

    @Option(help: "Stop after this many messages (default: run until interrupted).")
    var count: Int?

    @OptionGroup var target: StompTarget

    func run() async throws {
        try await reporting {
            let endpoint = try await target.resolve()
            try await StompSession.run(endpoint) { send, frames in
                try await send(
                    StompFrame(
                        .subscribe,
                        headers: [
                            StompHeader.id: "clusterctl", StompHeader.destination: destination,
                            StompHeader.receipt: "subscribed",
                        ]
                    )
                )
                var received = 0
                while let frame = try await frames.next() {
                    switch frame.command {
                    case .receipt:
                        FileHandle.standardError.write(Data("subscribed to \(destination) at \(endpoint)\n".utf8))
                    case .message:
                        received += 1
                        if target.options.json {
                            Output.json([
                                "destination": frame.headers[StompHeader.destination] ?? "",
                                "messageId": frame.headers[StompHeader.messageID] ?? "",
                                "body": String(buffer: frame.body),
                            ])
                        } else {
                            print("\(frame.headers[StompHeader.destination] ?? "?")  \(String(buffer: frame.body))")
                        }
                        if let count, received >= count { return }
                    case .error:
                        throw StompClientError(
                            "the broker sent ERROR: \(frame.headers["message"] ?? "") \(String(buffer: frame.body))"
                        )
                    default:
                        break
                    }
                }
            }
        }
    }
}
