import FoundationEssentials
import Logging
import NIOCore
import StompRouting
import Testing
import WebSocketIO

@testable import ClusterNode

/// Password checks wait on a thread pool: how many may wait is bounded, and one whose client
/// hung up is skipped rather than hashed.
@Suite struct AccessControlTests {
    let login = ConnectCredentials(login: "ops", passcode: "change-me", host: nil)
    let client = try! SocketAddress(ipAddress: "192.0.2.7", port: 50_000)

    func accessControl(maxPendingLogins: Int) async throws -> AccessControl {
        let hash = try PasswordHash.make(password: "change-me", logCost: 10)
        let file = FileManager.default.temporaryDirectory.appending(path: "users-\(UUID().uuidString).json")
        let users =
            #"{"users": [{"login": "ops", "password": "\#(hash)", "read": ["/topic/#"], "write": ["/topic/#"]}]}"#
        try Data(users.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try await AccessControl(
            anonymous: .off,
            usersFile: file.path,
            maxPendingLogins: maxPendingLogins,
            logger: Logger(label: "test")
        )
    }

    func check(
        _ decision: AuthenticationDecision,
        connectionClosed: Bool = false
    ) -> Result<SessionIdentity, StompProtocolError>? {
        guard case .later(let work) = decision else { return nil }
        return work(connectionClosed)
    }

    @Test func aPasswordIsCheckedOffTheEventLoop() async throws {
        let access = try await accessControl(maxPendingLogins: 4)
        let result = check(access.authenticate(login, from: client))
        #expect(try result?.get().user == "ops")
    }

    @Test func beyondTheBoundALoginIsRefusedAsBusyAtOnce() async throws {
        let access = try await accessControl(maxPendingLogins: 2)
        let first = access.authenticate(login, from: client)
        let second = access.authenticate(login, from: client)
        guard case .decided(.failure(let busy)) = access.authenticate(login, from: client) else {
            Issue.record("a third check while two wait must be refused at once")
            return
        }
        #expect(busy.kind == .serverBusy)
        #expect(busy.summary == "server busy")
        #expect(busy.detail.contains("limits.pending-logins"))
        // A finished check makes room, whatever its outcome.
        _ = check(first, connectionClosed: true)
        #expect(try check(access.authenticate(login, from: client))?.get().user == "ops")
        _ = check(second)
    }

    @Test func aCheckWhoseClientHungUpIsSkipped() async throws {
        let access = try await accessControl(maxPendingLogins: 1)
        // The right password, but nobody waits for the answer: no hash, a refusal.
        #expect(check(access.authenticate(login, from: client), connectionClosed: true) == .failure(.accessRefused))
        // An unknown login's decoy hash is skipped the same way.
        let stranger = ConnectCredentials(login: "nobody", passcode: "x", host: nil)
        #expect(check(access.authenticate(stranger, from: client), connectionClosed: true) == .failure(.accessRefused))
    }
}
