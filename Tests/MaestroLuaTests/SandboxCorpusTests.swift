import MaestroValue
import Testing

@testable import MaestroLua

/// Abuse of the sandbox beyond the escapes of LuaSandboxTests: each attempt must end in a LuaError with a
/// message saying what happened, within the budget, and the VM must serve the next call. With the 26
/// escapes, this makes the corpus of docs/reliability.md.
let abuseCorpus: [(name: String, code: String, kind: LuaError.Kind?)] = [
    // Pattern matching: the native matcher backtracks in C, out of the count hook's sight.
    ("find catastrophe", #"return string.find(string.rep("a", 1e5), ".-.-.-.-b")"#, .instructionBudget),
    ("match catastrophe", #"return string.rep("a", 5e4):match(".-.-.-b")"#, .instructionBudget),
    ("gmatch catastrophe", #"for w in string.rep("ab", 3e4):gmatch("(.-)(.-)(.-)c") do end"#, .instructionBudget),
    ("gsub catastrophe", #"return (string.rep("x", 4e4)):gsub(".-.-.-y", "")"#, .instructionBudget),
    ("back-reference catastrophe", #"return string.rep("a", 3e4):find("(a*)%1%1%1b")"#, .instructionBudget),
    ("balanced catastrophe", #"return string.rep("(", 5e4):find("%b()%b()%b()")"#, .instructionBudget),
    ("plain find of a huge needle", #"local s = string.rep("a", 2e6) return s:find(string.rep("a", 1e5) .. "b", 1, true)"#, .instructionBudget),
    ("pattern too complex", #"return string.find(string.rep("a", 300), string.rep("(", 250) .. "a")"#, .runtime),
    // Memory.
    ("string.rep bomb", #"return string.rep("x", 1e9)"#, .memoryCap),
    ("doubling concatenation", #"local s = "x" while true do s = s .. s end"#, .memoryCap),
    ("table growth", #"local t = {} for i = 1, 1e9 do t[i] = i end"#, nil),
    ("huge return value", #"return string.rep("x", 2e7)"#, .memoryCap),
    ("rep of a rep", #"return ("x"):rep(1e5):rep(1e5)"#, .runtime),
    // Recursion and coroutines.
    ("coroutine nesting", "local function f() return coroutine.wrap(f)() end return f()", .runtime),
    ("__index recursion", "local t = setmetatable({}, {}) getmetatable(t).__index = function(t, k) return t[k] end return t.x", .runtime),
    ("yield outside a coroutine", "coroutine.yield(1)", .runtime),
    ("yield across the C boundary", "coroutine.wrap(function() table.sort({3, 2, 1}, function(a, b) coroutine.yield() return a < b end) end)()", .runtime),
    ("loop in the xpcall handler", "xpcall(function() error('x') end, function() while true do end end)", .instructionBudget),
    ("loop in a coroutine resumed in a loop", "local co = coroutine.wrap(function() while true do coroutine.yield() end end) while true do co() end", .instructionBudget),
    // Error values.
    ("error with nil", "error(nil)", .runtime),
    ("error with a function", "error(function() end)", .runtime),
    ("error with a looping __tostring", "error(setmetatable({}, {__tostring = function() while true do end end}))", .runtime),
    ("error with a raising __tostring", "error(setmetatable({}, {__tostring = function() error('again') end}))", .runtime),
    // Results the host cannot take.
    ("cyclic return value", "local t = {} t.self = t return t", .conversion),
    ("deep return value", "local t = {} local c = t for i = 1, 1e4 do c[1] = {} c = c[1] end return t", .conversion),
    ("function return value", "return {f = function() end}", .conversion),
    ("too many results", "return table.unpack({}, 1, 1e8)", .runtime),
    // The host API and the library.
    ("replace a maestro function", "maestro.log.info = nil", .runtime),
    ("replace a maestro module", "maestro.json = {}", .runtime),
    ("rawset on maestro", "rawset(maestro, 'x', 1)", .runtime),
    ("setmetatable on maestro", "setmetatable(maestro, nil)", .runtime),
    ("_G.string replaced", "_G.string = nil", .runtime),
    ("huge format width", "return string.format('%99999999d', 1)", .runtime),
    ("collectgarbage generational", "collectgarbage('generational')", .runtime),
]

@Suite("Lua sandbox: the abuse corpus", .timeLimit(.minutes(2)))
struct SandboxCorpusTests {
    @Test("each attempt is contained with a clear error and the VM serves the next call", arguments: abuseCorpus.map { $0.name })
    func contained(_ name: String) throws {
        let entry = try #require(abuseCorpus.first { $0.name == name })
        let vm = try makeVM(budget: 20_000_000, memory: 16 << 20)
        try vm.sealGlobals()
        let depth = vm.stackDepth
        let started = ContinuousClock.now
        let error = try #require(throws: LuaError.self) { try vm.evaluate(entry.code) }
        #expect(ContinuousClock.now - started < .seconds(30), "contained in bounded time")
        if let kind = entry.kind {
            #expect(error.kind == kind, "\(name): \(error.kind) \(error.message)")
        } else {
            #expect(error.kind == .memoryCap || error.kind == .instructionBudget, "\(name): \(error.kind) \(error.message)")
        }
        #expect(!error.message.isEmpty)
        #expect(vm.stackDepth == depth)
        #expect(try vm.evaluate("return ('abc'):upper(), #string.rep('x', 10), ('a-b'):find('-', 1, true)") == [.string("ABC"), .int(10), .int(2), .int(2)])
    }

    @Test("the corpus and the escapes make at least 40 attempts")
    func size() {
        #expect(abuseCorpus.count + LuaSandboxTests.escapes.count >= 40)
    }
}

/// The Lua implementation of the pattern functions must give what the native ones give.
@Suite("Lua sandbox: pattern functions", .timeLimit(.minutes(2)))
struct PatternFunctionTests {
    static let subjects = ["", "hello world", "key = value", "  trim me  ", "a,b,,c", "(foo(bar))baz", "THE (quick) fox",
                           "2024-01-15T10:00:00Z", "https://user@host.example:8080/path?q=1", "aaa", "abcabcabc", "x\ny\nz", "über café"]
    static let patterns = ["o", "l+", "(%w+)", "^%s*(.-)%s*$", "(%w+)%s*=%s*(%w+)", "[^,]*", "%b()", "%f[%w]%w+", "(a)(b)(c)%3",
                           "^(%d+)-(%d+)-(%d+)T", "()ll()", "[%a_][%w_]*", "%d?%d", "x*", "a-b", "[a-c]+", "%.", "%s", "[%]]",
                           "(.)%1", ".-", "$", "^", "^h", "z$", "[^%s]+", "(h)(e)(l)(l)(o)", "%p+", "%u", "[%w%-]+",
                           "://([^:/]+):?(%d*)", "(%a+)%s(%a+)", "\n", "é", "%bxy", "[]]", "[^]]+", "(()a)"]

    func vm() throws -> LuaVM {
        var configuration = LuaConfiguration(name: "patterns", instructionBudget: 50_000_000)
        configuration.exposesLuaPatterns = true
        return try LuaVM(configuration: configuration)
    }

    @Test("find, match, gmatch and gsub: native and Lua agree on every subject and pattern")
    func agree() throws {
        let vm = try vm()
        var checked = 0
        for subject in Self.subjects {
            for pattern in Self.patterns {
                for function in ["find", "match", "gmatch", "gsub"] {
                    let call: (String) -> String
                    switch function {
                    case "gmatch":
                        call = { library in "local r = {} for a, b in \(library).gmatch(s, p) do r[#r + 1] = tostring(a) .. '|' .. tostring(b) end return table.concat(r, ';')" }
                    case "gsub":
                        call = { library in "local r, n = \(library).gsub(s, p, '<%0>') local t, m = \(library).gsub(s, p, function(a) return '[' .. tostring(a) .. ']' end, 2) return r .. '#' .. n .. t .. '#' .. m" }
                    default:
                        call = { library in "local r = table.pack(\(library).\(function)(s, p)) for i = 1, r.n do r[i] = tostring(r[i]) end return table.concat(r, ',', 1, r.n)" }
                    }
                    let prefix = "local s, p = \(luaQuoted(subject)), \(luaQuoted(pattern)) "
                    let native = Result { try vm.evaluate(prefix + call("string")) }
                    let lua = Result { try vm.evaluate(prefix + call("lua_patterns")) }
                    switch (native, lua) {
                    case (.success(let a), .success(let b)):
                        #expect(a == b, "\(function)(\(subject.debugDescription), \(pattern.debugDescription)): native \(a) Lua \(b)")
                    case (.failure, .failure):
                        break
                    default:
                        Issue.record("\(function)(\(subject.debugDescription), \(pattern.debugDescription)): native \(native) Lua \(lua)")
                    }
                    checked += 1
                }
            }
        }
        #expect(checked == Self.subjects.count * Self.patterns.count * 4)
    }

    @Test("init positions and anchors agree")
    func initPositions() throws {
        let vm = try vm()
        for start in [-20, -3, -1, 0, 1, 2, 5, 11, 12, 13, 40] {
            for pattern in ["o", "^o", "l*", "()", "%w+"] {
                let code = "local s = 'hello world' local a = table.pack(%@.find(s, '\(pattern)', \(start))) local b = table.pack(%@.match(s, '\(pattern)', \(start))) "
                    + "for i = 1, a.n do a[i] = tostring(a[i]) end for i = 1, b.n do b[i] = tostring(b[i]) end return table.concat(a, ',', 1, a.n) .. '/' .. table.concat(b, ',', 1, b.n)"
                let native = try vm.evaluate(code.replacingOccurrences(of: "%@", with: "string"))
                let lua = try vm.evaluate(code.replacingOccurrences(of: "%@", with: "lua_patterns"))
                #expect(native == lua, "init \(start) pattern \(pattern)")
            }
        }
    }

    @Test("a pattern on a long subject runs in Lua and is counted; the same on a short subject runs natively")
    func routing() throws {
        let vm = try makeVM(budget: 50_000_000, memory: 16 << 20)
        #expect(try vm.evaluate("return ('key = value'):match('^(%w+)%s*=%s*(%w+)$')") == [.string("key"), .string("value")])
        let small = vm.statistics.instructions
        #expect(try vm.evaluate("return (string.rep('k', 5000) .. ' = v'):match('^(%w+)%s*=%s*(%w+)$') ~= nil") == [.bool(true)])
        #expect(vm.statistics.instructions > small, "the long subject was matched in Lua, every step counted")
    }
}

func luaQuoted(_ text: String) -> String {
    var result = "\""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): result += "\\" + String(UnicodeScalar(byte))
        case 0x20...0x7E: result += String(UnicodeScalar(byte))
        default: result += "\\" + String(byte)
        }
    }
    return result + "\""
}
