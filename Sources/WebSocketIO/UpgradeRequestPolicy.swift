import NIOHTTP1

/// Which requests to the WebSocket port may become STOMP over WebSocket connections. NIO's
/// upgrader asks before it upgrades; ``HTTPFallbackHandler`` answers every other request
/// with the status and text of its refusal.
struct UpgradeRequestPolicy: Sendable {
    var path: String
    var origins: OriginPolicy

    enum Refusal: Equatable {
        /// Another path than the WebSocket one.
        case notFound
        /// An opening handshake has no body (RFC 6455 section 4.1). NIO's upgrader would wait
        /// for one, and a connection closed while it waited kept its whole pipeline (about
        /// 6 KB) for ever.
        case body
        /// A browser page from an origin `ws.allowed-origins` doesn't list.
        case origin
    }

    /// Why `head` may not be upgraded; `nil` when it may.
    func refusal(of head: HTTPRequestHead) -> Refusal? {
        guard requestPath(head.uri) == path else { return .notFound }
        if declaresBody(head) { return .body }
        if !origins.allows(head.headers.first(name: "Origin")) { return .origin }
        return nil
    }
}

/// The path of a request target, without its query.
func requestPath(_ uri: String) -> Substring {
    uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
}

/// Whether a request says a body follows (`Content-Length` above 0, or chunked).
private func declaresBody(_ head: HTTPRequestHead) -> Bool {
    if head.headers.contains(name: "Transfer-Encoding") { return true }
    return head.headers[canonicalForm: "Content-Length"].contains { $0 != "0" }
}
