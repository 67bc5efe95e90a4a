/// Decides whether a CONNECT may proceed: the seam for authentication.
///
/// The session asks it synchronously while answering CONNECT. A real implementation (a
/// credentials file, a token check) plugs in through ``SessionStateMachine/Settings``.
public protocol StompAuthenticator: Sendable {
    /// - Parameters:
    ///   - login: the CONNECT frame's `login` header.
    ///   - passcode: its `passcode` header.
    ///   - host: its `host` header (the virtual host).
    /// - Returns: `true` to accept the connection.
    func authenticate(login: String?, passcode: String?, host: String?) -> Bool
}

/// Accepts every client: the default until authentication is configured.
public struct AllowAllAuthenticator: StompAuthenticator {
    public init() {}
    public func authenticate(login: String?, passcode: String?, host: String?) -> Bool { true }
}
