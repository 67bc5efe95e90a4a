import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Talks to one node's admin API.
struct AdminClient: Sendable {
    /// Why a command failed, with the exit code scripts can tell apart.
    struct Failure: Error, CustomStringConvertible {
        var description: String
        var exitCode: Int32

        /// The node could not be reached at all.
        static func unreachable(_ url: String, _ error: any Error) -> Failure {
            Failure(description: "cannot reach the node at \(url): \(error)", exitCode: 2)
        }

        /// The node answered with an error.
        static func http(_ url: String, _ status: HTTPResponseStatus, _ body: String) -> Failure {
            Failure(description: "\(url) answered \(status.code) \(status.reasonPhrase): \(body.trimmingCharacters(in: .whitespacesAndNewlines))", exitCode: 3)
        }
    }

    let baseURL: String
    let token: String?
    /// The whole request's deadline. AsyncHTTPClient retries a refused connection until it
    /// passes, so it is also how long an unreachable node takes to be reported.
    let timeout: TimeAmount

    init(baseURL: String, token: String?, timeout: TimeAmount = .seconds(3)) {
        self.timeout = timeout
        var url = baseURL
        if !url.hasPrefix("http://"), !url.hasPrefix("https://") { url = "http://" + url }
        while url.hasSuffix("/") { url.removeLast() }
        self.baseURL = url
        self.token = token
    }

    func get<T: Decodable>(_ path: String, as type: T.Type = T.self) async throws -> T {
        let body = try await request(.GET, path)
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.utf8))
        } catch {
            throw Failure(description: "\(baseURL)\(path) returned something unexpected: \(error)", exitCode: 3)
        }
    }

    func text(_ path: String) async throws -> String {
        try await request(.GET, path)
    }

    @discardableResult
    func post(_ path: String) async throws -> String {
        try await request(.POST, path)
    }

    private func request(_ method: HTTPMethod, _ path: String) async throws -> String {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: timeout)
        } catch {
            throw Failure.unreachable(baseURL, error)
        }
        let body = String(buffer: try await response.body.collect(upTo: 16 * 1_048_576))
        guard (200..<300).contains(response.status.code) else {
            throw Failure.http(baseURL + path, response.status, body)
        }
        return body
    }
}

/// The JSON documents of the admin API, as clusterctl reads them.
enum API {
    struct Node: Codable {
        var id: String
        var version: String
        var phase: String
        var uptimeSeconds: Double
        var ports: [String: Int]
        var connections: Int
        var subscriptions: Int
        var messagesPublished: Int
        var messagesDelivered: Int
        var cluster: Cluster?

        struct Cluster: Codable {
            var name: String
            var joined: Bool
            var members: [String: Int]
            var localHealth: Int
        }
    }

    struct Member: Codable {
        var node: String
        var address: String
        var status: String
        var incarnation: UInt64
        var epoch: UInt64
        var isSelf: Bool
    }

    struct Link: Codable {
        var peer: String
        var address: String
        var outbound: Bool
        var rawBytesSent: Int
        var wireBytesSent: Int
        var rawBytesReceived: Int
        var wireBytesReceived: Int
    }

    struct InterestEntry: Codable {
        var kind: String
        var name: String
        var count: Int
    }

    struct InterestOrigin: Codable {
        var origin: String
        var epoch: UInt64
        var version: UInt64
        var entries: [InterestEntry]
    }

    struct Interest: Codable {
        var local: InterestOrigin
        var peers: [InterestOrigin]
    }

    struct Route: Codable {
        var destination: String
        var localSubscribers: Bool
        var peers: [RouteTarget]
    }

    struct RouteTarget: Codable {
        var node: String
        var reason: String
    }

    struct Subscription: Codable {
        var id: String
        var destination: String
        var ack: String
        var unacked: Int
    }

    struct Connection: Codable {
        var id: UInt64
        var version: String
        var subscriptions: [Subscription]
    }

    struct Queue: Codable {
        var name: String
        var localConsumers: Int
        var remoteConsumers: Int
        var pending: Int
        var unacked: Int
    }

    struct Connections: Codable {
        var connections: [Connection]
        var queues: [Queue]
    }
}
