import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Resolves seed entries (`host:port`) to every address they name, off the event loop: a
/// name like a Kubernetes headless service resolves to one address per pod, and each must be
/// tried, where a plain connect would stop at the first.
enum SeedResolver {
    /// - Returns: `host:port` strings with numeric hosts, deduplicated; unresolvable seeds are
    ///   left out.
    static func resolve(_ seeds: [String], on eventLoop: any EventLoop) -> EventLoopFuture<[String]> {
        NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) {
            var result: [String] = []
            for seed in seeds {
                guard let (host, port) = split(seed) else { continue }
                for address in addresses(of: host) where !result.contains("\(address):\(port)") {
                    result.append(address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)")
                }
            }
            return result
        }
    }

    /// Splits `host:port` or `[v6]:port`.
    static func split(_ address: String) -> (host: String, port: Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), port > 0,
            port < 65_536
        else {
            return nil
        }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    private static func addresses(of host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &list) == 0, let first = list else { return [] }
        defer { freeaddrinfo(first) }
        var names: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(
                entry.pointee.ai_addr,
                entry.pointee.ai_addrlen,
                &buffer,
                socklen_t(buffer.count),
                nil,
                0,
                NI_NUMERICHOST
            ) == 0 {
                let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !names.contains(name) { names.append(name) }
            }
            cursor = entry.pointee.ai_next
        }
        return names
    }
}
