import Foundation
import MaestroValue
import Testing

@testable import MaestroCore

/// The schema's own rules: strict options, checked defaults, string/number/list rules, hooks listed.
@Suite("Config schema rules", .timeLimit(.minutes(1)))
struct ConfigSchemaRulesTests {
    func schemaError(_ fields: Value, hooks: Bool = false) -> String? {
        do {
            _ = try ConfigSchema(fields: fields, path: "sink.fields", hooks: hooks)
            return nil
        } catch {
            return "\(error.field) | \(error.message)"
        }
    }

    func rejection(_ fields: Value, _ config: Value) throws -> String? {
        let schema = try ConfigSchema(fields: fields, path: "sink.fields", hooks: true)
        do {
            _ = try schema.validate(config)
            return nil
        } catch {
            return error.message
        }
    }

    static let mistakes: [(String, Value, String)] = [
        ("misspelled option", ["tenant": ["type": "word", "requried": true]],
         "sink.fields.tenant.requried | sink.fields.tenant.requried is not a rule option (did you mean required?)"),
        ("option of another type", ["port": ["type": "integer", "pattern": "^%d+$"]],
         "sink.fields.port.pattern | sink.fields.port.pattern does not apply to an integer field (it is an option of nonblank, string, url, word)"),
        ("default of the wrong type", ["tenant": ["type": "word", "default": 5]],
         "sink.fields.tenant.default | sink.fields.tenant.default must be a string (the default breaks the field's own rule)"),
        ("default breaking the field's pattern", ["tenant": ["type": "word", "pattern": "^t%-%d+$", "default": "acme"]],
         "sink.fields.tenant.default | sink.fields.tenant.default must match the pattern ^t%-%d+$ (the default breaks the field's own rule)"),
        ("default outside one_of", ["mode": ["type": "string", "one_of": ["a", "b"], "default": "c"]],
         "sink.fields.mode.default | sink.fields.mode.default must be one of a, b (the default breaks the field's own rule)"),
        ("malformed pattern", ["tenant": ["type": "string", "pattern": "[a-z"]],
         "sink.fields.tenant.pattern | sink.fields.tenant.pattern is not a valid Lua pattern: malformed pattern (missing ']')"),
        ("min greater than max", ["port": ["type": "integer", "min": 10, "max": 1]],
         "sink.fields.port.min | sink.fields.port.min is greater than max"),
        ("negative min_length", ["tenant": ["type": "string", "min_length": -1]],
         "sink.fields.tenant.min_length | sink.fields.tenant.min_length must be a whole number, 0 or more"),
        ("required not a boolean", ["tenant": ["type": "string", "required": "yes"]],
         "sink.fields.tenant.required | sink.fields.tenant.required must be true or false"),
        ("unknown option deep in a list's items", ["brokers": ["type": "list", "items": ["type": "string", "max_lenght": 5]]],
         "sink.fields.brokers.items.max_lenght | sink.fields.brokers.items.max_lenght is not a rule option (did you mean max_length?)"),
        ("unknown variants key", ["auth": ["type": "map", "variants": ["by": "type", "cases": ["a": .map([:])], "default": "a"]]],
         "sink.fields.auth.variants.default | sink.fields.auth.variants.default is not a variants option (by, cases)"),
        ("unknown option inside a variant", ["auth": ["type": "map", "variants": ["by": "type", "cases": ["a": ["user": ["type": "string", "secert": true]]]]]],
         "sink.fields.auth.variants.cases.a.user.secert | sink.fields.auth.variants.cases.a.user.secert is not a rule option (did you mean secret?)"),
    ]

    @Test("each schema mistake is refused, naming the option's path", arguments: mistakes.indices)
    func mistake(_ index: Int) {
        let (name, fields, expected) = Self.mistakes[index]
        let found = schemaError(fields, hooks: true)
        #expect(found?.hasPrefix(expected) == true, "\(name): \(found ?? "accepted")")
    }

    @Test("validate hooks are for sink fields only")
    func hooksOnlyWhereTheHostRunsThem() {
        #expect(schemaError(["url": ["type": "url", "validate": true]], hooks: false)?.contains("validate is available for sink fields only") == true)
        #expect(schemaError(["url": ["type": "url", "validate": true]], hooks: true) == nil)
    }

    @Test("string rules: pattern, one_of (and its older name enum), lengths in characters")
    func stringRules() throws {
        let fields: Value = ["tenant": ["type": "word", "pattern": "^t%-%d+$", "min_length": 3, "max_length": 6],
                             "mode": ["type": "string", "one_of": ["push", "pull"]], "legacy": ["type": "string", "enum": ["x"]]]
        #expect(try rejection(fields, ["tenant": "t-12"]) == nil)
        #expect(try rejection(fields, ["tenant": "acme"]) == "tenant must match the pattern ^t%-%d+$")
        #expect(try rejection(fields, ["tenant": "t-1234567"]) == "tenant must be at most 6 characters long")
        #expect(try rejection(["name": ["type": "string", "min_length": 2]], ["name": "é"]) == "name must be at least 2 characters long")
        #expect(try rejection(["name": ["type": "string", "max_length": 2]], ["name": "éé"]) == nil, "characters, not bytes")
        #expect(try rejection(fields, ["mode": "poll"]) == "mode must be one of push, pull")
        #expect(try rejection(fields, ["legacy": "y"]) == "legacy must be one of x")
    }

    @Test("number rules: min and max, integers and floats")
    func numberRules() throws {
        let fields: Value = ["port": ["type": "integer", "min": 1, "max": 65535], "ratio": ["type": "number", "min": 0, "max": 0.5]]
        #expect(try rejection(fields, ["port": 0]) == "port must be at least 1")
        #expect(try rejection(fields, ["port": 65536]) == "port must be at most 65535")
        #expect(try rejection(fields, ["port": 443, "ratio": 0.25]) == nil)
        #expect(try rejection(fields, ["ratio": 0.75]) == "ratio must be at most 0.5")
        #expect(try rejection(fields, ["port": 1.5]) == "port must be a whole number")
    }

    @Test("list rules: min_items, max_items and the rule of each item, named by position")
    func listRules() throws {
        let fields: Value = ["brokers": ["type": "list", "min_items": 1, "max_items": 3, "items": ["type": "word", "pattern": ":%d+$"]]]
        #expect(try rejection(fields, ["brokers": []]) == "brokers must have at least 1 item")
        #expect(try rejection(fields, ["brokers": ["a:1", "b:2", "c:3", "d:4"]]) == "brokers must have at most 3 items")
        #expect(try rejection(fields, ["brokers": ["a:1", 5]]) == "brokers[2] must be a string")
        #expect(try rejection(fields, ["brokers": ["a:1", "b"]]) == "brokers[2] must match the pattern :%d+$")
        #expect(try rejection(fields, ["brokers": ["a:1", "b:2"]]) == nil)
    }

    @Test("the hooks a config reaches are listed by their rule's keys, parents before children, with checked values")
    func hookCalls() throws {
        let schema = try ConfigSchema(fields: [
            "exporter": ["type": "map", "validate": true, "fields": ["tenant": ["type": "word", "validate": true, "default": "t-1"]]],
            "brokers": ["type": "list", "items": ["type": "string", "validate": true]],
            "unused": ["type": "string", "validate": true],
        ], path: "sink.fields", hooks: true)
        var hooks: [ConfigHookCall] = []
        _ = try schema.validate(["exporter": ["tenant": "t-9"], "brokers": ["a", "b"]], hooks: &hooks)
        #expect(hooks.map(\.field) == ["brokers[1]", "brokers[2]", "exporter", "exporter.tenant"])
        #expect(hooks.map(\.rule) == [["sink", "fields", "brokers", "items"], ["sink", "fields", "brokers", "items"],
                                      ["sink", "fields", "exporter"], ["sink", "fields", "exporter", "fields", "tenant"]])
        #expect(hooks.last?.value == "t-9")
    }
}

/// The Lua pattern language, matched by Swift with a bound: answers as Lua 5.4's string.find gives them.
@Suite("Lua patterns for schemas", .timeLimit(.minutes(1)))
struct LuaPatternTests {
    // (pattern, subject, whether string.find finds it), checked against Lua 5.4.
    static let cases: [(String, String, Bool)] = [
        ("^t%-%d+$", "t-123", true), ("^t%-%d+$", "t-12a", false), ("%d+", "abc", false), ("%d+", "ab1c", true),
        ("^[%w_%-]+$", "my-tenant_1", true), ("^[%w_%-]+$", "my tenant", false), ("^[^:/]+:%d+$", "otlp.example.com:4317", true),
        ("^[^:/]+:%d+$", "https://otlp.example.com:4317", false), ("^%a+://", "https://x", true), ("a.-b", "axxb", true),
        ("^(%w+)=%1$", "ab=ab", true), ("^(%w+)=%1$", "ab=ac", false), ("%bxy", "axby", true), ("%f[%w]%w+", "  word", true),
        ("^$", "", true), ("^a?b$", "b", true), ("^a?b$", "ab", true), ("^a?b$", "aab", false), ("[]]", "]", true),
        ("^[a-c]*$", "abcabc", true), ("^[a-c]*$", "abd", false), ("%u%l", "xAb", true), ("%U", "AAA", false), ("x$y", "x$y", true),
        ("^%s*$", " \t ", true), ("^%x+$", "DEADbeef", true), ("^%p+$", "!?-", true), ("()a", "ba", true),
    ]

    @Test("matches as Lua 5.4 does", arguments: cases.indices)
    func luaSemantics(_ index: Int) throws {
        let (pattern, subject, expected) = Self.cases[index]
        #expect(try LuaPattern(pattern).matches(subject) == expected, "\(pattern) on \(subject)")
    }

    @Test("malformed patterns are refused when the schema loads", arguments: [
        ("%", "malformed pattern (ends with '%')"), ("[a", "malformed pattern (missing ']')"), ("(a", "malformed pattern (unfinished capture)"),
        ("a)", "invalid pattern capture (unmatched ')')"), ("%b(", "malformed pattern (missing arguments to '%b')"),
        ("%fa", "malformed pattern (missing '[' after '%f' in pattern)"), ("%1(a)", "invalid capture index %1"),
    ])
    func malformed(_ pattern: String, _ message: String) {
        #expect(throws: LuaPatternError(message: message, exhausted: false)) { try LuaPattern(pattern) }
    }

    @Test("attack: a catastrophic pattern against a long value is refused within its step bound, not run for hours")
    func catastrophicBacktracking() throws {
        let schema = try ConfigSchema(fields: ["tenant": ["type": "string", "pattern": "^(.-)(.-)(.-)(.-)(.-)x$"]], path: "sink.fields")
        let started = Date()
        #expect(throws: ConfigSchemaError.self) { try schema.validate(["tenant": .string(String(repeating: "a", count: 5_000))]) }
        do {
            _ = try schema.validate(["tenant": .string(String(repeating: "a", count: 5_000))])
        } catch {
            #expect(error.message == "tenant could not be checked against the pattern ^(.-)(.-)(.-)(.-)(.-)x$: the value took too long to check against the pattern")
        }
        #expect(Date().timeIntervalSince(started) < 10, "the step bound did not stop the match")
        // The same pattern on a short value decides normally.
        #expect(try LuaPattern("^(.-)(.-)(.-)(.-)(.-)x$").matches("aax"))
    }
}
