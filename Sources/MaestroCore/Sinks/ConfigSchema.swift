public import MaestroValue

/// A rejected config: `field` is the dotted path (`exporter.remote_host`), `message` the whole
/// sentence. Neither ever holds the rejected value, which may be a credential.
public struct ConfigSchemaError: Error, CustomStringConvertible, Equatable {
    public let field: String
    public let message: String
    public var description: String { message }
}

/// The field rules a plugin's `schema.lua` declares, as data (Kong's habit). maestro validates sink
/// configs and plugin settings against them before any plugin code runs.
///
/// A field is a map: `type` (`string`, `nonblank`, `word`, `url`, `integer`, `number`, `boolean`,
/// `map`, `list`, `string_map`, `any`), `required`, `default`, `description`, `enum` (allowed
/// strings), `fields` (a map's own fields), `variants` (`{by = "type", cases = {name = {fields}}}`:
/// the map's fields depend on the value of its `by` field), `forbidden_keys` (for `string_map`,
/// compared case-insensitively) and `secret` (a credential: masked wherever maestro shows config).
/// Fields a schema does not name pass through untouched: handlers ignore what they do not know.
public struct ConfigSchema: Sendable, Equatable {
    public let fields: [String: Value]

    public static let types: Set<String> = ["string", "nonblank", "word", "url", "integer", "number", "boolean", "map",
                                            "list", "string_map", "any"]

    /// Checks the schema itself, so that a plugin with a broken schema fails at load time.
    public init(fields value: Value?, path: String = "fields") throws(ConfigSchemaError) {
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
        for (name, rule) in entries {
            try Self.checkRule(rule, path: path + "." + name)
        }
        fields = entries
    }

    private static func checkRule(_ rule: Value, path: String) throws(ConfigSchemaError) {
        guard case .map(let entries) = rule else { throw ConfigSchemaError(field: path, message: "\(path) must be a map (a field rule)") }
        guard case .string(let type)? = entries["type"], types.contains(type) else {
            throw ConfigSchemaError(field: path, message: "\(path).type must be one of " + types.sorted().joined(separator: ", "))
        }
        if let nested = entries["fields"] { _ = try ConfigSchema(fields: nested, path: path + ".fields") }
        if let variants = entries["variants"] {
            guard case .string? = variants["by"], case .map(let cases)? = variants["cases"] else {
                throw ConfigSchemaError(field: path, message: "\(path).variants needs `by` (a field name) and `cases` (a map)")
            }
            for (name, fields) in cases { _ = try ConfigSchema(fields: fields, path: "\(path).variants.cases.\(name)") }
        }
    }

    /// Validates `value` (a map) and returns it with defaults filled in. With `endpoints`, every `url`
    /// field is also checked as a place a collector will call (`EndpointPolicy`).
    public func validate(_ value: Value, path: String = "", endpoints: EndpointPolicy? = nil) throws(ConfigSchemaError) -> Value {
        guard case .map(var entries) = value else {
            throw ConfigSchemaError(field: path.isEmpty ? "config" : path, message: "\(path.isEmpty ? "config" : path) must be an object")
        }
        for name in fields.keys.sorted() {
            let rule = fields[name]!
            let fieldPath = path.isEmpty ? name : path + "." + name
            if let present = entries[name], !present.isNull {
                entries[name] = try Self.check(present, rule: rule, path: fieldPath, endpoints: endpoints)
            } else if let defaultValue = rule["default"] {
                entries[name] = defaultValue
            } else if rule["required"] == .bool(true) {
                throw ConfigSchemaError(field: fieldPath, message: "\(fieldPath) is required")
            }
        }
        return .map(entries)
    }

    private static func check(_ value: Value, rule: Value, path: String, endpoints: EndpointPolicy?) throws(ConfigSchemaError) -> Value {
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
            if case .list(let allowed)? = rule["enum"], !allowed.contains(value) {
                throw fail("must be one of " + allowed.compactMap(\.stringValue).joined(separator: ", "))
            }
            return value
        case "integer":
            guard case .int = value else { throw fail("must be a whole number") }
            return value
        case "number":
            switch value {
            case .int, .double: return value
            default: throw fail("must be a number")
            }
        case "boolean":
            guard case .bool = value else { throw fail("must be true or false") }
            return value
        case "list":
            guard case .list = value else { throw fail("must be a list") }
            return value
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
            if let nested = rule["fields"] {
                checked = try ConfigSchema(fields: nested, path: path).validate(checked, path: path, endpoints: endpoints)
            }
            if let variants = rule["variants"], case .string(let selector)? = variants["by"], case .map(let cases)? = variants["cases"] {
                let selectorPath = path + "." + selector
                guard let chosen = checked[selector], !chosen.isNull else {
                    throw ConfigSchemaError(field: selectorPath, message: "\(selectorPath) is required")
                }
                guard case .string(let name) = chosen, let fields = cases[name] else {
                    throw ConfigSchemaError(field: selectorPath, message: "\(selectorPath) must be one of " + cases.keys.sorted().joined(separator: ", "))
                }
                checked = try ConfigSchema(fields: fields, path: path).validate(checked, path: path, endpoints: endpoints)
            }
            return checked
        default:
            return value
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
            let path = prefix.isEmpty ? name : prefix + "." + name
            if rule["secret"] == .bool(true) { paths.append(path) }
            if case .map(let nested)? = rule["fields"] { paths += secretPaths(nested, prefix: path) }
            if case .map(let cases)? = rule["variants"]?["cases"] {
                for (_, caseFields) in cases {
                    if case .map(let nested) = caseFields { paths += secretPaths(nested, prefix: path) }
                }
            }
        }
        return Array(Set(paths)).sorted()
    }
}
