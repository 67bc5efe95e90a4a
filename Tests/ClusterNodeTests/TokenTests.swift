import FoundationEssentials
import JWTKit
import StompRouting
import Testing

@testable import ClusterNode

/// A token's claims, checked with an injected clock: exp and nbf within the leeway, the
/// audience, the subject, and the scopes that become permissions.
@Suite struct TokenPolicyTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let policy = TokenPolicy(audience: "broker", scopePrefix: "stomp.", leeway: .seconds(30))

    func claims(
        exp: TimeInterval? = 300,
        nbf: TimeInterval? = nil,
        aud: [String]? = ["broker"],
        sub: String? = "web-7",
        scope: [String] = []
    ) -> TokenClaims {
        TokenClaims(
            sub: sub.map(SubjectClaim.init(value:)),
            exp: exp.map { ExpirationClaim(value: now.addingTimeInterval($0)) },
            nbf: nbf.map { NotBeforeClaim(value: now.addingTimeInterval($0)) },
            aud: aud.map(AudienceClaim.init(value:)),
            scope: ScopeClaim(names: scope)
        )
    }

    @Test func scopesWithThePrefixBecomePermissions() throws {
        let grant = try policy.grant(
            claims(scope: ["openid", "stomp.read:/topic/prices.#", "stomp.write:/queue/jobs", "other.write:/topic/#"]),
            now: now
        ).get()
        #expect(grant.user == "web-7")
        #expect(grant.permissions.mayRead(.topic("prices.eur")))
        #expect(!grant.permissions.mayRead(.topic("news")))
        #expect(grant.permissions.mayWrite(.queue("jobs")))
        #expect(!grant.permissions.mayWrite(.topic("prices.eur")))
        #expect(grant.validUntil == now.addingTimeInterval(330))
    }

    @Test func anotherPrefixCanBeConfigured() throws {
        let rabbit = TokenPolicy(audience: nil, scopePrefix: "rabbitmq.", leeway: .zero)
        let grant = try rabbit.grant(
            claims(aud: nil, scope: ["rabbitmq.read:/topic/#", "stomp.write:/topic/#"]),
            now: now
        ).get()
        #expect(grant.permissions.mayRead(.topic("a.b")))
        #expect(!grant.permissions.mayWrite(.topic("a.b")))
    }

    @Test func noScopeMeansNoPermissionButStillAUser() throws {
        let grant = try policy.grant(claims(), now: now).get()
        #expect(!grant.permissions.mayRead(.topic("a")))
        #expect(!grant.permissions.mayWrite(.queue("a")))
    }

    @Test func expiryAndNotBeforeHoldWithinTheLeeway() {
        #expect(policy.grant(claims(exp: -29), now: now).isSuccess)
        #expect(policy.grant(claims(exp: -30), now: now) == .failure(.expired))
        #expect(policy.grant(claims(nbf: 29), now: now).isSuccess)
        #expect(policy.grant(claims(nbf: 31), now: now) == .failure(.notYetValid))
        #expect(policy.grant(claims(exp: nil), now: now) == .failure(.unusable("it has no expiry (exp)")))
    }

    @Test func theAudienceMustNameThisBrokerWhenOneIsSet() {
        #expect(policy.grant(claims(aud: ["other", "broker"]), now: now).isSuccess)
        #expect(policy.grant(claims(aud: ["other"]), now: now) == .failure(.wrongAudience))
        #expect(policy.grant(claims(aud: nil), now: now) == .failure(.wrongAudience))
        let anyAudience = TokenPolicy(audience: nil, scopePrefix: "stomp.", leeway: .zero)
        #expect(anyAudience.grant(claims(aud: nil), now: now).isSuccess)
    }

    @Test func theSubjectNamesTheUser() {
        for sub in [nil, "", String(repeating: "x", count: 257)] {
            guard case .failure(.unusable) = policy.grant(claims(sub: sub), now: now) else {
                Issue.record("sub \(String(describing: sub?.prefix(8))) was accepted")
                continue
            }
        }
    }

    @Test func badOrTooManyPatternsRefuseTheToken() {
        guard case .failure(.unusable(let why)) = policy.grant(claims(scope: ["stomp.read:/exchange/x"]), now: now)
        else {
            Issue.record("a scope naming no destination was accepted")
            return
        }
        #expect(why.contains("not a destination pattern"))
        let many = (0...TokenPolicy.maximumPatterns).map { "stomp.read:/topic/t\($0)" }
        #expect(
            policy.grant(claims(scope: many), now: now)
                == .failure(.unusable("it grants more than 256 destination patterns"))
        )
    }

    @Test func scopeIsAStringOrAList() throws {
        let decoder = JSONDecoder()
        #expect(try decoder.decode(ScopeClaim.self, from: Data(#""a b  c""#.utf8)).names == ["a", "b", "c"])
        #expect(try decoder.decode(ScopeClaim.self, from: Data(#"["a", "b c"]"#.utf8)).names == ["a", "b c"])
    }
}

/// Which key and algorithm a token may use, decided before jwt-kit checks a signature.
@Suite struct TokenKeysTests {
    static let secret = Array("0123456789abcdef0123456789abcdef".utf8)
    static let encodedSecret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"
    let policy = TokenPolicy(audience: nil, scopePrefix: "stomp.", leeway: .seconds(30))

    func load(_ json: String) async throws -> TokenKeys {
        try await TokenKeys.load(path: "keys.json", contents: Array(json.utf8))
    }

    func loadError(_ json: String) async -> String {
        do {
            _ = try await load(json)
            return "loaded"
        } catch {
            return "\(error)"
        }
    }

    func sign(
        kid: String?,
        algorithm: DigestAlgorithm = .sha256,
        secret: [UInt8] = secret,
        exp: Date = Date().addingTimeInterval(300)
    ) async throws -> String {
        let signer = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: algorithm)
        var header = JWTHeader()
        if let kid { header.kid = kid }
        let claims = TokenClaims(
            sub: SubjectClaim(value: "u"),
            exp: ExpirationClaim(value: exp),
            nbf: nil,
            aud: nil,
            scope: ScopeClaim(names: ["stomp.read:/topic/#"])
        )
        return try await signer.sign(claims, header: header)
    }

    @Test func aTokenNamesItsKeyAndUsesItsAlgorithm() async throws {
        let long = Self.secret + Self.secret
        let encodedLong = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg"
        let keys = try await load(
            #"{"keys": [{"kty": "oct", "kid": "a", "alg": "HS256", "k": "\#(Self.encodedSecret)"}, {"kty": "oct", "kid": "b", "k": "\#(encodedLong)"}, {"kty": "oct", "kid": "c", "k": "\#(Self.encodedSecret)"}]}"#
        )
        #expect(keys.count == 3)
        #expect(try await keys.verify(sign(kid: "a"), policy: policy, now: Date()).get().user == "u")
        // Keys b and c state no alg: the HMAC algorithms their length allows go with them.
        #expect(
            try await keys.verify(sign(kid: "b", algorithm: .sha512, secret: long), policy: policy, now: Date()).get()
                .user == "u"
        )
        #expect(
            try await keys.verify(sign(kid: "c", algorithm: .sha256), policy: policy, now: Date()).get().user == "u"
        )
        #expect(keys.algorithms["c"] == ["HS256"])
        #expect(
            try await keys.verify(sign(kid: "a", algorithm: .sha384, secret: long), policy: policy, now: Date())
                == .failure(.invalid("the token's algorithm does not go with its key"))
        )
        #expect(
            try await keys.verify(sign(kid: nil), policy: policy, now: Date())
                == .failure(.invalid("the token names no key (kid) and this node has several"))
        )
        #expect(
            try await keys.verify(sign(kid: "d"), policy: policy, now: Date())
                == .failure(.invalid("the token's key (kid) is not one of this node's"))
        )
        let otherSecret = Array("another secret of thirty-two byt".utf8)
        #expect(
            try await keys.verify(sign(kid: "a", secret: otherSecret), policy: policy, now: Date())
                == .failure(.invalid("its signature does not verify"))
        )
        #expect(
            try await keys.verify(sign(kid: "a", exp: Date().addingTimeInterval(-60)), policy: policy, now: Date())
                == .failure(.expired)
        )
    }

    @Test func oneKeyNeedsNoKid() async throws {
        let keys = try await load(#"{"keys": [{"kty": "oct", "k": "\#(Self.encodedSecret)"}]}"#)
        #expect(try await keys.verify(sign(kid: nil), policy: policy, now: Date()).get().user == "u")
    }

    @Test func unsignedAndMalformedTokensAreRefused() async throws {
        let keys = try await load(#"{"keys": [{"kty": "oct", "k": "\#(Self.encodedSecret)"}]}"#)
        // {"alg":"none"} . {"sub":"u","exp":9999999999} .
        let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ."
        #expect(
            await keys.verify(unsigned, policy: policy, now: Date())
                == .failure(.invalid("the token is not signed (alg none)"))
        )
        for garbage in ["a.b.c", "..", "eyJ.eyJ.", String(repeating: "A", count: 5000) + ".x.y"] {
            #expect(
                await keys.verify(garbage, policy: policy, now: Date())
                    == .failure(.invalid("it is not a well-formed JWT"))
            )
        }
    }

    @Test func aBrokenSetIsRefusedWithTheKeyItNames() async {
        #expect(await loadError("[]").contains("is not a JSON Web Key Set"))
        #expect(await loadError(#"{"keys": []}"#).contains("holds no keys"))
        #expect(
            await loadError(
                #"{"keys": [{"kty": "oct", "k": "\#(Self.encodedSecret)"}, {"kty": "oct", "kid": "b", "k": "\#(Self.encodedSecret)"}]}"#
            )
            .contains("key 1: a set of several keys needs a \"kid\" on each")
        )
        #expect(
            await loadError(
                #"{"keys": [{"kty": "oct", "kid": "a", "k": "\#(Self.encodedSecret)"}, {"kty": "oct", "kid": "a", "k": "\#(Self.encodedSecret)"}]}"#
            )
            .contains("kid appears twice")
        )
        #expect(
            await loadError(#"{"keys": [{"kty": "oct", "k": "c2hvcnQ"}]}"#).contains(
                "an HS256 key must be at least 32 bytes (it has 5)"
            )
        )
        #expect(
            await loadError(#"{"keys": [{"kty": "oct", "alg": "RS256", "k": "\#(Self.encodedSecret)"}]}"#).contains(
                "does not go with a key of type oct"
            )
        )
        #expect(
            await loadError(#"{"keys": [{"kty": "oct", "use": "enc", "k": "\#(Self.encodedSecret)"}]}"#).contains(
                "not \"sig\""
            )
        )
        #expect(
            await loadError(#"{"keys": [{"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}]}"#).contains(
                "P-256, P-384 or P-521"
            )
        )
        #expect(await loadError(#"{"keys": [{"kty": "DSA"}]}"#).contains("is not one of oct, RSA, EC, OKP"))
    }
}

extension Result {
    fileprivate var isSuccess: Bool {
        if case .success = self { true } else { false }
    }
}
