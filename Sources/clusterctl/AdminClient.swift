import AdminSchema
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
            Failure(
                description:
                    "\(url) answered \(status.code) \(status.reasonPhrase): \(body.trimmingCharacters(in: .whitespacesAndNewlines))",
                exitCode: 3
            )
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

    /// Every member, a page at a time: `/v1/members` answers one page (`offset`, `limit`,
    /// `total`, `items`); a node from before pagination answered all of them as an array.
    func members() async throws -> [AdminModels.Member] {
        var members: [AdminModels.Member] = []
        while true {
            let answer: MemberAnswer = try await get("/v1/members?offset=\(members.count)")
            switch answer {
            case .all(let all):
                return all
            case .page(let page):
                members += page.items
                // An empty page ends it too: members may leave between two pages.
                if page.items.isEmpty || members.count >= page.total { return members }
            }
        }
    }

    /// `/v1/members` as a node of either version answers it.
    private enum MemberAnswer: Decodable {
        case all([AdminModels.Member])
        case page(AdminModels.Page<AdminModels.Member>)

        init(from decoder: any Decoder) throws {
            if let all = try? [AdminModels.Member](from: decoder) {
                self = .all(all)
            } else {
                self = .page(try AdminModels.Page<AdminModels.Member>(from: decoder))
            }
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
