public import Logging
public import MaestroRedis
internal import MaestroValue
internal import Foundation

/// What the sinker's rules need besides the collector configs.
public struct SinkerSettings: Sendable {
    public var names: RedisNames
    public var policy: CreatePolicy
    /// Where collectors are created, updated and removed; nil only in tools that store configs alone.
    public var collectors: (any CollectorService)?
    public var streamMaxLength: Int
    public var logger: Logger

    public init(names: RedisNames, policy: CreatePolicy, collectors: (any CollectorService)?, streamMaxLength: Int = 100_000, logger: Logger) {
        self.names = names
        self.policy = policy
        self.collectors = collectors
        self.streamMaxLength = streamMaxLength
        self.logger = logger
    }
}

/// The sinker role's batch processor for `orb.sinks` (one per worker), holding the sinker's rules (DESIGN "The flow"): decode, the order guard, tombstones, deferral, the store,
/// the hand-off to the collectors and the status. Only the collector config comes from elsewhere
/// (`CollectorConfigSource`: the backend plugins).
public final class SinkEventProcessor: StreamBatchProcessor {
    let settings: SinkerSettings
    let configSource: any CollectorConfigSource
    var scriptsLoaded = false

    public init(settings: SinkerSettings, configSource: any CollectorConfigSource) {
        self.settings = settings
        self.configSource = configSource
    }

    /// An entry's planned effect, before it is stored.
    enum Plan {
        case outcome(EntryOutcome)
        case store(SinkEvent, SinkWrite)
    }

    public func process(_ batch: [DeliveredEntry], redis: RedisConnection) throws(RedisError) -> [EntryOutcome] {
        configSource.beginBatch(redis: redis)
        if !scriptsLoaded {
            try redis.load(RedisSinkerStorage.scripts)
            scriptsLoaded = true
        }
        return try process(batch, storage: RedisSinkerStorage(redis: redis, names: settings.names, streamMaxLength: settings.streamMaxLength))
    }

    /// The rules over any storage (the tests of the rules use the in-memory one).
    public func process(_ batch: [DeliveredEntry], storage: any SinkerStorage) throws(RedisError) -> [EntryOutcome] {
        let traces = EntryTraces(batch)
        do throws(RedisError) {
            let outcomes = try process(batch, storage: storage, traces: traces)
            traces.end(outcomes)
            return outcomes
        } catch {
            traces.end(failing: error)
            throw error
        }
    }

    private func process(_ batch: [DeliveredEntry], storage: any SinkerStorage, traces: EntryTraces) throws(RedisError) -> [EntryOutcome] {
        var events: [SinkEvent?] = []
        var plans: [Plan?] = []
        for (index, delivered) in batch.enumerated() {
            do {
                events.append(try traces.step("sinker.decode", entry: index) { () throws(MalformedEvent) in try SinkEvent.decode(delivered.entry) })
                plans.append(nil)
            } catch {
                events.append(nil)
                plans.append(.outcome(.deadLetter(reason: error.reason, plugin: nil)))
            }
        }
        // The records of every sink in the batch, in one round trip; kept current as the batch goes.
        var records = try storage.records(of: Array(Set(events.compactMap { $0?.sinkID })))
        var oldestPendingChecked: StreamID??
        for (index, delivered) in batch.enumerated() {
            guard let event = events[index], plans[index] == nil else { continue }
            traces.annotate(entry: index) { $0["maestro.sink.id"] = event.sinkID; $0["maestro.operation"] = event.operation.rawValue }
            plans[index] = try traces.within(entry: index) { () throws(RedisError) in
                try plan(event, delivered: delivered, records: &records, storage: storage, oldestPending: &oldestPendingChecked)
            }
        }
        return try store(plans, storage: storage, traces: traces)
    }

    private func plan(_ event: SinkEvent, delivered: DeliveredEntry, records: inout [String: SinkRecord], storage: any SinkerStorage,
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
            return .store(event, SinkWrite(sinkID: event.sinkID, orderingID: event.orderingID, action: .remove, record: tombstone))
        case .create, .update:
            guard let backend = event.backend ?? record?.backend else {
                // An update without backend of a sink not yet created: its create may still be pending
                // with a dead consumer, so it waits without using up deliveries while older entries are pending.
                if oldestPending == nil {
                    oldestPending = .some(try storage.oldestPendingEntry())
                }
                if let oldest = oldestPending ?? nil, let current = StreamID(delivered.entry.id), oldest < current {
                    return .outcome(.deferred(reason: "update without backend of an unknown sink; older entries are pending"))
                }
                return .outcome(.retry(reason: "sinks.update without backend for a sink that was never created"))
            }
            let ownerID = event.ownerID.isEmpty ? record?.ownerID ?? "" : event.ownerID
            let newRecord = SinkRecord(ownerID: ownerID, backend: backend, lastEntryID: event.orderingID, removed: false,
                                       updatedAtMilliseconds: now)
            // An update of a sink never created (its create was invalid) or removed acts as a create.
            let operation: SinkEvent.Operation = (record == nil || record!.removed || !record!.created) ? .create : event.operation
            let request = CollectorConfigRequest(operation: operation, sinkID: event.sinkID, ownerID: ownerID, backend: backend,
                                                 config: event.config ?? .map([:]), eventID: delivered.entry.id, deliveries: delivered.deliveries)
            switch configSource.collectorConfig(for: request) {
            case .config(let yaml):
                // What the config was built from, so that a changed plugin can build it again (`SinkRebuilder`).
                var newRecord = newRecord
                newRecord.input = request.config
                newRecord.pluginFingerprint = configSource.pluginFingerprint(forBackend: backend)
                records[event.sinkID] = newRecord
                // An update of a sink never created (or removed) acts as a create, as in Orb.
                var effective = event
                effective.operation = operation
                return .store(effective, SinkWrite(sinkID: event.sinkID, orderingID: event.orderingID, action: .apply, record: newRecord,
                                                   configYAML: yaml, status: SinkerStatusChange(.unknown, mode: .clearError)))
            case .invalid(let message):
                // The user's error: the last good config stays; the entry is handled. A sink never
                // created stays so (its next update acts as a create); its record keeps the order guard.
                var invalidRecord = newRecord
                invalidRecord.removed = record?.removed ?? false
                invalidRecord.created = record?.created ?? false
                // The stored config is still the one the previous input built.
                invalidRecord.input = record?.removed == false ? record?.input : nil
                invalidRecord.pluginFingerprint = record?.removed == false ? record?.pluginFingerprint : nil
                records[event.sinkID] = invalidRecord
                return .store(event, SinkWrite(sinkID: event.sinkID, orderingID: event.orderingID, action: .invalid, record: invalidRecord,
                                               status: SinkerStatusChange(.provisioningError, message: message)))
            case .failed(let reason, let plugin, let terminal):
                return .outcome(terminal ? .deadLetter(reason: reason, plugin: plugin) : .retry(reason: reason))
            }
        }
    }

    /// Stores the plans (in one round trip to Redis), hands off to the collectors, and returns the outcomes.
    private func store(_ plans: [Plan?], storage: any SinkerStorage, traces: EntryTraces) throws(RedisError) -> [EntryOutcome] {
        var outcomes: [EntryOutcome] = plans.map { plan in
            if case .outcome(let outcome)? = plan { return outcome }
            return .acknowledged
        }
        let stored: [(index: Int, event: SinkEvent, write: SinkWrite)] = plans.enumerated().compactMap { index, plan in
            guard case .store(let event, let write)? = plan else { return nil }
            return (index, event, write)
        }
        guard !stored.isEmpty else { return outcomes }
        // One round trip stores them all: each stored entry's trace has this store as a span.
        let storeSpans = traces.startSteps("sinker.store", entries: stored.map(\.index))
        let results: [SinkStoreResult]
        do throws(RedisError) {
            results = try storage.store(stored.map(\.write))
            storeSpans.end()
        } catch {
            storeSpans.end(failing: error)
            throw error
        }
        for ((index, event, write), result) in zip(stored, results) {
            if result == .stale {
                outcomes[index] = .skippedStale
                continue
            }
            let failure = traces.step("sinker.hand_off", entry: index, attributes: { $0["maestro.hand_off.action"] = "\(write.action)" }) {
                handOff(event, action: write.action, record: write.record)
            }
            if let failure {
                outcomes[index] = .retry(reason: failure)
            }
        }
        return outcomes
    }

    /// Tells the maestro role; nil on success, else why it must be retried.
    private func handOff(_ event: SinkEvent, action: SinkStore.Action, record: SinkRecord) -> String? {
        guard let collectors = settings.collectors else { return nil }
        do {
            switch action {
            case .remove:
                // Removals always reach the maestro role: a removed sink's credentials must not keep running.
                try collectors.remove(sinkID: event.sinkID)
            case .apply:
                guard settings.policy == .eager else { return nil }
                if event.operation == .create {
                    try collectors.create(sinkID: event.sinkID, ownerID: record.ownerID)
                } else {
                    try collectors.update(sinkID: event.sinkID, ownerID: record.ownerID)
                }
            case .invalid:
                return nil
            }
            // Within the hand-off's span when tracing is on: the line names the entry's trace.
            settings.logger.debug("handed off to the collectors", metadata: ["sink.id": "\(event.sinkID)", "hand_off.action": "\(action)"])
            return nil
        } catch where Self.isSuperseded(error, action: action) {
            // A newer event of the sink changed it since this entry was stored; that event's hand-off
            // (or the resync) owns the collector now.
            settings.logger.debug("collector hand-off superseded by a newer event", metadata: ["sink.id": "\(event.sinkID)", "reason": "\(error.message)"])
            return nil
        } catch {
            settings.logger.warning("collector hand-off failed; the entry will be retried",
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
