import FoundationEssentials
import StompRouting

/// The users a node accepts, read from `auth.users-file`:
///
/// ```json
/// {"users": [{"login": "alice", "password": "$scrypt$ln=15,r=8,p=1$...$...",
///             "read": ["/topic/prices.#", "/queue/jobs"], "write": ["/queue/jobs"]}]}
/// ```
///
/// Everything is checked when the file is read, so a mistake stops the node (or fails a
/// reload, which keeps the users it had) instead of locking someone out later: a password
/// that isn't a PHC scrypt string, a pattern that isn't a destination, a login twice, a key
/// that names nothing (a misspelt `"reads"` would otherwise grant nothing, silently).
struct UsersFile: Sendable {
    struct User: Sendable {
        var login: String
        var password: PasswordHash
        var permissions: DestinationPermissions
    }

    let users: [String: User]

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    init(path: String, contents: [UInt8]) throws {
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: Data(contents))
        } catch {
            throw Invalid(
                description:
                    "users file \(path) is not of the form {\"users\": [{\"login\", \"password\", \"read\", \"write\"}]}: \(error)"
            )
        }
        var users: [String: User] = [:]
        for (index, entry) in document.users.enumerated() {
            let name = "users file \(path), user \(index + 1) (\(entry.login.prefix(64)))"
            guard !entry.login.isEmpty, entry.login.utf8.count <= 256 else {
                throw Invalid(description: "\(name): login must be 1 to 256 bytes")
            }
            guard users[entry.login] == nil else { throw Invalid(description: "\(name): login appears twice") }
            let password: PasswordHash
            do {
                password = try PasswordHash(parsing: entry.password)
            } catch {
                throw Invalid(description: "\(name): password: \(error)")
            }
            let permissions: DestinationPermissions
            do {
                permissions = try DestinationPermissions(read: entry.read ?? [], write: entry.write ?? [])
            } catch {
                throw Invalid(description: "\(name): \(error.detail)")
            }
            users[entry.login] = User(login: entry.login, password: password, permissions: permissions)
        }
        self.users = users
    }

    private struct Document: Decodable {
        var users: [Entry]
    }

    private struct Entry: Decodable {
        var login: String
        var password: String
        var read: [String]?
        var write: [String]?

        private enum CodingKeys: String, CodingKey, CaseIterable {
            case login, password, read, write
        }

        /// Refuses keys that name nothing.
        private struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let all = try decoder.container(keyedBy: AnyKey.self)
            let known = Set(CodingKeys.allCases.map(\.rawValue))
            if let unknown = all.allKeys.first(where: { !known.contains($0.stringValue) }) {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: decoder.codingPath,
                        debugDescription:
                            "unknown key '\(unknown.stringValue)' (a user has login, password, read and write)"
                    )
                )
            }
            let container = try decoder.container(keyedBy: CodingKeys.self)
            login = try container.decode(String.self, forKey: .login)
            password = try container.decode(String.self, forKey: .password)
            read = try container.decodeIfPresent([String].self, forKey: .read)
            write = try container.decodeIfPresent([String].self, forKey: .write)
        }
    }
}
