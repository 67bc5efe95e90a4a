import FoundationEssentials
import JWTKit

/// The keys that sign the tokens web applications hand their users, read from
/// `auth.jwt-keys`: a JSON Web Key Set (RFC 7517) of `oct` keys for HS256/384/512, `RSA` keys
/// for RS/PS256/384/512, `EC` keys for ES256/384/512 and `OKP` keys for EdDSA.
///
/// jwt-kit checks signatures; this decides which key and which algorithm a token may use
/// before it gets there. A token names its key with `kid` (it may leave it out only when there
/// is one key), and its `alg` must be one its key allows: the key's own `alg` when the set
/// gives one, else those of the key's type. So `none`, an unknown `kid`, and an HMAC token
/// "signed" with a public RSA key are all refused before any signature is looked at.
struct TokenKeys: Sendable {
    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    /// The algorithms each key may verify, by `kid` ("" for the one key without one).
    let algorithms: [String: Set<String>]
    /// One verifier per key and algorithm, each holding that one signer only: jwt-kit falls
    /// back to a collection's default key for a `kid` it doesn't hold, and none here may.
    private let verifiers: [String: JWTKeyCollection]

    var count: Int { algorithms.count }

    /// The verifier for a token's header, or why there is none.
    func verifier(kid: String?, algorithm: String?) -> Result<JWTKeyCollection, TokenRefusal> {
        guard let algorithm, algorithm != "none" else {
            return .failure(.invalid("the token is not signed (alg none)"))
        }
        let kid = kid ?? ""
        guard let allowed = algorithms[kid] else {
            return .failure(
                .invalid(
                    kid.isEmpty
                        ? "the token names no key (kid) and this node has several"
                        : "the token's key (kid) is not one of this node's"
                )
            )
        }
        guard allowed.contains(algorithm), let verifier = verifiers[Self.verifierName(kid, algorithm)] else {
            return .failure(.invalid("the token's algorithm does not go with its key"))
        }
        return .success(verifier)
    }

    private static func verifierName(_ kid: String, _ algorithm: String) -> String { "\(kid)#\(algorithm)" }

    /// Reads and checks the whole set: a node doesn't start (or reload) with a key it can't use.
    static func load(path: String, contents: [UInt8]) async throws -> TokenKeys {
        let keys: [Entry]
        do {
            keys = try JSONDecoder().decode(Document.self, from: Data(contents)).keys
        } catch {
            throw Invalid(description: "auth.jwt-keys \(path) is not a JSON Web Key Set ({\"keys\": [...]}): \(error)")
        }
        guard !keys.isEmpty else { throw Invalid(description: "auth.jwt-keys \(path) holds no keys") }
        var algorithms: [String: Set<String>] = [:]
        var verifiers: [String: JWTKeyCollection] = [:]
        for (index, key) in keys.enumerated() {
            let kid = key.kid ?? ""
            let name =
                "auth.jwt-keys \(path), key \(index + 1)\(kid.isEmpty ? "" : " (\(String(reflecting: String(kid.prefix(64)))))")"
            guard !kid.isEmpty || keys.count == 1 else {
                throw Invalid(description: "\(name): a set of several keys needs a \"kid\" on each")
            }
            guard algorithms[kid] == nil else { throw Invalid(description: "\(name): kid appears twice") }
            do {
                let added = try await verifiersOf(key)
                algorithms[kid] = Set(added.keys)
                for (algorithm, verifier) in added { verifiers[verifierName(kid, algorithm)] = verifier }
            } catch let error as Invalid {
                throw Invalid(description: "\(name): \(error.description)")
            } catch {
                throw Invalid(description: "\(name): \(error)")
            }
        }
        return TokenKeys(algorithms: algorithms, verifiers: verifiers)
    }

    private struct Document: Decodable {
        var keys: [Entry]
    }

    /// One key of the set: the fields read here, and the whole key as jwt-kit reads it.
    private struct Entry: Decodable {
        var kty: String
        var kid: String?
        var alg: String?
        var use: String?
        var crv: String?
        var k: String?
        var jwk: JWK?

        private enum CodingKeys: String, CodingKey {
            case kty, kid, alg, use, crv, k
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            kty = try container.decode(String.self, forKey: .kty)
            kid = try container.decodeIfPresent(String.self, forKey: .kid)
            alg = try container.decodeIfPresent(String.self, forKey: .alg)
            use = try container.decodeIfPresent(String.self, forKey: .use)
            crv = try container.decodeIfPresent(String.self, forKey: .crv)
            k = try container.decodeIfPresent(String.self, forKey: .k)
            // Read again by jwt-kit; when it can't, the checks above say why in terms of the set.
            jwk = kty == "oct" ? nil : try? JWK(from: decoder)
        }
    }

    /// One verifier for each algorithm the key may verify.
    private static func verifiersOf(_ key: Entry) async throws -> [String: JWTKeyCollection] {
        let type = key.kty
        if let use = key.use, use != "sig" {
            throw Invalid(description: "\"use\" is \(String(reflecting: use)), not \"sig\"")
        }
        let allowed: Set<String>
        switch type {
        case "oct": allowed = ["HS256", "HS384", "HS512"]
        case "RSA": allowed = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
        case "EC":
            switch key.crv {
            case "P-256": allowed = ["ES256"]
            case "P-384": allowed = ["ES384"]
            case "P-521": allowed = ["ES512"]
            default: throw Invalid(description: "EC keys must be on P-256, P-384 or P-521")
            }
        case "OKP": allowed = ["EdDSA"]
        default: throw Invalid(description: "key type \(String(reflecting: type)) is not one of oct, RSA, EC, OKP")
        }
        if let stated = key.alg, !allowed.contains(stated) {
            throw Invalid(description: "\"alg\" \(String(reflecting: stated)) does not go with a key of type \(type)")
        }
        let algorithms = key.alg.map { [$0] } ?? Array(allowed)
        var verifiers: [String: JWTKeyCollection] = [:]
        if type == "oct" {
            // jwt-kit's JWK type has no symmetric keys; its HMAC keys take the bytes.
            guard let encoded = key.k, let secret = base64URLDecoded(encoded) else {
                throw Invalid(description: "an oct key needs its secret, base64url-encoded, in \"k\"")
            }
            // RFC 7518 3.2: a key at least as long as the hash, so a short key goes with the
            // shorter hashes only.
            let digests: [String: (DigestAlgorithm, Int)] = [
                "HS256": (.sha256, 32), "HS384": (.sha384, 48), "HS512": (.sha512, 64),
            ]
            for algorithm in algorithms {
                guard let (digest, size) = digests[algorithm] else { continue }
                guard secret.count >= size else {
                    if key.alg != nil || size == 32 {
                        throw Invalid(
                            description: "an \(algorithm) key must be at least \(size) bytes (it has \(secret.count))"
                        )
                    }
                    continue
                }
                verifiers[algorithm] = await JWTKeyCollection().add(
                    hmac: HMACKey(from: secret),
                    digestAlgorithm: digest
                )
            }
            return verifiers
        }
        guard var jwk = key.jwk else { throw Invalid(description: "not a key jwt-kit can read") }
        if jwk.keyIdentifier == nil { jwk.keyIdentifier = "key" }
        for algorithm in algorithms {
            var pinned = jwk
            // A key without its own `alg` gets one per verifier, so each verifies one only.
            pinned.algorithm = JWK.Algorithm(rawValue: algorithm)
            verifiers[algorithm] = try await JWTKeyCollection().add(jwk: pinned)
        }
        return verifiers
    }

    private static func base64URLDecoded(_ text: String) -> [UInt8]? {
        var base64 = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        while base64.utf8.count % 4 != 0 { base64.append("=") }
        return Data(base64Encoded: base64).map(Array.init)
    }
}

extension TokenKeys {
    /// Checks a token's header against the keys, its signature with jwt-kit, then its claims.
    func verify(_ token: String, policy: TokenPolicy, now: Date) async -> Result<TokenPolicy.Grant, TokenRefusal> {
        let header: JWTHeader
        do {
            header = try DefaultJWTParser().parse(Array(token.utf8), as: TokenClaims.self).header
        } catch {
            return .failure(.invalid("it is not a well-formed JWT"))
        }
        let claims: TokenClaims
        switch verifier(kid: header.kid, algorithm: header.alg) {
        case .failure(let refusal):
            return .failure(refusal)
        case .success(let verifier):
            do {
                claims = try await verifier.verify(token, as: TokenClaims.self)
            } catch {
                return .failure(.invalid("its signature does not verify"))
            }
        }
        return policy.grant(claims, now: now)
    }

    /// Three base64url parts joined by dots: a passcode of this shape is a token.
    static func looksLikeToken(_ passcode: String) -> Bool {
        let parts = passcode.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0].count > 0 && parts[1].count > 0
    }
}
