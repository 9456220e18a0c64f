public import Logging
public import MaestroCore
public import MaestroLua
public import MaestroRedis
public import MaestroValue
internal import MaestroYAML
internal import Foundation
internal import CoreMetrics
internal import Tracing

/// What the sinker role needs to turn `orb.sinks` events into stored collector configs.
public struct SinkerContext: Sendable {
    public var catalog: PluginCatalog
    public var names: RedisNames
    public var cipher: OrbSecretCipher
    public var kafkaURL: String
    public var policy: CreatePolicy
    /// Where collectors are created, updated and removed; nil only in tools that store configs alone.
    public var collectors: (any CollectorService)?
    /// What `maestro.k8s` reaches in plugins; nil in a process without cluster access.
    public var cluster: (any PluginCluster)?
    public var httpPolicy = HTTPHostPolicy(allowedHosts: [])
    /// Where exporters may point: `url` fields of sink configs are checked against it.
    public var endpointPolicy: EndpointPolicy = EndpointPolicy.standard
    /// Set when plugins are hot-reloaded: workers switch to its newest catalog between batches.
    public var generations: PluginGenerations?
    /// The image the collector template runs (its `image` value): configs are checked against the
    /// component list of this image (`catalog.components`). Nil, or an image without a list: the
    /// structure is checked, the types are left to the maestro role, which sees the rendered image.
    public var collectorImage: String?
    /// Where the image is read when the templates can reload (it then wins over `collectorImage`).
    public var collectorImageSource: CollectorImageSource?
    public var streamMaxLength: Int
    public var logger: Logger

    public init(catalog: PluginCatalog, names: RedisNames, cipher: OrbSecretCipher, kafkaURL: String, policy: CreatePolicy,
                collectors: (any CollectorService)?, streamMaxLength: Int = 100_000, logger: Logger) {
        self.catalog = catalog
        self.names = names
        self.cipher = cipher
        self.kafkaURL = kafkaURL
        self.policy = policy
        self.collectors = collectors
        self.streamMaxLength = streamMaxLength
        self.logger = logger
    }
}

/// The result of running a backend plugin for one sink: the collector config, or why there is none.
public enum CollectorConfigResult: Sendable {
    case config(Value, yaml: String)
    /// The sink's config is the user's error: provisioning_error with this message (names the field).
    case invalid(String)
    /// A plugin failure: a runtime error is retried, a terminal one dead-lettered.
    case failed(LuaError, plugin: String)
}

/// Builds the collector config of a sink with its backend's plugin: validation against the schema,
/// decryption of Orb-encrypted credentials, then the handler. Shared by the pipeline and `maestro render`.
public struct CollectorConfigBuilder {
    public let context: SinkerContext
    public let runtime: PluginRuntime

    public init(context: SinkerContext, runtime: PluginRuntime) {
        self.context = context
        self.runtime = runtime
    }

    /// A sink's config checked the way the pipeline checks it: decryption, the schema, its hooks.
    public enum Validation {
        case valid(Value, plugin: PluginManifest)
        /// The user's mistake: provisioning_error with this message.
        case invalid(String)
        case failed(LuaError, plugin: String)
    }

    /// Decrypts Orb-encrypted credentials, checks the config against the backend's schema, then runs
    /// the schema's `validate` hooks in the plugin's VM.
    public func validate(operation: SinkEvent.Operation, sinkID: String, ownerID: String, backend: String, config: Value,
                         eventID: String = "", deliveries: Int = 1) -> Validation {
        guard let plugin = context.catalog.plugin(forBackend: backend) else {
            return .invalid("no plugin serves backend \"\(SinkEvent.sanitizedName(backend))\"")
        }
        // What the plugin logs and labels while it handles this sink is scrubbed of the sink's secrets.
        runtime.invocation.useSecrets(SinkMessage(config: config, plugin: plugin, cipher: context.cipher))
        let validated: Value
        var hooks: [ConfigHookCall] = []
        do {
            validated = try plugin.sinkSchema.validate(context.cipher.decryptCredentials(in: config), endpoints: context.endpointPolicy, hooks: &hooks)
        } catch {
            return .invalid(error.message)
        }
        guard !hooks.isEmpty else { return .valid(validated, plugin: plugin) }
        do throws(LuaError) {
            let vm = try runtime.machine(for: plugin)
            try setContext(vm, plugin: plugin, operation: operation, sinkID: sinkID, ownerID: ownerID, eventID: eventID, deliveries: deliveries)
            // The user's mistakes the hooks find are rejections, like the schema's own; an error inside
            // one is the plugin's, like a handler's. All of them share one instruction budget: many list
            // items cannot multiply the plugin's work.
            return try vm.sharingBudget { () throws(LuaError) -> Validation in
                for hook in hooks {
                    let started = DispatchTime.now()
                    let verdict: [Value?]
                    do throws(LuaError) {
                        verdict = try runtime.invocation.handling(sinkID, buildingConfig: true) { () throws(LuaError) in
                            try vm.call("schema_hooks", nil, [.list(hook.rule.map(Value.string)), hook.value, validated])
                        }
                        Self.record(plugin: plugin.name, started: started, vm: vm)
                    } catch {
                        Self.record(plugin: plugin.name, started: started, vm: vm)
                        if error.kind != .rejected {
                            Counter(label: "maestro_plugin_errors_total", dimensions: [("plugin", plugin.name), ("kind", "\(error.kind)")]).increment()
                        }
                        throw error
                    }
                    if verdict.first == .bool(false) {
                        let message = verdict.count > 1 ? verdict[1]?.stringValue ?? "is not valid" : "is not valid"
                        return .invalid((try? rejection([.string(hook.field), .string(message)])) ?? "\(hook.field) is not valid")
                    }
                }
                return .valid(validated, plugin: plugin)
            }
        } catch {
            if error.kind == .rejected { return .invalid(error.message) }
            return .failed(error, plugin: plugin.name)
        }
    }

    /// The component list of the image the template runs, when one describes it.
    var collectorComponents: CollectorComponents? {
        (context.collectorImageSource.map(\.current) ?? context.collectorImage).flatMap { context.catalog.components.components(forImage: $0) }
    }

    private func setContext(_ vm: LuaVM, plugin: PluginManifest, operation: SinkEvent.Operation, sinkID: String, ownerID: String,
                            eventID: String, deliveries: Int) throws(LuaError) {
        try vm.setContext(.map([
            "plugin": .string(plugin.name), "event_id": .string(eventID), "deliveries": .int(Int64(deliveries)),
            "sink_id": .string(sinkID), "owner_id": .string(ownerID), "operation": .string(operation.rawValue),
        ]))
    }

    /// Validates the config and runs the handler: one instruction budget for the event, shared by the
    /// schema's validate hooks and the handler.
    public func build(operation: SinkEvent.Operation, sinkID: String, ownerID: String, backend: String, config: Value,
                      eventID: String = "", deliveries: Int = 1) -> CollectorConfigResult {
        FlowTracing.span("plugin", attributes: { $0["maestro.plugin.backend"] = backend }) { span in
            func run() -> CollectorConfigResult {
                buildOnce(operation: operation, sinkID: sinkID, ownerID: ownerID, backend: backend, config: config, eventID: eventID, deliveries: deliveries)
            }
            guard let plugin = context.catalog.plugin(forBackend: backend), let vm = try? runtime.machine(for: plugin) else { return run() }
            let instructionsBefore = vm.instructionsSpent
            let result = vm.sharingBudget(run)
            span?.recordPlugin(plugin.name, instructions: vm.instructionsSpent &- instructionsBefore, result: result)
            return result
        }
    }

    private func buildOnce(operation: SinkEvent.Operation, sinkID: String, ownerID: String, backend: String, config: Value,
                           eventID: String, deliveries: Int) -> CollectorConfigResult {
        let plugin: PluginManifest
        let validated: Value
        switch validate(operation: operation, sinkID: sinkID, ownerID: ownerID, backend: backend, config: config, eventID: eventID, deliveries: deliveries) {
        case .valid(let value, let manifest):
            (validated, plugin) = (value, manifest)
        case .invalid(let message):
            return .invalid(message)
        case .failed(let error, let name):
            return .failed(error, plugin: name)
        }
        do throws(LuaError) {
            let vm = try runtime.machine(for: plugin)
            try setContext(vm, plugin: plugin, operation: operation, sinkID: sinkID, ownerID: ownerID, eventID: eventID, deliveries: deliveries)
            let sink: Value = .map([
                "id": .string(sinkID), "owner_id": .string(ownerID), "backend": .string(backend), "config": validated,
                "settings": plugin.settings, "kafka_url": .string(context.kafkaURL),
            ])
            let function = operation == .update && vm.hasFunction("handler", "on_sink_update") ? "on_sink_update" : "on_sink_create"
            let started = DispatchTime.now()
            let results: [Value?]
            do throws(LuaError) {
                results = try runtime.invocation.handling(sinkID, buildingConfig: true) { () throws(LuaError) in try vm.call("handler", function, [sink]) }
                Self.record(plugin: plugin.name, started: started, vm: vm)
            } catch {
                runtime.cluster.discard()
                Self.record(plugin: plugin.name, started: started, vm: vm)
                if error.kind != .rejected {
                    Counter(label: "maestro_plugin_errors_total", dimensions: [("plugin", plugin.name), ("kind", "\(error.kind)")]).increment()
                }
                throw error
            }
            guard case .map? = results.first ?? nil, let config = results.first ?? nil else {
                runtime.cluster.discard()
                return .failed(LuaError(kind: .conversion, message: "\(plugin.name).\(function) must return the collector config as a table"),
                               plugin: plugin.name)
            }
            // A config the collector would refuse is the user's mistake (as a rejection is) and is not
            // stored: the running collector keeps its config.
            if context.catalog.components.checksConfigs,
               let violation = CollectorConfigRules.violation(in: config, components: collectorComponents) {
                runtime.cluster.discard()
                return .invalid(violation)
            }
            let yaml: String
            do {
                yaml = try YAML.emit(config)
            } catch {
                runtime.cluster.discard()
                return .failed(LuaError(kind: .conversion, message: "\(plugin.name).\(function): \(error)"), plugin: plugin.name)
            }
            // The queued writes go last, validated whole first, and once per event (a redelivery of
            // this event does not write them again).
            do {
                try runtime.cluster.flush(event: eventID.isEmpty ? nil : "\(eventID)|\(plugin.name)")
            } catch {
                // An invalid write is the plugin's bug: retrying would fail the same way.
                let kind: LuaError.Kind = error.kind == .rejected ? .failed : .runtime
                return .failed(LuaError(kind: kind, message: "\(plugin.name): maestro.k8s: \(error.message)"), plugin: plugin.name)
            }
            return .config(config, yaml: yaml)
        } catch {
            // maestro.reject: the user's mistake, reported as the schema reports its own.
            if error.kind == .rejected { return .invalid(error.message) }
            return .failed(error, plugin: plugin.name)
        }
    }
}

extension CollectorConfigBuilder {
    /// Duration, instructions and peak memory of one plugin call.
    static func record(plugin: String, started: DispatchTime, vm: LuaVM) {
        let nanoseconds = Int64(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds)
        Timer(label: "maestro_plugin_duration_seconds", dimensions: [("plugin", plugin)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(nanoseconds)
        Counter(label: "maestro_plugin_instructions_total", dimensions: [("plugin", plugin)]).increment(by: vm.statistics.instructions)
        Gauge(label: "maestro_plugin_peak_memory_bytes", dimensions: [("plugin", plugin)]).record(vm.statistics.peakMemory)
    }
}

/// The backend plugins as the sinker's `CollectorConfigSource`: builds each config with the newest
/// generation of plugins, switching only between batches (a batch runs on one generation from start
/// to end), and keeps the sink's secrets out of failure reasons.
public final class PluginConfigSource: CollectorConfigSource {
    private var context: SinkerContext
    private var runtime: PluginRuntime
    private var builder: CollectorConfigBuilder
    private var generation = 0

    public init(context: SinkerContext) {
        var context = context
        if let current = context.generations?.current {
            context.catalog = current.catalog
            generation = current.number
        }
        self.context = context
        (runtime, builder) = Self.builder(for: context)
    }

    private static func builder(for context: SinkerContext) -> (PluginRuntime, CollectorConfigBuilder) {
        let runtime = PluginRuntime(catalog: context.catalog, names: context.names, logger: context.logger, httpPolicy: context.httpPolicy,
                                    cluster: context.cluster)
        return (runtime, CollectorConfigBuilder(context: context, runtime: runtime))
    }

    public func beginBatch(redis: RedisConnection) {
        if let generations = context.generations, case let current = generations.current, current.number != generation {
            context.catalog = current.catalog
            generation = current.number
            (runtime, builder) = Self.builder(for: context)
            generations.workerMovedOn()
        }
        runtime.redis.connection = redis
    }

    public func pluginFingerprint(forBackend backend: String) -> String? {
        context.catalog.plugin(forBackend: backend)?.fingerprint
    }

    public func collectorConfig(for request: CollectorConfigRequest) -> CollectorConfigOutcome {
        switch builder.build(operation: request.operation, sinkID: request.sinkID, ownerID: request.ownerID, backend: request.backend,
                             config: request.config, eventID: request.eventID, deliveries: request.deliveries) {
        case .config(_, let yaml):
            return .config(yaml: yaml)
        case .invalid(let message):
            // A plugin's own rejection may quote the sink's credentials (decrypted for it), as its errors may.
            return .invalid(SinkMessage(config: request.config, plugin: context.catalog.plugin(forBackend: request.backend), cipher: context.cipher)
                .statusLine(message))
        case .failed(let error, let plugin):
            // Tracebacks name values only by their type, but a plugin's own `error()` text is its own: one line.
            let reason = SinkMessage(config: request.config, plugin: context.catalog.plugin(named: plugin), cipher: context.cipher).reasonLine(error.message)
            return .failed(reason: reason, plugin: plugin, terminal: error.isTerminal)
        }
    }
}

extension SinkEventProcessor {
    /// The sinker's rules with the backend plugins of `context` as the config source.
    public convenience init(context: SinkerContext) {
        self.init(settings: SinkerSettings(names: context.names, policy: context.policy, collectors: context.collectors,
                                           streamMaxLength: context.streamMaxLength, logger: context.logger),
                  configSource: PluginConfigSource(context: context))
    }
}

extension Span {
    /// The plugin span's attributes: which plugin ran, the instructions the event used, and how it ended.
    func recordPlugin(_ name: String, instructions: Int, result: CollectorConfigResult) {
        guard isRecording else { return }
        attributes["maestro.plugin.name"] = name
        attributes["maestro.plugin.instructions"] = instructions
        switch result {
        case .config: attributes["maestro.plugin.result"] = "config"
        case .invalid: attributes["maestro.plugin.result"] = "invalid"
        case .failed:
            attributes["maestro.plugin.result"] = "failed"
            setStatus(SpanStatus(code: .error))
        }
    }
}
