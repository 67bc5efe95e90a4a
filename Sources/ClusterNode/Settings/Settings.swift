import NIOCore

/// The node's settings as given, read by key in their type. Each value is checked against
/// its setting's kind when read, and an invalid one names where it came from.
struct Settings: Sendable {
    let sources: SettingSources

    init(_ sources: SettingSources) {
        self.sources = sources
    }

    /// Whether any source gave a value (a default doesn't count).
    func isGiven(_ key: String) -> Bool { sources.given[key] != nil }

    func string(_ key: String) throws -> String? {
        switch try value(key) {
        case .text(let text)?: text
        case .list(let items)?: items.joined(separator: ",")
        case .integer(let integer)?: String(integer)
        case .number(let number)?: String(number)
        case nil: nil
        }
    }

    /// A string setting with a default in the table.
    func requiredString(_ key: String) throws -> String {
        guard let text = try string(key) else { preconditionFailure("\(key) has no default in SettingsTable") }
        return text
    }

    func int(_ key: String) throws -> Int? {
        guard case .integer(let integer)? = try value(key) else { return nil }
        return integer
    }

    func requiredInt(_ key: String) throws -> Int {
        guard let integer = try int(key) else { preconditionFailure("\(key) has no integer default in SettingsTable") }
        return integer
    }

    /// A listener's port; `nil` when it is turned off (negative).
    func port(_ key: String) throws -> Int? {
        guard let port = try int(key), port >= 0 else { return nil }
        return port
    }

    func milliseconds(_ key: String) throws -> TimeAmount {
        .milliseconds(Int64(try requiredInt(key)))
    }

    func double(_ key: String) throws -> Double {
        guard case .number(let number)? = try value(key) else {
            preconditionFailure("\(key) has no number default in SettingsTable")
        }
        return number
    }

    func list(_ key: String) throws -> [String] {
        guard case .list(let items)? = try value(key) else { return [] }
        return items
    }

    private func value(_ key: String) throws -> Setting.Value? {
        let setting = SettingsTable.setting(key)
        let text: String
        let origin: SettingOrigin
        if let given = sources.given[key] {
            (text, origin) = given
        } else if case .value(let fallback) = setting.defaultValue {
            (text, origin) = (fallback, .defaultValue)
        } else {
            return nil
        }
        switch setting.parse(text) {
        case .success(let value): return value
        case .failure(let rejection): throw SettingsError.invalid(setting, text, from: origin, rejection)
        }
    }
}
