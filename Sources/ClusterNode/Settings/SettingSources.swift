import FoundationEssentials

/// Where a value came from, so that an error can send the operator to the right place.
enum SettingOrigin: Sendable, Equatable, CustomStringConvertible {
    case flag(String)
    case environment(String)
    case file(path: String, key: String)
    case defaultValue

    var description: String {
        switch self {
        case .flag(let flag): "flag \(flag)"
        case .environment(let name): "environment variable \(name)"
        case .file(let path, let key): "config file \(path) (key \(key))"
        case .defaultValue: "the default"
        }
    }
}

/// Why the node refuses to start with the settings it was given.
struct SettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    var description: String

    static func unknown(_ what: String, closest: Setting?, as spelling: (Setting) -> String) -> SettingsError {
        let hint = closest.map { " (did you mean \(spelling($0)), key \($0.key)?)" } ?? ""
        return SettingsError(description: "unknown \(what): no setting has that name\(hint)")
    }

    static func invalid(
        _ setting: Setting,
        _ value: String,
        from origin: SettingOrigin,
        _ rejection: Setting.Rejection
    ) -> SettingsError {
        let shown = setting.isSecret ? "(secret, not shown)" : "'\(value)'"
        return SettingsError(
            description: "invalid value \(shown) for \(setting.key) from \(origin): \(rejection.expected)"
        )
    }
}

/// The values given for settings, by key, from the three sources in order of precedence:
/// flags, then environment variables, then the config file. Anything that names no setting
/// is refused here, before a single value is used.
struct SettingSources: Sendable {
    private(set) var given: [String: (value: String, origin: SettingOrigin)] = [:]

    init(flags: [String] = [], environment: [String: String] = [:], file: ConfigFile? = nil) throws {
        // Lowest precedence first, each source overwriting what the one before gave.
        if let file {
            for (key, value) in file.values {
                guard let setting = SettingsTable.all.first(where: { $0.key == key }) else {
                    throw SettingsError.unknown(
                        "key \(key) in config file \(file.path)",
                        closest: Self.closest(to: key, by: \.key),
                        as: \.key
                    )
                }
                try record(setting, value, from: .file(path: file.path, key: key))
            }
        }
        for (name, value) in environment where name.hasPrefix(Setting.environmentPrefix) {
            guard let setting = SettingsTable.all.first(where: { $0.environmentName == name }) else {
                throw SettingsError.unknown(
                    "environment variable \(name)",
                    closest: Self.closest(to: name, by: \.environmentName),
                    as: \.environmentName
                )
            }
            try record(setting, value, from: .environment(name))
        }
        var arguments = flags[...]
        while let argument = arguments.popFirst() {
            guard argument.hasPrefix("--") else {
                throw SettingsError(
                    description: "unexpected argument '\(argument)': settings are given as --flag VALUE"
                )
            }
            let (flag, inline) =
                argument.firstIndex(of: "=").map {
                    (String(argument[..<$0]), Optional(String(argument[argument.index(after: $0)...])))
                }
                ?? (argument, nil)
            guard let setting = SettingsTable.all.first(where: { $0.flag == flag }) else {
                throw SettingsError.unknown("flag \(flag)", closest: Self.closest(to: flag, by: \.flag), as: \.flag)
            }
            guard let value = inline ?? arguments.popFirst() else {
                throw SettingsError(description: "flag \(flag) needs a value")
            }
            try record(setting, value, from: .flag(flag))
        }
    }

    /// Keeps a value over what a source of lower precedence gave. Every value is checked, also
    /// one that a flag overrides: a wrong value anywhere is a mistake worth stopping for.
    private mutating func record(_ setting: Setting, _ value: String, from origin: SettingOrigin) throws {
        if case .failure(let rejection) = setting.parse(value) {
            throw SettingsError.invalid(setting, value, from: origin, rejection)
        }
        given[setting.key] = (value, origin)
    }

    /// The setting whose spelling is nearest to a misspelt name, by edit distance. Each
    /// setting is also tried as if its group were left out (`seeds` for `cluster.seeds`), the
    /// most common slip.
    static func closest(to name: String, by spelling: (Setting) -> String) -> Setting? {
        let target = Array(name.lowercased().utf8)
        func distance(_ setting: Setting) -> Int {
            var spellings = [spelling(setting)]
            if let dot = setting.key.firstIndex(of: ".") {
                let ungrouped = Setting(
                    String(setting.key[setting.key.index(after: dot)...]),
                    setting.kind,
                    default: .none,
                    ""
                )
                spellings.append(spelling(ungrouped))
            }
            return spellings.map { editDistance(target, Array($0.lowercased().utf8)) }.min()!
        }
        return SettingsTable.all.min { distance($0) < distance($1) }
    }

    /// Levenshtein distance, one row at a time.
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            current.reserveCapacity(b.count + 1)
            for (j, y) in b.enumerated() {
                current.append(Swift.min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}

/// A JSON config file, flattened to setting keys: `{"ws": {"port": 15674}}` and
/// `{"ws.port": 15674}` both give `ws.port`. Numbers, strings and booleans are values; an
/// array is a list.
struct ConfigFile: Sendable {
    let path: String
    let values: [(key: String, value: String)]

    init(path: String, contents: [UInt8]) throws {
        self.path = path
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: Data(contents))
        } catch {
            throw SettingsError(description: "config file \(path) is not valid JSON: \(error)")
        }
        guard case .object = root else {
            throw SettingsError(description: "config file \(path) must hold a JSON object")
        }
        var values: [(String, String)] = []
        try Self.flatten(root, prefix: nil, path: path, into: &values)
        self.values = values
    }

    private static func flatten(
        _ value: JSONValue,
        prefix: String?,
        path: String,
        into values: inout [(String, String)]
    ) throws {
        switch value {
        case .object(let members):
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                try flatten(member, prefix: prefix.map { "\($0).\(name)" } ?? name, path: path, into: &values)
            }
        case .scalar(let text):
            values.append((prefix ?? "", text))
        case .array(let items):
            values.append((prefix ?? "", items.joined(separator: ",")))
        case .null:
            throw SettingsError(
                description: "config file \(path): \(prefix ?? "") is null; leave a setting out to use its default"
            )
        }
    }

    private enum JSONValue: Decodable {
        case object([String: JSONValue])
        case array([String])
        case scalar(String)
        case null

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .null
            } else if let text = try? container.decode(String.self) {
                self = .scalar(text)
            } else if let flag = try? container.decode(Bool.self) {
                self = .scalar(String(flag))
            } else if let integer = try? container.decode(Int.self) {
                self = .scalar(String(integer))
            } else if let number = try? container.decode(Double.self) {
                self = .scalar(String(number))
            } else if let items = try? container.decode([ScalarText].self) {
                self = .array(items.map(\.text))
            } else {
                self = .object(try container.decode([String: JSONValue].self))
            }
        }
    }

    /// An array element: a string or a number, as text.
    private struct ScalarText: Decodable {
        var text: String
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let integer = try? container.decode(Int.self) {
                text = String(integer)
            } else {
                text = try container.decode(String.self)
            }
        }
    }
}
