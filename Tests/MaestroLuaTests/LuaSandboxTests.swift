import Logging
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroLua

func makeVM(budget: Int = 2_000_000, memory: Int = 8 << 20, roots: [String] = []) throws -> LuaVM {
    try LuaVM(configuration: LuaConfiguration(name: "test", instructionBudget: budget, memoryLimitBytes: memory, moduleRoots: roots))
}

@Suite("Lua sandbox", .testThreads, .timeLimit(.minutes(2)))
struct LuaSandboxTests {
    @Test("basic evaluation returns converted values")
    func evaluation() throws {
        let vm = try makeVM()
        let results = try vm.evaluate("return 1, 2.5, 'x', true, nil, {1, 2}, {a = 1}, {}, maestro.empty_map(), maestro.null")
        #expect(results.count == 10)
        #expect(results[0] == .int(1))
        #expect(results[1] == .double(2.5))
        #expect(results[2] == .string("x"))
        #expect(results[3] == .bool(true))
        #expect(results[4] == nil)
        #expect(results[5] == .list([1, 2]))
        #expect(results[6] == .map(["a": 1]))
        #expect(results[7] == .list([]))
        #expect(results[8] == .map([:]))
        #expect(results[9] == .null)
    }

    /// One escape attempt: the code, a fragment of the error it must raise (Lua's own wording or the
    /// sandbox's refusal, written down here rather than taken from the code), and a Lua expression that
    /// must still be true afterwards: the attempt changed nothing.
    struct Escape: Sendable, CustomTestStringConvertible {
        let name: String
        let code: String
        let error: String
        let after: String
        var testDescription: String { name }
    }

    static let escapes: [Escape] = [
        Escape(name: "io.open", code: "return io.open('/etc/passwd')", error: "attempt to index a nil value (global 'io')", after: "io == nil"),
        Escape(name: "os.execute", code: "return os.execute('true')", error: "attempt to call a nil value (field 'execute')", after: "os.execute == nil"),
        Escape(name: "os.exit", code: "os.exit(1)", error: "attempt to call a nil value (field 'exit')", after: "os.exit == nil"),
        Escape(name: "os.getenv", code: "return os.getenv('HOME')", error: "attempt to call a nil value (field 'getenv')", after: "os.getenv == nil"),
        Escape(name: "os.remove", code: "return os.remove('/tmp/x')", error: "attempt to call a nil value (field 'remove')", after: "os.remove == nil"),
        Escape(name: "require io", code: "return require 'io'", error: "module 'io' not found", after: "io == nil"),
        Escape(name: "require os", code: "return require('os').execute('true')", error: "module 'os' not found", after: "os.execute == nil"),
        Escape(name: "require escape", code: "return require '../../etc/passwd'", error: "module '../../etc/passwd' not found", after: "true"),
        Escape(name: "package.loadlib", code: "return package.loadlib('libc.so.6', 'system')", error: "attempt to index a nil value (global 'package')",
               after: "package == nil"),
        Escape(name: "load bytecode", code: "return assert(load('\\27Lua\\84\\0', 'x', 'b'))", error: "only text chunks", after: "true"),
        Escape(name: "load bytecode text mode", code: "local f = assert(load('\\27Lua\\84\\0')) return f()", error: "attempt to load a binary chunk",
               after: "true"),
        Escape(name: "string.dump", code: "return string.dump(function() end)", error: "attempt to call a nil value (field 'dump')",
               after: "string.dump == nil and ('').dump == nil"),
        Escape(name: "string.dump via method", code: "return ('').dump(function() end)", error: "attempt to call a nil value (field 'dump')",
               after: "('').dump == nil"),
        Escape(name: "debug.sethook", code: "debug.sethook()", error: "attempt to index a nil value (global 'debug')", after: "debug == nil"),
        Escape(name: "debug.getregistry", code: "return debug.getregistry()", error: "attempt to index a nil value (global 'debug')", after: "debug == nil"),
        Escape(name: "dofile", code: "return dofile('/etc/passwd')", error: "attempt to call a nil value (global 'dofile')", after: "dofile == nil"),
        Escape(name: "loadfile", code: "return loadfile('/etc/passwd')", error: "attempt to call a nil value (global 'loadfile')", after: "loadfile == nil"),
        Escape(name: "string metatable", code: "getmetatable('').__index = {upper = function() return 'pwned' end}",
               error: "attempt to index a boolean value", after: "getmetatable('') == false and ('abc'):upper() == 'ABC'"),
        Escape(name: "string library write", code: "string.upper = function() return 'pwned' end",
               error: "attempt to modify read-only table 'string' (field 'upper')", after: "string.upper('a') == 'A'"),
        Escape(name: "rawset on library", code: "rawset(string, 'upper', function() return 'pwned' end)",
               error: "rawset: attempt to modify a read-only table", after: "rawget(string, 'upper') == nil and string.upper('a') == 'A'"),
        Escape(name: "setmetatable on library", code: "setmetatable(string, {})", error: "cannot change a protected metatable",
               after: "getmetatable(string) == false and string.upper('a') == 'A'"),
        Escape(name: "maestro table write", code: "maestro.yaml = nil", error: "attempt to modify read-only table 'maestro' (field 'yaml')",
               after: "type(maestro.yaml) == 'table'"),
        Escape(name: "maestro nested write", code: "maestro.json.encode = function() return 'pwned' end",
               error: "attempt to modify read-only table 'maestro.json' (field 'encode')", after: "maestro.json.encode({1}) == '[1]'"),
        Escape(name: "global write after load", code: "newglobal = 1", error: "attempt to set global 'newglobal'", after: "newglobal == nil"),
        Escape(name: "collectgarbage stop", code: "collectgarbage('stop')", error: "option 'stop' is not available",
               after: "collectgarbage('isrunning') == true"),
        Escape(name: "__gc metamethod", code: "setmetatable({}, {__gc = function() while true do end end})",
               error: "__gc metamethods are not available", after: "true"),
    ]

    @Test("escape attempts raise their own refusal, change nothing, and the host keeps working", arguments: escapes)
    func escapeAttempt(_ escape: Escape) throws {
        let vm = try makeVM()
        try vm.sealGlobals()
        let depth = vm.stackDepth
        let error = try #require(throws: LuaError.self, "\(escape.name) must fail") { try vm.evaluate(escape.code) }
        #expect(error.kind == .runtime, "\(escape.name): \(error)")
        #expect(error.message.contains(escape.error), "\(escape.name): \(error.message)")
        #expect(vm.stackDepth == depth)
        #expect(try vm.evaluate("return " + escape.after) == [.bool(true)], "\(escape.name): \(escape.after)")
        #expect(try vm.evaluate("return ('abc'):upper(), string.upper('x'), type(maestro.yaml.encode)") == [.string("ABC"), .string("X"), .string("function")])
    }

    @Test("allowed functions work: setmetatable, collectgarbage count, the __gc refusal names itself")
    func allowedFunctions() throws {
        let vm = try makeVM()
        #expect(try vm.evaluate("local t = setmetatable({}, {__index = function() return 7 end}) return t.x") == [.int(7)])
        #expect(try vm.evaluate("return type(collectgarbage('count'))") == [.string("number")])
        #expect(try vm.evaluate("return collectgarbage()") == [.int(0)])
        let refused = try #require(throws: LuaError.self) { try vm.evaluate("setmetatable({}, {__gc = function() end})") }
        #expect(refused.message.contains("__gc metamethods are not available"))
        let stopped = try #require(throws: LuaError.self) { try vm.evaluate("collectgarbage('stop')") }
        #expect(stopped.message.contains("not available in the sandbox"))
    }

    @Test("infinite loop is stopped by the instruction budget")
    func infiniteLoop() throws {
        let vm = try makeVM()
        let error = try #require(throws: LuaError.self) { try vm.evaluate("while true do end") }
        #expect(error.kind == .instructionBudget)
        #expect(try vm.evaluate("return 42") == [.int(42)])
        #expect(vm.resets == 1)
    }

    @Test("pcall-wrapped infinite loop is still stopped")
    func pcallLoop() throws {
        let vm = try makeVM()
        let error = try #require(throws: LuaError.self) {
            try vm.evaluate("while true do pcall(function() while true do end end) end")
        }
        #expect(error.kind == .instructionBudget)
        let xpcallError = try #require(throws: LuaError.self) {
            try vm.evaluate("while true do xpcall(function() while true do end end, function(e) return e end) end")
        }
        #expect(xpcallError.kind == .instructionBudget)
    }

    @Test("coroutines cannot escape the budget")
    func coroutineLoops() throws {
        let vm = try makeVM()
        let wrapped = try #require(throws: LuaError.self) {
            try vm.evaluate("while true do local f = coroutine.wrap(function() for i = 1, 900 do end end) pcall(f) end")
        }
        #expect(wrapped.kind == .instructionBudget)
        let resumed = try #require(throws: LuaError.self) {
            try vm.evaluate("local co = coroutine.create(function() while true do end end) while true do coroutine.resume(co) end")
        }
        #expect(resumed.kind == .instructionBudget)
        let nested = try #require(throws: LuaError.self) {
            try vm.evaluate("""
            local function nest(n) if n == 0 then while true do end end
              local co = coroutine.create(nest) return coroutine.resume(co, n - 1) end
            return nest(50)
            """)
        }
        #expect(nested.kind == .instructionBudget)
    }

    @Test("memory bomb is stopped by the cap")
    func memoryBomb() throws {
        let vm = try makeVM(budget: 0)
        let error = try #require(throws: LuaError.self) {
            try vm.evaluate("local t = {} local i = 0 while true do i = i + 1 t[i] = {i, i, i} end")
        }
        #expect(error.kind == .memoryCap)
        let repeated = try #require(throws: LuaError.self) { try vm.evaluate("return string.rep('x', 100 * 1024 * 1024)") }
        #expect(repeated.kind == .memoryCap)
        let caught = try #require(throws: LuaError.self) {
            try vm.evaluate("while true do pcall(string.rep, 'x', 100 * 1024 * 1024) end")
        }
        #expect(caught.kind == .memoryCap)
        #expect(try vm.evaluate("return #string.rep('x', 1000)") == [.int(1000)])
    }

    @Test("a host function's result is built within the memory cap, not checked after it was built")
    func hostResultWithinCap() throws {
        let cap = 8 << 20
        // A million empty lists: 56 MB or more as Lua tables, seven times the cap.
        let large = Value.list(Array(repeating: .list([]), count: 1_000_000))
        let vm = try LuaVM(configuration: LuaConfiguration(name: "t", instructionBudget: 0, memoryLimitBytes: cap), modules: [
            LuaHostModule(name: nil, functions: [LuaHostFunction("large") { _ in [large] }]),
        ])
        let error = try #require(throws: LuaError.self) { try vm.evaluate("local v = maestro.large() return #v") }
        #expect(error.kind == .memoryCap)
        #expect(vm.statistics.peakMemory <= cap + (64 << 10), "peak \(vm.statistics.peakMemory) against a cap of \(cap)")
        #expect(try vm.evaluate("return 1") == [.int(1)])
    }

    @Test("deep recursion is an error, not a crash")
    func deepRecursion() throws {
        let vm = try makeVM(budget: 0, memory: 256 << 20)
        let error = try #require(throws: LuaError.self) { try vm.evaluate("local function f(n) return 1 + f(n + 1) end return f(1)") }
        #expect(error.kind == .runtime)
        #expect(error.message.contains("stack overflow"))
        let cstack = try #require(throws: LuaError.self) {
            try vm.evaluate("local function f() return pcall(f) end local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x")
        }
        #expect(cstack.kind == .runtime)
        #expect(try vm.evaluate("return 1") == [.int(1)])
    }

    @Test("errors carry file and line and a traceback")
    func errorLocation() throws {
        let vm = try makeVM()
        try vm.loadModule(source: "local M = {}\nfunction M.boom()\n  error('kaboom')\nend\nreturn M", chunkName: "@plugins/x/handler.lua", as: "handler")
        let error = try #require(throws: LuaError.self) { try vm.call("handler", "boom") }
        #expect(error.kind == .runtime)
        #expect(error.message == "plugins/x/handler.lua:3: kaboom")
        #expect(error.traceback?.contains("handler.lua:3") == true)
        let syntax = try #require(throws: LuaError.self) { try vm.loadModule(source: "return {", chunkName: "@bad.lua", as: "bad") }
        #expect(syntax.kind == .syntax)
        #expect(syntax.message.hasPrefix("bad.lua:1:"))
    }

    @Test("non-string error objects and looping __tostring are contained")
    func errorObjects() throws {
        let vm = try makeVM()
        let table = try #require(throws: LuaError.self) { try vm.evaluate("error({code = 1})") }
        #expect(table.message.contains("table value"))
        let looping = try #require(throws: LuaError.self) {
            try vm.evaluate("error(setmetatable({}, {__tostring = function() while true do end end}))")
        }
        #expect(looping.kind == .runtime)
        #expect(try vm.evaluate("return 'ok'") == [.string("ok")])
    }

    @Test("globals are read-only after sealing, but module state works")
    func sealedGlobals() throws {
        let vm = try makeVM()
        try vm.loadModule(source: "counter = 0\nlocal M = {}\nfunction M.bump() counter = counter + 1 return counter end\nfunction M.local_state() local t = {} t.x = 1 return t end\nreturn M", chunkName: "@m.lua", as: "m")
        #expect(try vm.call("m", "bump") == [.int(1)])
        try vm.sealGlobals()
        let error = try #require(throws: LuaError.self) { try vm.call("m", "bump") }
        #expect(error.message.contains("globals are read-only"))
        #expect(try vm.call("m", "local_state") == [.map(["x": 1])])
    }

    @Test("a maestro.fail cannot be caught")
    func failIsTerminal() throws {
        let vm = try LuaVM(configuration: LuaConfiguration(name: "t"), modules: [
            LuaHostModule(name: nil, functions: [LuaHostFunction("fail") { arguments throws(LuaHostError) in
                throw LuaHostError(arguments.first??.stringValue ?? "failed", terminal: true)
            }]),
        ])
        let error = try #require(throws: LuaError.self) { try vm.evaluate("pcall(maestro.fail, 'bad config') return 1") }
        #expect(error.kind == .failed)
        #expect(error.message == "bad config")
        #expect(try vm.evaluate("return 2") == [.int(2)])
    }

    @Test("require loads only inside the roots")
    func requireRoots() throws {
        let root = try TemporaryDirectory()
        try root.write("_lib/util.lua", "return { double = function(x) return 2 * x end }")
        try root.write("_lib/pkg/init.lua", "return { name = 'pkg' }")
        let vm = try makeVM(roots: [root.path])
        #expect(try vm.evaluate("return require('_lib.util').double(21), require('_lib.pkg').name") == [.int(42), .string("pkg")])
        let missing = try #require(throws: LuaError.self) { try vm.evaluate("return require 'nope'") }
        #expect(missing.message.contains("module 'nope' not found"))
        let traversal = try #require(throws: LuaError.self) { try vm.evaluate("return require '..etc'") }
        #expect(traversal.message.contains("not found"))
    }

    @Test("the stack is balanced after calls, errors and conversions")
    func stackBalance() throws {
        let vm = try makeVM()
        try vm.loadModule(source: "return { id = function(...) return ... end, bad = function() return function() end end }", chunkName: "=t", as: "t")
        let depth = vm.stackDepth
        _ = try vm.call("t", "id", [.map(["a": [1, 2, ["b": "c"]]]), nil, .null])
        #expect(vm.stackDepth == depth)
        #expect(throws: LuaError.self) { try vm.call("t", "bad") }
        #expect(vm.stackDepth == depth)
        #expect(throws: LuaError.self) { try vm.call("t", "missing") }
        #expect(vm.stackDepth == depth)
    }
}
