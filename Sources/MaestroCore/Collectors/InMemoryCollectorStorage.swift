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
        public var installationKey = String(repeating: "0", count: 64)
        /// When set, the next call throws it (a Redis failure).
        public var failure: RedisError?
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
                                  extra: [String: Value]) throws(RedisError) -> DesiredStateStore.StoreResult {
        try access { contents in
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
}
