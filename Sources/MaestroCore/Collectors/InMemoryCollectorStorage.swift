public import MaestroRedis
public import MaestroValue
public import Synchronization

/// The collector storage in memory, for fast tests of the collector service's rules: the same guards
/// as the desired-state scripts (`DesiredStateStore`) — no desired state for a tombstoned sink, none
/// from a config that changed since it was rendered, no removal of a live sink's unless asked —
/// without a redis-server.
public final class InMemoryCollectorStorage: CollectorStorage {
    public struct Contents: Sendable {
        /// `orb.sinker.sinks`, `orb.sinker.otelConfigYaml`, `orb.maestro.otelCollector`, `orb.maestro.collectors`.
        public var sinks: [String: SinkRecord] = [:]
        public var configs: [String: String] = [:]
        public var desiredStates: [String: String] = [:]
        public var collectors: [String: [String: Value]] = [:]
        /// `orb.maestro.sink_status`: the status events, in order.
        public var statusEvents: [StatusEvent] = []
        /// The reconcile locks held, by sink (their expiry is not modelled).
        public var reconcileLocks: [String: String] = [:]
        public var installationKey = String(repeating: "0", count: 64)
        /// `orb.maestro.rollouts`.
        public var rollouts: [String: RolloutHistory] = [:]
        /// `maestro:rollback-requests`.
        public var reconcileRequests: [String] = []
        /// `maestro:fleet-rollout` and `maestro:fleet-rollout-requests`.
        public var fleetRollout: String?
        public var fleetRolloutRequests: [String] = []
        /// When set, the next call throws it (a Redis failure).
        public var failure: RedisError?
    }

    public struct StatusEvent: Sendable, Equatable {
        public var sinkID: String
        public var status: String
        public var message: String
    }

    public let contents = Mutex(Contents())

    public init() {}

    /// One call's access to the contents, failing first when a test asked for it.
    private func access<R: Sendable>(_ body: (inout Contents) -> R) throws(RedisError) -> R {
        let outcome: Result<R, RedisError> = contents.withLock { contents in
            if let failure = contents.failure {
                contents.failure = nil
                return .failure(failure)
            }
            return .success(body(&contents))
        }
        return try outcome.get()
    }

    public func config(of sinkID: String) throws(RedisError) -> (yaml: String, ownerID: String)? {
        try access { contents in contents.configs[sinkID].map { ($0, contents.sinks[sinkID]?.ownerID ?? "") } }
    }

    public func installationKey() throws(RedisError) -> String { try access { $0.installationKey } }

    public func desiredState(of sinkID: String) throws(RedisError) -> String? { try access { $0.desiredStates[sinkID] } }

    public func sinkIDsWithDesiredState() throws(RedisError) -> [String] { try access { Array($0.desiredStates.keys) } }

    public func storeDesiredState(sinkID: String, configDigest: String, yaml: String, ownerID: String,
                                  extra: [String: Value], releasing token: String?) throws(RedisError) -> DesiredStateStore.StoreResult {
        try access { contents in
            defer { if let token, contents.reconcileLocks[sinkID] == token { contents.reconcileLocks[sinkID] = nil } }
            if contents.sinks[sinkID]?.removed == true {
                contents.desiredStates[sinkID] = nil
                return .tombstoned
            }
            guard let config = contents.configs[sinkID] else { return .noConfig }
            guard DesiredStateStore.digest(ofConfig: config) == configDigest else { return .configChanged }
            contents.desiredStates[sinkID] = yaml
            var record = contents.collectors[sinkID] ?? [:]
            record.merge(extra) { _, new in new }
            if !ownerID.isEmpty { record["owner_id"] = .string(ownerID) }
            if record["status"] == nil { record["status"] = .string(SinkStatus.unknown.rawValue) }
            record[RecordSchema.field] = .int(RecordSchema.version)
            contents.collectors[sinkID] = record
            return .stored(record: .map(record))
        }
    }

    public func removeDesiredState(sinkID: String, guard removalGuard: DesiredStateStore.RemovalGuard) throws(RedisError) -> DesiredStateStore.RemovalResult {
        try access { contents in
            if removalGuard == .unlessLive, let record = contents.sinks[sinkID], !record.removed { return .refusedLive }
            return contents.desiredStates.removeValue(forKey: sinkID) == nil ? .absent : .removed
        }
    }

    public func collectorRecord(of sinkID: String) throws(RedisError) -> Value? {
        try access { $0.collectors[sinkID].map(Value.map) }
    }

    public func collectorRecords() throws(RedisError) -> [String: Value] {
        try access { $0.collectors.mapValues(Value.map) }
    }

    public func snapshot(of sinkID: String) throws(RedisError) -> CollectorSnapshot {
        try access { contents in
            CollectorSnapshot(sink: contents.sinks[sinkID], config: contents.configs[sinkID], desiredState: contents.desiredStates[sinkID],
                              record: contents.collectors[sinkID].map(Value.map))
        }
    }

    public func wantAndLock(sinkID: String, ownerID: String, token: String,
                            milliseconds: Int) throws(RedisError) -> (intent: DesiredStateStore.IntentResult, snapshot: CollectorSnapshot?) {
        let intent = try want(sinkID: sinkID, ownerID: ownerID)
        guard case .recorded = intent else { return (intent, nil) }
        return (intent, try acquireReconcileLock(sinkID: sinkID, token: token, milliseconds: milliseconds))
    }

    public func want(sinkID: String, ownerID: String) throws(RedisError) -> DesiredStateStore.IntentResult {
        try access { contents in
            if contents.sinks[sinkID]?.removed == true { return .tombstoned }
            guard contents.configs[sinkID] != nil else { return .noConfig }
            var record = contents.collectors[sinkID] ?? [:]
            if !ownerID.isEmpty { record["owner_id"] = .string(ownerID) }
            if record["status"] == nil { record["status"] = .string(SinkStatus.unknown.rawValue) }
            record["intent"] = .string(DesiredStateStore.Intent.run.rawValue)
            record[RecordSchema.field] = .int(RecordSchema.version)
            contents.collectors[sinkID] = record
            return .recorded(record: .map(record))
        }
    }

    public func stopWanting(sinkID: String, intent: DesiredStateStore.Intent,
                            guard removalGuard: DesiredStateStore.RemovalGuard) throws(RedisError) -> DesiredStateStore.RemovalResult {
        try access { contents in
            if removalGuard == .unlessLive, let sink = contents.sinks[sinkID], !sink.removed { return .refusedLive }
            guard contents.collectors[sinkID] != nil || contents.desiredStates[sinkID] != nil else { return .absent }
            var record = contents.collectors[sinkID] ?? [:]
            if record["status"] == nil { record["status"] = .string(SinkStatus.unknown.rawValue) }
            record["intent"] = .string(intent.rawValue)
            record[RecordSchema.field] = .int(RecordSchema.version)
            contents.collectors[sinkID] = record
            return .removed
        }
    }

    @discardableResult
    public func forgetCollector(sinkID: String) throws(RedisError) -> Bool {
        try access { contents in
            guard contents.desiredStates[sinkID] == nil else { return false }
            let intent = contents.collectors[sinkID]?["intent"]?.stringValue
            if contents.sinks[sinkID]?.removed != true, intent == DesiredStateStore.Intent.run.rawValue || intent == DesiredStateStore.Intent.idle.rawValue {
                return false
            }
            return contents.collectors.removeValue(forKey: sinkID) != nil
        }
    }

    /// StatusPublisher's rules: the record always; events only when the status or message changed.
    @discardableResult
    public func publish(sinkID: String, _ change: CollectorStatusChange) throws(RedisError) -> Int {
        try access { contents in
            var record = contents.collectors[sinkID] ?? [:]
            record.merge(change.extra) { _, new in new }
            if !change.ownerID.isEmpty { record["owner_id"] = .string(change.ownerID) }
            record[RecordSchema.field] = .int(RecordSchema.version)
            let previous = record["status"]?.stringValue
            let changed = previous != change.status.rawValue || (record["error"]?.stringValue ?? "") != change.message
            record["status"] = .string(change.status.rawValue)
            record["error"] = .string(change.message)
            contents.collectors[sinkID] = record
            guard changed else { return 0 }
            var events = 1
            let running: Set<String> = [SinkStatus.provisioning, .active, .warning, .error].map(\.rawValue).reduce(into: []) { $0.insert($1) }
            if change.throughProvisioning, change.status != .provisioning, !running.contains(previous ?? "") {
                contents.statusEvents.append(StatusEvent(sinkID: sinkID, status: SinkStatus.provisioning.rawValue, message: ""))
                events = 2
            }
            contents.statusEvents.append(StatusEvent(sinkID: sinkID, status: change.status.rawValue, message: change.message))
            return events
        }
    }

    public func sinkRecords() throws(RedisError) -> [String: SinkRecord] { try access { $0.sinks } }

    public func acquireReconcileLock(sinkID: String, token: String, milliseconds: Int) throws(RedisError) -> CollectorSnapshot? {
        try access { contents in
            guard contents.reconcileLocks[sinkID] == nil else { return nil }
            contents.reconcileLocks[sinkID] = token
            return CollectorSnapshot(sink: contents.sinks[sinkID], config: contents.configs[sinkID], desiredState: contents.desiredStates[sinkID],
                                     record: contents.collectors[sinkID].map(Value.map))
        }
    }

    public func extendReconcileLock(sinkID: String, token: String, milliseconds: Int) throws(RedisError) -> Bool {
        try access { $0.reconcileLocks[sinkID] == token }
    }

    public func releaseReconcileLock(sinkID: String, token: String) throws(RedisError) {
        try access { contents in
            if contents.reconcileLocks[sinkID] == token { contents.reconcileLocks[sinkID] = nil }
        }
    }

    public func rolloutHistory(of sinkID: String) throws(RedisError) -> RolloutHistory {
        try access { $0.rollouts[sinkID] ?? RolloutHistory() }
    }

    @discardableResult
    public func storeRolloutHistory(_ history: RolloutHistory, of sinkID: String, desiredState: String?) throws(RedisError) -> Bool {
        try access { contents in
            if let desiredState {
                guard contents.sinks[sinkID]?.removed != true else { return false }
                contents.desiredStates[sinkID] = desiredState
            }
            contents.rollouts[sinkID] = history
            return true
        }
    }

    public func forgetRolloutHistory(sinkID: String) throws(RedisError) {
        try access { _ = $0.rollouts.removeValue(forKey: sinkID) }
    }

    public func requestReconcile(sinkID: String) throws(RedisError) {
        try access { $0.reconcileRequests.append(sinkID) }
    }

    public func takeReconcileRequests(limit: Int) throws(RedisError) -> [String] {
        try access { contents in
            let taken = Array(contents.reconcileRequests.prefix(limit))
            contents.reconcileRequests.removeFirst(taken.count)
            return taken
        }
    }

    public func fleetRollout() throws(RedisError) -> String? {
        try access { $0.fleetRollout }
    }

    public func storeFleetRollout(_ json: String) throws(RedisError) {
        try access { $0.fleetRollout = json }
    }

    public func requestFleetRollout(_ request: String) throws(RedisError) {
        try access { $0.fleetRolloutRequests.append(request) }
    }

    public func takeFleetRolloutRequests(limit: Int) throws(RedisError) -> [String] {
        try access { contents in
            let taken = Array(contents.fleetRolloutRequests.prefix(limit))
            contents.fleetRolloutRequests.removeFirst(taken.count)
            return taken
        }
    }
}
