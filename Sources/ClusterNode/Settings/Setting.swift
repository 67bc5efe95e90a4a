import NIOCore

/// One setting of the node. Written once, in ``SettingsTable``, it becomes a command-line
/// flag, an environment variable, a config-file key, a row of the README and a checked value,
/// so none of them can drift from the others.
struct Setting: Sendable {
    /// What a value must look like; checked whichever source it comes from.
    enum Kind: Sendable {
        case text
        case path
        /// 0 to 65535 (0 picks a free port); a negative port turns the listener off.
        case port
        /// A whole number of at least `minimum`.
        case count(minimum: Int)
        /// A duration in whole milliseconds of at least `minimum`.
        case milliseconds(minimum: Int)
        case number(minimum: Double)
        case choice([String])
        /// Comma-separated; a JSON array in the config file.
        case list
    }

    /// The default as the README shows it. A `.value` is parsed like any other value, so
    /// what the table says is what the node uses.
    enum Default: Sendable {
        case value(String)
        /// Worked out at start-up (the host name, the number of cores, ...), described.
        case computed(String)
        case none
    }

    /// `group.name`: the config-file path and the root of the other names.
    let key: String
    let kind: Kind
    let defaultValue: Default
    let help: String
    /// Never printed back: not in errors, logs or `--print-settings`.
    let isSecret: Bool
    /// `--` and the key with `-` for `.`, unless the table gives a shorter one.
    let flag: String

    init(
        _ key: String,
        _ kind: Kind,
        default defaultValue: Default,
        flag: String? = nil,
        secret: Bool = false,
        _ help: String
    ) {
        self.key = key
        self.kind = kind
        self.defaultValue = defaultValue
        self.help = help
        self.isSecret = secret
        self.flag = "--" + (flag ?? key.replacing(".", with: "-"))
    }

    /// `CLUSTER_NODE_` and the key in upper case with `_` for `.` and `-`.
    var environmentName: String {
        Self.environmentPrefix
            + key.uppercased().map { $0 == "." || $0 == "-" ? "_" : $0 }.reduce(into: "") { $0.append($1) }
    }

    static let environmentPrefix = "CLUSTER_NODE_"

    var typeName: String {
        switch kind {
        case .text: "string"
        case .path: "path"
        case .port: "port"
        case .count: "integer"
        case .milliseconds: "milliseconds"
        case .number: "number"
        case .choice(let choices): choices.joined(separator: " | ")
        case .list: "list"
        }
    }

    var defaultDescription: String {
        switch defaultValue {
        case .value(let value): value
        case .computed(let description): description
        case .none: "none"
        }
    }

    /// Checks a value given as text and returns it in its type, or why it isn't one.
    func parse(_ text: String) -> Result<Value, Rejection> {
        switch kind {
        case .text, .path:
            return text.isEmpty ? .failure(Rejection("expected a non-empty \(typeName)")) : .success(.text(text))
        case .list:
            let items = text.split(separator: ",").map { String($0.trimming(" ")) }.filter { !$0.isEmpty }
            // An empty list is most often a variable that expanded to nothing; leave the
            // setting out instead.
            return items.isEmpty
                ? .failure(Rejection("expected a comma-separated list of at least one entry")) : .success(.list(items))
        case .choice(let choices):
            let lowered = text.lowercased()
            return choices.contains(lowered)
                ? .success(.text(lowered)) : .failure(Rejection("expected one of \(choices.joined(separator: ", "))"))
        case .port:
            guard let port = Int(text), port <= 65_535 else {
                return .failure(Rejection("expected a port number up to 65535 (negative turns the listener off)"))
            }
            return .success(.integer(port))
        case .count(let minimum), .milliseconds(let minimum):
            guard let value = Int(text) else { return .failure(Rejection("expected a whole number")) }
            guard value >= minimum else { return .failure(Rejection("expected at least \(minimum)")) }
            return .success(.integer(value))
        case .number(let minimum):
            guard let value = Double(text), value.isFinite else { return .failure(Rejection("expected a number")) }
            guard value >= minimum else { return .failure(Rejection("expected at least \(minimum)")) }
            return .success(.number(value))
        }
    }

    enum Value: Sendable, Equatable {
        case text(String)
        case integer(Int)
        case number(Double)
        case list([String])
    }

    struct Rejection: Error, Sendable {
        var expected: String
        init(_ expected: String) { self.expected = expected }
    }
}
