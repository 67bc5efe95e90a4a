import NIOCore

/// What a CONNECT presents to be let in.
public struct ConnectCredentials: Sendable, Equatable {
    /// The `login` header.
    public var login: String?
    /// The `passcode` header: a password or a token.
    public var passcode: String?
    /// The `host` header (the virtual host).
    public var host: String?

    public init(login: String?, passcode: String?, host: String?) {
        self.login = login
        self.passcode = passcode
        self.host = host
    }
}

/// Who a session belongs to and what it may read and write. Checked at every SUBSCRIBE and
/// SEND, so a change (a reloaded users file) applies from the next frame.
public struct SessionIdentity: Sendable, Equatable {
    /// What the client proved itself with, which says what can change its permissions later.
    public enum Credential: Sendable, Equatable {
        /// Nothing: an anonymous client.
        case none
        /// A password checked against a list of users that a reload may change.
        case password
        /// A signed token: its permissions are fixed, and it is good until `expiresAt`.
        case token(expiresAt: NIODeadline)
    }

    /// `nil` for an anonymous client.
    public var user: String?
    public var permissions: DestinationPermissions
    public var credential: Credential

    public init(user: String?, permissions: DestinationPermissions, credential: Credential = .password) {
        self.user = user
        self.permissions = permissions
        self.credential = credential
    }

    /// An anonymous client allowed everything: the session's default when nothing outside
    /// it decides (``SessionStateMachine/Settings/authentication``).
    public static let anonymous = SessionIdentity(user: nil, permissions: .everything, credential: .none)

    /// When the connection must end because its credential does; `nil` for never.
    public var expiresAt: NIODeadline? {
        if case .token(let deadline) = credential { deadline } else { nil }
    }

    /// How ERRORs and logs name the client.
    public var name: String { user.map { "user '\($0.prefix(64))'" } ?? "an anonymous client" }
}

/// Who decides a CONNECT.
public enum SessionAuthentication: Sendable, Equatable {
    /// Nobody: every client is ``SessionIdentity/anonymous``, decided at once.
    case none
    /// The shell: the session asks with ``SessionStateMachine/Action/authenticate(_:)`` and
    /// waits for ``SessionStateMachine/authenticated(_:now:into:)`` (a password hash is
    /// checked off the event loop).
    case external
}

extension StompProtocolError {
    /// The one answer to a failed login, whatever failed: nobody learns which logins exist.
    public static let accessRefused = StompProtocolError(
        .notAuthorized,
        "access refused",
        detail: "The login and passcode were not accepted."
    )
}

extension StompProtocolError {
    /// The end of a connection whose token expired.
    public static let credentialsExpired = StompProtocolError(
        .credentialsExpired,
        "credentials expired",
        detail: "The token this connection logged in with has expired; connect again with a fresh one."
    )
}
