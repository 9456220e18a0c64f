/// One log line in the text format, `TIME LEVEL LABEL: MESSAGE key=value …`, written so that no
/// message or value can forge another line or another field: control characters (line breaks
/// included, and Unicode's line and paragraph separators) are escaped as `\n`, `\r`, `\t`, `\u{…}`;
/// a message or value holding a space, `=`, `"` or an escape is written in double quotes with `"` and
/// `\` escaped; keys keep only letters, digits and `._-/` (others become `_`). Plugins choose their
/// messages and field names, so every part is treated as hostile.
public enum LogLine {
    public static func text(timestamp: String, level: String, label: String, message: String,
                            metadata: [(key: String, value: String)]) -> String {
        var line = "\(timestamp) \(level) \(key(label)): \(field(message, quoteSpaces: false))"
        for (name, value) in metadata { line += " \(key(name))=\(field(value, quoteSpaces: true))" }
        return line
    }

    /// A field key: `[A-Za-z0-9._/-]`, anything else `_`.
    static func key(_ text: String) -> String {
        let kept = text.unicodeScalars.map { scalar -> String in
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", ".", "_", "-", "/": return String(scalar)
            default: return "_"
            }
        }.joined()
        return kept.isEmpty ? "_" : kept
    }

    /// A message (spaces allowed unquoted) or value, escaped and quoted when needed.
    static func field(_ text: String, quoteSpaces: Bool) -> String {
        var escaped = ""
        var needsQuotes = text.isEmpty && quoteSpaces
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": escaped += "\\n"; needsQuotes = true
            case "\r": escaped += "\\r"; needsQuotes = true
            case "\t": escaped += "\\t"; needsQuotes = true
            case "\"": escaped += "\\\""; needsQuotes = true
            case "\\": escaped += "\\\\"
            case "=": escaped += "="; needsQuotes = true
            case " ": escaped += " "; needsQuotes = needsQuotes || quoteSpaces
            default:
                let value = scalar.value
                if value < 0x20 || value == 0x7F || (0x80...0x9F).contains(value) || value == 0x2028 || value == 0x2029 {
                    escaped += "\\u{\(String(value, radix: 16))}"
                    needsQuotes = true
                } else {
                    escaped.unicodeScalars.append(scalar)
                }
            }
        }
        return needsQuotes ? "\"\(escaped)\"" : escaped
    }
}
