internal import Foundation
internal import MaestroValue

/// Finds the line of a schema key in `schema.lua`, so that a schema mistake reads `file:line`.
///
/// A Lua table keeps no line numbers, so the source is read instead: a small tokenizer (comments and
/// strings skipped) lists every table key (`name =`, `["name"] =`) with its line, and a key path such
/// as `sink.fields.tenant.requried` is found by looking for each key after the previous one. When the
/// rule comes from a module the schema requires (`_lib/otel.lua`), the rest of the path is looked for
/// there; failing that, the deepest key found in `schema.lua` is named.
struct SchemaSourceLocator {
    struct Key: Equatable {
        let name: String
        let line: Int
        /// How many tables enclose the key (`return { sink = {` puts `sink` at 1).
        var depth = 0
    }

    /// `plugins/x/schema.lua:12`, or the file alone when no key of the path is found.
    static func locate(_ path: String, schemaFile: String, displayName: String, root: String) -> String {
        let keys = path.split(separator: ".").map(String.init)
        guard let source = TextFile.read(schemaFile) else { return displayName }
        let schemaKeys = Self.keys(in: source)
        let (found, line) = Self.find(keys, in: schemaKeys)
        if found == keys.count, let line { return "\(displayName):\(line)" }
        // The rest of the path may be in a required module (a rule shared through _lib).
        let rest = Array(keys[found...])
        for module in Self.requiredModules(in: source) {
            let relative = module.split(separator: ".").joined(separator: "/") + ".lua"
            guard let text = TextFile.read(root + "/" + relative) else { continue }
            for start in rest.indices {
                let (libraryFound, libraryLine) = Self.find(Array(rest[start...]), in: Self.keys(in: text))
                if libraryFound == rest.count - start, let libraryLine {
                    return "\((root as NSString).lastPathComponent)/\(relative):\(libraryLine)"
                }
            }
        }
        if let line { return "\(displayName):\(line)" }
        return displayName
    }

    /// How many leading keys were found in order, and the line of the last one found. Each key is looked
    /// for first among the direct keys of the previous one's table (`b` of `fields`, not the `b` nested
    /// in an earlier field `a`), then anywhere after it (a rule held in a local variable).
    static func find(_ path: [String], in keys: [Key]) -> (Int, Int?) {
        var position = 0
        var parent: Int?
        var line: Int?
        var found = 0
        for name in path {
            var match: Int?
            if let parent {
                let depth = keys[parent].depth
                let end = keys[position...].firstIndex { $0.depth <= depth } ?? keys.endIndex
                match = keys[position..<end].firstIndex { $0.name == name && $0.depth == depth + 1 }
            }
            guard let index = match ?? keys[position...].firstIndex(where: { $0.name == name }) else { break }
            position = index + 1
            parent = index
            line = keys[index].line
            found += 1
        }
        return (found, line)
    }

    static func requiredModules(in source: String) -> [String] {
        var modules: [String] = []
        let tokens = Self.tokens(in: source)
        for index in tokens.indices where tokens[index].text == "require" && tokens[index].kind == .name {
            var next = index + 1
            if next < tokens.count && tokens[next].text == "(" { next += 1 }
            if next < tokens.count && tokens[next].kind == .string { modules.append(tokens[next].text) }
        }
        return modules
    }

    enum TokenKind { case name, string, symbol }
    struct Token {
        let kind: TokenKind
        let text: String
        let line: Int
    }

    /// Table keys in source order: a name or a bracketed string followed by a single `=`.
    static func keys(in source: String) -> [Key] {
        let tokens = Self.tokens(in: source)
        var keys: [Key] = []
        var depth = 0
        for index in tokens.indices {
            let token = tokens[index]
            if token.kind == .symbol && token.text == "{" { depth += 1 }
            if token.kind == .symbol && token.text == "}" { depth = max(0, depth - 1) }
            if token.kind == .name, index + 1 < tokens.count, tokens[index + 1].text == "=",
               index == 0 || ["{", ",", ";"].contains(tokens[index - 1].text) {
                keys.append(Key(name: token.text, line: token.line, depth: depth))
            } else if token.kind == .string, index >= 1, tokens[index - 1].text == "[", index + 2 < tokens.count,
                      tokens[index + 1].text == "]", tokens[index + 2].text == "=" {
                keys.append(Key(name: token.text, line: token.line, depth: depth))
            }
        }
        return keys
    }

    static func tokens(in source: String) -> [Token] {
        let bytes = Array(source.utf8)
        var tokens: [Token] = []
        var index = 0
        var line = 1
        func isNameByte(_ byte: UInt8) -> Bool {
            (byte >= 97 && byte <= 122) || (byte >= 65 && byte <= 90) || (byte >= 48 && byte <= 57) || byte == 95
        }
        /// The level of a long bracket `[==[` at `start`, or nil.
        func longBracket(at start: Int) -> Int? {
            guard start < bytes.count, bytes[start] == UInt8(ascii: "[") else { return nil }
            var cursor = start + 1
            var level = 0
            while cursor < bytes.count && bytes[cursor] == UInt8(ascii: "=") {
                level += 1
                cursor += 1
            }
            return cursor < bytes.count && bytes[cursor] == UInt8(ascii: "[") ? level : nil
        }
        /// Skips a long string of `level` starting at `start`; returns its text.
        func skipLong(_ start: Int, level: Int) -> String {
            var cursor = start + level + 2
            let contentStart = cursor
            let closing = [UInt8(ascii: "]")] + Array(repeating: UInt8(ascii: "="), count: level) + [UInt8(ascii: "]")]
            while cursor < bytes.count {
                if bytes[cursor] == UInt8(ascii: "\n") { line += 1 }
                if bytes[cursor] == UInt8(ascii: "]"), cursor + closing.count <= bytes.count, Array(bytes[cursor..<cursor + closing.count]) == closing {
                    index = cursor + closing.count
                    return String(decoding: bytes[contentStart..<cursor], as: UTF8.self)
                }
                cursor += 1
            }
            index = bytes.count
            return String(decoding: bytes[contentStart..<bytes.count], as: UTF8.self)
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\n") {
                line += 1
                index += 1
            } else if byte == UInt8(ascii: "-"), index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "-") {
                if let level = longBracket(at: index + 2) {
                    _ = skipLong(index + 2, level: level)
                } else {
                    while index < bytes.count && bytes[index] != UInt8(ascii: "\n") { index += 1 }
                }
            } else if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") {
                let startLine = line
                var cursor = index + 1
                var text: [UInt8] = []
                while cursor < bytes.count && bytes[cursor] != byte && bytes[cursor] != UInt8(ascii: "\n") {
                    if bytes[cursor] == UInt8(ascii: "\\"), cursor + 1 < bytes.count {
                        cursor += 1
                        if bytes[cursor] == UInt8(ascii: "\n") { line += 1 }
                    }
                    text.append(bytes[cursor])
                    cursor += 1
                }
                index = cursor + 1
                tokens.append(Token(kind: .string, text: String(decoding: text, as: UTF8.self), line: startLine))
            } else if let level = longBracket(at: index) {
                let startLine = line
                let text = skipLong(index, level: level)
                tokens.append(Token(kind: .string, text: text, line: startLine))
            } else if isNameByte(byte) {
                var cursor = index
                while cursor < bytes.count && isNameByte(bytes[cursor]) { cursor += 1 }
                tokens.append(Token(kind: .name, text: String(decoding: bytes[index..<cursor], as: UTF8.self), line: line))
                index = cursor
            } else if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") {
                index += 1
            } else {
                // `==`, `<=`, `>=`, `~=` are one symbol, so a comparison is never taken for a key.
                if index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "="), [UInt8(ascii: "="), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "~")].contains(byte) {
                    tokens.append(Token(kind: .symbol, text: String(decoding: bytes[index...index + 1], as: UTF8.self), line: line))
                    index += 2
                } else {
                    tokens.append(Token(kind: .symbol, text: String(UnicodeScalar(byte)), line: line))
                    index += 1
                }
            }
        }
        return tokens
    }
}
