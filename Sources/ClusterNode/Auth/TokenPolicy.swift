import FoundationEssentials
import JWTKit
import StompRouting

/// The claims read from a token. Only the signature is checked by jwt-kit; the claims are
/// checked by ``TokenPolicy``, with the node's clock and leeway.
struct TokenClaims: JWTPayload {
    var sub: SubjectClaim?
    var exp: ExpirationClaim?
    var nbf: NotBeforeClaim?
    var aud: AudienceClaim?
    var scope: ScopeClaim?

    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// OAuth 2's `scope`: one string of names separated by spaces (RFC 8693), or a list of them.
struct ScopeClaim: Codable, Sendable, Equatable {
    var names: [String]

    init(names: [String]) { self.names = names }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let list = try? container.decode([String].self) {
            names = list
        } else {
            names = try container.decode(String.self).split(separator: " ").map(String.init)
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(names.joined(separator: " "))
    }
}

/// Why a token was refused: what the client is told, and the reason it is counted under.
enum TokenRefusal: Error, Equatable {
    /// Not a token this node can verify: malformed, unsigned, an unknown key, a bad signature.
    case invalid(String)
    case expired
    case notYetValid
    case wrongAudience
    /// Signed and current, but its claims don't make a user: no `sub`, no `exp`, a bad scope.
    case unusable(String)

    /// The label of `stomp_auth_failures_total`.
    var reason: String {
        switch self {
        case .invalid: "token_invalid"
        case .expired: "token_expired"
        case .notYetValid: "token_not_yet_valid"
        case .wrongAudience: "token_wrong_audience"
        case .unusable: "token_unusable"
        }
    }

    /// The ERROR's text. A token's holder learns what is wrong with it, which tells them
    /// nothing of the node's keys.
    var error: StompProtocolError {
        let detail =
            switch self {
            case .invalid(let why): "The token was not accepted: \(why)."
            case .expired: "The token has expired."
            case .notYetValid: "The token is not valid yet (nbf)."
            case .wrongAudience: "The token is not meant for this broker (aud)."
            case .unusable(let why): "The token was not accepted: \(why)."
            }
        return StompProtocolError(.notAuthorized, "access refused", detail: detail)
    }
}

/// What a verified token's claims must hold for its holder to be let in, and what they may
/// then do: `sub` names the user, `exp` is required (a token that never expires is a
/// password nobody can change), `nbf` and `exp` hold within `leeway`, `aud` names
/// `audience` when one is set, and the `scope` names that start with `scopePrefix` give the
/// permissions, RabbitMQ-style: `stomp.read:/topic/prices.#`, `stomp.write:/queue/jobs`.
struct TokenPolicy: Sendable {
    var audience: String?
    var scopePrefix: String
    var leeway: Duration

    /// More would make every SUBSCRIBE and SEND slow to check.
    static let maximumPatterns = 256

    struct Grant: Equatable {
        var user: String
        var permissions: DestinationPermissions
        /// When the connection ends: `exp` plus the leeway.
        var validUntil: Date
    }

    func grant(_ claims: TokenClaims, now: Date) -> Result<Grant, TokenRefusal> {
        let leeway = TimeInterval(leeway.components.seconds) + TimeInterval(leeway.components.attoseconds) / 1e18
        guard let expiry = claims.exp?.value else { return .failure(.unusable("it has no expiry (exp)")) }
        let validUntil = expiry.addingTimeInterval(leeway)
        guard now < validUntil else { return .failure(.expired) }
        if let notBefore = claims.nbf?.value, now.addingTimeInterval(leeway) < notBefore {
            return .failure(.notYetValid)
        }
        if let audience {
            guard let audiences = claims.aud?.value, audiences.contains(audience) else {
                return .failure(.wrongAudience)
            }
        }
        guard let user = claims.sub?.value, !user.isEmpty, user.utf8.count <= 256 else {
            return .failure(.unusable("its subject (sub) must name the user in 1 to 256 bytes"))
        }
        var read: [String] = []
        var write: [String] = []
        for name in claims.scope?.names ?? [] where name.hasPrefix(scopePrefix) {
            let rest = name.dropFirst(scopePrefix.count)
            if rest.hasPrefix("read:") {
                read.append(String(rest.dropFirst("read:".count)))
            } else if rest.hasPrefix("write:") {
                write.append(String(rest.dropFirst("write:".count)))
            }
        }
        guard read.count + write.count <= Self.maximumPatterns else {
            return .failure(.unusable("it grants more than \(Self.maximumPatterns) destination patterns"))
        }
        do {
            let permissions = try DestinationPermissions(read: read, write: write)
            return .success(Grant(user: user, permissions: permissions, validUntil: validUntil))
        } catch {
            return .failure(.unusable("a scope is not a destination pattern: \(error.detail)"))
        }
    }
}
