/// One setting of maestro: its flag, environment variable, config-file key, Orb variable and default.
/// The key is the flag name (`redis-url`); the file key is the same; the environment variable is
/// `MAESTRO_` + the key in upper snake case.
public struct SettingDefinition: Sendable {
    public enum Kind: Sendable, Equatable {
        case text
        /// A whole number within the range.
        case integer(ClosedRange<Int>)
        /// `500ms`, `30s`, `5m`, `1h`, `1m30s`, or a number of seconds.
        case duration
        case boolean
        case choice([String])
        /// Repeatable flag; comma-separated in the environment; a list in the file.
        case list
    }

    public let key: String
    public let kind: Kind
    public let defaultValue: String?
    public let help: String
    /// Secrets are never printed, may be read from a file (`--KEY-file`, `MAESTRO_KEY_FILE`, `KEY-file:`),
    /// and, unless `allowsFlagValue`, cannot be given on the command line where `ps` would show them.
    public let isSecret: Bool
    public let allowsFlagValue: Bool
    /// Reads the setting from Orb's environment variables; returns the value and the variables used.
    public let orbSource: (@Sendable ([String: String]) -> (value: String, variables: String)?)?

    public init(key: String, kind: Kind = .text, defaultValue: String? = nil, help: String, isSecret: Bool = false,
                allowsFlagValue: Bool = true, orbSource: (@Sendable ([String: String]) -> (value: String, variables: String)?)? = nil) {
        self.key = key
        self.kind = kind
        self.defaultValue = defaultValue
        self.help = help
        self.isSecret = isSecret
        self.allowsFlagValue = allowsFlagValue
        self.orbSource = orbSource
    }

    public var environmentVariable: String {
        "MAESTRO_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// `orbSource` for a setting that maps one Orb variable unchanged.
    public static func orbVariable(_ name: String) -> @Sendable ([String: String]) -> (value: String, variables: String)? {
        { environment in environment[name].map { ($0, name) } }
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
