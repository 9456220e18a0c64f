public import Logging
public import MaestroCore
public import MaestroLua
public import MaestroRedis
internal import MaestroValue

/// The Redis connection plugin code uses through `maestro.redis`: the worker's own, set per batch.
public final class PluginRedisAccess: @unchecked Sendable {
    // Confined to the worker thread that owns the runtime.
    public var connection: RedisConnection?
    public init() {}
}

/// One worker's plugin VMs: one per plugin, created on first use, each with the host API. A VM is
/// never shared between threads.
public final class PluginRuntime {
    public let catalog: PluginCatalog
    public let names: RedisNames
    public let redis = PluginRedisAccess()
    private let logger: Logger
    private var machines: [String: LuaVM] = [:]

    public let httpPolicy: HTTPHostPolicy
    /// `maestro.k8s`: reads at once, writes queued until the handler returned.
    public let cluster: PluginClusterAccess
    /// The sink the current call handles: what a plugin may read without a capability.
    public let invocation = PluginInvocation()

    /// Modules that replace the host's own of the same name (specs: an in-memory `maestro.redis`).
    let replacedModules: [LuaHostModule]
    /// Where `maestro.metrics` records: the process's store, or a spec's.
    let metrics: PluginMetricsStore

    public convenience init(catalog: PluginCatalog, names: RedisNames, logger: Logger, httpPolicy: HTTPHostPolicy = HTTPHostPolicy(allowedHosts: []),
                cluster: (any PluginCluster)? = nil) {
        self.init(catalog: catalog, names: names, logger: logger, httpPolicy: httpPolicy, cluster: cluster, replacing: [], metrics: .shared)
    }

    init(catalog: PluginCatalog, names: RedisNames, logger: Logger, httpPolicy: HTTPHostPolicy = HTTPHostPolicy(allowedHosts: []),
         cluster: (any PluginCluster)?, replacing modules: [LuaHostModule], metrics: PluginMetricsStore) {
        self.metrics = metrics
        self.catalog = catalog
        self.names = names
        self.logger = logger
        self.httpPolicy = httpPolicy
        self.cluster = PluginClusterAccess(cluster: cluster)
        replacedModules = modules
    }

    /// The VM of a plugin, loading `handler.lua` the first time (and again after a terminal failure).
    public func machine(for plugin: PluginManifest) throws(LuaError) -> LuaVM {
        if let vm = machines[plugin.name] { return vm }
        let root = catalog.root
        var pluginPolicy = httpPolicy
        pluginPolicy.plugin = (plugin.name, plugin.capabilities)
        let replaced = Set(replacedModules.map(\.name))
        let modules = (PluginHostAPI.modules(plugin: plugin, names: names, redis: redis, invocation: invocation)
            + [HTTPHostModule.module(policy: pluginPolicy), cluster.module(plugin: plugin.name, capabilities: plugin.capabilities, invocation: invocation),
               PluginMetricsModule.module(plugin: plugin.name, declarations: plugin.metrics, store: metrics,
                                          scrubbed: { [invocation] in invocation.scrubbed($0) })])
            .filter { $0.name == nil || !replaced.contains($0.name) } + replacedModules
        let invocation = invocation
        let base = logger
        let scrubbingLogger = Logger(label: logger.label) { _ in SinkSecretScrubbingLogHandler(base: base.handler, invocation: invocation) }
        let vm = try LuaVM(configuration: LuaConfiguration(name: plugin.name, instructionBudget: catalog.limits.instructionBudget,
                                                           memoryLimitBytes: catalog.limits.memoryLimitBytes, moduleRoots: [root],
                                                           logger: scrubbingLogger),
                           modules: modules) { vm throws(LuaError) in
            try vm.loadModule(file: plugin.folder + "/handler.lua", as: "handler",
                              chunkName: PluginCatalog.relative(plugin.folder + "/handler.lua", to: root))
            // The schema's validate hooks run in this VM, with the handler's module state and limits.
            try PluginRuntime.loadSchemaHooks(plugin: plugin, root: root, into: vm)
            try vm.sealGlobals()
        }
        machines[plugin.name] = vm
        return vm
    }
}

extension PluginRuntime {
    /// Loads `schema.lua` again in a plugin's VM as the module `schema`, and `schema_hooks`, the
    /// function that runs one of its `validate` hooks (see lua/schema_hooks.lua).
    static func loadSchemaHooks(plugin: PluginManifest, root: String, into vm: LuaVM) throws(LuaError) {
        try vm.loadModule(file: plugin.folder + "/schema.lua", as: "schema", chunkName: PluginCatalog.relative(plugin.folder + "/schema.lua", to: root))
        try vm.loadModule(source: EmbeddedLua.schema_hooks, chunkName: "=schema_hooks", as: "schema_hooks", applyingTo: "schema")
    }
}

/// The plugin-facing part of the host API that depends on where the code runs: `maestro.fail`,
/// `maestro.reject` and the scoped `maestro.redis`.
enum PluginHostAPI {
    static func modules(plugin: PluginManifest, names: RedisNames, redis: PluginRedisAccess, invocation: PluginInvocation) -> [LuaHostModule] {
        [
            LuaHostModule(name: nil, functions: [
                LuaHostFunction("fail") { arguments throws(LuaHostError) in
                    guard case .string(let message)? = arguments.first ?? nil else {
                        throw LuaHostError("maestro.fail: bad argument #1 (string expected)", terminal: true)
                    }
                    throw LuaHostError(message, terminal: true)
                },
                LuaHostFunction("reject") { arguments throws(LuaHostError) in
                    let message = try rejection(arguments)
                    guard invocation.isBuildingConfig else {
                        throw LuaHostError("only a sink backend's handler or a schema validate hook may reject a sink's config")
                    }
                    throw LuaHostError.rejection(message)
                },
            ]),
            LuaHostModule(name: "redis", functions: ScopedRedis(plugin: plugin.name, names: names, access: redis, capabilities: plugin.capabilities,
                                                                invocation: invocation).functions()),
        ]
    }
}

/// `maestro.redis.*`: a plugin writes only keys under `maestro:plugin:<name>:` and reads those plus
/// the current sink's entries of the sinks, config and deployment hashes (every sink's with
/// `sinks:read`). Runtime failures (Redis down) return `nil, err`.
struct ScopedRedis: Sendable {
    let plugin: String
    let names: RedisNames
    let access: PluginRedisAccess
    let capabilities: PluginCapabilities
    let invocation: PluginInvocation

    var prefix: String { names.pluginKeyPrefix + plugin + ":" }

    func writable(_ key: String) throws(LuaHostError) -> String {
        guard key.hasPrefix(prefix), key.utf8.count <= 1024 else {
            throw LuaHostError("bad argument #1 (key \"\(String(key.prefix(80)))\" is outside this plugin's prefix \(prefix))")
        }
        return key
    }

    /// `field` is the hash field of an HGET, nil for a GET.
    func readable(_ key: String, field: String? = nil) throws(LuaHostError) -> String {
        if key.hasPrefix(prefix) { return key }
        guard [names.configHash, names.deploymentHash, names.sinksHash].contains(key) else {
            throw LuaHostError("bad argument #1 (key \"\(String(key.prefix(80)))\" is not readable by plugins: use this plugin's prefix \(prefix) or the config hashes)")
        }
        if capabilities.has(PluginCapabilities.sinksRead) { return key }
        guard let field, let current = invocation.sinkID, field == current else {
            let which = field.map { "sink \"\(SinkEvent.sanitizedName(String($0.prefix(80))))\"" } ?? "every sink"
            throw LuaHostError("maestro.redis: reading \(key) for \(which), not the sink this call handles, "
                               + capabilities.refusal(PluginCapabilities.sinksRead, plugin: plugin))
        }
        return key
    }

    func run(_ command: [String]) -> [Value?] {
        guard let connection = access.connection else { return [nil, .string("Redis is not available here")] }
        do {
            let reply = try connection.command(command)
            return [convert(reply)]
        } catch {
            return [nil, .string(error.message)]
        }
    }

    func convert(_ reply: RedisReply) -> Value? {
        switch reply {
        case .null: return nil
        case .integer(let number): return .int(number)
        case .bulk, .status: return .string(reply.string ?? "")
        case .array(let items): return .list(items.map { convert($0) ?? .null })
        case .error(let text): return .string(text)
        }
    }

    func functions() -> [LuaHostFunction] {
        let scope = self
        return [
            LuaHostFunction("get") { arguments throws(LuaHostError) in
                scope.run(["GET", try scope.readable(try string(arguments, 1))])
            },
            LuaHostFunction("set") { arguments throws(LuaHostError) in
                let key = try scope.writable(try string(arguments, 1))
                var command = ["SET", key, try string(arguments, 2)]
                if arguments.count >= 3, let options = arguments[2], case .int(let milliseconds)? = options["px"] {
                    command += ["PX", String(milliseconds)]
                }
                return scope.run(command)
            },
            LuaHostFunction("del") { arguments throws(LuaHostError) in
                scope.run(["DEL", try scope.writable(try string(arguments, 1))])
            },
            LuaHostFunction("hget") { arguments throws(LuaHostError) in
                let field = try string(arguments, 2)
                return scope.run(["HGET", try scope.readable(try string(arguments, 1), field: field), field])
            },
            LuaHostFunction("hset") { arguments throws(LuaHostError) in
                scope.run(["HSET", try scope.writable(try string(arguments, 1)), try string(arguments, 2), try string(arguments, 3)])
            },
            LuaHostFunction("hdel") { arguments throws(LuaHostError) in
                scope.run(["HDEL", try scope.writable(try string(arguments, 1)), try string(arguments, 2)])
            },
            LuaHostFunction("xadd") { arguments throws(LuaHostError) in
                let stream = try scope.writable(try string(arguments, 1))
                guard arguments.count >= 2, case .map(let fields)? = arguments[1], !fields.isEmpty else {
                    throw LuaHostError.badArgument(2, "a non-empty map of fields expected")
                }
                var pairs: [(String, String)] = []
                for key in fields.keys.sorted() {
                    guard case .string(let value) = fields[key]! else { throw LuaHostError.badArgument(2, "field \(key) must be a string") }
                    pairs.append((key, value))
                }
                var maxLength = 10_000
                if arguments.count >= 3, let options = arguments[2], case .int(let length)? = options["maxlen"] { maxLength = Int(length) }
                return scope.run(RedisConnection.xaddArguments(stream, fields: pairs, trim: .approximateMaxLength(maxLength)))
            },
        ]
    }
}

/// `maestro.reject(path, message)`'s arguments as the text a status shows: `path message`, or the
/// message alone for an empty path (the whole config). Made one line and cut only once the sink's secrets
/// are out of it (`SinkMessage.statusLine`).
func rejection(_ arguments: [Value?]) throws(LuaHostError) -> String {
    guard arguments.count >= 1, case .string(let path)? = arguments[0] else {
        throw LuaHostError.badArgument(1, "the path of the field, a string such as \"exporter.endpoint\", or \"\" for the whole config")
    }
    guard path.utf8.count <= 200 else { throw LuaHostError.badArgument(1, "a field path of at most 200 bytes") }
    guard arguments.count >= 2, case .string(let message)? = arguments[1], !message.allSatisfy(\.isWhitespace) else {
        throw LuaHostError.badArgument(2, "a message saying what is wrong, a non-blank string")
    }
    return path.isEmpty ? message : path + " " + message
}

func string(_ arguments: [Value?], _ position: Int) throws(LuaHostError) -> String {
    guard arguments.count >= position, case .string(let text)? = arguments[position - 1] else {
        throw LuaHostError.badArgument(position, "string expected")
    }
    return text
}
