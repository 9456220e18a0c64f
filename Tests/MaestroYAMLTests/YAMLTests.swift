import Foundation
import MaestroValue
import MaestroTestSupport
import Testing

@testable import MaestroYAML

/// Strings that a careless emitter turns into something else in YAML 1.1 or 1.2.
let trickyStrings: [String] = [
    "1234123", "007", "1_000", "1e3", "0x1F", ".5", ".inf", "12:30", "2024-01-01", "true", "false", "yes", "no",
    "on", "off", "y", "n", "Y", "NO", "True", "null", "Null", "~", "<<", "=", "", " lead", "trail ", "a\"b: c", "- x", "#x", "x #y",
    "@x", "`x", "*x", "&x", "!x", "%x", "{a}", "[a]", "a: b", "a:", "line one\nline two\n", "two\n\nblank lines\n\n",
    "tab\there", "🚀", "ü", "-", "?", "? x", "|", ">", "'", "\"", "\\", "0o17", "+1", "-1.5", ".NaN", "1:2:3",
    "https://acme.com/prom/push", "0.0.0.0:13133", "basicauth/exporter", "X-Scope-OrgID", "\u{7}bell", "nul\u{0}byte",
    "trailing newline\n", "\n", "crlf\r\nline", String(repeating: "x", count: 65_536),
]

@Suite("YAML", .testThreads, .timeLimit(.minutes(2)))
struct YAMLTests {
    @Test("every tricky string survives our own round trip", arguments: trickyStrings)
    func roundTripString(_ text: String) throws {
        let value: Value = .map(["key": .string(text), text: "as key"])
        let emitted = try YAML.emit(value)
        #expect(try YAML.parse(emitted) == value, "emitted: \(emitted.prefix(200))")
    }

    @Test("scalars keep their type")
    func scalarTypes() throws {
        let value: Value = .map([
            "int": 42, "negative": -7, "float": 1.5, "whole float": 2.0, "big float": 1e20, "small float": 1e-7,
            "true": true, "false": false, "null": .null, "list": [1, "2", 3.0], "empty list": .list([]), "empty map": .map([:]),
        ])
        let emitted = try YAML.emit(value)
        #expect(try YAML.parse(emitted) == value)
        #expect(emitted.contains("big float: 1.0e+20"))
        #expect(emitted.contains("empty map: {}"))
    }

    @Test("the same map gives the same bytes, keys sorted")
    func stableBytes() throws {
        var entries: [String: Value] = [:]
        for index in 0..<200 { entries["key-\(index)"] = .int(Int64(index)) }
        let first = try YAML.emit(.map(entries))
        let second = try YAML.emit(.map(Dictionary(uniqueKeysWithValues: entries.reversed())))
        #expect(first == second)
        #expect(first.hasPrefix("key-0: 0\nkey-1: 1\nkey-10: 10\n"))
    }

    @Test("multi-document parse and emit")
    func multiDocument() throws {
        let documents: [Value] = [["kind": "Secret"], ["kind": "Deployment", "spec": ["replicas": 1]], ["kind": "Service"]]
        let text = try YAML.emitAll(documents)
        #expect(text.components(separatedBy: "---").count == 3)
        #expect(try YAML.parseAll(text) == documents)
        #expect(try YAML.parseAll("a: 1\n---\nb: 2\n...\n---\n- x\n") == [["a": 1], ["b": 2], ["x"]])
        #expect(try YAML.parseAll("") == [])
    }

    static let malformed: [(String, Int)] = [
        ("a: [1, 2\nb: 3\n", 2),
        ("key: \"unterminated\n", 2),
        ("a: 1\na: 2\n", 2),
        ("- a\nb: c\n", 2),
        ("a:\n  - b\n c: d\n", 3),
        ("*unknown\n", 1),
    ]

    @Test("malformed YAML is a typed error with line and column", arguments: malformed)
    func malformedInput(_ input: (String, Int)) throws {
        let error = try #require(throws: YAMLError.self) { try YAML.parseAll(input.0) }
        #expect(error.line == input.1, "\(error)")
        #expect(error.column != nil)
    }

    @Test("core schema resolution of plain scalars")
    func coreSchema() throws {
        let parsed = try YAML.parse("""
        a: 0x1F
        b: 0o17
        c: 1e3
        d: .5
        e: -.inf
        f: ~
        g: yes
        h: 007
        i: "123"
        j: !!str 123
        k: 12:30
        l: 99999999999999999999
        """)
        #expect(parsed["a"] == .int(31))
        #expect(parsed["b"] == .int(15))
        #expect(parsed["c"] == .double(1000))
        #expect(parsed["d"] == .double(0.5))
        #expect(parsed["e"] == .double(-.infinity))
        #expect(parsed["f"] == .null)
        #expect(parsed["g"] == .string("yes"))
        #expect(parsed["h"] == .int(7))
        #expect(parsed["i"] == .string("123"))
        #expect(parsed["j"] == .string("123"))
        #expect(parsed["k"] == .string("12:30"))
        #expect(parsed["l"] == .double(1e20))
    }

    @Test("aliases are expanded but bounded")
    func aliases() throws {
        #expect(try YAML.parse("a: &x [1, 2]\nb: *x\n") == ["a": [1, 2], "b": [1, 2]])
        var bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1..<9 { bomb += "\(Character(UnicodeScalar(97 + level)!)): &\(Character(UnicodeScalar(97 + level)!)) [" + Array(repeating: "*\(Character(UnicodeScalar(96 + level)!))", count: 10).joined(separator: ", ") + "]\n" }
        let error = try #require(throws: YAMLError.self) { try YAML.parse(bomb) }
        #expect(error.kind == .unsupported)
    }

    @Test("the alias budget holds across the documents of a stream, not per document")
    func aliasesAcrossDocuments() throws {
        // One document expands to 111,110 nodes, under the limit of 1,000,000; ten of them are over it.
        var document = "---\na: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        for (previous, name) in zip(["a", "b", "c", "d"], ["b", "c", "d", "e"]) {
            document += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
        }
        #expect(try YAML.parseAll(document).count == 1)
        let error = try #require(throws: YAMLError.self) { try YAML.parseAll(String(repeating: document, count: 10)) }
        #expect(error.kind == .unsupported)
        #expect(error.message.contains("1000000 nodes"), "\(error.message)")
    }

    @Test("PyYAML reads our output as the same values")
    func pyYAMLRoundTrip() throws {
        var entries: [String: Value] = [:]
        for (index, text) in trickyStrings.enumerated() where !text.contains("\u{0}") && !text.contains("\u{7}") {
            entries["s\(index)"] = .string(text)
        }
        entries["int"] = 1234123
        entries["float"] = 1.5
        entries["big"] = 1e20
        entries["bool"] = true
        entries["null"] = .null
        let yaml = try YAML.emit(.map(entries))
        let json = try runPython("""
        import sys, json, yaml
        print(json.dumps(yaml.safe_load(sys.stdin.read())))
        """, input: yaml)
        #expect(try JSON.decode(json) == .map(entries))
    }
}

/// Nested values built from the tricky strings by a seeded generator: lists of lists, maps in lists,
/// empty collections, multi-line text at every depth, keys that are tricky or over 1,024 characters.
struct ValueGenerator {
    var state: UInt64

    mutating func next(_ bound: Int) -> Int {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Int((state >> 33) % UInt64(bound))
    }

    mutating func string() -> String {
        switch next(6) {
        case 0: return String(repeating: "k", count: 1_100 + next(50))
        case 1: return "multi\nline \(next(100))\n  indented\n\nlast"
        default: return trickyStrings[next(trickyStrings.count)]
        }
    }

    mutating func value(depth: Int) -> Value {
        switch depth > 4 ? next(5) : next(8) {
        case 0: return .int(Int64(next(1_000_000)) - 500_000)
        case 1: return .double(Double(next(10_000)) / 7)
        case 2: return .bool(next(2) == 0)
        case 3: return .null
        case 4: return .string(string())
        case 5: return .list((0..<next(4)).map { _ in value(depth: depth + 1) })
        default:
            var entries: [String: Value] = [:]
            for _ in 0..<next(4) { entries[string()] = value(depth: depth + 1) }
            return .map(entries)
        }
    }
}

@Suite("YAML emitter on generated structures", .testThreads, .timeLimit(.minutes(2)))
struct YAMLGeneratedTests {
    static let values: [Value] = {
        var generator = ValueGenerator(state: 42)
        return (0..<300).map { _ in .map(["root": generator.value(depth: 0), "list": .list([generator.value(depth: 1), generator.value(depth: 1)])]) }
    }()

    @Test("300 generated documents parse back equal with libyaml")
    func libyaml() throws {
        for value in Self.values {
            let emitted = try YAML.emit(value)
            #expect(try YAML.parse(emitted) == value, "emitted:\n\(emitted.prefix(2_000))")
        }
        let all = try YAML.emitAll(Self.values)
        #expect(try YAML.parseAll(all) == Self.values)
    }

    @Test("the same documents parse back equal with PyYAML")
    func pyYAML() throws {
        let values = Self.values.map { value in value.withoutControlCharacters }
        let json = try runPython("""
        import sys, json, yaml
        print(json.dumps(list(yaml.safe_load_all(sys.stdin.read()))))
        """, input: try YAML.emitAll(values))
        #expect(try JSON.decode(json) == .list(values))
    }
}

extension Value {
    /// PyYAML refuses NUL and BEL even escaped in some versions' readers; the libyaml test keeps them.
    var withoutControlCharacters: Value {
        switch self {
        case .string(let text): return .string(text.filter { $0 != "\u{0}" && $0 != "\u{7}" })
        case .list(let items): return .list(items.map(\.withoutControlCharacters))
        case .map(let entries):
            return .map(Dictionary(entries.map { ($0.key.filter { $0 != "\u{0}" && $0 != "\u{7}" }, $0.value.withoutControlCharacters) },
                                   uniquingKeysWith: { first, _ in first }))
        default: return self
        }
    }
}

/// Runs a Python snippet with `input` on stdin and returns its stdout.
func runPython(_ code: String, input: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", code]
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    let writer = Thread {
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    let errors = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw NSError(domain: "python", code: Int(process.terminationStatus), userInfo: [NSLocalizedDescriptionKey: String(decoding: errors, as: UTF8.self)])
    }
    return String(decoding: output, as: UTF8.self)
}
