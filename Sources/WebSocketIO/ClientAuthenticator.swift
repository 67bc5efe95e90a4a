import NIOCore
import StompRouting

/// Decides who a CONNECT is (a users file, tokens, the rules for anonymous clients) and
/// answers what a user may do now, for connections to pick up a reload.
public protocol ClientAuthenticator: Sendable {
    /// Called on the connection's event loop, so it must not block: work that is slow on
    /// purpose (a password hash) goes in ``AuthenticationDecision/later(_:)`` and runs on a
    /// thread pool, exactly once, whether or not its connection is still there.
    func authenticate(_ credentials: ConnectCredentials, from remote: SocketAddress?) -> AuthenticationDecision

    /// Bumped by every reload; a connection compares it at each frame.
    var generation: Int { get }

    /// What `user`, who logged in with a password, may do after the latest reload; `nil`
    /// once the user is gone. (A token's permissions are its own and don't follow reloads.)
    func currentPermissions(of user: String) -> DestinationPermissions?
}

public enum AuthenticationDecision: Sendable {
    /// Known at once.
    case decided(Result<SessionIdentity, StompProtocolError>)
    /// Known after `work`, which blocks and so runs off the event loops. It is told whether
    /// the connection that asked has closed meanwhile; then nobody waits for the answer and
    /// it should skip the slow part (a client that queued hashes and hung up costs nothing).
    case later(@Sendable (_ connectionClosed: Bool) -> Result<SessionIdentity, StompProtocolError>)
    /// Known after `work`, which awaits (a token's signature check) but doesn't block.
    case awaiting(@Sendable () async -> Result<SessionIdentity, StompProtocolError>)
}
