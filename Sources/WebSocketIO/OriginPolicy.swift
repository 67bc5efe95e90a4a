/// Which web origins may open connections: a browser names the page's origin in `Origin`, so
/// a page from another site can't use a user's browser to reach a node it mustn't. Clients
/// that aren't browsers send no `Origin` and are not its concern.
public struct OriginPolicy: Sendable, Equatable {
    /// `nil`: every origin.
    private let allowed: Set<String>?

    /// - Parameter origins: `scheme://host[:port]` entries as a browser sends them; `*`
    ///   allows every origin. Empty allows none.
    public init(_ origins: [String]) {
        allowed = origins.contains("*") ? nil : Set(origins.map(Self.normalized))
    }

    public static let any = OriginPolicy(["*"])

    public func allows(_ origin: String?) -> Bool {
        guard let origin, let allowed else { return true }
        return allowed.contains(Self.normalized(origin))
    }

    /// Origins compare case-insensitively, without a trailing slash.
    private static func normalized(_ origin: String) -> String {
        var text = origin.lowercased()
        while text.hasSuffix("/") { text.removeLast() }
        return text
    }
}
