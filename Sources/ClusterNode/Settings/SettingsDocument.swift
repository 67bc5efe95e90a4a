import FoundationEssentials

/// The table of settings written out for people and tools: `--help`, the README's table
/// (`--print-settings markdown`, checked by the tests) and JSON for scripts.
enum SettingsDocument {
    enum Format: String, CaseIterable, Sendable {
        case markdown
        case json
    }

    /// Options of the command line that are not settings.
    static let commandLineOptions = ["--config", "--ports-file", "--print-settings", "--help"]

    static func render(_ format: Format) -> String {
        switch format {
        case .markdown: markdown
        case .json: json
        }
    }

    static var markdown: String {
        var lines = ["| flag | key | default | meaning |", "| --- | --- | --- | --- |"]
        for setting in SettingsTable.all {
            let fallback =
                if case .value(let value) = setting.defaultValue { "`\(value)`" } else { setting.defaultDescription }
            lines.append(
                "| `\(setting.flag)` | `\(setting.key)` | \(fallback) | \(setting.help.replacing("|", with: "\\|")) |"
            )
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static var json: String {
        struct Entry: Encodable {
            var key, flag, env, type, `default`, help: String
            var secret: Bool
        }
        struct Document: Encodable {
            var settings: [Entry]
            var options: [String]
        }
        let document = Document(
            settings: SettingsTable.all.map {
                Entry(
                    key: $0.key,
                    flag: $0.flag,
                    env: $0.environmentName,
                    type: $0.typeName,
                    default: $0.defaultDescription,
                    help: $0.help,
                    secret: $0.isSecret
                )
            },
            options: commandLineOptions
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and booleans can't fail.
        return String(decoding: (try? encoder.encode(document)) ?? Data(), as: UTF8.self) + "\n"
    }

    /// The settings part of `--help`.
    static var help: String {
        var text = """
            Every setting is a flag, an environment variable (CLUSTER_NODE_ and the key in upper \
            case with _ for . and -) or a key of the --config JSON file; flags win over the \
            environment, which wins over the file. A name that is no setting, or a value that \
            doesn't fit, stops the node with an error.

            `cluster-node hash-password` reads a password on standard input and prints the \
            salted scrypt hash (a PHC string) to put in the users file.

            SETTINGS:

            """
        for setting in SettingsTable.all {
            text += "  \(setting.flag) <\(setting.typeName)>\n"
            text += "      \(setting.help) (key \(setting.key), default \(setting.defaultDescription))\n"
        }
        return text
    }
}
