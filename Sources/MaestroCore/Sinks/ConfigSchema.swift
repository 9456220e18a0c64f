public import MaestroValue

/// A rejected config: `field` is the dotted path (`exporter.remote_host`), `message` the whole
/// sentence. Neither ever holds the rejected value, which may be a credential.
public struct ConfigSchemaError: Error, CustomStringConvertible, Equatable {
    public let field: String
    public let message: String
    public var description: String { message }

    public init(field: String, message: String) {
        self.field = field
        self.message = message
    }
}

/// A `validate` hook to run for one field of a config: the host calls the function found at `rule` in
/// the plugin's schema table (keys from the schema's root, e.g. `sink`, `fields`, `tenant`) with the
/// field's checked value and the whole checked config.
public struct ConfigHookCall: Sendable, Equatable {
    public let rule: [String]
    /// The field's dotted path in the config (`exporter.tenant`), as messages name it.
    public let field: String
    public let value: Value
}

/// The field rules a plugin's `schema.lua` declares, as data (Kong's habit). maestro validates sink
/// configs and plugin settings against them before any plugin code runs.
///
/// A field is a map: `type` (`string`, `nonblank`, `word`, `url`, `integer`, `number`, `boolean`,
/// `map`, `list`, `string_map`, `any`), `required`, `default` (checked against the rule itself),
/// `description`, `secret` (a credential: masked wherever maestro shows config), `validate` (a hook the
/// plugin host runs; here only a marker, `true`), and options per type: strings `pattern` (a Lua
/// pattern, `LuaPattern`), `one_of` (or its older name `enum`), `min_length`, `max_length`; numbers
/// `min`, `max`; lists `items` (the rule of every item), `min_items`, `max_items`; maps `fields` and
/// `variants` (`{by = "type", cases = {name = {fields}}}`: the map's fields depend on the value of its
/// `by` field); `string_map` `forbidden_keys` (compared case-insensitively). Any other key is an error,
/// so a misspelled option (`requried`) cannot silently do nothing. Fields a schema does not name pass
/// through a config untouched: handlers ignore what they do not know.
public struct ConfigSchema: Sendable, Equatable {
    public let fields: [String: Value]
    /// Where these rules are in the schema table (`["sink", "fields"]`), for `ConfigHookCall.rule`.
    public let rulePath: [String]

    public static let types: Set<String> = ["string", "nonblank", "word", "url", "integer", "number", "boolean", "map",
                                            "list", "string_map", "any"]
    static let commonOptions: Set<String> = ["type", "required", "default", "description", "secret", "validate"]
    static let stringTypes: Set<String> = ["string", "nonblank", "word", "url"]
    static func options(of type: String) -> Set<String> {
        switch type {
        case "string", "nonblank", "word", "url": return ["pattern", "one_of", "enum", "min_length", "max_length"]
        case "integer", "number": return ["min", "max"]
        case "map": return ["fields", "variants"]
        case "list": return ["items", "min_items", "max_items"]
        case "string_map": return ["forbidden_keys"]
        default: return []
        }
    }
    static let allOptions: Set<String> = commonOptions.union(types.flatMap { options(of: $0) })

    /// Checks the schema itself, so that a plugin with a broken schema fails at load time. `path` names
    /// the rules in errors (`sink.fields`); `hooks` says whether `validate` hooks may be declared (the
    /// host runs them for sink configs only).
    public init(fields value: Value?, path: String = "fields", hooks: Bool = false) throws(ConfigSchemaError) {
        try self.init(fields: value, path: path, rulePath: path.split(separator: ".").map(String.init), hooks: hooks)
    }

    init(fields value: Value?, path: String, rulePath: [String], hooks: Bool) throws(ConfigSchemaError) {
        self.rulePath = rulePath
        guard let value else {
            fields = [:]
            return
        }
        if case .list(let items) = value, items.isEmpty {
            fields = [:]
            return
        }
        guard case .map(let entries) = value else {
            throw ConfigSchemaError(field: path, message: "\(path) must be a map of field names to rules")
        }
        for name in entries.keys.sorted() {
            try Self.checkRule(entries[name]!, path: path + "." + name, hooks: hooks)
        }
        fields = entries
    }

    /// A schema read back from checked rules (nested `fields`, a variant's case), no check again.
    private init(checked entries: [String: Value], rulePath: [String]) {
        fields = entries
        self.rulePath = rulePath
    }

    private static func checkRule(_ rule: Value, path: String, hooks: Bool) throws(ConfigSchemaError) {
        func fail(_ option: String, _ problem: String) -> ConfigSchemaError {
            ConfigSchemaError(field: path + "." + option, message: "\(path).\(option) \(problem)")
        }
        guard case .map(let entries) = rule else { throw ConfigSchemaError(field: path, message: "\(path) must be a map (a field rule)") }
        guard case .string(let type)? = entries["type"], types.contains(type) else {
            throw ConfigSchemaError(field: path + ".type", message: "\(path).type must be one of " + types.sorted().joined(separator: ", "))
        }
        let allowed = commonOptions.union(options(of: type))
        for key in entries.keys.sorted() where !allowed.contains(key) {
            if allOptions.contains(key) {
                let owners = types.sorted().filter { options(of: $0).contains(key) }
                throw fail(key, "does not apply to \(article(type)) \(type) field (it is an option of " + owners.joined(separator: ", ") + ")")
            }
            var message = "is not a rule option"
            if let guess = closest(key, in: allowed) { message += " (did you mean \(guess)?)" }
            throw fail(key, message + "; options of \(article(type)) \(type) field: " + allowed.sorted().joined(separator: ", "))
        }
        for flag in ["required", "secret"] where entries[flag] != nil {
            guard case .bool = entries[flag]! else { throw fail(flag, "must be true or false") }
        }
        if let description = entries["description"], description.stringValue == nil { throw fail("description", "must be a string") }
        if let hook = entries["validate"] {
            guard hooks else { throw fail("validate", "is available for sink fields only (sink.fields)") }
            guard hook == .bool(true) else { throw fail("validate", "must be a function(value, config)") }
        }
        for option in ["one_of", "enum"] where entries[option] != nil {
            guard case .list(let allowedValues) = entries[option]!, !allowedValues.isEmpty, allowedValues.allSatisfy({ $0.stringValue != nil }) else {
                throw fail(option, "must be a non-empty list of strings")
            }
        }
        if entries["one_of"] != nil && entries["enum"] != nil { throw fail("enum", "and one_of are the same rule: keep one_of") }
        if let pattern = entries["pattern"] {
            guard case .string(let text) = pattern else { throw fail("pattern", "must be a string (a Lua pattern)") }
            do {
                _ = try LuaPattern(text)
            } catch {
                throw fail("pattern", "is not a valid Lua pattern: \(error.message)")
            }
        }
        for option in ["min_length", "max_length", "min_items", "max_items"] where entries[option] != nil {
            guard case .int(let bound) = entries[option]!, bound >= 0 else { throw fail(option, "must be a whole number, 0 or more") }
        }
        for option in ["min", "max"] where entries[option] != nil {
            switch entries[option]! {
            // A NaN bound compares false with everything: it would silently check nothing.
            case .double(let bound) where bound.isNaN: throw fail(option, "must be a number, not NaN")
            case .int, .double: break
            default: throw fail(option, "must be a number")
            }
        }
        for (low, high) in [("min_length", "max_length"), ("min_items", "max_items"), ("min", "max")] {
            if let lower = entries[low]?.numberValue, let upper = entries[high]?.numberValue, lower > upper {
                throw fail(low, "is greater than \(high)")
            }
        }
        if let forbidden = entries["forbidden_keys"] {
            guard case .list(let names) = forbidden, names.allSatisfy({ $0.stringValue != nil }) else { throw fail("forbidden_keys", "must be a list of strings") }
        }
        if let nested = entries["fields"] { _ = try ConfigSchema(fields: nested, path: path + ".fields", rulePath: [], hooks: hooks) }
        if let variants = entries["variants"] {
            guard case .map(let parts) = variants, case .string? = parts["by"], case .map(let cases)? = parts["cases"], !cases.isEmpty else {
                throw fail("variants", "needs `by` (a field name) and `cases` (a map)")
            }
            for key in parts.keys.sorted() where key != "by" && key != "cases" {
                throw ConfigSchemaError(field: "\(path).variants.\(key)", message: "\(path).variants.\(key) is not a variants option (by, cases)")
            }
            for name in cases.keys.sorted() {
                _ = try ConfigSchema(fields: cases[name]!, path: "\(path).variants.cases.\(name)", rulePath: [], hooks: hooks)
            }
        }
        if let items = entries["items"] { try checkRule(items, path: path + ".items", hooks: hooks) }
        if let defaultValue = entries["default"] {
            // A default reaches handlers as if the user had given it: it obeys the rule (hooks aside).
            var ignored: [ConfigHookCall] = []
            do {
                _ = try check(defaultValue, rule: rule, path: path + ".default", rulePath: [], endpoints: nil, hooks: &ignored)
            } catch {
                throw ConfigSchemaError(field: path + ".default", message: "\(error.message) (the default breaks the field's own rule)")
            }
        }
    }

    static func article(_ word: String) -> String { "aeiou".contains(word.first ?? "x") ? "an" : "a" }

    /// The allowed name nearest to a misspelled one, when it is near enough to be a typo.
    public static func closest(_ word: String, in candidates: Set<String>) -> String? {
        // Edit distance where swapping two neighbours is one edit (`mni` is one typo away from `min`).
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var table = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
            for i in 0...a.count { table[i][0] = i }
            for j in 0...b.count { table[0][j] = j }
            for i in stride(from: 1, through: a.count, by: 1) {
                for j in stride(from: 1, through: b.count, by: 1) {
                    let cost = a[i - 1] == b[j - 1] ? 0 : 1
                    table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                    if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1) }
                }
            }
            return table[a.count][b.count]
        }
        let scored = candidates.map { ($0, distance(Array(word), Array($0))) }.filter { $0.1 <= 2 }
        return scored.min { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }?.0
    }

    /// Validates `value` (a map) and returns it with defaults filled in. With `endpoints`, every `url`
    /// field is also checked as a place a collector will call (`EndpointPolicy`).
    public func validate(_ value: Value, path: String = "", endpoints: EndpointPolicy? = nil) throws(ConfigSchemaError) -> Value {
        var hooks: [ConfigHookCall] = []
        return try validate(value, path: path, endpoints: endpoints, hooks: &hooks)
    }

    /// As `validate(_:path:endpoints:)`, and lists the `validate` hooks the checked value calls for, in
    /// the order of the fields (sorted, parents before children).
    public func validate(_ value: Value, path: String = "", endpoints: EndpointPolicy? = nil,
                         hooks: inout [ConfigHookCall]) throws(ConfigSchemaError) -> Value {
        guard case .map(var entries) = value else {
            throw ConfigSchemaError(field: path.isEmpty ? "config" : path, message: "\(path.isEmpty ? "config" : path) must be an object")
        }
        for name in fields.keys.sorted() {
            let rule = fields[name]!
            let fieldPath = path.isEmpty ? name : path + "." + name
            if let present = entries[name], !present.isNull {
                entries[name] = try Self.check(present, rule: rule, path: fieldPath, rulePath: rulePath + [name], endpoints: endpoints, hooks: &hooks)
            } else if let defaultValue = rule["default"] {
                entries[name] = defaultValue
            } else if rule["required"] == .bool(true) {
                throw ConfigSchemaError(field: fieldPath, message: "\(fieldPath) is required")
            }
        }
        return .map(entries)
    }

    private static func check(_ value: Value, rule: Value, path: String, rulePath: [String], endpoints: EndpointPolicy?,
                              hooks: inout [ConfigHookCall]) throws(ConfigSchemaError) -> Value {
        let checked = try checkValue(value, rule: rule, path: path, rulePath: rulePath, endpoints: endpoints, hooks: &hooks)
        if rule["validate"] == .bool(true) {
            // Parents first: a hook on a map sees it before the hooks of its fields run.
            let position = hooks.firstIndex { $0.field.hasPrefix(path + ".") || $0.field.hasPrefix(path + "[") } ?? hooks.count
            hooks.insert(ConfigHookCall(rule: rulePath, field: path, value: checked), at: position)
        }
        return checked
    }

    private static func checkValue(_ value: Value, rule: Value, path: String, rulePath: [String], endpoints: EndpointPolicy?,
                                   hooks: inout [ConfigHookCall]) throws(ConfigSchemaError) -> Value {
        let type = rule["type"]?.stringValue ?? "any"
        func fail(_ problem: String) -> ConfigSchemaError { ConfigSchemaError(field: path, message: "\(path) \(problem)") }
        switch type {
        case "string", "nonblank", "word", "url":
            guard case .string(let text) = value else { throw fail("must be a string") }
            if type == "nonblank" && text.allSatisfy(\.isWhitespace) { throw fail("must not be blank") }
            if type == "word" && (text.isEmpty || text.contains(where: \.isWhitespace)) { throw fail("must be a single word") }
            if type == "url" && !isAbsoluteURL(text) {
                throw fail("must be an absolute URL with a scheme, such as https://host/path")
            }
            if type == "url", let endpoints, let refusal = endpoints.refusal(url: text) {
                throw fail("\(refusal): collectors must not call it")
            }
            if case .list(let allowed)? = rule["one_of"] ?? rule["enum"], !allowed.contains(value) {
                throw fail("must be one of " + allowed.compactMap(\.stringValue).joined(separator: ", "))
            }
            let length = text.unicodeScalars.count
            if case .int(let minimum)? = rule["min_length"], length < minimum {
                throw fail("must be at least \(minimum) character\(minimum == 1 ? "" : "s") long")
            }
            if case .int(let maximum)? = rule["max_length"], length > maximum {
                throw fail("must be at most \(maximum) character\(maximum == 1 ? "" : "s") long")
            }
            if case .string(let source)? = rule["pattern"] {
                // The pattern was checked when the schema loaded; a value that makes matching too
                // long is refused rather than allowed to hold a worker.
                let matched: Bool
                do {
                    matched = try LuaPattern(source).matches(text)
                } catch {
                    throw fail("could not be checked against the pattern \(source): \(error.message)")
                }
                guard matched else { throw fail("must match the pattern \(source)") }
            }
            return value
        case "integer", "number":
            let number: Double
            switch value {
            case .int(let whole): number = Double(whole)
            case .double(let fraction) where type == "number": number = fraction
            default: throw fail(type == "integer" ? "must be a whole number" : "must be a number")
            }
            // NaN (a default of 0/0) passes every bound, as no comparison with it holds.
            guard !number.isNaN else { throw fail("must be a number, not NaN") }
            if let minimum = rule["min"]?.numberValue, number < minimum { throw fail("must be at least \(show(rule["min"]!))") }
            if let maximum = rule["max"]?.numberValue, number > maximum { throw fail("must be at most \(show(rule["max"]!))") }
            return value
        case "boolean":
            guard case .bool = value else { throw fail("must be true or false") }
            return value
        case "list":
            guard case .list(var items) = value else { throw fail("must be a list") }
            if case .int(let minimum)? = rule["min_items"], items.count < minimum {
                throw fail("must have at least \(minimum) item\(minimum == 1 ? "" : "s")")
            }
            if case .int(let maximum)? = rule["max_items"], items.count > maximum {
                throw fail("must have at most \(maximum) item\(maximum == 1 ? "" : "s")")
            }
            if let itemRule = rule["items"] {
                for index in items.indices {
                    let itemPath = "\(path)[\(index + 1)]"
                    guard !items[index].isNull else { throw ConfigSchemaError(field: itemPath, message: "\(itemPath) must not be null") }
                    items[index] = try check(items[index], rule: itemRule, path: itemPath, rulePath: rulePath + ["items"], endpoints: endpoints, hooks: &hooks)
                }
            }
            return .list(items)
        case "string_map":
            guard case .map(let entries) = value else {
                if case .list(let items) = value, items.isEmpty { return .map([:]) }
                throw fail("must be an object of strings")
            }
            let forbidden = (rule["forbidden_keys"]?.listValue ?? []).compactMap { $0.stringValue?.lowercased() }
            for key in entries.keys.sorted() {
                guard case .string = entries[key]! else {
                    throw ConfigSchemaError(field: path + "." + key, message: "\(path).\(key) must be a string")
                }
                if forbidden.contains(key.lowercased()) { throw fail("must not set \(key)") }
            }
            return value
        case "map":
            guard case .map = value else { throw fail("must be an object") }
            var checked = value
            if case .map(let nested)? = rule["fields"] {
                checked = try ConfigSchema(checked: nested, rulePath: rulePath + ["fields"]).validate(checked, path: path, endpoints: endpoints, hooks: &hooks)
            }
            if let variants = rule["variants"], case .string(let selector)? = variants["by"], case .map(let cases)? = variants["cases"] {
                let selectorPath = path + "." + selector
                guard let chosen = checked[selector], !chosen.isNull else {
                    throw ConfigSchemaError(field: selectorPath, message: "\(selectorPath) is required")
                }
                guard case .string(let name) = chosen, let caseRule = cases[name] else {
                    throw ConfigSchemaError(field: selectorPath, message: "\(selectorPath) must be one of " + cases.keys.sorted().joined(separator: ", "))
                }
                checked = try ConfigSchema(checked: caseRule.mapValue ?? [:], rulePath: rulePath + ["variants", "cases", name]).validate(checked, path: path, endpoints: endpoints, hooks: &hooks)
            }
            return checked
        default:
            return value
        }
    }

    static func show(_ number: Value) -> String {
        switch number {
        case .int(let whole): return String(whole)
        case .double(let fraction): return String(fraction)
        default: return "?"
        }
    }

    /// `scheme://host…` with no spaces: Orb accepts `https://acme.com/prom/push`, rejects `acme.com/prom/push`.
    static func isAbsoluteURL(_ text: String) -> Bool {
        guard let separator = text.firstRange(of: "://") else { return false }
        let scheme = text[..<separator.lowerBound]
        guard let first = scheme.first, first.isASCII, first.isLetter,
              scheme.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }) else { return false }
        let rest = text[separator.upperBound...]
        let host = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return !host.isEmpty && !text.contains(where: { $0.isWhitespace })
    }

    /// Dotted paths of the fields marked `secret`, for masking.
    public var secretPaths: [String] {
        Self.secretPaths(fields, prefix: "")
    }

    private static func secretPaths(_ fields: [String: Value], prefix: String) -> [String] {
        var paths: [String] = []
        for (name, rule) in fields {
            paths += secretPaths(rule: rule, path: prefix.isEmpty ? name : prefix + "." + name)
        }
        return Array(Set(paths)).sorted()
    }

    /// A list's items share the list's path (the masker walks them so): a list of secrets is a secret
    /// path, the secret fields of a list of maps are paths below it.
    private static func secretPaths(rule: Value, path: String) -> [String] {
        var paths: [String] = []
        if rule["secret"] == .bool(true) { paths.append(path) }
        if case .map(let nested)? = rule["fields"] { paths += secretPaths(nested, prefix: path) }
        if case .map(let cases)? = rule["variants"]?["cases"] {
            for (_, caseFields) in cases {
                if case .map(let nested) = caseFields { paths += secretPaths(nested, prefix: path) }
            }
        }
        if let items = rule["items"], case .map = items { paths += secretPaths(rule: items, path: path) }
        return paths
    }
}

extension Value {
    /// An integer or a float as a Double, for range rules.
    fileprivate var numberValue: Double? {
        switch self {
        case .int(let whole): return Double(whole)
        case .double(let fraction): return fraction
        default: return nil
        }
    }
}
