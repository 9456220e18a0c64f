public import Logging
internal import MaestroCore
internal import MaestroLua
internal import MaestroValue
internal import Foundation
internal import Synchronization

/// One `it` of a plugin's spec.
public struct SpecResult: Sendable, Equatable {
    public var plugin: String
    /// `spec/handler_spec.lua:12`, where the case is declared.
    public var location: String
    public var name: String
    /// nil when it passed; else the failure, with file:line.
    public var failure: String?
}

/// `maestro plugins test`: runs `spec/*_spec.lua` of each plugin with a small describe/it/assert API
/// (busted-like), in the plugin's sandbox, against in-memory fakes of Redis and Kubernetes.
public enum PluginSpecRunner {
    static let prelude = #"""
    local cases, prefix = {}, {}
    __spec_cases = cases
    local function location()
      local _, where = pcall(error, "", 4)
      return (where:gsub(":%s*$", ""))
    end
    function describe(name, body)
      prefix[#prefix + 1] = name
      body()
      prefix[#prefix] = nil
    end
    function it(name, body)
      cases[#cases + 1] = { name = table.concat(prefix, " ") .. (#prefix > 0 and " " or "") .. name, body = body, where = location() }
    end
    local function same(a, b)
      if type(a) ~= type(b) then return false end
      if type(a) ~= "table" then return a == b end
      for k, v in pairs(a) do if not same(v, b[k]) then return false end end
      for k in pairs(b) do if a[k] == nil then return false end end
      return true
    end
    local function show(v)
      if type(v) == "table" then return maestro.json.encode(v) or "<table>" end
      return tostring(v)
    end
    local checks = {}
    function checks.equals(expected, actual) if expected ~= actual then error("expected " .. show(expected) .. ", got " .. show(actual), 2) end end
    function checks.same(expected, actual) if not same(expected, actual) then error("expected " .. show(expected) .. ", got " .. show(actual), 2) end end
    function checks.is_true(value, message) if value ~= true then error(message or ("expected true, got " .. show(value)), 2) end end
    function checks.is_nil(value) if value ~= nil then error("expected nil, got " .. show(value), 2) end end
    function checks.has_error(fn, pattern)
      local ok, err = pcall(fn)
      if ok then error("expected an error", 2) end
      if pattern and not tostring(err):find(pattern) then error("error " .. tostring(err) .. " does not match " .. pattern, 2) end
    end
    assert = setmetatable(checks, { __metatable = false, __call = function(_, value, message, ...) if not value then error(message or "assertion failed", 2) end return value, message, ... end })
    function __spec_count() return #cases end
    function __spec_case(i) return cases[i].name, cases[i].where end
    function __spec_run(i) cases[i].body() end
    return true
    """#

    public static func run(catalog: PluginCatalog, logger: Logger = Logger(label: "maestro.spec")) -> [SpecResult] {
        var results: [SpecResult] = []
        for plugin in catalog.plugins {
            let folder = plugin.folder + "/spec"
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix("_spec.lua") }.sorted()
            for file in files {
                results += runFile(folder + "/" + file, plugin: plugin, catalog: catalog, logger: logger)
            }
        }
        return results
    }

    static func runFile(_ path: String, plugin: PluginManifest, catalog: PluginCatalog, logger: Logger) -> [SpecResult] {
        let redis = FakeRedis(prefix: RedisNames().pluginKeyPrefix + plugin.name + ":")
        let cluster = PluginClusterAccess(cluster: InMemoryPluginCluster(namespace: "otelcollectors"))
        let modules = [
            LuaHostModule(name: nil, functions: [
                // Catchable here, unlike in maestro run: a spec checks that a handler fails with has_error.
                LuaHostFunction("fail") { arguments throws(LuaHostError) in
                    throw LuaHostError("maestro.fail: " + (arguments.first??.stringValue ?? ""), terminal: false)
                },
            ]),
            redis.module(), cluster.module(plugin: plugin.name, capabilities: plugin.capabilities, invocation: PluginInvocation()), HTTPHostModule.module(policy: HTTPHostPolicy(allowedHosts: [])),
        ]
        let configuration = LuaConfiguration(name: "spec:" + plugin.name, instructionBudget: catalog.limits.instructionBudget,
                                             memoryLimitBytes: catalog.limits.memoryLimitBytes, moduleRoots: [catalog.root], logger: logger)
        return runCases(path, location: PluginCatalog.relative(path, to: catalog.root), owner: plugin.name, configuration: configuration, modules: modules)
    }

    /// Runs a spec of the sandbox itself (`Sources/MaestroLua/lua/spec/`) in a VM with the sandbox and
    /// maestro's standard library only, under the default limits: no plugin and no host fakes. `location`
    /// names the file in the results.
    public static func runSandboxSpec(_ path: String, location: String, logger: Logger = Logger(label: "maestro.spec")) -> [SpecResult] {
        runCases(path, location: location, owner: "sandbox", configuration: LuaConfiguration(name: "spec:sandbox", logger: logger), modules: [])
    }

    private static func runCases(_ path: String, location relative: String, owner: String, configuration: LuaConfiguration,
                                 modules: [LuaHostModule]) -> [SpecResult] {
        do {
            let vm = try LuaVM(configuration: configuration, modules: modules) { vm throws(LuaError) in
                // Also after a terminal failure (maestro.fail, a limit), which rebuilds the VM between cases.
                try vm.loadModule(source: prelude, chunkName: "=spec", as: "prelude")
                try vm.loadModule(file: path, as: "spec", chunkName: relative)
            }
            let count = Int(try vm.evaluate("return __spec_count()").first??.intValue ?? 0)
            var results: [SpecResult] = []
            for index in 1...max(count, 1) where index <= count {
                let described = try vm.evaluate("return __spec_case(\(index))")
                let name = described.first??.stringValue ?? "case \(index)"
                let location = (described.count > 1 ? described[1]?.stringValue : nil) ?? relative
                var failure: String?
                do {
                    try vm.setContext(.map(["plugin": .string(owner), "event_id": "spec", "deliveries": 1]))
                    _ = try vm.evaluate("__spec_run(\(index))")
                } catch {
                    failure = error.message
                }
                results.append(SpecResult(plugin: owner, location: location, name: name, failure: failure))
            }
            return results
        } catch {
            return [SpecResult(plugin: owner, location: relative, name: "(loading the spec)", failure: error.message)]
        }
    }
}

/// `maestro.redis` for specs: the same scoping, in memory.
final class FakeRedis: Sendable {
    let prefix: String
    private let strings = Mutex<[String: String]>([:])
    private let hashes = Mutex<[String: [String: String]]>([:])

    init(prefix: String) { self.prefix = prefix }

    func module() -> LuaHostModule {
        let fake = self
        @Sendable func key(_ arguments: [Value?], write: Bool) throws(LuaHostError) -> String {
            guard case .string(let key)? = arguments.first ?? nil else { throw LuaHostError.badArgument(1, "string expected") }
            guard key.hasPrefix(fake.prefix) || (!write && key.hasPrefix("orb.")) else {
                throw LuaHostError("bad argument #1 (key \"\(key)\" is outside this plugin's prefix \(fake.prefix))")
            }
            return key
        }
        @Sendable func text(_ arguments: [Value?], _ position: Int) throws(LuaHostError) -> String {
            guard arguments.count >= position, case .string(let value)? = arguments[position - 1] else {
                throw LuaHostError.badArgument(position, "string expected")
            }
            return value
        }
        return LuaHostModule(name: "redis", functions: [
            LuaHostFunction("get") { arguments throws(LuaHostError) in
                let name = try key(arguments, write: false)
                return [fake.strings.withLock { $0[name] }.map(Value.string)]
            },
            LuaHostFunction("set") { arguments throws(LuaHostError) in
                let name = try key(arguments, write: true)
                let value = try text(arguments, 2)
                fake.strings.withLock { $0[name] = value }
                return [.string("OK")]
            },
            LuaHostFunction("del") { arguments throws(LuaHostError) in
                let name = try key(arguments, write: true)
                let removed = fake.strings.withLock { $0.removeValue(forKey: name) } != nil || fake.hashes.withLock { $0.removeValue(forKey: name) } != nil
                return [.int(removed ? 1 : 0)]
            },
            LuaHostFunction("hget") { arguments throws(LuaHostError) in
                let name = try key(arguments, write: false)
                let field = try text(arguments, 2)
                return [fake.hashes.withLock { $0[name]?[field] }.map(Value.string)]
            },
            LuaHostFunction("hset") { arguments throws(LuaHostError) in
                let name = try key(arguments, write: true)
                let field = try text(arguments, 2)
                let value = try text(arguments, 3)
                let added = fake.hashes.withLock { hashes -> Bool in
                    defer { hashes[name, default: [:]][field] = value }
                    return hashes[name]?[field] == nil
                }
                return [.int(added ? 1 : 0)]
            },
            LuaHostFunction("hdel") { arguments throws(LuaHostError) in
                let name = try key(arguments, write: true)
                let field = try text(arguments, 2)
                return [.int(fake.hashes.withLock { $0[name]?.removeValue(forKey: field) } != nil ? 1 : 0)]
            },
            LuaHostFunction("xadd") { arguments throws(LuaHostError) in
                _ = try key(arguments, write: true)
                return [.string("\(Int(Date().timeIntervalSince1970 * 1000))-0")]
            },
        ])
    }
}

/// `maestro.k8s` for specs: objects in memory.
final class InMemoryPluginCluster: PluginCluster {
    let namespace: String
    private let objects = Mutex<[String: Value]>([:])

    init(namespace: String) { self.namespace = namespace }

    func get(apiVersion: String, kind: String, name: String) throws(ClusterError) -> Value? { objects.withLock { $0["\(kind)/\(name)"] } }

    func list(apiVersion: String, kind: String, labelSelector: String?) throws(ClusterError) -> [Value] {
        objects.withLock { all in all.filter { $0.key.hasPrefix(kind + "/") }.sorted { $0.key < $1.key }.map(\.value) }
    }

    func owner(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError) -> PluginObjectOwner {
        guard let object = objects.withLock({ $0["\(kind)/\(name)"] }) else { return .none }
        return object["metadata"]?["labels"]?[PluginClusterAccess.ownerLabel]?.stringValue.map(PluginObjectOwner.plugin) ?? .other
    }

    func apply(_ object: Value, plugin: String) throws(ClusterError) {
        let key = "\(object["kind"]?.stringValue ?? "")/\(object["metadata"]?["name"]?.stringValue ?? "")"
        objects.withLock { $0[key] = object }
    }

    func delete(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError) {
        _ = objects.withLock { $0.removeValue(forKey: "\(kind)/\(name)") }
    }
}
