import Crypto
import CryptoExtras
import FoundationEssentials

/// A password stored as a salted, slow hash in the PHC string format:
/// `$scrypt$ln=15,r=8,p=1$SALT$HASH` (salt and hash in unpadded base64), the form passlib and
/// other tools write for scrypt. Derivation is swift-crypto's (BoringSSL's scrypt).
struct PasswordHash: Sendable, Equatable, CustomStringConvertible {
    /// log2 of scrypt's cost N, its block size r and parallelism p.
    let logCost: Int
    let blockSize: Int
    let parallelism: Int
    let salt: [UInt8]
    let hash: [UInt8]

    /// What `cluster-node hash-password` writes: N = 2^15, r = 8, p = 1 (32 MiB, tens of
    /// milliseconds on a server core), a 16-byte salt and a 32-byte hash.
    static func make(password: String, logCost: Int = 15) throws -> PasswordHash {
        var generator = SystemRandomNumberGenerator()
        let salt = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let hash = try derive(password, salt: salt, logCost: logCost, blockSize: 8, parallelism: 1, length: 32)
        return PasswordHash(logCost: logCost, blockSize: 8, parallelism: 1, salt: salt, hash: hash)
    }

    /// Whether `password` is the one hashed. Slow on purpose: call it off the event loops.
    func verify(_ password: String) -> Bool {
        guard
            let derived = try? Self.derive(
                password,
                salt: salt,
                logCost: logCost,
                blockSize: blockSize,
                parallelism: parallelism,
                length: hash.count
            )
        else {
            return false
        }
        // Keys compare in constant time.
        return SymmetricKey(data: derived) == SymmetricKey(data: hash)
    }

    var description: String {
        "$scrypt$ln=\(logCost),r=\(blockSize),p=\(parallelism)$\(Self.encode(salt))$\(Self.encode(hash))"
    }

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    /// Parses a PHC scrypt string. The cost is bounded (64 MiB, ln at most 20), so a users
    /// file can't make one login take minutes or gigabytes.
    init(parsing text: String) throws {
        let parts = text.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "scrypt" else {
            throw Invalid(
                description:
                    "not a PHC scrypt string ($scrypt$ln=..,r=..,p=..$SALT$HASH); make one with `cluster-node hash-password`"
            )
        }
        var parameters: [Substring: Int] = [:]
        for pair in parts[2].split(separator: ",") {
            let keyValue = pair.split(separator: "=", maxSplits: 1)
            guard keyValue.count == 2, let value = Int(keyValue[1]) else {
                throw Invalid(description: "bad scrypt parameter '\(pair)'")
            }
            parameters[keyValue[0]] = value
        }
        guard let logCost = parameters["ln"], let blockSize = parameters["r"], let parallelism = parameters["p"],
            parameters.count == 3
        else {
            throw Invalid(description: "scrypt parameters must be ln, r and p")
        }
        guard (10...20).contains(logCost), (1...32).contains(blockSize), (1...8).contains(parallelism),
            Self.memory(logCost: logCost, blockSize: blockSize) <= Self.maximumMemory
        else {
            throw Invalid(
                description:
                    "scrypt parameters out of range (ln 10...20, r 1...32, p 1...8, 128 x r x 2^ln at most 64 MiB)"
            )
        }
        guard let salt = Self.decode(parts[3]), salt.count >= 8, let hash = Self.decode(parts[4]),
            (16...64).contains(hash.count)
        else {
            throw Invalid(description: "salt (8+ bytes) or hash (16 to 64 bytes) is not valid unpadded base64")
        }
        self.init(logCost: logCost, blockSize: blockSize, parallelism: parallelism, salt: salt, hash: hash)
    }

    private init(logCost: Int, blockSize: Int, parallelism: Int, salt: [UInt8], hash: [UInt8]) {
        self.logCost = logCost
        self.blockSize = blockSize
        self.parallelism = parallelism
        self.salt = salt
        self.hash = hash
    }

    /// What one check may take: each runs on a thread of its own, several at once.
    static let maximumMemory = 64 * 1_048_576

    /// scrypt's working memory: 128 x r x N bytes.
    static func memory(logCost: Int, blockSize: Int) -> Int { (128 * blockSize) << logCost }

    static func derive(
        _ password: String,
        salt: [UInt8],
        logCost: Int,
        blockSize: Int,
        parallelism: Int,
        length: Int
    ) throws -> [UInt8] {
        let key = try KDF.Scrypt.deriveKey(
            from: Array(password.utf8),
            salt: salt,
            outputByteCount: length,
            rounds: 1 << logCost,
            blockSize: blockSize,
            parallelism: parallelism,
            maxMemory: maximumMemory + 1_048_576
        )
        return key.withUnsafeBytes { Array($0) }
    }

    /// PHC strings use standard base64 without padding.
    private static func encode(_ bytes: [UInt8]) -> String {
        var text = Data(bytes).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    private static func decode(_ text: Substring) -> [UInt8]? {
        var padded = String(text)
        while padded.utf8.count % 4 != 0 { padded += "=" }
        return Data(base64Encoded: padded).map { Array($0) }
    }
}
