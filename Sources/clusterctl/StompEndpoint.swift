/// Where a STOMP client of clusterctl (`bench`, `pub`, `sub`) connects, from a URL:
///
/// - `ws://host:port/path`: STOMP over WebSocket; the path defaults to `/ws`, where the node serves it.
/// - `tcp://host:port` or `stomp://host:port`: STOMP over plain TCP (a path is ignored).
///
/// An IPv6 host is written in brackets (`ws://[::1]:15674/ws`), as in any URL. There is no
/// `wss://`: clusterctl's client has no TLS.
struct StompEndpoint: Sendable, Equatable, CustomStringConvertible {
    enum Transport: Sendable, Equatable {
        case webSocket(path: String)
        case tcp
    }

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    /// The host to connect to, without brackets.
    var host: String
    var port: Int
    var transport: Transport

    init(host: String, port: Int, transport: Transport) {
        self.host = host
        self.port = port
        self.transport = transport
    }

    init(_ url: String) throws {
        guard let schemeEnd = url.range(of: "://") else {
            throw Invalid(description: "\(url) is not a URL: use ws://host:port/ws or tcp://host:port")
        }
        let rest = url[schemeEnd.upperBound...]
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count)
        switch url[..<schemeEnd.lowerBound].lowercased() {
        case "ws": transport = .webSocket(path: path.isEmpty ? "/ws" : String(path))
        case "tcp", "stomp": transport = .tcp
        default: throw Invalid(description: "unsupported URL \(url): use ws://host:port/ws or tcp://host:port")
        }
        (host, port) = try Self.split(authority, of: url)
    }

    /// `host:port`, with an IPv6 host in brackets: one parser for both, so that the colons
    /// inside an address are never taken for the port's.
    private static func split(_ authority: Substring, of url: String) throws -> (String, Int) {
        let host: Substring
        let afterHost: Substring
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                throw Invalid(description: "\(url): an IPv6 address needs its closing ]")
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            afterHost = authority[authority.index(after: close)...]
        } else {
            let colon = authority.lastIndex(of: ":") ?? authority.endIndex
            host = authority[..<colon]
            afterHost = authority[colon...]
        }
        guard !host.isEmpty else { throw Invalid(description: "\(url) names no host") }
        guard afterHost.hasPrefix(":"), let port = Int(afterHost.dropFirst()), (1...65_535).contains(port) else {
            throw Invalid(description: "\(url) needs a port (1-65535) after the host")
        }
        return (String(host), port)
    }

    /// The authority as a URL and an HTTP `Host` header write it.
    var authority: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    var description: String {
        switch transport {
        case .webSocket(let path): return "ws://\(authority)\(path)"
        case .tcp: return "tcp://\(authority)"
        }
    }
}
