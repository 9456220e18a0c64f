public import MaestroValue
internal import MaestroYAML
internal import MaestroHTTP
#if canImport(Glibc)
internal import Glibc
#endif

/// A setting that could not be read; the message names the setting and where its value came from.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where a setting's value came from, for `maestro config` and error messages.
public enum SettingOrigin: Sendable, Equatable, CustomStringConvertible {
    case flag(String)
    case environment(String)
    case orb(String)
    case file(String)
    case defaultValue

    public var description: String {
        switch self {
        case .flag(let name): return "flag --\(name)"
        case .environment(let name): return "environment \(name)"
        case .orb(let names): return "Orb environment \(names)"
        case .file(let path): return "config file \(path)"
        case .defaultValue: return "default"
        }
    }
}

/// The raw inputs: what was given on the command line, the environment and the config file.
public struct ConfigurationInput: Sendable {
    /// Flag values by flag name (`redis-url`, `secret-key-file`); repeatable flags hold several.
    public var flags: [String: [String]]
    public var environment: [String: String]
    /// The config file's path (from `--config` or `MAESTRO_CONFIG`), if any.
    public var configFile: String?

    public init(flags: [String: [String]] = [:], environment: [String: String] = [:], configFile: String? = nil) {
        self.flags = flags
        self.environment = environment
        self.configFile = configFile
    }
}

public struct ResolvedSetting: Sendable, Equatable {
    public let definition: String
    public let values: [String]
    public let origin: SettingOrigin
}

/// Every setting resolved: flag > `MAESTRO_*` > Orb's variable > config file > default.
public struct Configuration: Sendable {
    public let settings: [String: ResolvedSetting]
    /// Per-plugin configuration from the file's `plugins:` section, by plugin name.
    public let plugins: [String: Value]
    /// Per-template values from the file's `templates:` section, by template name.
    public let templates: [String: Value]
    public let configFile: String?

    public static func resolve(_ input: ConfigurationInput, definitions: [SettingDefinition] = Settings.all) throws(ConfigurationError) -> Configuration {
        let path = input.flags["config"]?.last ?? input.environment["MAESTRO_CONFIG"]
        var fileValues: [String: Value] = [:]
        var plugins: [String: Value] = [:]
        var templates: [String: Value] = [:]
        if let path {
            guard let text = TextFile.read(path) else { throw ConfigurationError("cannot read config file \(path)") }
            (fileValues, plugins, templates) = try parseFile(text, path: path, definitions: definitions)
        }
        var settings: [String: ResolvedSetting] = [:]
        for definition in definitions {
            let resolved = try resolveOne(definition, input: input, fileValues: fileValues, filePath: path)
            try validate(resolved, definition)
            settings[definition.key] = resolved
        }
        return Configuration(settings: settings, plugins: plugins, templates: templates, configFile: path)
    }

    private static func parseFile(_ text: String, path: String, definitions: [SettingDefinition]) throws(ConfigurationError) -> ([String: Value], [String: Value], [String: Value]) {
        let document: Value
        do {
            document = try YAML.parse(text)
        } catch {
            throw ConfigurationError("config file \(path): \(error)")
        }
        if document.isNull { return ([:], [:], [:]) }
        guard case .map(let entries) = document else { throw ConfigurationError("config file \(path): expected a map of settings") }
        var known: Set<String> = ["plugins", "templates"]
        for definition in definitions {
            known.insert(definition.key)
            if definition.isSecret { known.insert(definition.key + "-file") }
        }
        for key in entries.keys.sorted() where !known.contains(key) {
            throw ConfigurationError("config file \(path): unknown key \"\(key)\"")
        }
        var sections: [String: [String: Value]] = [:]
        for section in ["plugins", "templates"] {
            guard let value = entries[section], !value.isNull else { continue }
            guard case .map(let byName) = value else {
                throw ConfigurationError("config file \(path): \"\(section)\" must map names to their settings")
            }
            sections[section] = byName
        }
        return (entries, sections["plugins"] ?? [:], sections["templates"] ?? [:])
    }

    private static func resolveOne(_ definition: SettingDefinition, input: ConfigurationInput, fileValues: [String: Value],
                                   filePath: String?) throws(ConfigurationError) -> ResolvedSetting {
        let key = definition.key
        let fileKey = key + "-file"
        // 1. flags
        if definition.isSecret, let paths = input.flags[fileKey], let path = paths.last {
            if input.flags[key] != nil { throw ConfigurationError("give either --\(key) or --\(fileKey), not both") }
            return ResolvedSetting(definition: key, values: [try readSecret(path, setting: key)], origin: .flag(fileKey))
        }
        if let values = input.flags[key], !values.isEmpty {
            if !definition.allowsFlagValue {
                throw ConfigurationError("--\(key) would show a secret to anyone running ps: use --\(fileKey) or \(definition.environmentVariable)")
            }
            return ResolvedSetting(definition: key, values: values, origin: .flag(key))
        }
        // 2. MAESTRO_* environment
        let variable = definition.environmentVariable
        if definition.isSecret, let path = input.environment[variable + "_FILE"], !path.isEmpty {
            if input.environment[variable] != nil { throw ConfigurationError("give either \(variable) or \(variable)_FILE, not both") }
            return ResolvedSetting(definition: key, values: [try readSecret(path, setting: key)], origin: .environment(variable + "_FILE"))
        }
        if let text = input.environment[variable] {
            let values = definition.kind == .list ? text.split(separator: ",").map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty } : [text]
            return ResolvedSetting(definition: key, values: values, origin: .environment(variable))
        }
        // 3. Orb's variables
        if let orb = definition.orbSource?(input.environment) {
            return ResolvedSetting(definition: key, values: [orb.value], origin: .orb(orb.variables))
        }
        // 4. config file
        if let filePath {
            if definition.isSecret, let pathValue = fileValues[fileKey] {
                if fileValues[key] != nil { throw ConfigurationError("config file \(filePath): give either \(key) or \(fileKey), not both") }
                guard case .string(let path) = pathValue else { throw ConfigurationError("config file \(filePath): \(fileKey) must be a path") }
                return ResolvedSetting(definition: key, values: [try readSecret(path, setting: key)], origin: .file(filePath))
            }
            if let value = fileValues[key] {
                return ResolvedSetting(definition: key, values: try fileStrings(value, definition, filePath), origin: .file(filePath))
            }
        }
        // 5. default
        return ResolvedSetting(definition: key, values: definition.defaultValue.map { [$0] } ?? [], origin: .defaultValue)
    }

    private static func fileStrings(_ value: Value, _ definition: SettingDefinition, _ path: String) throws(ConfigurationError) -> [String] {
        func scalar(_ item: Value) throws(ConfigurationError) -> String {
            switch item {
            case .string(let text): return text
            case .int(let number): return String(number)
            case .double(let number): return "\(number)"
            case .bool(let flag): return flag ? "true" : "false"
            default: throw ConfigurationError("config file \(path): \(definition.key) must be a single value, got a \(item.kindName)")
            }
        }
        if definition.kind == .list {
            if case .list(let items) = value {
                var strings: [String] = []
                for item in items { strings.append(try scalar(item)) }
                return strings
            }
            return [try scalar(value)]
        }
        if value.isNull { return [] }
        return [try scalar(value)]
    }

    private static func validate(_ setting: ResolvedSetting, _ definition: SettingDefinition) throws(ConfigurationError) {
        func invalid(_ expectation: String, _ value: String) -> ConfigurationError {
            let shown = definition.isSecret ? "(secret value)" : "\"\(value)\""
            return ConfigurationError("invalid value for \(definition.key) (from \(setting.origin)): expected \(expectation), got \(shown)")
        }
        for value in setting.values {
            switch definition.kind {
            case .text, .list:
                if definition.key == "collector-deny-cidr" && value != "none" && IPNetwork(parsing: value) == nil {
                    throw invalid("an address range such as 10.0.0.0/8 or fc00::/7, or none", value)
                }
            case .integer(let range):
                guard let number = Int(value), range.contains(number) else {
                    throw invalid("a whole number from \(range.lowerBound) to \(range.upperBound)", value)
                }
            case .duration:
                guard parseDuration(value) != nil else { throw invalid("a duration such as 500ms, 30s, 5m or 1h", value) }
            case .boolean:
                guard parseBoolean(value) != nil else { throw invalid("true or false", value) }
            case .choice(let choices):
                guard choices.contains(value) else { throw invalid("one of " + choices.joined(separator: ", "), value) }
            }
        }
    }

    private static func readSecret(_ path: String, setting: String) throws(ConfigurationError) -> String {
        guard let text = TextFile.read(path) else { throw ConfigurationError("cannot read the file given for \(setting): \(path)") }
        // Files written by `echo` or editors end with a newline that is not part of the secret.
        var trimmed = Substring(text)
        while let last = trimmed.last, last == "\n" || last == "\r" { trimmed = trimmed.dropLast() }
        return String(trimmed)
    }

    // MARK: typed access

    public func values(_ key: String) -> [String] {
        settings[key]?.values ?? []
    }

    public func string(_ key: String) -> String? {
        values(key).last
    }

    public func integer(_ key: String) -> Int? {
        string(key).flatMap { Int($0) }
    }

    /// Seconds.
    public func duration(_ key: String) -> Double? {
        string(key).flatMap(parseDuration)
    }

    public func boolean(_ key: String) -> Bool {
        string(key).flatMap(parseBoolean) ?? false
    }

    public func origin(_ key: String) -> SettingOrigin? {
        settings[key]?.origin
    }

    /// Each setting with its value (secrets masked) and origin, sorted by key.
    public func describe() -> [(key: String, value: String, origin: SettingOrigin)] {
        settings.keys.sorted().map { key in
            let setting = settings[key]!
            let secret = Settings.definition(key)?.isSecret ?? false
            let value: String
            if secret && setting.origin != .defaultValue && key != "redis-url" {
                value = "***"
            } else if key == "redis-url", let text = setting.values.last, let url = try? RedisURLRedaction.redact(text) {
                value = url
            } else {
                value = setting.values.joined(separator: ", ")
            }
            return (key, value, setting.origin)
        }
    }
}

/// `500ms`, `30s`, `5m`, `1h`, `1m30s`, or plain seconds; nil for anything else.
public func parseDuration(_ text: String) -> Double? {
    if let seconds = Double(text), seconds >= 0 { return seconds }
    var total = 0.0
    var number = ""
    var index = text.startIndex
    var sawUnit = false
    while index < text.endIndex {
        let character = text[index]
        if character.isNumber || character == "." {
            number.append(character)
            index = text.index(after: index)
            continue
        }
        guard let value = Double(number) else { return nil }
        let rest = text[index...]
        let multiplier: Double
        if rest.hasPrefix("ms") {
            multiplier = 0.001
            index = text.index(index, offsetBy: 2)
        } else {
            switch character {
            case "h": multiplier = 3600
            case "m": multiplier = 60
            case "s": multiplier = 1
            default: return nil
            }
            index = text.index(after: index)
        }
        total += value * multiplier
        number = ""
        sawUnit = true
    }
    guard number.isEmpty, sawUnit else { return nil }
    return total
}

public func parseBoolean(_ text: String) -> Bool? {
    switch text.lowercased() {
    case "true", "1", "yes", "on": return true
    case "false", "0", "no", "off": return false
    default: return nil
    }
}


extension String {
    func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }
}
