public import Logging
public import MaestroCore
public import MaestroLua
public import MaestroRedis
public import MaestroValue
internal import MaestroYAML
internal import Foundation
internal import CoreMetrics

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

    public func build(operation: SinkEvent.Operation, sinkID: String, ownerID: String, backend: String, config: Value,
                      eventID: String = "", deliveries: Int = 1) -> CollectorConfigResult {
        guard let plugin = context.catalog.plugin(forBackend: backend) else {
            return .invalid("no plugin serves backend \"\(SinkEvent.sanitizedName(backend))\"")
        }
        let validated: Value
        do {
            validated = try plugin.sinkSchema.validate(context.cipher.decryptCredentials(in: config), endpoints: context.endpointPolicy)
        } catch {
            return .invalid(error.message)
        }
        do throws(LuaError) {
            let vm = try runtime.machine(for: plugin)
            try vm.setContext(.map([
                "plugin": .string(plugin.name), "event_id": .string(eventID), "deliveries": .int(Int64(deliveries)),
                "sink_id": .string(sinkID), "owner_id": .string(ownerID), "operation": .string(operation.rawValue),
            ]))
            let sink: Value = .map([
                "id": .string(sinkID), "owner_id": .string(ownerID), "backend": .string(backend), "config": validated,
                "settings": plugin.settings, "kafka_url": .string(context.kafkaURL),
            ])
            let function = operation == .update && vm.hasFunction("handler", "on_sink_update") ? "on_sink_update" : "on_sink_create"
            let started = DispatchTime.now()
            let results: [Value?]
            do throws(LuaError) {
                results = try runtime.invocation.handling(sinkID) { () throws(LuaError) in try vm.call("handler", function, [sink]) }
                Self.record(plugin: plugin.name, started: started, vm: vm)
            } catch {
                runtime.cluster.discard()
                Self.record(plugin: plugin.name, started: started, vm: vm)
                Counter(label: "maestro_plugin_errors_total", dimensions: [("plugin", plugin.name), ("kind", "\(error.kind)")]).increment()
                throw error
            }
            guard case .map? = results.first ?? nil, let config = results.first ?? nil else {
                runtime.cluster.discard()
                return .failed(LuaError(kind: .conversion, message: "\(plugin.name).\(function) must return the collector config as a table"),
                               plugin: plugin.name)
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

/// The sinker role's batch processor for `orb.sinks` (one per worker).
public final class SinkEventProcessor: StreamBatchProcessor {
    var context: SinkerContext
    var runtime: PluginRuntime
    var builder: CollectorConfigBuilder
    var generation = 0
    var scriptsLoaded = false
    /// The scripts of the pipeline that stores a batch's effects.
    static let storeScripts = [SinkStore.script, StatusPublisher.script]

    public init(context: SinkerContext) {
        self.context = context
        if let current = context.generations?.current {
            self.context.catalog = current.catalog
            generation = current.number
        }
        runtime = PluginRuntime(catalog: self.context.catalog, names: context.names, logger: context.logger, httpPolicy: context.httpPolicy,
                                cluster: context.cluster)
        builder = CollectorConfigBuilder(context: self.context, runtime: runtime)
    }

    /// Between batches only: a batch runs on one generation of plugins from start to end.
    private func switchToNewestPlugins() {
        guard let current = context.generations?.current, current.number != generation else { return }
        context.catalog = current.catalog
        generation = current.number
        runtime = PluginRuntime(catalog: current.catalog, names: context.names, logger: context.logger, httpPolicy: context.httpPolicy,
                                cluster: context.cluster)
        builder = CollectorConfigBuilder(context: context, runtime: runtime)
    }

    /// An entry's planned effect, before it is stored.
    enum Plan {
        case outcome(EntryOutcome)
        case store(SinkEvent, SinkStore.Action, SinkRecord, yaml: String, status: (SinkStatus, String, StatusPublisher.Mode)?)
    }

    public func process(_ batch: [DeliveredEntry], redis: RedisConnection) throws(RedisError) -> [EntryOutcome] {
        switchToNewestPlugins()
        runtime.redis.connection = redis
        if !scriptsLoaded {
            try redis.load(Self.storeScripts)
            scriptsLoaded = true
        }
        var events: [SinkEvent?] = []
        var plans: [Plan?] = []
        for delivered in batch {
            do {
                events.append(try SinkEvent.decode(delivered.entry))
                plans.append(nil)
            } catch {
                events.append(nil)
                plans.append(.outcome(.deadLetter(reason: error.reason, plugin: nil)))
            }
        }
        // The records of every sink in the batch, in one round trip; kept current as the batch goes.
        let sinkIDs = Array(Set(events.compactMap { $0?.sinkID }))
        var records: [String: SinkRecord] = [:]
        if !sinkIDs.isEmpty {
            let replies = try redis.pipeline(sinkIDs.map { ["HGET", context.names.sinksHash, $0] })
            for (sinkID, reply) in zip(sinkIDs, replies) {
                if let json = reply.string, let record = SinkRecord(json: json) { records[sinkID] = record }
            }
        }
        var oldestPendingChecked: StreamID??
        for (index, delivered) in batch.enumerated() {
            guard let event = events[index], plans[index] == nil else { continue }
            plans[index] = try plan(event, delivered: delivered, records: &records, redis: redis, oldestPending: &oldestPendingChecked)
        }
        return try store(plans, redis: redis)
    }

    private func plan(_ event: SinkEvent, delivered: DeliveredEntry, records: inout [String: SinkRecord], redis: RedisConnection,
                      oldestPending: inout StreamID??) throws(RedisError) -> Plan {
        let record = records[event.sinkID]
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        if let record, let last = StreamID(record.lastEntryID), let current = StreamID(event.orderingID), last > current {
            return .outcome(.skippedStale)
        }
        switch event.operation {
        case .remove:
            let tombstone = SinkRecord(ownerID: event.ownerID.isEmpty ? record?.ownerID ?? "" : event.ownerID, backend: record?.backend,
                                       lastEntryID: event.orderingID, removed: true, updatedAtMilliseconds: now)
            records[event.sinkID] = tombstone
            return .store(event, .remove, tombstone, yaml: "", status: nil)
        case .create, .update:
            guard let backend = event.backend ?? record?.backend else {
                // An update without backend of a sink not yet created: its create may still be pending
                // with a dead consumer, so it waits without using up deliveries while older entries are pending.
                if oldestPending == nil {
                    let summary = try redis.xpendingSummary(streamName, group: groupName)
                    oldestPending = .some(summary.smallestID.flatMap(StreamID.init))
                }
                if let oldest = oldestPending ?? nil, let current = StreamID(delivered.entry.id), oldest < current {
                    return .outcome(.deferred(reason: "update without backend of an unknown sink; older entries are pending"))
                }
                return .outcome(.retry(reason: "sinks.update without backend for a sink that was never created"))
            }
            let ownerID = event.ownerID.isEmpty ? record?.ownerID ?? "" : event.ownerID
            let newRecord = SinkRecord(ownerID: ownerID, backend: backend, lastEntryID: event.orderingID, removed: false,
                                       updatedAtMilliseconds: now)
            let operation: SinkEvent.Operation = (record == nil || record!.removed) ? .create : event.operation
            switch builder.build(operation: operation, sinkID: event.sinkID, ownerID: ownerID, backend: backend,
                                 config: event.config ?? .map([:]), eventID: delivered.entry.id, deliveries: delivered.deliveries) {
            case .config(_, let yaml):
                records[event.sinkID] = newRecord
                // An update of a sink never created (or removed) acts as a create, as in Orb.
                var effective = event
                effective.operation = operation
                return .store(effective, .apply, newRecord, yaml: yaml, status: (.unknown, "", .clearError))
            case .invalid(let message):
                // The user's error: the last good config stays; the entry is handled.
                var invalidRecord = newRecord
                invalidRecord.removed = record?.removed ?? false
                records[event.sinkID] = invalidRecord
                return .store(event, .invalid, invalidRecord, yaml: "", status: (.provisioningError, message, .set))
            case .failed(let error, let plugin):
                let reason = Self.scrub(Self.redactedReason(error), secretsOf: event.config, plugin: context.catalog.plugin(named: plugin))
                if error.isTerminal {
                    return .outcome(.deadLetter(reason: reason, plugin: plugin))
                }
                return .outcome(.retry(reason: reason))
            }
        }
    }

    /// A plugin's message may quote the sink's credentials (`error("bad password " .. p)`): every value
    /// the one masker deems secret — the schema's secret paths, header values, credential-looking
    /// keys — is scrubbed from the reason before it is stored.
    static func scrub(_ reason: String, secretsOf config: Value?, plugin: PluginManifest?) -> String {
        SecretMasker(secretPaths: plugin?.sinkSchema.secretPaths ?? []).scrub(reason, secretsOf: config)
    }

    var streamName: String { context.names.sinksStream }
    var groupName: String { context.names.sinkerGroup }

    /// A plugin's error message without anything after the first line (tracebacks name values only
    /// by their type, but a plugin's own `error()` text is its own; keep the reason to one line).
    static func redactedReason(_ error: LuaError) -> String {
        let firstLine = error.message.split(separator: "\n").first.map(String.init) ?? error.message
        return String(firstLine.prefix(500))
    }

    /// Stores the plans in one pipeline, hands off to the collectors, and returns the outcomes.
    private func store(_ plans: [Plan?], redis: RedisConnection) throws(RedisError) -> [EntryOutcome] {
        var commands: [[String]] = []
        var commandOwners: [(index: Int, isStatus: Bool)] = []
        for (index, plan) in plans.enumerated() {
            guard case .store(let event, let action, let record, let yaml, let status)? = plan else { continue }
            commands.append(SinkStore.command(names: context.names, sinkID: event.sinkID, orderingID: event.orderingID, action: action,
                                              record: record, configYAML: yaml))
            commandOwners.append((index, false))
            if let (state, message, mode) = status {
                commands.append(StatusPublisher.command(names: context.names, sinkID: event.sinkID, ownerID: record.ownerID,
                                                        status: state, message: message, mode: mode, streamMaxLength: context.streamMaxLength))
                commandOwners.append((index, true))
            }
        }
        var outcomes: [EntryOutcome] = plans.map { plan in
            if case .outcome(let outcome)? = plan { return outcome }
            return .acknowledged
        }
        guard !commands.isEmpty else { return outcomes }
        // After NOSCRIPT (Redis restarted and lost its scripts) the lot runs again: every effect is idempotent.
        let replies = try redis.pipeline(commands, loading: Self.storeScripts)
        var results: [Int: SinkStoreResult] = [:]
        for (owner, reply) in zip(commandOwners, replies) {
            if owner.isStatus {
                if case .error(let text) = reply { throw RedisError.fromReply(text) }
                continue
            }
            results[owner.index] = try SinkStore.result(of: reply)
        }
        for (index, result) in results.sorted(by: { $0.key < $1.key }) {
            guard case .store(let event, let action, let record, _, _)? = plans[index] else { continue }
            if result == .stale {
                outcomes[index] = .skippedStale
                continue
            }
            if let failure = handOff(event, action: action, record: record) {
                outcomes[index] = .retry(reason: failure)
            }
        }
        return outcomes
    }

    /// Tells the maestro role; nil on success, else why it must be retried.
    private func handOff(_ event: SinkEvent, action: SinkStore.Action, record: SinkRecord) -> String? {
        guard let collectors = context.collectors else { return nil }
        do {
            switch action {
            case .remove:
                // Removals always reach the maestro role: a removed sink's credentials must not keep running.
                try collectors.remove(sinkID: event.sinkID)
            case .apply:
                guard context.policy == .eager else { return nil }
                if event.operation == .create {
                    try collectors.create(sinkID: event.sinkID, ownerID: record.ownerID)
                } else {
                    try collectors.update(sinkID: event.sinkID, ownerID: record.ownerID)
                }
            case .invalid:
                return nil
            }
            return nil
        } catch where Self.isSuperseded(error, action: action) {
            // A newer event of the sink changed it since this entry was stored; that event's hand-off
            // (or the resync) owns the collector now.
            context.logger.debug("collector hand-off superseded by a newer event", metadata: ["sink.id": "\(event.sinkID)", "reason": "\(error.message)"])
            return nil
        } catch {
            context.logger.warning("collector hand-off failed; the entry will be retried",
                                   metadata: ["sink.id": "\(event.sinkID)", "error": "\(error.message)"])
            return "collector hand-off failed: \(error.message)"
        }
    }

    /// The maestro role refused the hand-off because the sink is no longer as this entry left it: a
    /// removal of a sink that is live again, a create or update of a sink removed since.
    static func isSuperseded(_ error: CollectorServiceError, action: SinkStore.Action) -> Bool {
        switch action {
        case .remove: return error.kind == .failedPrecondition
        case .apply: return error.kind == .notFound
        case .invalid: return false
        }
    }
}
