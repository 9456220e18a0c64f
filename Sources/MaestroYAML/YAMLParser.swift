internal import CLibYAML
public import MaestroValue

public struct YAMLError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case syntax
        case unsupported
        case emitter
    }

    public let kind: Kind
    public let message: String
    /// 1-based position of the problem in the input, when known.
    public let line: Int?
    public let column: Int?

    public var description: String {
        if let line, let column { return "YAML error at line \(line), column \(column): \(message)" }
        return "YAML error: \(message)"
    }
}

/// YAML text ⇄ `Value` through libyaml. Plain scalars resolve by the YAML 1.2 core schema; quoted
/// scalars are strings; the emitter quotes every string a YAML 1.1 or 1.2 reader would take as
/// anything else.
public enum YAML {
    /// Nesting deeper than this is rejected.
    public static let maximumDepth = 512

    /// Parses a single document; an empty input is `null`. More than one document is an error. `limits`
    /// bounds the nodes and bytes of the value, aliases expanded (see `ValueLimits`).
    public static func parse(_ text: String, limits: ValueLimits = .default) throws(YAMLError) -> Value {
        let documents = try parseAll(text, limits: limits)
        switch documents.count {
        case 0: return .null
        case 1: return documents[0]
        default: throw YAMLError(kind: .syntax, message: "expected one document, found \(documents.count)", line: nil, column: nil)
        }
    }

    /// Parses every document of a stream; `limits` holds across all of them.
    public static func parseAll(_ text: String, limits: ValueLimits = .default) throws(YAMLError) -> [Value] {
        var bytes = Array(text.utf8)
        if bytes.isEmpty { return [] }
        return try bytes.withUnsafeMutableBufferPointer { buffer throws(YAMLError) in
            var parser = EventParser(budget: ValueBudget(limits))
            return try parser.run(buffer)
        }
    }
}

private struct EventParser {
    /// A collection being built. A class, so appending does not copy the collection each time.
    final class Frame {
        var items: [Value] = []
        var entries: [String: Value] = [:]
        var pendingKey: String?
        let isMap: Bool
        let anchor: String?
        /// Nodes and string bytes of the collection, aliases expanded: what an alias of it costs.
        var size = 1
        var stringBytes = 0

        init(isMap: Bool, anchor: String?) {
            self.isMap = isMap
            self.anchor = anchor
        }
    }

    var stack: [Frame] = []
    var anchors: [String: (value: Value, size: Int, stringBytes: Int)] = [:]
    var documents: [Value] = []
    var documentRoot: Value?
    /// Nodes and bytes of the whole stream so far; never reset between documents.
    var budget: ValueBudget

    init(budget: ValueBudget) {
        self.budget = budget
    }

    mutating func run(_ buffer: UnsafeMutableBufferPointer<UInt8>) throws(YAMLError) -> [Value] {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw YAMLError(kind: .syntax, message: "cannot initialise the parser", line: nil, column: nil)
        }
        defer { yaml_parser_delete(&parser) }
        yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
        var event = yaml_event_t()
        while true {
            guard yaml_parser_parse(&parser, &event) == 1 else {
                throw syntaxError(parser)
            }
            defer { yaml_event_delete(&event) }
            let type = event.type
            let line = Int(event.start_mark.line) + 1
            let column = Int(event.start_mark.column) + 1
            switch type {
            case YAML_STREAM_END_EVENT:
                return documents
            case YAML_DOCUMENT_START_EVENT:
                documentRoot = nil
                anchors = [:]
            case YAML_DOCUMENT_END_EVENT:
                documents.append(documentRoot ?? .null)
            case YAML_SCALAR_EVENT:
                let scalar = event.data.scalar
                let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: Int(scalar.length)), as: UTF8.self)
                let tag = scalar.tag.map { String(cString: $0) }
                let value = try resolveScalar(text, plain: scalar.style == YAML_PLAIN_SCALAR_STYLE, tag: tag, line: line, column: column)
                let anchor = scalar.anchor.map { String(cString: $0) }
                let bytes = value.stringValue?.utf8.count ?? 0
                try count(nodes: 1, stringBytes: bytes, line: line, column: column)
                try add(value, size: 1, stringBytes: bytes, anchor: anchor, keyText: text, line: line, column: column)
            case YAML_SEQUENCE_START_EVENT:
                try checkDepth(line: line, column: column)
                try count(nodes: 1, stringBytes: 0, line: line, column: column)
                stack.append(Frame(isMap: false, anchor: event.data.sequence_start.anchor.map { String(cString: $0) }))
            case YAML_MAPPING_START_EVENT:
                try checkDepth(line: line, column: column)
                try count(nodes: 1, stringBytes: 0, line: line, column: column)
                stack.append(Frame(isMap: true, anchor: event.data.mapping_start.anchor.map { String(cString: $0) }))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                let finished = stack.removeLast()
                let value: Value = finished.isMap ? .map(finished.entries) : .list(finished.items)
                finished.items = []
                finished.entries = [:]
                try add(value, size: finished.size, stringBytes: finished.stringBytes, anchor: finished.anchor, keyText: nil, line: line, column: column)
            case YAML_ALIAS_EVENT:
                let name = String(cString: event.data.alias.anchor)
                guard let target = anchors[name] else {
                    throw YAMLError(kind: .syntax, message: "unknown alias *\(name)", line: line, column: column)
                }
                try count(nodes: target.size, stringBytes: target.stringBytes, line: line, column: column)
                let keyText = target.value.stringValue
                try add(target.value, size: target.size, stringBytes: target.stringBytes, anchor: nil, keyText: keyText, line: line, column: column)
            default:
                break
            }
        }
    }

    /// Counts nodes against the stream's budget; an alias counts every node it stands for.
    mutating func count(nodes: Int, stringBytes: Int, line: Int, column: Int) throws(YAMLError) {
        if let exceeded = budget.charge(nodes: nodes, stringBytes: stringBytes) {
            throw YAMLError(kind: .unsupported, message: "the documents expand to \(exceeded) (aliases counted every time they are used)",
                            line: line, column: column)
        }
    }

    func checkDepth(line: Int, column: Int) throws(YAMLError) {
        if stack.count >= YAML.maximumDepth {
            throw YAMLError(kind: .unsupported, message: "nested deeper than \(YAML.maximumDepth) levels", line: line, column: column)
        }
    }

    func syntaxError(_ parser: yaml_parser_t) -> YAMLError {
        let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
        let context = parser.context.map { String(cString: $0) + ": " } ?? ""
        return YAMLError(kind: .syntax, message: context + problem,
                         line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1)
    }

    mutating func add(_ value: Value, size: Int, stringBytes: Int, anchor: String?, keyText: String?, line: Int, column: Int) throws(YAMLError) {
        if let anchor { anchors[anchor] = (value, size, stringBytes) }
        guard let top = stack.last else {
            documentRoot = value
            return
        }
        top.size += size
        top.stringBytes += stringBytes
        if !top.isMap {
            top.items.append(value)
        } else if let pendingKey = top.pendingKey {
            top.entries[pendingKey] = value
            top.pendingKey = nil
        } else {
            guard let key = keyText ?? scalarKeyText(value) else {
                throw YAMLError(kind: .unsupported, message: "a map key must be a scalar", line: line, column: column)
            }
            guard top.entries[key] == nil else {
                throw YAMLError(kind: .syntax, message: "duplicate key \"\(key)\"", line: line, column: column)
            }
            top.pendingKey = key
        }
    }

    func scalarKeyText(_ value: Value) -> String? {
        switch value {
        case .string(let text): return text
        case .int(let number): return String(number)
        case .bool(let flag): return flag ? "true" : "false"
        case .null: return ""
        case .double(let number): return "\(number)"
        case .list, .map: return nil
        }
    }

    func resolveScalar(_ text: String, plain: Bool, tag: String?, line: Int, column: Int) throws(YAMLError) -> Value {
        switch tag {
        case nil:
            return plain ? YAMLCoreSchema.resolve(text) : .string(text)
        case "!", "tag:yaml.org,2002:str":
            return .string(text)
        case "tag:yaml.org,2002:null":
            return .null
        case "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float":
            let resolved = YAMLCoreSchema.resolve(text)
            let matches: Bool
            switch (tag, resolved) {
            case ("tag:yaml.org,2002:bool", .bool), ("tag:yaml.org,2002:int", .int), ("tag:yaml.org,2002:float", .double): matches = true
            case ("tag:yaml.org,2002:float", .int(let number)): return .double(Double(number))
            default: matches = false
            }
            guard matches else {
                throw YAMLError(kind: .syntax, message: "\"\(text)\" is not a valid \(tag!)", line: line, column: column)
            }
            return resolved
        default:
            // Application tags carry no meaning for maestro: the value is read as if untagged.
            return plain ? YAMLCoreSchema.resolve(text) : .string(text)
        }
    }
}

/// The YAML 1.2 core schema's resolution of plain scalars.
enum YAMLCoreSchema {
    static func resolve(_ text: String) -> Value {
        switch text {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .double(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .double(-.infinity)
        case ".nan", ".NaN", ".NAN": return .double(.nan)
        default: break
        }
        let utf8 = Array(text.utf8)
        guard let first = utf8.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+")
                || first == UInt8(ascii: ".") || isDigit(first) else { return .string(text) }
        if utf8.count > 2 && utf8[0] == UInt8(ascii: "0") {
            if utf8[1] == UInt8(ascii: "x"), let number = Int64(String(decoding: utf8[2...], as: UTF8.self), radix: 16),
               utf8[2...].allSatisfy(isHexDigit) {
                return .int(number)
            }
            if utf8[1] == UInt8(ascii: "o"), let number = Int64(String(decoding: utf8[2...], as: UTF8.self), radix: 8),
               utf8[2...].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }) {
                return .int(number)
            }
        }
        if isInteger(utf8) {
            if let number = Int64(text) { return .int(number) }
            if let number = Double(text) { return .double(number) }
        }
        if isFloat(utf8), let number = Double(text) { return .double(number) }
        return .string(text)
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
    static func isHexDigit(_ byte: UInt8) -> Bool {
        isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
    }

    /// `[-+]?[0-9]+`
    static func isInteger(_ bytes: [UInt8]) -> Bool {
        var index = 0
        if index < bytes.count && (bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+")) { index += 1 }
        guard index < bytes.count else { return false }
        return bytes[index...].allSatisfy(isDigit)
    }

    /// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
    static func isFloat(_ bytes: [UInt8]) -> Bool {
        var index = 0
        func digits() -> Int {
            let start = index
            while index < bytes.count && isDigit(bytes[index]) { index += 1 }
            return index - start
        }
        if index < bytes.count && (bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+")) { index += 1 }
        if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { return false }
        } else {
            guard digits() > 0 else { return false }
            if index < bytes.count && bytes[index] == UInt8(ascii: ".") {
                index += 1
                _ = digits()
            }
        }
        if index < bytes.count && (bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")) {
            index += 1
            if index < bytes.count && (bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+")) { index += 1 }
            guard digits() > 0 else { return false }
        }
        return index == bytes.count
    }
}
