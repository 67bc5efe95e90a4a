import NIOCore
import StompRouting
import Testing

@testable import ClusterNode

@Suite struct PasswordHashTests {
    @Test func aHashVerifiesItsPasswordAndNoOther() throws {
        // The cheapest cost the parser accepts keeps the test fast; the format is the same.
        let hash = try PasswordHash.make(password: "correct horse", logCost: 10)
        #expect(hash.verify("correct horse"))
        #expect(!hash.verify("correct horsf"))
        #expect(!hash.verify(""))
        let text = hash.description
        #expect(text.hasPrefix("$scrypt$ln=10,r=8,p=1$"))
        let encoded = text.split(separator: "$").suffix(2)
        #expect(encoded.allSatisfy { !$0.contains("=") })  // unpadded base64
        #expect(try PasswordHash(parsing: text) == hash)
        #expect(try PasswordHash(parsing: text).verify("correct horse"))
    }

    @Test func twoHashesOfOnePasswordDifferBySalt() throws {
        let one = try PasswordHash.make(password: "pw", logCost: 10)
        let two = try PasswordHash.make(password: "pw", logCost: 10)
        #expect(one != two)
        #expect(one.verify("pw") && two.verify("pw"))
    }

    /// The derivation is scrypt itself: the reference vector of RFC 7914, section 12.
    @Test func derivesTheScryptReferenceVector() throws {
        let derived = try PasswordHash.derive(
            "password",
            salt: Array("NaCl".utf8),
            logCost: 10,
            blockSize: 8,
            parallelism: 16,
            length: 64
        )
        let expected =
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        #expect(derived.map { String($0, radix: 16).leftPadded(to: 2) }.joined() == expected)
    }

    @Test func badStringsAreRefusedWithAReason() {
        for bad in [
            "plaintext", "$2b$12$bcryptisnotscrypt", "$scrypt$ln=15,r=8$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=15,r=8,p=1$!!$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=15,r=8,p=1,x=2$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$aGFzaA",
        ] {
            #expect(throws: PasswordHash.Invalid.self, "\(bad)") { try PasswordHash(parsing: bad) }
        }
    }
}

@Suite struct UsersFileTests {
    private static let hash = try! PasswordHash.make(password: "secret", logCost: 10).description

    private func read(_ json: String) throws -> UsersFile {
        try UsersFile(path: "users.json", contents: Array(json.utf8))
    }

    private func failure(_ json: String) -> String {
        do {
            _ = try read(json)
            return "no error"
        } catch {
            return "\(error)"
        }
    }

    @Test func usersWithTheirPasswordsAndPermissions() throws {
        let file = try read(
            """
            {"users": [
              {"login": "alice", "password": "\(Self.hash)", "read": ["/topic/prices.#", "/queue/jobs"], "write": ["/queue/jobs"]},
              {"login": "bob", "password": "\(Self.hash)"}
            ]}
            """
        )
        let alice = try #require(file.users["alice"])
        #expect(alice.password.verify("secret"))
        #expect(alice.permissions.mayRead(.topic("prices.*")))
        #expect(!alice.permissions.mayRead(.topic("#")))
        #expect(alice.permissions.mayWrite(.queue("jobs")))
        let bob = try #require(file.users["bob"])
        #expect(!bob.permissions.mayRead(.topic("anything")))  // nothing unless granted
        #expect(file.users["carol"] == nil)
    }

    @Test func mistakesStopTheReadAndSayWhere() {
        #expect(failure("{}").contains("users file users.json is not of the form"))
        #expect(
            failure(#"{"users": [{"login": "a", "password": "plain"}]}"#).contains(
                "user 1 (a): password: not a PHC scrypt string"
            )
        )
        #expect(
            failure(#"{"users": [{"login": "a", "password": "\#(Self.hash)", "reads": ["/topic/#"]}]}"#).contains(
                "unknown key 'reads'"
            )
        )
        #expect(
            failure(#"{"users": [{"login": "a", "password": "\#(Self.hash)", "read": ["prices.#"]}]}"#).contains(
                "user 1 (a)"
            )
        )
        #expect(
            failure(
                #"{"users": [{"login": "a", "password": "\#(Self.hash)"}, {"login": "a", "password": "\#(Self.hash)"}]}"#
            ).contains("login appears twice")
        )
        #expect(failure(#"{"users": [{"login": "", "password": "\#(Self.hash)"}]}"#).contains("login must be"))
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

@Suite struct LoginThrottleTests {
    @Test func anAddressIsRefusedAfterItsFailuresUntilItsWindowEnds() {
        let throttle = LoginThrottle(failuresPerWindow: 3, window: .seconds(60), capacity: 100)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for _ in 0..<3 {
            #expect(!throttle.isThrottled("10.0.0.1", now: start))
            throttle.recordFailure("10.0.0.1", now: start)
        }
        #expect(throttle.isThrottled("10.0.0.1", now: start + .seconds(59)))
        #expect(!throttle.isThrottled("10.0.0.2", now: start))  // others are not affected
        #expect(!throttle.isThrottled("10.0.0.1", now: start + .seconds(60)))
    }

    @Test func itRemembersABoundedNumberOfAddresses() {
        let throttle = LoginThrottle(failuresPerWindow: 1, window: .seconds(60), capacity: 50)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for index in 0..<1_000 {
            throttle.recordFailure("10.0.\(index / 256).\(index % 256)", now: start + .milliseconds(Int64(index)))
        }
        #expect(throttle.trackedAddresses <= 50)
        // The latest ones are the ones kept.
        #expect(throttle.isThrottled("10.0.3.231", now: start + .seconds(1)))
    }
}
