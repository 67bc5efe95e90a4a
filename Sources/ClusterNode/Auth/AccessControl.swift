import CoreMetrics
import FoundationEssentials
import Logging
import NIOCore
import StompRouting
import Synchronization
import WebSocketIO

/// Who may connect and what they may do: the users file (`auth.users-file`), the keys of the
/// tokens web applications hand out (`auth.jwt-keys`), and the rule for clients that present
/// no login (`auth.anonymous`). Connections ask it at CONNECT, off the event loops for a
/// password or a token, and at each frame after a reload.
final class AccessControl: ClientAuthenticator {
    /// Clients without a login: let in from anywhere, from loopback only (the default, as
    /// RabbitMQ's guest user), or not at all.
    enum AnonymousAccess: String, Sendable, CaseIterable {
        case on, loopback, off
    }

    private let anonymous: AnonymousAccess
    private let usersFile: String?
    private let users: Mutex<UsersFile?>
    private let tokenKeysFile: String?
    private let tokenKeys: Mutex<TokenKeys?>
    private let tokenPolicy: TokenPolicy
    /// The wall clock tokens are checked against (injected by tests).
    private let now: @Sendable () -> Date
    private let reloads = Atomic<Int>(0)
    private let logger: Logger
    private let throttle = LoginThrottle()
    /// Password checks queued for or running on the thread pool, at most `maxPendingLogins`:
    /// each costs a scrypt hash, and clients that only knew a login could otherwise queue
    /// them faster than the pool's threads get through them.
    private let pendingLogins = Atomic<Int>(0)
    private let maxPendingLogins: Int
    private let failures = Dictionary(
        uniqueKeysWithValues: [
            "unknown_user", "bad_password", "anonymous_refused", "throttled", "busy",
            "token_invalid", "token_expired", "token_not_yet_valid", "token_wrong_audience", "token_unusable",
        ].map {
            ($0, Counter(label: "stomp_auth_failures_total", dimensions: [("reason", $0)]))
        }
    )

    /// - Throws: when the users file or the key set can't be read or is invalid: a node must
    ///   not start with fewer users than its operator wrote.
    init(
        anonymous: AnonymousAccess,
        usersFile: String?,
        tokenKeysFile: String? = nil,
        tokenPolicy: TokenPolicy = TokenPolicy(audience: nil, scopePrefix: "stomp.", leeway: .seconds(30)),
        maxPendingLogins: Int = AccessControl.defaultMaxPendingLogins,
        now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger
    ) async throws {
        self.anonymous = anonymous
        self.usersFile = usersFile
        self.tokenKeysFile = tokenKeysFile
        self.tokenPolicy = tokenPolicy
        self.maxPendingLogins = maxPendingLogins
        self.now = now
        self.logger = logger
        self.users = Mutex(try usersFile.map(Self.read))
        self.tokenKeys = Mutex(try await Self.readKeys(tokenKeysFile))
    }

    static let defaultMaxPendingLogins = 64

    /// What the node accepts, for the log line at start.
    var summary: String {
        let count = users.withLock { $0?.users.count }
        let keys = tokenKeys.withLock { $0?.count }
        let login = count.map { "\($0) user(s) from \(usersFile ?? "")" } ?? "no users file"
        let tokens = keys.map { "tokens signed by \($0) key(s) from \(tokenKeysFile ?? "")" } ?? "no tokens"
        return
            "\(login); \(tokens); anonymous clients: \(anonymous == .on ? "from anywhere" : anonymous == .loopback ? "from loopback only" : "refused")"
    }

    var generation: Int { reloads.load(ordering: .acquiring) }

    /// Reads the users file and the key set again. Connected clients keep their connections;
    /// what password users may do follows from their next frame (a token keeps what it
    /// granted until it expires). If either file doesn't read, both stay as they were.
    ///
    /// - Returns: what is loaded now, for the operator.
    func reload() async throws -> String {
        let file = try usersFile.map(Self.read)
        let keys = try await Self.readKeys(tokenKeysFile)
        if let file { users.withLock { $0 = file } }
        if let keys { tokenKeys.withLock { $0 = keys } }
        reloads.add(1, ordering: .releasing)
        logger.notice(
            "credentials reloaded",
            metadata: ["auth.users": "\(file?.users.count ?? 0)", "auth.jwt-keys": "\(keys?.count ?? 0)"]
        )
        return "\(file?.users.count ?? 0) user(s), \(keys?.count ?? 0) token key(s)"
    }

    func currentPermissions(of user: String) -> DestinationPermissions? {
        users.withLock { $0?.users[user]?.permissions }
    }

    func authenticate(_ credentials: ConnectCredentials, from remote: SocketAddress?) -> AuthenticationDecision {
        // Without a users file there is nobody to check a login against: a client that sends
        // one anyway (RabbitMQ's guest/guest, say) is an anonymous client like any other.
        let file = users.withLock { $0 }
        if let keys = tokenKeys.withLock({ $0 }), let passcode = credentials.passcode,
            TokenKeys.looksLikeToken(passcode),
            file?.users[credentials.login ?? ""] == nil
        {
            let address = Self.address(of: remote)
            return refuseIfThrottled(address) ?? authenticate(token: passcode, keys: keys, from: address)
        }
        guard let login = credentials.login, !login.isEmpty, let file else {
            guard anonymous == .on || (anonymous == .loopback && Self.isLoopback(remote)) else {
                failures["anonymous_refused"]?.increment()
                return .decided(.failure(anonymousRefused))
            }
            return .decided(.success(.anonymous))
        }
        let address = Self.address(of: remote)
        if let refused = refuseIfThrottled(address) { return refused }
        guard let user = file.users[login] else {
            failures["unknown_user"]?.increment()
            throttle.recordFailure(address)
            logger.info(
                "login refused",
                metadata: [
                    "auth.login": "\(String(reflecting: String(login.prefix(64))))", "auth.reason": "unknown user",
                ]
            )
            // A known user costs a hash; an unknown one answers as slowly, so timing doesn't
            // tell which logins exist.
            let decoy = Self.decoy
            let passcode = credentials.passcode ?? ""
            return checkPassword {
                _ = decoy.verify(passcode)
                return .failure(.accessRefused)
            }
        }
        let passcode = credentials.passcode ?? ""
        let failures = failures["bad_password"]
        let logger = logger
        let throttle = throttle
        return checkPassword {
            guard user.password.verify(passcode) else {
                failures?.increment()
                throttle.recordFailure(address)
                logger.info(
                    "login refused",
                    metadata: [
                        "auth.login": "\(String(reflecting: String(login.prefix(64))))",
                        "auth.reason": "wrong passcode",
                    ]
                )
                return .failure(.accessRefused)
            }
            return .success(SessionIdentity(user: user.login, permissions: user.permissions))
        }
    }

    /// Runs `hash` on the thread pool if fewer than `maxPendingLogins` checks wait there, and
    /// skips it when the client hung up before its turn came.
    private func checkPassword(
        _ hash: @escaping @Sendable () -> Result<SessionIdentity, StompProtocolError>
    ) -> AuthenticationDecision {
        guard pendingLogins.add(1, ordering: .relaxed).newValue <= maxPendingLogins else {
            pendingLogins.subtract(1, ordering: .relaxed)
            failures["busy"]?.increment()
            return .decided(.failure(busy))
        }
        return .later { [self] connectionClosed in
            defer { pendingLogins.subtract(1, ordering: .relaxed) }
            return connectionClosed ? .failure(.accessRefused) : hash()
        }
    }

    /// A passcode that is a token (the login, if any, is not looked at: the token's `sub`
    /// names the user). Verifying a signature is quick, but not free: off the event loop.
    private func authenticate(token: String, keys: TokenKeys, from address: String) -> AuthenticationDecision {
        let (policy, now, failures, throttle, logger) = (tokenPolicy, now, failures, throttle, logger)
        return .awaiting {
            let checkedAt = now()
            switch await keys.verify(token, policy: policy, now: checkedAt) {
            case .failure(let refusal):
                failures[refusal.reason]?.increment()
                throttle.recordFailure(address)
                logger.info(
                    "token refused",
                    metadata: ["auth.reason": "\(refusal.reason)", "auth.detail": "\(refusal.error.detail)"]
                )
                return .failure(refusal.error)
            case .success(let grant):
                let remaining = grant.validUntil.timeIntervalSince(checkedAt)
                let expiresAt = NIODeadline.now() + .nanoseconds(Int64(min(remaining, 365 * 86_400) * 1e9))
                return .success(
                    SessionIdentity(
                        user: grant.user,
                        permissions: grant.permissions,
                        credential: .token(expiresAt: expiresAt)
                    )
                )
            }
        }
    }

    /// An address that failed too often lately is refused at once, without the cost of a
    /// hash or a signature check.
    private func refuseIfThrottled(_ address: String) -> AuthenticationDecision? {
        guard throttle.isThrottled(address) else { return nil }
        failures["throttled"]?.increment()
        return .decided(.failure(Self.throttled))
    }

    /// What failed logins are counted against.
    private static func address(of remote: SocketAddress?) -> String { remote?.ipAddress ?? "?" }

    private static let throttled = StompProtocolError(
        .notAuthorized,
        "access refused",
        detail: "Too many failed logins from this address; try again in a minute."
    )

    private var busy: StompProtocolError {
        StompProtocolError(
            .serverBusy,
            "server busy",
            detail:
                "\(maxPendingLogins) logins are being checked already (limits.pending-logins); try again in a moment."
        )
    }

    private var anonymousRefused: StompProtocolError {
        StompProtocolError(
            .notAuthorized,
            "access refused",
            detail: anonymous == .off
                ? "This node accepts no anonymous clients: CONNECT with a login and passcode."
                : "Anonymous clients are accepted from this node's own machine only (auth.anonymous=loopback): CONNECT with a login and passcode."
        )
    }

    /// 127.0.0.0/8, ::1, or 127.x mapped into IPv6.
    private static func isLoopback(_ address: SocketAddress?) -> Bool {
        guard let ip = address?.ipAddress else { return false }
        return ip.hasPrefix("127.") || ip == "::1" || ip.lowercased().hasPrefix("::ffff:127.")
    }

    private static func read(_ path: String) throws -> UsersFile {
        guard let text = ClusterConfiguration.readFile(path) else {
            throw SettingsError(description: "cannot read auth.users-file \(path)")
        }
        do {
            return try UsersFile(path: path, contents: Array(text.utf8))
        } catch {
            throw SettingsError(description: "\(error)")
        }
    }

    private static func readKeys(_ path: String?) async throws -> TokenKeys? {
        guard let path else { return nil }
        guard let text = ClusterConfiguration.readFile(path) else {
            throw SettingsError(description: "cannot read auth.jwt-keys \(path)")
        }
        do {
            return try await TokenKeys.load(path: path, contents: Array(text.utf8))
        } catch {
            throw SettingsError(description: "\(error)")
        }
    }

    /// A hash of nothing anyone knows, checked for unknown logins.
    private static let decoy = try! PasswordHash.make(password: "decoy \(UInt64.random(in: 0...UInt64.max))")
}
