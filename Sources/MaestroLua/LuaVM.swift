internal import CLua
public import Logging
public import MaestroValue
#if canImport(Glibc)
internal import Glibc
#endif

/// Limits and search roots of one VM.
public struct LuaConfiguration: Sendable {
    /// Who runs in this VM (a plugin name, `templates`, …); used in log metadata and errors.
    public var name: String
    /// Instructions one call may run (counted by a C hook every 1,000 instructions); 0 = unlimited.
    public var instructionBudget: Int
    /// Bytes the VM may hold; 0 = unlimited.
    public var memoryLimitBytes: Int
    /// Folders `require` may load from (`plugins/`, `templates/`, a plugin's own folder).
    public var moduleRoots: [String]
    public var logger: Logger
    /// Tests only: the Lua implementation of the pattern functions as the global `lua_patterns`.
    var exposesLuaPatterns = false

    public static let defaultInstructionBudget = 50_000_000
    public static let defaultMemoryLimitBytes = 64 << 20

    public init(name: String, instructionBudget: Int = LuaConfiguration.defaultInstructionBudget,
                memoryLimitBytes: Int = LuaConfiguration.defaultMemoryLimitBytes, moduleRoots: [String] = [],
                logger: Logger = Logger(label: "maestro.lua")) {
        self.name = name
        self.instructionBudget = instructionBudget
        self.memoryLimitBytes = memoryLimitBytes
        self.moduleRoots = moduleRoots
        self.logger = logger
    }
}

/// A function the host offers to Lua. Arguments arrive converted (`nil` for Lua nil, `.null` for
/// `maestro.null`); results go back the same way. Throwing raises a Lua error naming the function; a
/// runtime failure is reported by returning `nil, message` instead, as the host API's convention says.
public struct LuaHostFunction: Sendable {
    public let name: String
    public let body: @Sendable (_ arguments: [Value?]) throws(LuaHostError) -> [Value?]

    public init(_ name: String, _ body: @escaping @Sendable (_ arguments: [Value?]) throws(LuaHostError) -> [Value?]) {
        self.name = name
        self.body = body
    }
}

/// A table of host functions and constants under `maestro` (`name` nil: directly in `maestro`).
public struct LuaHostModule: Sendable {
    public var name: String?
    public var functions: [LuaHostFunction]
    public var constants: [String: Value]
    /// Functions written in Lua: a chunk returning a table of functions, run in the sandbox (under the
    /// same limits as plugin code) and merged into the module. For host API that calls back into Lua.
    public var luaSource: String?

    public init(name: String?, functions: [LuaHostFunction] = [], constants: [String: Value] = [:], luaSource: String? = nil) {
        self.name = name
        self.functions = functions
        self.constants = constants
        self.luaSource = luaSource
    }
}

/// Figures of the last call, for metrics.
public struct LuaCallStatistics: Sendable, Equatable {
    /// Instructions the last call ran, rounded up to the hook interval (1,000).
    public var instructions: Int
    /// Bytes the VM holds now.
    public var memoryInUse: Int
    /// The highest memory use seen during the last call.
    public var peakMemory: Int
}

/// One sandboxed Lua 5.4 state (see DESIGN "Lua"). Confined to the thread that uses it: a VM is never
/// shared between threads. After a call hits its instruction budget, its memory cap or `maestro.fail`,
/// the state is thrown away and rebuilt (by the `setup` given at creation) before the next call, so
/// half-updated plugin state never leaks into later events.
public final class LuaVM {
    public let configuration: LuaConfiguration
    public private(set) var statistics = LuaCallStatistics(instructions: 0, memoryInUse: 0, peakMemory: 0)
    /// Instructions run by every call so far (an event's share is the difference across it: its trace span).
    public private(set) var instructionsSpent = 0
    /// How many times the state was rebuilt after a terminal failure.
    public private(set) var resets = 0

    private let modules: [LuaHostModule]
    private let setup: ((LuaVM) throws(LuaError) -> Void)?
    private var state: OpaquePointer!
    private let limits: UnsafeMutablePointer<maestro_lua_limits>
    private var boxes: [HostFunctionBox] = []
    private var exports: [String: Int32] = [:]
    private var controlReference: Int32 = 0
    /// The `maestro` table behind its read-only proxy, where the host sets `maestro.ctx`.
    private var maestroReference: Int32 = 0
    private var needsReset = false
    /// Instructions left while calls share one budget (`sharingBudget`); nil when each call has its own.
    private var sharedBudgetLeft: Int?
    /// The message given to `maestro.fail` during the current call.
    var failureMessage: String?
    /// The message of a `maestro.reject` during the current call.
    var rejectionMessage: String?

    public init(configuration: LuaConfiguration, modules: [LuaHostModule] = [],
                setup: ((LuaVM) throws(LuaError) -> Void)? = nil) throws(LuaError) {
        self.configuration = configuration
        self.modules = LuaStandardLibrary.modules(configuration: configuration) + modules
        self.setup = setup
        limits = .allocate(capacity: 1)
        limits.initialize(to: maestro_lua_limits())
        try build()
    }

    deinit {
        if let state { lua_close(state) }
        limits.deallocate()
    }

    private func build() throws(LuaError) {
        if let state { lua_close(state) }
        boxes.removeAll()
        exports.removeAll()
        limits.pointee = maestro_lua_limits()
        limits.pointee.cap = configuration.memoryLimitBytes
        guard let fresh = maestro_lua_newstate(limits) else {
            throw LuaError(kind: .memoryCap, message: "cannot create a Lua state")
        }
        state = fresh
        try withHostAllowance { () throws(LuaError) in
            guard maestro_lua_open_standard_libraries(state) == LUA_OK else {
                throw LuaError(kind: .memoryCap, message: "cannot open the Lua standard libraries")
            }
            let stack = LuaStack(state: state)
            // The metatable that marks maestro.empty_map() tables, shared by all of them: protected, so
            // that no plugin can add a finalizer or an __index that later maps would carry.
            lua_createtable(state, 0, 2)
            stack.pushString("__name")
            stack.pushString("maestro.empty_map")
            lua_rawset(state, -3)
            stack.pushString("__metatable")
            lua_pushboolean(state, 0)
            lua_rawset(state, -3)
            lua_setfield(state, maestro_lua_registry_index(), emptyMapMetatableKey)

            guard maestro_lua_load_text(state, EmbeddedLua.sandbox, EmbeddedLua.sandbox.utf8.count, "=sandbox") == LUA_OK else {
                throw LuaError(kind: .syntax, message: "sandbox prelude: \(stack.string(at: -1) ?? "?")")
            }
            lua_rawgeti(state, maestro_lua_registry_index(), Int64(LUA_RIDX_GLOBALS))
            lua_createtable(state, 0, 12)
            maestro_lua_push_sandbox_pcall(state)
            lua_setfield(state, -2, "pcall")
            maestro_lua_push_sandbox_xpcall(state)
            lua_setfield(state, -2, "xpcall")
            maestro_lua_push_make_guard_results(state)
            lua_setfield(state, -2, "guard_results")
            maestro_lua_push_make_charge_coroutine(state)
            lua_setfield(state, -2, "charge_coroutine")
            maestro_lua_push_sandbox_charge(state)
            lua_setfield(state, -2, "charge")
            maestro_lua_push_sandbox_budget_left(state)
            lua_setfield(state, -2, "budget_left")
            maestro_lua_push_make_charged(state)
            lua_setfield(state, -2, "charged")
            stack.pushString(EmbeddedLua.patterns)
            lua_setfield(state, -2, "patterns_source")
            lua_pushboolean(state, configuration.exposesLuaPatterns ? 1 : 0)
            lua_setfield(state, -2, "expose_lua_patterns")
            pushHostFunction(LuaHostFunction("read_module") { [configuration] arguments in
                LuaModuleResolver(roots: configuration.moduleRoots).read(arguments.first??.stringValue ?? "")
            }, qualifiedName: "require")
            lua_setfield(state, -2, "read_module")
            pushHostFunction(LuaStandardLibrary.print(configuration: configuration), qualifiedName: "print")
            lua_setfield(state, -2, "print")
            guard maestro_lua_pcall(state, 2, 1) == LUA_OK else {
                let message = stack.string(at: -1) ?? "?"
                maestro_lua_pop(state, 1)
                throw LuaError(kind: .runtime, message: "sandbox prelude: \(message)")
            }
            controlReference = luaL_ref(state, maestro_lua_registry_index())
            try installMaestroTable()
        }
        if let setup {
            try setup(self)
        }
    }

    /// Builds `maestro` from the modules, read-only at every level, and installs it as a global.
    private func installMaestroTable() throws(LuaError) {
        let stack = LuaStack(state: state)
        pushControl("install")
        stack.pushString("maestro")
        pushControl("readonly")
        lua_createtable(state, 0, 16)
        lua_pushvalue(state, -1)
        maestroReference = luaL_ref(state, maestro_lua_registry_index())
        for module in modules {
            if let name = module.name {
                pushControl("readonly")
                lua_createtable(state, 0, Int32(module.functions.count + module.constants.count))
                try fill(module, qualifiedPrefix: "maestro.\(name).")
                stack.pushString("maestro.\(name)")
                lua_callk(state, 2, 1, 0, nil)
                lua_setfield(state, -2, name)
            } else {
                try fill(module, qualifiedPrefix: "maestro.")
            }
        }
        stack.pushString("maestro")
        lua_callk(state, 2, 1, 0, nil)
        lua_callk(state, 2, 0, 0, nil)
    }

    private func fill(_ module: LuaHostModule, qualifiedPrefix: String) throws(LuaError) {
        let stack = LuaStack(state: state)
        for function in module.functions {
            pushHostFunction(function, qualifiedName: qualifiedPrefix + function.name)
            lua_setfield(state, -2, function.name)
        }
        for (name, value) in module.constants {
            try stack.push(value)
            lua_setfield(state, -2, name)
        }
        if let source = module.luaSource {
            // Compile and run the chunk, then copy the functions it returns into the module table.
            pushControl("compile")
            stack.pushString(source)
            stack.pushString("=" + qualifiedPrefix.dropLast())
            guard maestro_lua_pcall(state, 2, 1) == LUA_OK, lua_type(state, -1) == LUA_TFUNCTION,
                  maestro_lua_pcall(state, 0, 1) == LUA_OK, lua_type(state, -1) == LUA_TTABLE else {
                let message = stack.string(at: -1) ?? "it must return a table"
                throw LuaError(kind: .syntax, message: "host module \(qualifiedPrefix.dropLast()): \(message)")
            }
            lua_pushnil(state)
            while lua_next(state, -2) != 0 {
                lua_pushvalue(state, -2)
                maestro_lua_insert(state, -2)
                lua_rawset(state, -5)
            }
            maestro_lua_pop(state, 1)
        }
    }

    /// Pushes `control[name]`.
    private func pushControl(_ name: String) {
        lua_rawgeti(state, maestro_lua_registry_index(), Int64(controlReference))
        LuaStack(state: state).pushString(name)
        lua_rawget(state, -2)
        maestro_lua_remove(state, -2)
    }

    private func pushHostFunction(_ function: LuaHostFunction, qualifiedName: String) {
        let box = HostFunctionBox(function: function, qualifiedName: qualifiedName, vm: self)
        boxes.append(box)
        maestro_lua_push_host_function(state, luaHostDispatch, Unmanaged.passUnretained(box).toOpaque())
    }

    /// Lua API calls made from Swift may allocate; an allocation failure would raise through Swift
    /// frames, so the cap is lifted while Swift marshals and checked again by the next Lua call.
    private func withHostAllowance<R>(_ body: () throws(LuaError) -> R) throws(LuaError) -> R {
        limits.pointee.host_allowance += 1
        defer { limits.pointee.host_allowance -= 1 }
        return try body()
    }

    // MARK: loading

    /// Runs a file in the sandbox and keeps what it returns under `name` (a plugin's handler table,
    /// a template, a schema).
    public func loadModule(file path: String, as name: String, chunkName: String? = nil) throws(LuaError) {
        guard let source = TextFile.read(path) else {
            throw LuaError(kind: .notFound, message: "cannot read \(path)")
        }
        try loadModule(source: source, chunkName: "@" + (chunkName ?? path), as: name)
    }

    /// Runs source text in the sandbox and keeps what it returns under `name`.
    public func loadModule(source: String, chunkName: String, as name: String) throws(LuaError) {
        try resetIfNeeded()
        let base = lua_gettop(state)
        defer { lua_settop(state, base) }
        try compile(source, chunkName: chunkName)
        try protectedCall(arguments: 0, results: 1)
        exports[name] = withUncheckedAllowance { luaL_ref(state, maestro_lua_registry_index()) }
    }

    /// Runs source text whose chunk returns a function, calls that function with the module `module`
    /// (a table Lua holds, not converted) and keeps what it returns under `name`. For host-side Lua that
    /// works on a plugin's own tables, such as its schema with its `validate` functions.
    public func loadModule(source: String, chunkName: String, as name: String, applyingTo module: String) throws(LuaError) {
        try resetIfNeeded()
        guard let reference = exports[module] else { throw LuaError(kind: .notFound, message: "no module \(module) loaded") }
        let base = lua_gettop(state)
        defer { lua_settop(state, base) }
        try compile(source, chunkName: chunkName)
        try protectedCall(arguments: 0, results: 1)
        guard lua_type(state, -1) == LUA_TFUNCTION else { throw LuaError(kind: .conversion, message: "\(chunkName) must return a function") }
        lua_rawgeti(state, maestro_lua_registry_index(), Int64(reference))
        try protectedCall(arguments: 1, results: 1)
        exports[name] = withUncheckedAllowance { luaL_ref(state, maestro_lua_registry_index()) }
    }

    /// Makes the globals read-only; plugins call it implicitly once their files are loaded.
    public func sealGlobals() throws(LuaError) {
        let base = lua_gettop(state)
        defer { lua_settop(state, base) }
        pushControl("seal")
        guard maestro_lua_pcall(state, 0, 0) == LUA_OK else {
            throw LuaError(kind: .runtime, message: "cannot seal globals")
        }
    }

    private func compile(_ source: String, chunkName: String) throws(LuaError) {
        let stack = LuaStack(state: state)
        try withHostAllowance { () throws(LuaError) in
            pushControl("compile")
            stack.pushString(source)
            stack.pushString(chunkName)
        }
        guard maestro_lua_pcall(state, 2, 2) == LUA_OK else {
            let message = stack.string(at: -1) ?? "cannot compile \(chunkName)"
            throw LuaError(kind: .memoryCap, message: message)
        }
        if lua_type(state, -2) == LUA_TNIL {
            throw LuaError(kind: .syntax, message: stack.string(at: -1) ?? "cannot compile \(chunkName)")
        }
        maestro_lua_pop(state, 1)
    }

    /// Whether the module exists and holds a function `function` (or is one, when `function` is nil).
    /// The lookup is raw: a handler is a field of the table the module returned, never the result of
    /// an `__index` (plugin code, which runs only inside a protected, budgeted call).
    public func hasFunction(_ module: String, _ function: String? = nil) -> Bool {
        guard !needsReset, let reference = exports[module] else { return false }
        let base = lua_gettop(state)
        defer { lua_settop(state, base) }
        lua_rawgeti(state, maestro_lua_registry_index(), Int64(reference))
        if let function {
            guard lua_type(state, -1) == LUA_TTABLE else { return false }
            withUncheckedAllowance {
                LuaStack(state: state).pushString(function)
                lua_rawget(state, -2)
            }
        }
        return lua_type(state, -1) == LUA_TFUNCTION
    }

    /// The data a module returned (a schema, say), converted; with `field`, only that field of it
    /// (a template's table also holds its render function, which is not data). A missing field is null.
    public func moduleValue(_ module: String, field: String? = nil) throws(LuaError) -> Value {
        try resetIfNeeded()
        guard let reference = exports[module] else { throw LuaError(kind: .notFound, message: "no module \(module) loaded") }
        let base = lua_gettop(state)
        defer { lua_settop(state, base) }
        lua_rawgeti(state, maestro_lua_registry_index(), Int64(reference))
        return try withHostAllowance { () throws(LuaError) in
            if let field {
                guard lua_type(state, -1) == LUA_TTABLE else { return .null }
                LuaStack(state: state).pushString(field)
                lua_rawget(state, -2)
            }
            return try LuaStack(state: state).value(at: -1, path: field.map { module + "." + $0 } ?? module)
        }
    }

    /// Sets `maestro.ctx`, what plugin code sees of the current invocation (a map; replaced per call).
    public func setContext(_ context: Value) throws(LuaError) {
        try resetIfNeeded()
        let base = lua_gettop(state)
        defer { lua_settop(state, base) }
        try withHostAllowance { () throws(LuaError) in
            lua_rawgeti(state, maestro_lua_registry_index(), Int64(maestroReference))
            LuaStack(state: state).pushString("ctx")
            try LuaStack(state: state).push(context)
            lua_rawset(state, -3)
        }
    }

    // MARK: calling

    /// Calls `module.function(arguments…)` (or the module itself when `function` is nil) under the
    /// instruction budget and memory cap, and converts what it returns.
    public func call(_ module: String, _ function: String? = nil, _ arguments: [Value?] = []) throws(LuaError) -> [Value?] {
        try resetIfNeeded()
        guard let reference = exports[module] else { throw LuaError(kind: .notFound, message: "no module \(module) loaded") }
        let base = lua_gettop(state)
        defer { lua_settop(state, base) }
        let stack = LuaStack(state: state)
        try withHostAllowance { () throws(LuaError) in
            guard lua_checkstack(state, Int32(arguments.count + 4)) != 0 else {
                throw LuaError(kind: .conversion, message: "too many arguments")
            }
            lua_rawgeti(state, maestro_lua_registry_index(), Int64(reference))
            if let function {
                guard lua_type(state, -1) == LUA_TTABLE else {
                    throw LuaError(kind: .notFound, message: "\(module) is not a table of functions")
                }
                // Raw, as in hasFunction: no plugin code runs outside the protected call below.
                stack.pushString(function)
                lua_rawget(state, -2)
                maestro_lua_remove(state, -2)
            }
            guard lua_type(state, -1) == LUA_TFUNCTION else {
                throw LuaError(kind: .notFound, message: "\(module) has no function \(function ?? module)")
            }
            for argument in arguments {
                if let argument { try stack.push(argument) } else { lua_pushnil(state) }
            }
        }
        try protectedCall(arguments: Int32(arguments.count), results: LUA_MULTRET)
        let count = lua_gettop(state) - base
        return try withHostAllowance { () throws(LuaError) in
            var results: [Value?] = []
            var budget = ValueBudget(stack.limits)
            for index in 0..<count {
                results.append(try stack.optionalValue(at: base + 1 + index, path: count == 1 ? "return value" : "return value #\(index + 1)",
                                                       budget: &budget))
            }
            return results
        }
    }

    /// Runs `body` with every call it makes drawing on one instruction budget (an event's validate hooks
    /// and its handler), instead of a fresh budget per call. Nested, it is the enclosing scope's budget.
    public func sharingBudget<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        guard sharedBudgetLeft == nil, configuration.instructionBudget > 0 else { return try body() }
        sharedBudgetLeft = configuration.instructionBudget
        defer { sharedBudgetLeft = nil }
        return try body()
    }

    /// Runs a chunk of code in the sandbox and returns its results (tests, `maestro plugins test`).
    public func evaluate(_ code: String, chunkName: String = "=(eval)") throws(LuaError) -> [Value?] {
        try loadModule(source: "return function(...) \(code)\nend", chunkName: chunkName, as: "__eval")
        return try call("__eval")
    }

    /// Number of slots on the Lua stack; every call leaves it where it found it.
    public var stackDepth: Int { Int(lua_gettop(state)) }

    private func protectedCall(arguments: Int32, results: Int32) throws(LuaError) {
        failureMessage = nil
        rejectionMessage = nil
        let budget = sharedBudgetLeft ?? configuration.instructionBudget
        if let left = sharedBudgetLeft, left <= 0 {
            maestro_lua_pop(state, arguments + 1)
            throw LuaError(kind: .instructionBudget, message: "\(configuration.name): instruction budget of \(configuration.instructionBudget) exceeded")
        }
        maestro_lua_arm(state, Int64(budget))
        limits.pointee.peak = limits.pointee.used
        let status = maestro_lua_pcall(state, arguments, results)
        let terminated = limits.pointee.terminated
        statistics = LuaCallStatistics(instructions: Int(limits.pointee.spent), memoryInUse: limits.pointee.used,
                                       peakMemory: limits.pointee.peak)
        // Plugin code outside a call (none should run) is never budgeted against the next event.
        limits.pointee.budget = 0
        instructionsSpent &+= Int(limits.pointee.spent)
        if let left = sharedBudgetLeft { sharedBudgetLeft = left - Int(limits.pointee.spent) }
        guard status != LUA_OK else { return }
        let raw = LuaStack(state: state).string(at: -1) ?? "(error object is not a string)"
        maestro_lua_pop(state, 1)
        let (message, traceback) = Self.split(raw)
        if terminated == Int32(MAESTRO_LUA_TERMINATED_BUDGET) {
            needsReset = true
            throw LuaError(kind: .instructionBudget, message: "\(configuration.name): instruction budget of \(configuration.instructionBudget) exceeded", traceback: traceback)
        }
        if terminated == Int32(MAESTRO_LUA_TERMINATED_MEMORY) || status == LUA_ERRMEM {
            needsReset = true
            throw LuaError(kind: .memoryCap, message: "\(configuration.name): memory cap of \(configuration.memoryLimitBytes) bytes exceeded", traceback: traceback)
        }
        if terminated == Int32(MAESTRO_LUA_TERMINATED_REJECTED) {
            // The input was wrong, not the VM: it stays as it is for the next call.
            throw LuaError(kind: .rejected, message: rejectionMessage ?? message, traceback: traceback)
        }
        if terminated == Int32(MAESTRO_LUA_TERMINATED_FAILED) {
            needsReset = true
            throw LuaError(kind: .failed, message: failureMessage ?? message, traceback: traceback)
        }
        throw LuaError(kind: .runtime, message: message, traceback: traceback)
    }

    private static func split(_ raw: String) -> (String, String?) {
        let marker = "\nstack traceback:\n"
        guard let range = raw.firstRange(of: marker) else { return (raw, nil) }
        return (String(raw[..<range.lowerBound]), String(raw[range.upperBound...]))
    }

    private func resetIfNeeded() throws(LuaError) {
        guard needsReset else { return }
        needsReset = false
        resets += 1
        configuration.logger.warning("Lua VM rebuilt after a terminal failure", metadata: ["plugin.name": "\(configuration.name)"])
        // Loading the files again is the VM's own work, not the current event's: it has its own budget.
        let shared = sharedBudgetLeft
        sharedBudgetLeft = nil
        defer { sharedBudgetLeft = shared }
        try build()
    }

    private func withUncheckedAllowance<R>(_ body: () -> R) -> R {
        limits.pointee.host_allowance += 1
        defer { limits.pointee.host_allowance -= 1 }
        return body()
    }
}

/// Keeps a host function and the VM it belongs to alive for the C trampoline.
final class HostFunctionBox {
    let function: LuaHostFunction
    let qualifiedName: String
    unowned let vm: LuaVM

    init(function: LuaHostFunction, qualifiedName: String, vm: LuaVM) {
        self.function = function
        self.qualifiedName = qualifiedName
        self.vm = vm
    }
}

/// The single C entry point for every host function. It never raises: failures are reported to the
/// trampoline (return -1 with the message pushed), which raises in C.
private let luaHostDispatch: maestro_lua_host_fn = { state, context in
    guard let state, let context else { return -1 }
    let box = Unmanaged<HostFunctionBox>.fromOpaque(context).takeUnretainedValue()
    let stack = LuaStack(state: state)
    let count = lua_gettop(state)
    var arguments: [Value?] = []
    arguments.reserveCapacity(Int(count))
    // Converting is work the count hook cannot see: charged by the node, arguments and results.
    var budget = ValueBudget(stack.limits)
    defer { _ = maestro_lua_charge_host(state, Int64(budget.nodes * hostInstructionsPerNode)) }
    for index in 1...max(count, 1) where index <= count {
        do {
            arguments.append(try stack.optionalValue(at: index, path: "argument #\(index)", budget: &budget))
        } catch {
            stack.pushString("bad argument #\(index) to '\(box.qualifiedName)' (\(error))")
            return -1
        }
    }
    let results: [Value?]
    do throws(LuaHostError) {
        results = try box.function.body(arguments)
    } catch {
        if error.isRejection {
            box.vm.rejectionMessage = error.message
            maestro_lua_mark_rejected(state)
            stack.pushString(error.message)
            return -1
        }
        if error.isTerminal {
            box.vm.failureMessage = error.message
            maestro_lua_mark_failed(state)
            stack.pushString(error.message)
            return -1
        }
        stack.pushString("\(box.qualifiedName): \(error.message)")
        return -1
    }
    guard lua_checkstack(state, Int32(results.count + 4)) != 0 else {
        stack.pushString("\(box.qualifiedName): too many results")
        return -1
    }
    var pushed = 0
    defer { _ = maestro_lua_charge_host(state, Int64(pushed * hostInstructionsPerNode)) }
    for result in results {
        guard let result else {
            lua_pushnil(state)
            continue
        }
        do throws(LuaError) {
            pushed += try stack.push(result)
        } catch {
            if error.kind == .memoryCap { maestro_lua_mark_out_of_memory(state) }
            stack.pushString("\(box.qualifiedName): \(error)")
            return -1
        }
    }
    return Int32(results.count)
}

/// What converting one value node between Lua and Swift is charged, in instructions (a node takes
/// about as long as ten VM instructions).
let hostInstructionsPerNode = 10


func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}
