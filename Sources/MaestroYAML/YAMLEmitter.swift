internal import CLibYAML
public import MaestroValue

extension YAML {
    /// Emits one document in block style, map keys sorted.
    public static func emit(_ value: Value) throws(YAMLError) -> String {
        try emitAll([value])
    }

    /// Emits several documents separated by `---`.
    public static func emitAll(_ documents: [Value]) throws(YAMLError) -> String {
        let emitter = Emitter()
        return try emitter.emit(documents)
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
        return !yaml11Words.contains(text.lowercased())
    }

    /// Plain words that YAML 1.1 (PyYAML, Go's yaml.v2) or 1.2 read as booleans or null.
    static let yaml11Words: Set<String> = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]

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

/// Owns one libyaml emitter for the duration of an `emit` call.
private final class Emitter {
    var output: [UInt8] = []
    var emitter = yaml_emitter_t()

    func emit(_ documents: [Value]) throws(YAMLError) -> String {
        guard yaml_emitter_initialize(&emitter) == 1 else { throw failure("cannot initialise the emitter") }
        defer { yaml_emitter_delete(&emitter) }
        yaml_emitter_set_unicode(&emitter, 1)
        yaml_emitter_set_width(&emitter, -1)
        yaml_emitter_set_indent(&emitter, 2)
        let context = Unmanaged.passUnretained(self).toOpaque()
        yaml_emitter_set_output(&emitter, { context, buffer, size in
            guard let context, let buffer else { return 0 }
            let emitter = Unmanaged<Emitter>.fromOpaque(context).takeUnretainedValue()
            emitter.output.append(contentsOf: UnsafeBufferPointer(start: buffer, count: size))
            return 1
        }, context)

        var event = yaml_event_t()
        yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING)
        try send(&event)
        for document in documents {
            yaml_document_start_event_initialize(&event, nil, nil, nil, 1)
            try send(&event)
            try emitNode(document, depth: 0)
            yaml_document_end_event_initialize(&event, 1)
            try send(&event)
        }
        yaml_stream_end_event_initialize(&event)
        try send(&event)
        return String(decoding: output, as: UTF8.self)
    }

    func failure(_ message: String) -> YAMLError {
        YAMLError(kind: .emitter, message: message, line: nil, column: nil)
    }

    func send(_ event: inout yaml_event_t) throws(YAMLError) {
        guard yaml_emitter_emit(&emitter, &event) == 1 else {
            let problem = emitter.problem.map { String(cString: $0) } ?? "emitter failure"
            throw failure(problem)
        }
    }

    func emitNode(_ value: Value, depth: Int) throws(YAMLError) {
        guard depth < YAML.maximumDepth else { throw failure("value nested deeper than \(YAML.maximumDepth) levels") }
        var event = yaml_event_t()
        switch value {
        case .null:
            try emitScalar("null", style: YAML_PLAIN_SCALAR_STYLE)
        case .bool(let flag):
            try emitScalar(flag ? "true" : "false", style: YAML_PLAIN_SCALAR_STYLE)
        case .int(let number):
            try emitScalar(String(number), style: YAML_PLAIN_SCALAR_STYLE)
        case .double(let number):
            try emitScalar(YAML.formatFloat(number), style: YAML_PLAIN_SCALAR_STYLE)
        case .string(let text):
            try emitString(text)
        case .list(let items):
            yaml_sequence_start_event_initialize(&event, nil, nil, 1, YAML_BLOCK_SEQUENCE_STYLE)
            try send(&event)
            for item in items { try emitNode(item, depth: depth + 1) }
            yaml_sequence_end_event_initialize(&event)
            try send(&event)
        case .map(let entries):
            yaml_mapping_start_event_initialize(&event, nil, nil, 1, YAML_BLOCK_MAPPING_STYLE)
            try send(&event)
            for key in entries.keys.sorted() {
                try emitString(key)
                try emitNode(entries[key]!, depth: depth + 1)
            }
            yaml_mapping_end_event_initialize(&event)
            try send(&event)
        }
    }

    func emitString(_ text: String) throws(YAMLError) {
        if YAML.isPlainSafe(text) {
            try emitScalar(text, style: YAML_PLAIN_SCALAR_STYLE)
        } else if text.contains("\n") && isLiteralFriendly(text) {
            // libyaml falls back to double quotes by itself when a literal block cannot hold the text.
            try emitScalar(text, style: YAML_LITERAL_SCALAR_STYLE, quotedOnly: true)
        } else {
            try emitScalar(text, style: YAML_DOUBLE_QUOTED_SCALAR_STYLE, quotedOnly: true)
        }
    }

    /// Multi-line text is easier to read as a literal block, unless it holds characters that need escapes.
    func isLiteralFriendly(_ text: String) -> Bool {
        !text.unicodeScalars.contains { scalar in
            (scalar.value < 0x20 && scalar != "\n") || scalar.value == 0x7F || scalar.value == 0xFEFF
                || scalar.value == 0x85 || scalar.value == 0x2028 || scalar.value == 0x2029
        } && !text.hasPrefix(" ") && !text.hasSuffix(" ")
    }

    func emitScalar(_ text: String, style: yaml_scalar_style_t, quotedOnly: Bool = false) throws(YAMLError) {
        var event = yaml_event_t()
        var copy = text
        let plainImplicit: Int32 = quotedOnly ? 0 : 1
        let initialised: Int32 = copy.withUTF8 { buffer in
            // libyaml copies the bytes; it only needs a non-null pointer, also for an empty string.
            var empty: UInt8 = 0
            if buffer.isEmpty {
                return yaml_scalar_event_initialize(&event, nil, nil, &empty, 0, plainImplicit, 1, style)
            }
            return yaml_scalar_event_initialize(&event, nil, nil, UnsafeMutablePointer(mutating: buffer.baseAddress!),
                                                Int32(buffer.count), plainImplicit, 1, style)
        }
        guard initialised == 1 else { throw failure("cannot create a scalar event") }
        try send(&event)
    }
}
