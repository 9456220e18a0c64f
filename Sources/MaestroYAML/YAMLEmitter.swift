public import MaestroValue

extension YAML {
    /// Emits one document in block style, map keys sorted.
    public static func emit(_ value: Value) throws(YAMLError) -> String {
        try emitAll([value])
    }

    /// Emits several documents separated by `---`.
    public static func emitAll(_ documents: [Value]) throws(YAMLError) -> String {
        var emitter = BlockEmitter()
        for (index, document) in documents.enumerated() {
            if index > 0 { emitter.append("---\n") }
            try emitter.document(document)
        }
        return String(decoding: emitter.output, as: UTF8.self)
    }

    /// Whether `text` may be written as a plain scalar and still read back as this very string by any
    /// YAML 1.1 or 1.2 reader. Conservative on purpose: anything doubtful is quoted.
    public static func isPlainSafe(_ text: String) -> Bool {
        let utf8 = text.utf8
        guard let first = utf8.first, let last = utf8.last else { return false }
        // A letter or '/' first: never a number, a date, an indicator or a sexagesimal in YAML 1.1.
        guard isASCIILetter(first) || first == UInt8(ascii: "/") else { return false }
        // ':' last or before a space would start a map; '#' after a space starts a comment.
        guard last != UInt8(ascii: ":"), last != UInt8(ascii: " ") else { return false }
        var previous: UInt8 = 0
        for byte in utf8 {
            if byte == UInt8(ascii: " ") && previous == UInt8(ascii: ":") { return false }
            if byte == UInt8(ascii: "#") && previous == UInt8(ascii: " ") { return false }
            previous = byte
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: "-"), UInt8(ascii: "+"),
                 UInt8(ascii: "="), UInt8(ascii: "@"), UInt8(ascii: ":"), UInt8(ascii: " "):
                break
            default:
                return false
            }
        }
        // The words are short: compare case-insensitively without building a lowercased copy.
        guard utf8.count <= 5 else { return true }
        return !yaml11Words.contains { word in
            word.utf8.count == utf8.count && zip(word.utf8, utf8).allSatisfy { $0 == ($1 | 0x20) }
        }
    }

    /// Plain words that YAML 1.1 (PyYAML, Go's yaml.v2) or 1.2 read as booleans or null.
    static let yaml11Words: [String] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]

    static func isASCIILetter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    /// A float that YAML 1.1 also reads as a float: 1.1 wants a '.' and a signed exponent.
    static func formatFloat(_ number: Double) -> String {
        if number.isNaN { return ".nan" }
        if number.isInfinite { return number < 0 ? "-.inf" : ".inf" }
        var text = "\(number)"
        if let exponent = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            let mantissa = text[..<exponent]
            var power = text[text.index(after: exponent)...]
            var sign = "+"
            if power.first == "-" || power.first == "+" {
                sign = String(power.first!)
                power = power.dropFirst()
            }
            text = (mantissa.contains(".") ? String(mantissa) : mantissa + ".0") + "e" + sign + power
        } else if !text.contains(".") {
            text += ".0"
        }
        return text
    }
}


/// Block-style YAML written directly (libyaml's event emitter was half the cost of rendering a
/// collector): maps with sorted keys, sequences not indented under their key, plain scalars only where
/// `isPlainSafe` allows, multi-line text as literal blocks, everything else double-quoted. The tests
/// parse its output back with libyaml and PyYAML.
struct BlockEmitter {
    var output: [UInt8] = []

    init() { output.reserveCapacity(4_096) }

    mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { output.append(contentsOf: $0) }
    }

    mutating func append(_ text: String) {
        output.append(contentsOf: text.utf8)
    }

    mutating func indent(_ count: Int) {
        for _ in 0..<count { output.append(0x20) }
    }

    mutating func document(_ value: Value) throws(YAMLError) {
        switch value {
        case .map(let entries) where !entries.isEmpty:
            try map(entries, indent: 0, firstInline: false, depth: 0)
        case .list(let items) where !items.isEmpty:
            try list(items, indent: 0, firstInline: false, depth: 0)
        default:
            // A root scalar: never a literal block, which would need an indentation of its own.
            inlineScalar(value, literalIndent: nil)
            output.append(0x0A)
        }
    }

    /// Writes an empty collection or a scalar after `key: ` or `- `. Literal blocks are indented by
    /// `literalIndent`; nil forbids them.
    mutating func inlineScalar(_ value: Value, literalIndent: Int?) {
        switch value {
        case .null: append("null")
        case .bool(let flag): flag ? append("true") : append("false")
        case .int(let number): append(String(number))
        case .double(let number): append(YAML.formatFloat(number))
        case .string(let text): string(text, literalIndent: literalIndent)
        case .list: append("[]")
        case .map: append("{}")
        }
    }

    mutating func map(_ entries: [String: Value], indent level: Int, firstInline: Bool, depth: Int) throws(YAMLError) {
        guard depth < YAML.maximumDepth else { throw YAMLError(kind: .emitter, message: "value nested deeper than \(YAML.maximumDepth) levels", line: nil, column: nil) }
        var first = true
        // Sorting the pairs, not the keys: a lookup per key would hash every key a second time.
        for (key, value) in entries.sorted(by: { $0.key < $1.key }) {
            if !(first && firstInline) { indent(level) }
            first = false
            // Implicit keys are limited to 1,024 characters as written (escapes included): longer ones use
            // the explicit `? key` form.
            let keyStart = output.count
            if YAML.isPlainSafe(key) { append(key) } else { doubleQuoted(key) }
            let explicit = output.count - keyStart > 1_000
            if explicit {
                output.insert(contentsOf: Array("? ".utf8), at: keyStart)
                output.append(0x0A)
                indent(level)
            }
            append(":")
            switch value {
            case .map(let nested) where !nested.isEmpty:
                output.append(0x0A)
                try map(nested, indent: level + 2, firstInline: false, depth: depth + 1)
            case .list(let items) where !items.isEmpty:
                output.append(0x0A)
                // Sequences under a key are not indented (libyaml's and kubectl's style); after an explicit
                // key they are, to stay clear of the `:` line.
                try list(items, indent: explicit ? level + 2 : level, firstInline: false, depth: depth + 1)
            default:
                output.append(0x20)
                inlineScalar(value, literalIndent: level + 2)
                output.append(0x0A)
            }
        }
    }

    mutating func list(_ items: [Value], indent level: Int, firstInline: Bool, depth: Int) throws(YAMLError) {
        guard depth < YAML.maximumDepth else { throw YAMLError(kind: .emitter, message: "value nested deeper than \(YAML.maximumDepth) levels", line: nil, column: nil) }
        for (index, item) in items.enumerated() {
            if !(index == 0 && firstInline) { indent(level) }
            append("- ")
            switch item {
            case .map(let nested) where !nested.isEmpty:
                try map(nested, indent: level + 2, firstInline: true, depth: depth + 1)
            case .list(let inner) where !inner.isEmpty:
                try list(inner, indent: level + 2, firstInline: true, depth: depth + 1)
            default:
                inlineScalar(item, literalIndent: level + 2)
                output.append(0x0A)
            }
        }
    }

    mutating func string(_ text: String, literalIndent: Int?) {
        if YAML.isPlainSafe(text) {
            append(text)
        } else if let literalIndent, Self.isLiteralFriendly(text) {
            literal(text, indent: literalIndent)
        } else {
            doubleQuoted(text)
        }
    }

    /// Multi-line text reads best as a literal block, unless a character needs an escape, a line ends in
    /// a space, or the first line with text starts with one (it would set the block's indentation).
    static func isLiteralFriendly(_ text: String) -> Bool {
        var sawBreak = false
        var previous: UInt8 = 0x0A
        var beforePrevious: UInt8 = 0
        var firstContentSeen = false
        for byte in text.utf8 {
            switch byte {
            case 0x0A:
                if previous == 0x20 { return false }
                sawBreak = true
            case 0x20:
                if !firstContentSeen && previous == 0x0A { return false }
                firstContentSeen = true
            case 0x00..<0x20, 0x7F:
                return false
            default:
                firstContentSeen = true
                // In UTF-8: U+0080–U+009F (C2 80–9F), U+2028/2029 (E2 80 A8/A9), U+FEFF (EF BB BF) need escapes.
                if previous == 0xC2 && byte < 0xA0 { return false }
                if beforePrevious == 0xE2 && previous == 0x80 && (byte == 0xA8 || byte == 0xA9) { return false }
                if beforePrevious == 0xEF && previous == 0xBB && byte == 0xBF { return false }
            }
            beforePrevious = previous
            previous = byte
        }
        return sawBreak && previous != 0x20 && firstContentSeen
    }

    /// `|`, `|-` or `|+` by the trailing line breaks, then each line indented (empty lines stay empty).
    mutating func literal(_ text: String, indent level: Int) {
        let bytes = Array(text.utf8)
        var trailingBreaks = 0
        while trailingBreaks < bytes.count && bytes[bytes.count - 1 - trailingBreaks] == 0x0A { trailingBreaks += 1 }
        switch trailingBreaks {
        case 0: append("|-\n")
        case 1: append("|\n")
        default: append("|+\n")
        }
        let body = trailingBreaks == 0 ? bytes[...] : bytes[..<(bytes.count - 1)]
        var lineStart = body.startIndex
        var index = body.startIndex
        while index <= body.endIndex {
            if index == body.endIndex || body[index] == 0x0A {
                if index > lineStart {
                    indent(level)
                    output.append(contentsOf: body[lineStart..<index])
                }
                output.append(0x0A)
                lineStart = index + 1
            }
            index += 1
        }
        // The line break that ends the last line was written by the loop; the caller writes none.
        output.removeLast()
    }

    mutating func doubleQuoted(_ text: String) {
        output.append(0x22)
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x22: append("\\\"")
            case 0x5C: append("\\\\")
            case 0x00: append("\\0")
            case 0x07: append("\\a")
            case 0x08: append("\\b")
            case 0x09: append("\\t")
            case 0x0A: append("\\n")
            case 0x0B: append("\\v")
            case 0x0C: append("\\f")
            case 0x0D: append("\\r")
            case 0x1B: append("\\e")
            case 0x85: append("\\N")
            case 0x2028: append("\\L")
            case 0x2029: append("\\P")
            case 0x20...0x7E:
                output.append(UInt8(scalar.value))
            case 0x00..<0x20, 0x7F..<0xA0:
                append("\\x" + Self.hex(scalar.value, digits: 2))
            case 0xFEFF, 0xFFFE, 0xFFFF:
                append("\\u" + Self.hex(scalar.value, digits: 4))
            default:
                output.append(contentsOf: String(scalar).utf8)
            }
        }
        output.append(0x22)
    }

    static func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
}
