public import MaestroRedis
public import MaestroValue
internal import Synchronization

/// Where the maestro role's collector service reads configs and keeps desired states and collector
/// records: Redis (`RedisCollectorStorage`, the real thing), or memory (`InMemoryCollectorStorage`, for
/// tests of the service's rules). The desired-state writes decide on the sink's current record and
/// config inside the storage (DesiredStateStore), never on what the caller read before.
public protocol CollectorStorage: Sendable {
    /// The sink's stored collector config and the owner its record names ("" without a record).
    func config(of sinkID: String) throws(RedisError) -> (yaml: String, ownerID: String)?
    /// The installation's key for config hashes, made once per installation.
    func installationKey() throws(RedisError) -> String
    func desiredState(of sinkID: String) throws(RedisError) -> String?
    func sinkIDsWithDesiredState() throws(RedisError) -> [String]
    /// `DesiredStateStore.store`'s guarded write.
    func storeDesiredState(sinkID: String, configDigest: String, yaml: String, ownerID: String,
                           extra: [String: Value]) throws(RedisError) -> DesiredStateStore.StoreResult
    /// `DesiredStateStore.remove`'s guarded delete.
    func removeDesiredState(sinkID: String, guard removalGuard: DesiredStateStore.RemovalGuard) throws(RedisError) -> DesiredStateStore.RemovalResult
    func collectorRecord(of sinkID: String) throws(RedisError) -> Value?
    func collectorRecords() throws(RedisError) -> [String: Value]
}

/// The collector storage in Redis, on pooled connections (one user at a time each; a connection that
/// failed is closed, not pooled again).
public final class RedisCollectorStorage: CollectorStorage {
    let redisURL: RedisURL
    let names: RedisNames
    private let connections = Mutex<[RedisConnection]>([])

    public init(redisURL: RedisURL, names: RedisNames) {
        self.redisURL = redisURL
        self.names = names
    }

    private func withRedis<R>(_ body: (RedisConnection) throws(RedisError) -> R) throws(RedisError) -> R {
        let redis: RedisConnection
        if let pooled = connections.withLock({ $0.popLast() }) {
            redis = pooled
        } else {
            redis = try RedisConnection(url: redisURL)
        }
        do {
            let result = try body(redis)
            connections.withLock { $0.append(redis) }
            return result
        } catch {
            redis.close()
            throw error
        }
    }

    public func config(of sinkID: String) throws(RedisError) -> (yaml: String, ownerID: String)? {
        try withRedis { redis throws(RedisError) in
            // The config and the sink's record in one round trip.
            let replies = try redis.pipeline([["HGET", names.configHash, sinkID], ["HGET", names.sinksHash, sinkID]])
            // An error reply (NOAUTH, LOADING…) is Redis failing, not a sink without a config.
            for case .error(let text) in replies { throw RedisError.fromReply(text) }
            guard let config = replies[0].string else { return nil }
            return (config, replies[1].string.flatMap(SinkRecord.init(json:))?.ownerID ?? "")
        }
    }

    public func installationKey() throws(RedisError) -> String {
        try withRedis { redis throws(RedisError) in try ConfigHasher.installationKey(redis, names: names) }
    }

    public func desiredState(of sinkID: String) throws(RedisError) -> String? {
        try withRedis { redis throws(RedisError) in try redis.hget(names.deploymentHash, field: sinkID) }
    }

    public func sinkIDsWithDesiredState() throws(RedisError) -> [String] {
        try withRedis { redis throws(RedisError) in try redis.hkeys(names.deploymentHash) }
    }

    public func storeDesiredState(sinkID: String, configDigest: String, yaml: String, ownerID: String,
                                  extra: [String: Value]) throws(RedisError) -> DesiredStateStore.StoreResult {
        try withRedis { redis throws(RedisError) in
            try DesiredStateStore.store(redis, names: names, sinkID: sinkID, configDigest: configDigest, yaml: yaml, ownerID: ownerID, extra: extra)
        }
    }

    public func removeDesiredState(sinkID: String, guard removalGuard: DesiredStateStore.RemovalGuard) throws(RedisError) -> DesiredStateStore.RemovalResult {
        try withRedis { redis throws(RedisError) in try DesiredStateStore.remove(redis, names: names, sinkID: sinkID, guard: removalGuard) }
    }

    public func collectorRecord(of sinkID: String) throws(RedisError) -> Value? {
        try withRedis { redis throws(RedisError) in try StatusPublisher.record(redis, names: names, sinkID: sinkID) }
    }

    public func collectorRecords() throws(RedisError) -> [String: Value] {
        try withRedis { redis throws(RedisError) in
            var records: [String: Value] = [:]
            for (sinkID, json) in try redis.hgetall(names.collectorsHash) {
                if let record = try? JSON.decode(json) { records[sinkID] = record }
            }
            return records
        }
    }
}
