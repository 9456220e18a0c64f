public import Logging
internal import MaestroCore
internal import MaestroLua
public import MaestroValue
internal import MaestroYAML
internal import Foundation
internal import Synchronization

/// One `it` of a plugin's spec, or one golden pair.
public struct SpecResult: Sendable, Equatable {
    public var plugin: String
    /// `spec/handler_spec.lua:12`, where the case is declared (a golden pair: its `.json` file).
    public var location: String
    public var name: String
    /// nil when it passed; else the failure, with file:line.
    public var failure: String?
    /// What the case printed and logged (`print`, `maestro.log.*`), in order.
    public var output: [String] = []
}

/// How `maestro plugins test` runs.
public struct SpecOptions: Sendable {
    /// Rewrite `spec/golden/<case>.yaml` from what the plugin builds now, instead of comparing.
    public var updateGolden = false
    /// The templates folder `spec.render` renders with; nil: `spec.render` raises.
    public var templatesRoot: String?
    public var templateSettings: Value = .map([:])
    public init(updateGolden: Bool = false, templatesRoot: String? = nil, templateSettings: Value = .map([:])) {
        self.updateGolden = updateGolden
        self.templatesRoot = templatesRoot
        self.templateSettings = templateSettings
    }
}

/// `maestro plugins test`: runs `spec/*_spec.lua` of each plugin with a small describe/it/assert API
/// (busted-like, lua/spec.lua), in the plugin's sandbox under production rules (globals read-only once
/// the spec file has loaded; `print` and `maestro.log` captured per case), against in-memory fakes of
/// Redis and Kubernetes; `spec.validate|build|render` run the host's real path from a spec; and checks
/// each golden pair `spec/golden/<case>.json` → `<case>.yaml`.
public enum PluginSpecRunner {
    /// The Kafka URL a spec or golden pair gets when it names none: `--kafka-url`'s default, so golden
    /// files do not depend on the machine's settings.
    public static let defaultKafkaURL = "kafka1:19092"

    public static func run(catalog: PluginCatalog, options: SpecOptions = SpecOptions(), logger: Logger = Logger(label: "maestro.spec")) -> [SpecResult] {
        var results: [SpecResult] = []
        for plugin in catalog.plugins {
            let folder = plugin.folder + "/spec"
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix("_spec.lua") }.sorted()
            for file in files {
                results += runFile(folder + "/" + file, plugin: plugin, catalog: catalog, options: options, logger: logger)
            }
            results += runGolden(plugin: plugin, catalog: catalog, options: options, logger: logger)
        }
        return results
    }

    /// What the cases of one VM print and log, taken case by case.
    final class CapturedOutput: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(String(line.prefix(2_000))) } }
        func take() -> [String] { lines.withLock { lines in defer { lines.removeAll() }; return lines } }

        var logger: Logger {
            let output = self
            var logger = Logger(label: "maestro.spec") { _ in CapturingLogHandler(output: output) }
            logger.logLevel = .trace
            return logger
        }
    }

    struct CapturingLogHandler: LogHandler {
        let output: CapturedOutput
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).filter { $0.key != "plugin.name" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            output.append(([event.level.rawValue + ":", "\(event.message)"] + fields).joined(separator: " "))
        }
    }

    /// The host's real path for one plugin, in memory: what `spec.*` and the golden pairs run.
    // @unchecked Sendable: confined to the thread that runs the spec (its host functions run on the
    // spec VM's thread, the VM is never shared).
    final class Harness: @unchecked Sendable {
        let plugin: PluginManifest
        let builder: CollectorConfigBuilder
        let options: SpecOptions
        let limits: PluginCatalog.LuaLimits
        let logger: Logger
        private var renderer: TemplateRenderer?

        let metrics: PluginMetricsStore

        init(plugin: PluginManifest, catalog: PluginCatalog, redis: FakeRedis, cluster: InMemoryPluginCluster, options: SpecOptions, logger: Logger,
             metrics: PluginMetricsStore = PluginMetricsStore()) {
            self.plugin = plugin
            self.metrics = metrics
            self.options = options
            self.limits = catalog.limits
            self.logger = logger
            let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: OrbSecretCipher(secret: "orb"), kafkaURL: PluginSpecRunner.defaultKafkaURL,
                                        policy: .eager, collectors: nil, logger: logger)
            let runtime = PluginRuntime(catalog: catalog, names: RedisNames(), logger: logger, cluster: cluster, replacing: [redis.module()],
                                        metrics: metrics)
            builder = CollectorConfigBuilder(context: context, runtime: runtime)
        }

        struct Request {
            var sinkID = "spec-sink"
            var ownerID = "spec-owner"
            var operation = SinkEvent.Operation.create
            var kafkaURL = PluginSpecRunner.defaultKafkaURL
            var config: Value = .map([:])

            /// From a golden `.json` or a spec's options table: `sink_id`, `owner_id`, `operation`
            /// (`create`, `update`), `kafka_url`.
            init(options: Value?, config: Value) throws(LuaHostError) {
                self.config = config
                guard let options, !options.isNull else { return }
                guard case .map(let entries) = options else { throw LuaHostError.badArgument(2, "a table of options expected") }
                for key in entries.keys.sorted() {
                    guard let text = entries[key]?.stringValue else { throw LuaHostError.badArgument(2, "option \(key) must be a string") }
                    switch key {
                    case "sink_id": sinkID = text
                    case "owner_id": ownerID = text
                    case "kafka_url": kafkaURL = text
                    case "operation":
                        guard let chosen = SinkEvent.Operation(rawValue: text.hasPrefix("sinks.") ? text : "sinks." + text) else {
                            throw LuaHostError.badArgument(2, "operation must be create or update")
                        }
                        operation = chosen
                    default:
                        throw LuaHostError.badArgument(2, "unknown option \(key) (sink_id, owner_id, operation, kafka_url)")
                    }
                }
            }
        }

        /// The secrets of every config a case built or checked: masked in what the spec shows, as the
        /// pipeline masks them in statuses and reasons.
        private(set) var secrets: Set<String> = []

        func builder(for request: Request) -> CollectorConfigBuilder {
            secrets.formUnion(SinkMessage.secrets(of: request.config, plugin: plugin, cipher: builder.context.cipher))
            var context = builder.context
            context.kafkaURL = request.kafkaURL
            return CollectorConfigBuilder(context: context, runtime: builder.runtime)
        }

        /// `config, yaml` or `nil, rejection`; a plugin failure raises.
        func build(_ request: Request) throws(LuaHostError) -> (Value, String)? {
            switch builder(for: request).build(operation: request.operation, sinkID: request.sinkID, ownerID: request.ownerID,
                                               backend: plugin.sinkBackend ?? plugin.name, config: request.config) {
            case .config(let config, let yaml): return (config, yaml)
            case .invalid(let message): throw LuaHostError.rejection(message)
            case .failed(let error, _): throw LuaHostError(error.message)
            }
        }

        func module() -> LuaHostModule {
            let harness = self
            @Sendable func request(_ arguments: [Value?]) throws(LuaHostError) -> Request {
                // `{}` is an empty list to the host; as a config it can only mean an empty one.
                if arguments.first == .list([]) { return try Request(options: arguments.count >= 2 ? arguments[1] : nil, config: .map([:])) }
                guard arguments.count >= 1, case .map? = arguments[0] else { throw LuaHostError.badArgument(1, "the sink's config, a table, expected") }
                return try Request(options: arguments.count >= 2 ? arguments[1] : nil, config: arguments[0]!)
            }
            @Sendable func asResult(_ body: () throws(LuaHostError) -> [Value?]) throws(LuaHostError) -> [Value?] {
                do {
                    return try body()
                } catch {
                    // A rejection is an answer here, not an error: `nil, message`.
                    if error.isRejection { return [nil, .string(error.message)] }
                    throw error
                }
            }
            // spec.metric(name, labels?): what this spec's calls recorded, for assertions.
            let metric = LuaHostFunction("metric") { arguments throws(LuaHostError) in
                guard case .string(let name)? = arguments.first ?? nil else { throw LuaHostError.badArgument(1, "the metric's name, a string, expected") }
                guard let declaration = harness.plugin.metrics[name] else { throw LuaHostError("metric \(name) is not declared in schema.lua") }
                let given = arguments.count >= 2 ? arguments[1]?.mapValue ?? [:] : [:]
                let labels = declaration.labels.map { given[$0]?.stringValue ?? "" }
                return [harness.metrics.value(plugin: harness.plugin.name, metric: name, labels: labels)]
            }
            guard plugin.sinkBackend != nil else {
                let refusal = LuaHostFunction("validate") { _ throws(LuaHostError) in throw LuaHostError("this plugin serves no sink backend") }
                return LuaHostModule(name: "spec", functions: [refusal, LuaHostFunction("build", refusal.body), LuaHostFunction("render", refusal.body), metric])
            }
            return LuaHostModule(name: "spec", functions: [metric,
                LuaHostFunction("validate") { arguments throws(LuaHostError) in
                    let wanted = try request(arguments)
                    switch harness.builder(for: wanted).validate(operation: wanted.operation, sinkID: wanted.sinkID, ownerID: wanted.ownerID,
                                                                 backend: harness.plugin.sinkBackend ?? "", config: wanted.config) {
                    case .valid(let value, _): return [value]
                    case .invalid(let message): return [nil, .string(message)]
                    case .failed(let error, _): throw LuaHostError(error.message)
                    }
                },
                LuaHostFunction("build") { arguments throws(LuaHostError) in
                    let wanted = try request(arguments)
                    return try asResult { () throws(LuaHostError) in
                        guard let (config, yaml) = try harness.build(wanted) else { return [nil] }
                        return [config, .string(yaml)]
                    }
                },
                LuaHostFunction("render") { arguments throws(LuaHostError) in
                    let wanted = try request(arguments)
                    return try asResult { () throws(LuaHostError) in
                        guard let (_, yaml) = try harness.build(wanted) else { return [nil] }
                        return [.list(try harness.render(yaml: yaml, request: wanted))]
                    }
                },
            ])
        }

        /// The Kubernetes objects the template renders from a collector config, with the placeholder
        /// config-hash key (as `maestro render` without Redis).
        func render(yaml: String, request: Request) throws(LuaHostError) -> [Value] {
            guard let root = options.templatesRoot else { throw LuaHostError("spec.render needs a templates folder (--templates-dir)") }
            do {
                if renderer == nil {
                    renderer = try TemplateRenderer(root: root, settings: options.templateSettings, limits: limits, logger: logger)
                }
                let inputs = CollectorInputs(sinkID: request.sinkID, ownerID: request.ownerID, configYAML: yaml,
                                             configHash: ConfigHasher(keyHex: ConfigHasher.placeholderKeyHex).hash(yaml))
                return try renderer!.render(inputs).objects
            } catch {
                throw LuaHostError("the template failed: \(error)")
            }
        }
    }

    static func runFile(_ path: String, plugin: PluginManifest, catalog: PluginCatalog, options: SpecOptions, logger: Logger) -> [SpecResult] {
        let output = CapturedOutput()
        let redis = FakeRedis(prefix: RedisNames().pluginKeyPrefix + plugin.name + ":")
        let memory = InMemoryPluginCluster(namespace: "otelcollectors")
        let cluster = PluginClusterAccess(cluster: memory)
        let harness = Harness(plugin: plugin, catalog: catalog, redis: redis, cluster: memory, options: options, logger: output.logger)
        let modules = [
            LuaHostModule(name: nil, functions: [
                // Catchable here, unlike in maestro run: a spec checks that a handler fails with has_error.
                LuaHostFunction("fail") { arguments throws(LuaHostError) in
                    throw LuaHostError("maestro.fail: " + (arguments.first??.stringValue ?? ""), terminal: false)
                },
                LuaHostFunction("reject") { arguments throws(LuaHostError) in
                    throw LuaHostError("maestro.reject: " + (try rejection(arguments)), terminal: false)
                },
            ]),
            redis.module(), cluster.module(plugin: plugin.name, capabilities: plugin.capabilities, invocation: PluginInvocation()),
            HTTPHostModule.module(policy: HTTPHostPolicy(allowedHosts: [])), harness.module(),
            PluginMetricsModule.module(plugin: plugin.name, declarations: plugin.metrics, store: harness.metrics),
        ]
        let configuration = LuaConfiguration(name: "spec:" + plugin.name, instructionBudget: catalog.limits.instructionBudget,
                                             memoryLimitBytes: catalog.limits.memoryLimitBytes, moduleRoots: [catalog.root], logger: output.logger)
        let handler = FileManager.default.fileExists(atPath: plugin.folder + "/handler.lua") ? plugin.name + ".handler" : nil
        let results = runCases(path, location: PluginCatalog.relative(path, to: catalog.root), owner: plugin.name, configuration: configuration,
                               modules: modules, preload: handler, output: output)
        return results.map { masked($0, secrets: harness.secrets) }
    }

    /// The result with the given secrets out of its failure and its output.
    static func masked(_ result: SpecResult, secrets: Set<String>) -> SpecResult {
        guard !secrets.isEmpty else { return result }
        let message = SinkMessage(secrets: secrets)
        var masked = result
        masked.failure = result.failure.map(message.scrubbed)
        masked.output = result.output.map(message.scrubbed)
        return masked
    }

    /// Runs a spec of the sandbox itself (`Sources/MaestroLua/lua/spec/`) in a VM with the sandbox and
    /// maestro's standard library only, under the default limits: no plugin and no host fakes. `location`
    /// names the file in the results.
    public static func runSandboxSpec(_ path: String, location: String, logger: Logger = Logger(label: "maestro.spec")) -> [SpecResult] {
        let output = CapturedOutput()
        return runCases(path, location: location, owner: "sandbox", configuration: LuaConfiguration(name: "spec:sandbox", logger: output.logger),
                        modules: [], preload: nil, output: output)
    }

    private static func runCases(_ path: String, location relative: String, owner: String, configuration: LuaConfiguration,
                                 modules: [LuaHostModule], preload: String?, output: CapturedOutput) -> [SpecResult] {
        do {
            let vm = try LuaVM(configuration: configuration, modules: modules) { vm throws(LuaError) in
                // Also after a terminal failure (a limit), which rebuilds the VM between cases.
                try vm.loadModule(source: EmbeddedLua.spec, chunkName: "=spec", as: "prelude")
                // The handler loads first, as in maestro run, where its top level may still set globals.
                if let preload {
                    try vm.loadModule(source: "return function(name) require(name) end", chunkName: "=preload", as: "preload")
                    _ = try vm.call("preload", nil, [.string(preload)])
                }
                try vm.loadModule(file: path, as: "spec", chunkName: relative)
                try vm.sealGlobals()
            }
            let loadOutput = output.take()
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
                results.append(SpecResult(plugin: owner, location: location, name: name, failure: failure,
                                          output: (index == 1 ? loadOutput : []) + output.take()))
            }
            return results
        } catch {
            return [SpecResult(plugin: owner, location: relative, name: "(loading the spec)", failure: error.message, output: output.take())]
        }
    }

    /// Each `spec/golden/<case>.json` (`{"config": {...}, "sink_id": …, "owner_id": …, "kafka_url": …,
    /// "operation": …}`) built through the real path and compared, parsed, with `<case>.yaml`; with
    /// `updateGolden`, `<case>.yaml` is written when it is missing or differs.
    static func runGolden(plugin: PluginManifest, catalog: PluginCatalog, options: SpecOptions, logger: Logger) -> [SpecResult] {
        let folder = plugin.folder + "/spec/golden"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
        let inputs = files.filter { $0.hasSuffix(".json") }
        guard !files.isEmpty else { return [] }
        let output = CapturedOutput()
        let harness = Harness(plugin: plugin, catalog: catalog, redis: FakeRedis(prefix: RedisNames().pluginKeyPrefix + plugin.name + ":"),
                              cluster: InMemoryPluginCluster(namespace: "otelcollectors"), options: options, logger: output.logger)
        var results: [SpecResult] = []
        for file in inputs {
            let name = String(file.dropLast(".json".count))
            let jsonPath = folder + "/" + file
            let yamlPath = folder + "/" + name + ".yaml"
            let location = PluginCatalog.relative(jsonPath, to: catalog.root)
            let yamlLocation = PluginCatalog.relative(yamlPath, to: catalog.root)
            var failure: String?
            var updated = false
            do {
                guard let text = TextFile.read(jsonPath) else { throw PluginError("cannot read \(location)") }
                let input: Value
                do { input = try JSON.decode(text) } catch { throw PluginError("\(location) is not JSON: \(error)") }
                guard case .map(var entries) = input, let config = entries.removeValue(forKey: "config") else {
                    throw PluginError("\(location) must be an object with the sink's config under \"config\"")
                }
                let request: Harness.Request
                do { request = try Harness.Request(options: .map(entries), config: config) } catch {
                    throw PluginError("\(location): \(error.message.replacingOccurrences(of: "bad argument #2 (", with: "(")))")
                }
                guard harness.plugin.sinkBackend != nil else { throw PluginError("\(location): this plugin serves no sink backend") }
                let built: (Value, String)?
                do { built = try harness.build(request) } catch {
                    throw PluginError(error.isRejection ? "\(location): the config was rejected: \(error.message)" : "\(location): the plugin failed: \(error.message)")
                }
                guard let (config, yaml) = built else { throw PluginError("\(location): no config was built") }
                let expectedText = TextFile.read(yamlPath)
                let expected = expectedText.flatMap { try? YAML.parse($0) }
                if expected != config {
                    if options.updateGolden {
                        try yaml.write(toFile: yamlPath, atomically: true, encoding: .utf8)
                        updated = true
                    } else if expectedText == nil {
                        throw PluginError("\(yamlLocation) is missing: run maestro plugins test --update-golden to write it from what the plugin builds")
                    } else if expected == nil {
                        throw PluginError("\(yamlLocation) is not valid YAML")
                    } else {
                        throw PluginError("\(yamlLocation) differs from what the plugin builds from \(location):\n"
                                          + Self.difference(expected: (try? YAML.emit(expected!)) ?? "", actual: yaml)
                                          + "\n(run maestro plugins test --update-golden to accept the new output)")
                    }
                }
            } catch {
                failure = "\(error)"
            }
            results.append(masked(SpecResult(plugin: plugin.name, location: location, name: "golden \(name)" + (updated ? ": wrote \(yamlLocation)" : ""),
                                             failure: failure, output: output.take()), secrets: harness.secrets))
        }
        // A pair whose input is misnamed would never be checked.
        for orphan in files.filter({ $0.hasSuffix(".yaml") && !inputs.contains(String($0.dropLast(".yaml".count)) + ".json") }) {
            let location = PluginCatalog.relative(folder + "/" + orphan, to: catalog.root)
            results.append(SpecResult(plugin: plugin.name, location: location, name: "golden \(orphan.dropLast(".yaml".count))",
                                      failure: "\(location) has no input \(orphan.dropLast(".yaml".count)).json beside it: name its input so, or remove it"))
        }
        return results
    }

    /// The lines of two YAML texts (both emitted with sorted keys) that differ, `-` expected, `+` actual.
    static func difference(expected: String, actual: String) -> String {
        let old = expected.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let new = actual.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var lines: [String] = []
        for change in new.difference(from: old) {
            switch change {
            case .remove(_, let line, _): lines.append("      - " + line)
            case .insert(_, let line, _): lines.append("      + " + line)
            }
        }
        return lines.prefix(40).joined(separator: "\n")
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
