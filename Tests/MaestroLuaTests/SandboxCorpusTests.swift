import MaestroValue
import MaestroTestSupport
import Testing

@testable import MaestroLua

/// One attempt on the sandbox: the code, the error it must end in, and (for the attacks of issue 13
/// onwards) a fragment of that error's message and a check of the state the attack went for.
struct AbuseCase: Sendable {
    /// How the code reaches the VM.
    enum Entry: Sendable {
        /// Run as a chunk (`LuaVM.evaluate`).
        case chunk
        /// Loaded as a plugin's handler module, then looked up and called by name (`hasFunction`, `call`).
        case handler(String)
    }

    let name: String
    let code: String
    let kind: LuaError.Kind?
    var entry = Entry.chunk
    /// A fragment the error's message must contain.
    var message: String?
    /// After the attempt: code run in the same VM and what it must return (for a handler entry, the
    /// name of a function of the handler module).
    var after: (code: String, expected: [Value?])?

    init(_ name: String, _ code: String, _ kind: LuaError.Kind?, entry: Entry = .chunk, message: String? = nil,
         after: (code: String, expected: [Value?])? = nil) {
        self.name = name
        self.code = code
        self.kind = kind
        self.entry = entry
        self.message = message
        self.after = after
    }
}

/// Abuse of the sandbox beyond the escapes of LuaSandboxTests: each attempt must end in a LuaError with a
/// message saying what happened, within the budget, and the VM must serve the next call. With the 26
/// escapes, this makes the corpus of docs/reliability.md.
let abuseCorpus: [AbuseCase] = [
    // Pattern matching: the native matcher backtracks in C, out of the count hook's sight.
    AbuseCase("find catastrophe", #"return string.find(string.rep("a", 1e5), ".-.-.-.-b")"#, .instructionBudget),
    AbuseCase("match catastrophe", #"return string.rep("a", 5e4):match(".-.-.-b")"#, .instructionBudget),
    AbuseCase("gmatch catastrophe", #"for w in string.rep("ab", 3e4):gmatch("(.-)(.-)(.-)c") do end"#, .instructionBudget),
    AbuseCase("gsub catastrophe", #"return (string.rep("x", 4e4)):gsub(".-.-.-y", "")"#, .instructionBudget),
    AbuseCase("back-reference catastrophe", #"return string.rep("a", 3e4):find("(a*)%1%1%1b")"#, .instructionBudget),
    AbuseCase("balanced catastrophe", #"return string.rep("(", 5e4):find("%b()%b()%b()")"#, .instructionBudget),
    AbuseCase("plain find of a huge needle", #"local s = string.rep("a", 2e6) return s:find(string.rep("a", 1e5) .. "b", 1, true)"#, .instructionBudget),
    AbuseCase("pattern too complex", #"return string.find(string.rep("a", 300), string.rep("(", 250) .. "a")"#, .runtime),
    // Memory.
    AbuseCase("string.rep bomb", #"return string.rep("x", 1e9)"#, .memoryCap),
    AbuseCase("doubling concatenation", #"local s = "x" while true do s = s .. s end"#, .memoryCap),
    AbuseCase("table growth", #"local t = {} for i = 1, 1e9 do t[i] = i end"#, nil),
    AbuseCase("huge return value", #"return string.rep("x", 2e7)"#, .memoryCap),
    AbuseCase("rep of a rep", #"return ("x"):rep(1e5):rep(1e5)"#, .runtime),
    // Recursion and coroutines.
    AbuseCase("coroutine nesting", "local function f() return coroutine.wrap(f)() end return f()", .runtime),
    AbuseCase("__index recursion", "local t = setmetatable({}, {}) getmetatable(t).__index = function(t, k) return t[k] end return t.x", .runtime),
    AbuseCase("yield outside a coroutine", "coroutine.yield(1)", .runtime),
    AbuseCase("yield across the C boundary", "coroutine.wrap(function() table.sort({3, 2, 1}, function(a, b) coroutine.yield() return a < b end) end)()", .runtime),
    AbuseCase("loop in the xpcall handler", "xpcall(function() error('x') end, function() while true do end end)", .instructionBudget),
    AbuseCase("loop in a coroutine resumed in a loop", "local co = coroutine.wrap(function() while true do coroutine.yield() end end) while true do co() end", .instructionBudget),
    // Error values.
    AbuseCase("error with nil", "error(nil)", .runtime),
    AbuseCase("error with a function", "error(function() end)", .runtime),
    AbuseCase("error with a looping __tostring", "error(setmetatable({}, {__tostring = function() while true do end end}))", .runtime),
    AbuseCase("error with a raising __tostring", "error(setmetatable({}, {__tostring = function() error('again') end}))", .runtime),
    // Results the host cannot take.
    AbuseCase("cyclic return value", "local t = {} t.self = t return t", .conversion),
    AbuseCase("deep return value", "local t = {} local c = t for i = 1, 1e4 do c[1] = {} c = c[1] end return t", .conversion),
    AbuseCase("function return value", "return {f = function() end}", .conversion),
    AbuseCase("too many results", "return table.unpack({}, 1, 1e8)", .runtime),
    // The host API and the library.
    AbuseCase("replace a maestro function", "maestro.log.info = nil", .runtime),
    AbuseCase("replace a maestro module", "maestro.json = {}", .runtime),
    AbuseCase("rawset on maestro", "rawset(maestro, 'x', 1)", .runtime),
    AbuseCase("setmetatable on maestro", "setmetatable(maestro, nil)", .runtime),
    AbuseCase("_G.string replaced", "_G.string = nil", .runtime),
    AbuseCase("huge format width", "return string.format('%99999999d', 1)", .runtime),
    AbuseCase("collectgarbage generational", "collectgarbage('generational')", .runtime),
    // Issue 13, item 1: a handler table whose metatable has __index. The host looks handlers up raw, so
    // no plugin code runs outside a protected, budgeted call (the counter shows __index never ran).
    AbuseCase("handler lookup through a raising __index", """
        local calls = 0
        return setmetatable({ calls = function() return calls end },
          { __index = function(_, key) calls = calls + 1 error("lookup of " .. key) end })
        """, .notFound, entry: .handler("on_sink_update"), message: "has no function on_sink_update", after: ("calls", [.int(0)])),
    AbuseCase("handler lookup through a looping __index", """
        local calls = 0
        return setmetatable({ calls = function() return calls end },
          { __index = function() calls = calls + 1 while true do end end })
        """, .notFound, entry: .handler("on_sink_update"), message: "has no function on_sink_update", after: ("calls", [.int(0)])),
    // Item 3: the metatable the host puts on every empty map is protected; finalizers cannot be set.
    AbuseCase("__gc on the empty map's metatable", "getmetatable(maestro.empty_map()).__gc = function() while true do end end",
              .runtime, message: "attempt to index a boolean value",
              after: ("return getmetatable(maestro.empty_map()), maestro.empty_map()", [.bool(false), .map([:])])),
    AbuseCase("__index on the empty map's metatable", "getmetatable(maestro.empty_map()).__index = function() return 'leaked' end",
              .runtime, message: "attempt to index a boolean value", after: ("return maestro.empty_map().anything", [nil])),
    AbuseCase("replace the empty map's metatable", "setmetatable(maestro.empty_map(), {__index = function() return 'x' end})",
              .runtime, message: "cannot change a protected metatable", after: ("return maestro.empty_map().anything", [nil])),
    AbuseCase("__gc added after setmetatable", "local mt = {} local t = setmetatable({}, mt) mt.__gc = function() while true do end end t = nil error('done')",
              .runtime, message: "done", after: ("return 1", [.int(1)])),
    AbuseCase("a looping __close during the budget error",
              "local x <close> = setmetatable({}, {__close = function() while true do end end}) while true do end",
              .instructionBudget, message: "instruction budget", after: ("return 1", [.int(1)])),
    // Item 4: work inside C functions is charged to the instruction budget.
    AbuseCase("table.move of 2^40 elements", "table.move({}, 1, 2^40, 2)", .instructionBudget,
              message: "instruction budget", after: ("return #table.move({1, 2, 3}, 1, 3, 1, {})", [.int(3)])),
    AbuseCase("table.insert under a lying __len", "table.insert(setmetatable({}, {__len = function() return 2^40 end}), 1, 'x')",
              .instructionBudget, message: "instruction budget", after: ("local t = {1, 2} table.insert(t, 1, 0) return t", [.list([0, 1, 2])])),
    AbuseCase("table.remove under a lying __len", "table.remove(setmetatable({}, {__len = function() return 2^40 end}), 1)",
              .instructionBudget, message: "instruction budget", after: ("local t = {1, 2, 3} return table.remove(t, 1), t", [.int(1), .list([2, 3])])),
    AbuseCase("table.insert at the front of a large array",
              "local t = {} for i = 1, 1e5 do t[i] = i end for i = 1, 1e5 do table.insert(t, 1, i) end",
              .instructionBudget, message: "instruction budget", after: ("return 1", [.int(1)])),
    AbuseCase("table.concat of many empty strings",
              "local t = {} for i = 1, 5e5 do t[i] = '' end for i = 1, 100 do table.concat(t) end",
              .instructionBudget, message: "instruction budget", after: ("return table.concat({'a', 'b'}, ',')", [.string("a,b")])),
    AbuseCase("table.unpack of a large array",
              "local t = {} for i = 1, 2e5 do t[i] = i end for i = 1, 200 do select('#', table.unpack(t)) end",
              .instructionBudget, message: "instruction budget", after: ("return table.unpack({1, 2})", [.int(1), .int(2)])),
    AbuseCase("table.sort of a large array, again and again",
              "local t = {} for i = 1, 3e5 do t[i] = (i * 7919) % 300007 end for i = 1, 50 do table.sort(t) end",
              .instructionBudget, message: "instruction budget", after: ("local t = {3, 1, 2} table.sort(t) return t", [.list([1, 2, 3])])),
    AbuseCase("string.byte of a long string", "local s = string.rep('x', 1e5) for i = 1, 300 do select('#', s:byte(1, -1)) end",
              .instructionBudget, message: "instruction budget", after: ("return ('ab'):byte(1, -1)", [.int(97), .int(98)])),
    AbuseCase("string.char of many arguments",
              "local t = {} for i = 1, 1e5 do t[i] = 65 end local function f(...) for i = 1, 300 do string.char(...) end end f(table.unpack(t))",
              .instructionBudget, message: "instruction budget", after: ("return string.char(65, 66), utf8.char(72)", [.string("AB"), .string("H")])),
    AbuseCase("string.rep again and again", "for i = 1, 200 do local s = string.rep('x', 4e6) end",
              .instructionBudget, message: "instruction budget", after: ("return ('ab'):rep(2)", [.string("abab")])),
    AbuseCase("concatenation of a long string again and again", "local s = string.rep('x', 4e6) for i = 1, 1000 do local t = s .. 'y' end",
              .instructionBudget, message: "instruction budget", after: ("return 'a' .. 'b'", [.string("ab")])),
    AbuseCase("load of a large chunk again and again", "local source = '--' .. string.rep('x', 4e6) for i = 1, 100 do load(source) end",
              .instructionBudget, message: "instruction budget", after: ("return load('return 1')()", [.int(1)])),
    // Item 9: the Lua matcher compares back-references in C, charged by their length.
    AbuseCase("back-reference in the Lua matcher", #"return string.find(("a"):rep(1e5), "^(.-)%1b")"#, .instructionBudget,
              message: "instruction budget", after: ("return ('abab'):find('^(ab)%1')", [.int(1), .int(4), .string("ab")])),
    // Item 5: conversions are bounded by the memory cap and a node budget over the whole value.
    AbuseCase("shared sub-tables as a return value", "local t = {} for i = 1, 20 do t = {t, t} end return t", .conversion,
              message: "too large to convert", after: ("local t = {} for i = 1, 3 do t = {t, t} end return #t, #t[1][2]", [.int(2), .int(2)])),
    AbuseCase("shared sub-tables passed to the host", "local t = {} for i = 1, 20 do t = {t, t} end return maestro.json.encode(t)",
              .runtime, message: "too large to convert", after: ("return maestro.json.encode({{}, {}})", [.string("[[],[]]")])),
    AbuseCase("shared sub-tables passed to the host in a pcall loop",
              "local t = {} for i = 1, 20 do t = {t, t} end while true do pcall(maestro.json.encode, t) end",
              .instructionBudget, message: "instruction budget", after: ("return maestro.json.encode({1})", [.string("[1]")])),
    AbuseCase("JSON decode of many empty lists", #"return assert(maestro.json.decode("[" .. string.rep("[]", 1.5e6, ",") .. "]"))"#,
              .runtime, message: "nodes", after: ("return maestro.json.decode('[[],[]]')", [.list([.list([]), .list([])])])),
    AbuseCase("YAML alias bomb over many documents", """
        local doc = "---\\na: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\\n"
        for level, name in ipairs({"b", "c", "d", "e"}) do
          local previous = ("abcd"):sub(level, level)
          doc = doc .. name .. ": &" .. name .. " [" .. string.rep("*" .. previous, 10, ", ") .. "]\\n"
        end
        return assert(maestro.yaml.decode_all(doc:rep(10)))
        """, .runtime, message: "nodes", after: ("return maestro.yaml.decode_all('---\\na: 1\\n---\\nb: 2\\n')", [.list([["a": 1], ["b": 2]])])),
]

@Suite("Lua sandbox: the abuse corpus", .testThreads, .timeLimit(.minutes(2)))
struct SandboxCorpusTests {
    @Test("each attempt is contained with a clear error and the VM serves the next call", arguments: abuseCorpus.map { $0.name })
    func contained(_ name: String) throws {
        let entry = try #require(abuseCorpus.first { $0.name == name })
        let vm = try makeVM(budget: 20_000_000, memory: 16 << 20)
        let started = ContinuousClock.now
        let error: LuaError
        switch entry.entry {
        case .chunk:
            try vm.sealGlobals()
            let depth = vm.stackDepth
            error = try #require(throws: LuaError.self) { try vm.evaluate(entry.code) }
            #expect(vm.stackDepth == depth)
        case .handler(let function):
            try vm.loadModule(source: entry.code, chunkName: "=handler", as: "handler")
            try vm.sealGlobals()
            let depth = vm.stackDepth
            #expect(!vm.hasFunction("handler", function), "a handler is a field of the table, looked up raw")
            error = try #require(throws: LuaError.self) { try vm.call("handler", function, [.map([:])]) }
            #expect(vm.stackDepth == depth)
        }
        #expect(ContinuousClock.now - started < .seconds(30), "contained in bounded time")
        if let kind = entry.kind {
            #expect(error.kind == kind, "\(name): \(error.kind) \(error.message)")
        } else {
            #expect(error.kind == .memoryCap || error.kind == .instructionBudget, "\(name): \(error.kind) \(error.message)")
        }
        #expect(!error.message.isEmpty)
        if let fragment = entry.message {
            #expect(error.message.contains(fragment), "\(name): \(error.message)")
        }
        if let after = entry.after {
            switch entry.entry {
            case .chunk: #expect(try vm.evaluate(after.code) == after.expected, "\(name): the state after")
            case .handler: #expect(try vm.call("handler", after.code) == after.expected, "\(name): the state after")
            }
        }
        #expect(try vm.evaluate("return ('abc'):upper(), #string.rep('x', 10), ('a-b'):find('-', 1, true)") == [.string("ABC"), .int(10), .int(2), .int(2)])
    }

    @Test("the corpus and the escapes make at least 40 attempts")
    func size() {
        #expect(abuseCorpus.count + LuaSandboxTests.escapes.count >= 40)
    }
}

/// The Lua implementation of the pattern functions must give what the native ones give.
@Suite("Lua sandbox: pattern functions", .testThreads, .timeLimit(.minutes(2)))
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
