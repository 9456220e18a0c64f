/// JSON text ⇄ `Value`, written here rather than through Foundation so that integers and floats stay
/// distinct and maps come out with sorted keys (stable bytes).
public enum JSON {
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public let message: String
        /// Byte offset in the input where decoding failed; nil for encoding errors.
        public let offset: Int?

        public var description: String {
            if let offset { return "invalid JSON at byte \(offset): \(message)" }
            return message
        }
    }

    /// Nesting deeper than this is rejected, so hostile input cannot exhaust the stack.
    public static let maximumDepth = 512

    /// Decodes one JSON value; `limits` bounds its nodes and bytes (see `ValueLimits`).
    public static func decode(_ text: String, limits: ValueLimits = .default) throws(JSON.Error) -> Value {
        var parser = Parser(bytes: Array(text.utf8), limits: limits)
        return try parser.parseDocument()
    }

    public static func decode(bytes: [UInt8], limits: ValueLimits = .default) throws(JSON.Error) -> Value {
        var parser = Parser(bytes: bytes, limits: limits)
        return try parser.parseDocument()
    }

    public static func encode(_ value: Value) throws(JSON.Error) -> String {
        var output = ""
        try write(value, into: &output, depth: 0)
        return output
    }

    private static func write(_ value: Value, into output: inout String, depth: Int) throws(JSON.Error) {
        guard depth <= maximumDepth else { throw Error(message: "value nested deeper than \(maximumDepth) levels", offset: nil) }
        switch value {
        case .null: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .int(let number): output += String(number)
        case .double(let number):
            guard number.isFinite else { throw Error(message: "\(number) cannot be represented in JSON", offset: nil) }
            output += formatDouble(number)
        case .string(let text): writeString(text, into: &output)
        case .list(let items):
            output += "["
            for (index, item) in items.enumerated() {
                if index > 0 { output += "," }
                try write(item, into: &output, depth: depth + 1)
            }
            output += "]"
        case .map(let entries):
            output += "{"
            for (index, key) in entries.keys.sorted().enumerated() {
                if index > 0 { output += "," }
                writeString(key, into: &output)
                output += ":"
                try write(entries[key]!, into: &output, depth: depth + 1)
            }
            output += "}"
        }
    }

    /// A float always has a fraction or an exponent, so it reads back as a float.
    public static func formatDouble(_ number: Double) -> String {
        var text = "\(number)"
        if !text.contains(".") && !text.contains("e") && !text.contains("n") && !text.contains("i") {
            text += ".0"
        }
        return text
    }

    static func writeString(_ text: String, into output: inout String) {
        output += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case "\u{08}": output += "\\b"
            case "\u{0C}": output += "\\f"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    let hex = String(scalar.value, radix: 16)
                    output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        output += "\""
    }

    private struct Parser {
        let bytes: [UInt8]
        var position = 0
        var budget: ValueBudget

        init(bytes: [UInt8], limits: ValueLimits) {
            self.bytes = bytes
            budget = ValueBudget(limits)
        }

        /// Counts one node of the value being built.
        mutating func count(stringBytes: Int = 0) throws(JSON.Error) {
            if let exceeded = budget.charge(stringBytes: stringBytes) { throw fail("the value has \(exceeded)") }
        }

        mutating func parseDocument() throws(JSON.Error) -> Value {
            skipWhitespace()
            let value = try parseValue(depth: 0)
            skipWhitespace()
            guard position == bytes.count else { throw fail("unexpected text after the value") }
            return value
        }

        func fail(_ message: String) -> JSON.Error { JSON.Error(message: message, offset: position) }

        mutating func skipWhitespace() {
            while position < bytes.count {
                switch bytes[position] {
                case 0x20, 0x09, 0x0A, 0x0D: position += 1
                default: return
                }
            }
        }

        mutating func parseValue(depth: Int) throws(JSON.Error) -> Value {
            guard depth <= JSON.maximumDepth else { throw fail("nested deeper than \(JSON.maximumDepth) levels") }
            guard position < bytes.count else { throw fail("unexpected end of input") }
            if bytes[position] != UInt8(ascii: "\"") { try count() }
            switch bytes[position] {
            case UInt8(ascii: "{"): return try parseObject(depth: depth)
            case UInt8(ascii: "["): return try parseArray(depth: depth)
            case UInt8(ascii: "\""):
                let text = try parseString()
                try count(stringBytes: text.utf8.count)
                return .string(text)
            case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
            case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
            case UInt8(ascii: "n"): try expectWord("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
            default: throw fail("unexpected character")
            }
        }

        mutating func expectWord(_ word: StaticString) throws(JSON.Error) {
            let count = word.utf8CodeUnitCount
            guard position + count <= bytes.count else { throw fail("unexpected end of input") }
            let start = position
            let matches = word.withUTF8Buffer { buffer in
                (0..<count).allSatisfy { bytes[start + $0] == buffer[$0] }
            }
            guard matches else { throw fail("unexpected character") }
            position += count
        }

        mutating func parseObject(depth: Int) throws(JSON.Error) -> Value {
            position += 1
            var entries: [String: Value] = [:]
            skipWhitespace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
                position += 1
                return .map(entries)
            }
            while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try parseString()
                if let exceeded = budget.charge(nodes: 0, stringBytes: key.utf8.count) { throw fail("the value has \(exceeded)") }
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                position += 1
                skipWhitespace()
                entries[key] = try parseValue(depth: depth + 1)
                skipWhitespace()
                guard position < bytes.count else { throw fail("unexpected end of input") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .map(entries) }
                throw fail("expected ',' or '}'")
            }
        }

        mutating func parseArray(depth: Int) throws(JSON.Error) -> Value {
            position += 1
            var items: [Value] = []
            skipWhitespace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
                position += 1
                return .list(items)
            }
            while true {
                skipWhitespace()
                items.append(try parseValue(depth: depth + 1))
                skipWhitespace()
                guard position < bytes.count else { throw fail("unexpected end of input") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return .list(items) }
                throw fail("expected ',' or ']'")
            }
        }

        mutating func parseHex4() throws(JSON.Error) -> UInt32 {
            guard position + 4 <= bytes.count else { throw fail("truncated \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[position]
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: throw fail("invalid \\u escape")
                }
                value = value * 16 + digit
                position += 1
            }
            return value
        }

        mutating func parseString() throws(JSON.Error) -> String {
            position += 1
            var scalars = String.UnicodeScalarView()
            var runStart = position
            func flushRun(_ parser: Parser, upTo end: Int) {
                if end > runStart {
                    scalars.append(contentsOf: String(decoding: parser.bytes[runStart..<end], as: UTF8.self).unicodeScalars)
                }
            }
            while true {
                guard position < bytes.count else { throw fail("unterminated string") }
                let byte = bytes[position]
                if byte == UInt8(ascii: "\"") {
                    flushRun(self, upTo: position)
                    position += 1
                    return String(scalars)
                }
                if byte < 0x20 { throw fail("control character in string") }
                if byte != UInt8(ascii: "\\") {
                    position += 1
                    continue
                }
                flushRun(self, upTo: position)
                position += 1
                guard position < bytes.count else { throw fail("unterminated string") }
                let escape = bytes[position]
                position += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try parseHex4()
                    if (0xD800...0xDBFF).contains(code) {
                        guard position + 1 < bytes.count, bytes[position] == UInt8(ascii: "\\"),
                              bytes[position + 1] == UInt8(ascii: "u") else { throw fail("unpaired surrogate") }
                        position += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired surrogate") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(code) {
                        throw fail("unpaired surrogate")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw fail("invalid code point") }
                    scalars.append(scalar)
                default: throw fail("invalid escape")
                }
                runStart = position
            }
        }

        mutating func parseNumber() throws(JSON.Error) -> Value {
            let start = position
            var isFloat = false
            if bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard position < bytes.count, isDigit(bytes[position]) else { throw fail("invalid number") }
            if bytes[position] == UInt8(ascii: "0") {
                position += 1
            } else {
                while position < bytes.count && isDigit(bytes[position]) { position += 1 }
            }
            if position < bytes.count && bytes[position] == UInt8(ascii: ".") {
                isFloat = true
                position += 1
                guard position < bytes.count, isDigit(bytes[position]) else { throw fail("invalid number") }
                while position < bytes.count && isDigit(bytes[position]) { position += 1 }
            }
            if position < bytes.count && (bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E")) {
                isFloat = true
                position += 1
                if position < bytes.count && (bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-")) {
                    position += 1
                }
                guard position < bytes.count, isDigit(bytes[position]) else { throw fail("invalid number") }
                while position < bytes.count && isDigit(bytes[position]) { position += 1 }
            }
            let text = String(decoding: bytes[start..<position], as: UTF8.self)
            if !isFloat, let integer = Int64(text) { return .int(integer) }
            guard let number = Double(text), number.isFinite else { throw fail("number out of range") }
            return .double(number)
        }

        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
    }
}
