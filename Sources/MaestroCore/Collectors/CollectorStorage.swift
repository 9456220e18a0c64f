public import MaestroRedis
public import MaestroValue
internal import Synchronization

/// What the reconcile of one sink reads, in one step: the sinker's record and config, the desired
/// state, and the collector's record (its intent and status).
public struct CollectorSnapshot: Sendable, Equatable {
    public var sink: SinkRecord?
    public var config: String?
    public var desiredState: String?
    public var record: Value?

    public init(sink: SinkRecord? = nil, config: String? = nil, desiredState: String? = nil, record: Value? = nil) {
        self.sink = sink
        self.config = config
        self.desiredState = desiredState
        self.record = record
    }
}

/// One status change of a collector (StatusPublisher's rules).
public struct CollectorStatusChange: Sendable, Equatable {
    public var status: SinkStatus
    public var message: String
    public var ownerID: String
    public var extra: [String: Value]
    public var throughProvisioning: Bool

    public init(_ status: SinkStatus, message: String = "", ownerID: String = "", extra: [String: Value] = [:], throughProvisioning: Bool = false) {
        self.status = status
        self.message = message
        self.ownerID = ownerID
        self.extra = extra
        self.throughProvisioning = throughProvisioning
    }
}

/// Where the maestro role reads configs and keeps intents, desired states, collector records and
/// status: Redis (`RedisCollectorStorage`, the real thing), or memory (`InMemoryCollectorStorage`, for
/// tests of the rules). Every write that could undo a newer event decides on the sink's current record
/// and config inside the storage (DesiredStateStore's scripts), never on what the caller read before.
public protocol CollectorStorage: Sendable {
    /// The sink's stored collector config and the owner its record names ("" without a record).
    func config(of sinkID: String) throws(RedisError) -> (yaml: String, ownerID: String)?
    /// The installation's key for config hashes, made once per installation.
    func installationKey() throws(RedisError) -> String
    func desiredState(of sinkID: String) throws(RedisError) -> String?
    func sinkIDsWithDesiredState() throws(RedisError) -> [String]
    /// What the reconcile of `sinkID` decides on.
    func snapshot(of sinkID: String) throws(RedisError) -> CollectorSnapshot
    /// `DesiredStateStore.want`: the collector should run.
    func want(sinkID: String, ownerID: String) throws(RedisError) -> DesiredStateStore.IntentResult
    /// `DesiredStateStore.stop`: the collector should not run.
    func stopWanting(sinkID: String, intent: DesiredStateStore.Intent, guard removalGuard: DesiredStateStore.RemovalGuard) throws(RedisError) -> DesiredStateStore.RemovalResult
    /// `DesiredStateStore.want`, then, when recorded, the reconcile lock for `token` and the snapshot, in
    /// one step (a create that decides on its caller's thread); the snapshot is nil when another holds
    /// the lock.
    func wantAndLock(sinkID: String, ownerID: String, token: String,
                     milliseconds: Int) throws(RedisError) -> (intent: DesiredStateStore.IntentResult, snapshot: CollectorSnapshot?)
    /// `DesiredStateStore.store`'s guarded write; with `releasing`, the reconcile lock that token holds
    /// is released in the same step.
    func storeDesiredState(sinkID: String, configDigest: String, yaml: String, ownerID: String,
                           extra: [String: Value], releasing token: String?) throws(RedisError) -> DesiredStateStore.StoreResult
    /// `DesiredStateStore.remove`'s guarded delete.
    func removeDesiredState(sinkID: String, guard removalGuard: DesiredStateStore.RemovalGuard) throws(RedisError) -> DesiredStateStore.RemovalResult
    /// `DesiredStateStore.forgetCollector`: the record goes unless the collector is wanted again.
    @discardableResult
    func forgetCollector(sinkID: String) throws(RedisError) -> Bool
    /// StatusPublisher's write: the record and, on a change, the status event(s); answers how many events.
    @discardableResult
    func publish(sinkID: String, _ change: CollectorStatusChange) throws(RedisError) -> Int
    func collectorRecord(of sinkID: String) throws(RedisError) -> Value?
    func collectorRecords() throws(RedisError) -> [String: Value]
    /// Every sink record (the resync's invariant check).
    func sinkRecords() throws(RedisError) -> [String: SinkRecord]
    /// Takes the per-sink reconcile lock (with an expiry) for `token` and, when taken, reads the sink's
    /// snapshot in the same step; nil when another holds the lock.
    func acquireReconcileLock(sinkID: String, token: String, milliseconds: Int) throws(RedisError) -> CollectorSnapshot?
    /// Extends the lock if `token` still holds it; false when the pass lost it (it outlived the lock's
    /// expiry and another pass may have taken the sink): it must then write nothing more.
    func extendReconcileLock(sinkID: String, token: String, milliseconds: Int) throws(RedisError) -> Bool
    /// Releases the lock if `token` still holds it.
    func releaseReconcileLock(sinkID: String, token: String) throws(RedisError)
    /// The sink's rollout history (`RolloutHistory`); empty when it has none.
    func rolloutHistory(of sinkID: String) throws(RedisError) -> RolloutHistory
    /// Writes the history whole (under the sink's lock); with `desiredState` (a rollback), the desired
    /// state too, in the same step — unless the sink is removed: then nothing is written and the answer
    /// is false.
    @discardableResult
    func storeRolloutHistory(_ history: RolloutHistory, of sinkID: String, desiredState: String?) throws(RedisError) -> Bool
    /// Deletes the sink's rollout history (its collector was removed).
    func forgetRolloutHistory(sinkID: String) throws(RedisError)
    /// Asks the maestro role to reconcile a sink whose desired state `maestro rollback` changed.
    func requestReconcile(sinkID: String) throws(RedisError)
    /// Takes up to `limit` of those requests.
    func takeReconcileRequests(limit: Int) throws(RedisError) -> [String]
    /// The fleet rollout's state (`FleetRolloutState`'s JSON), nil before the first.
    func fleetRollout() throws(RedisError) -> String?
    func storeFleetRollout(_ json: String) throws(RedisError)
    /// `maestro rollout pause|resume|abort` and the other replicas' reports, for the leader (`FleetRolloutRequest`).
    func requestFleetRollout(_ request: String) throws(RedisError)
    func takeFleetRolloutRequests(limit: Int) throws(RedisError) -> [String]
}

/// The collector storage in Redis, on pooled connections (one user at a time each; a connection that
/// failed is closed, not pooled again).
public final class RedisCollectorStorage: CollectorStorage {
    let redisURL: RedisURL
    let names: RedisNames
    let statusStreamMaxLength: Int
    private let connections = Mutex<[RedisConnection]>([])

    public init(redisURL: RedisURL, names: RedisNames, statusStreamMaxLength: Int = 100_000) {
        self.redisURL = redisURL
        self.names = names
        self.statusStreamMaxLength = statusStreamMaxLength
    }

    func withRedis<R>(_ body: (RedisConnection) throws(RedisError) -> R) throws(RedisError) -> R {
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
            if error.isConnectionFailure {
                // The server went away or was demoted (a failover): the pooled connections lead to it too,
                // and each would fail its next caller in turn. The next call connects afresh.
                for pooled in connections.withLock({ pool in defer { pool.removeAll() }; return pool }) { pooled.close() }
            }
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
                                  extra: [String: Value], releasing token: String?) throws(RedisError) -> DesiredStateStore.StoreResult {
        try withRedis { redis throws(RedisError) in
            guard let token else {
                return try DesiredStateStore.store(redis, names: names, sinkID: sinkID, configDigest: configDigest, yaml: yaml,
                                                   ownerID: ownerID, extra: extra)
            }
            let replies = try redis.pipeline([DesiredStateStore.storeCommand(names: names, sinkID: sinkID, configDigest: configDigest, yaml: yaml,
                                                                             ownerID: ownerID, extra: extra),
                                              DesiredStateStore.releaseScript.command(keys: [names.reconcileLockPrefix + sinkID], arguments: [token])],
                                             loading: [DesiredStateStore.storeScript, DesiredStateStore.releaseScript])
            for case .error(let text) in replies { throw RedisError.fromReply(text) }
            return try DesiredStateStore.storeResult(replies[0])
        }
    }

    public func wantAndLock(sinkID: String, ownerID: String, token: String,
                            milliseconds: Int) throws(RedisError) -> (intent: DesiredStateStore.IntentResult, snapshot: CollectorSnapshot?) {
        try withRedis { redis throws(RedisError) in
            let reply = try redis.eval(DesiredStateStore.claimScript,
                                       keys: [names.sinksHash, names.configHash, names.collectorsHash, names.deploymentHash,
                                              names.reconcileLockPrefix + sinkID],
                                       arguments: [sinkID, ownerID, String(RecordSchema.version), token, String(milliseconds)])
            let parts = reply.array ?? []
            let intent = try DesiredStateStore.intentResult(parts, of: "claim")
            // Recorded: the lock's outcome and the snapshot follow the record.
            guard case .recorded = intent else { return (intent, nil) }
            guard parts.count == 7 else { throw RedisError(kind: .protocolViolation, message: "the claim script returned no snapshot") }
            guard parts[2].integer == 1 else { return (intent, nil) }
            return (intent, try Self.snapshot(Array(parts[3...6])))
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

    public func snapshot(of sinkID: String) throws(RedisError) -> CollectorSnapshot {
        try withRedis { redis throws(RedisError) in try Self.snapshot(Array(try redis.pipeline(snapshotCommands(sinkID))[...])) }
    }

    private func snapshotCommands(_ sinkID: String) -> [[String]] {
        [["HGET", names.sinksHash, sinkID], ["HGET", names.configHash, sinkID], ["HGET", names.deploymentHash, sinkID],
         ["HGET", names.collectorsHash, sinkID]]
    }

    private static func snapshot(_ replies: [RedisReply]) throws(RedisError) -> CollectorSnapshot {
        // An error reply (NOAUTH, LOADING…) is Redis failing, not an absent field.
        for case .error(let text) in replies { throw RedisError.fromReply(text) }
        return CollectorSnapshot(sink: replies[0].string.flatMap(SinkRecord.init(json:)), config: replies[1].string,
                                 desiredState: replies[2].string, record: replies[3].string.flatMap { try? JSON.decode($0) })
    }

    public func want(sinkID: String, ownerID: String) throws(RedisError) -> DesiredStateStore.IntentResult {
        try withRedis { redis throws(RedisError) in try DesiredStateStore.want(redis, names: names, sinkID: sinkID, ownerID: ownerID) }
    }

    public func stopWanting(sinkID: String, intent: DesiredStateStore.Intent,
                            guard removalGuard: DesiredStateStore.RemovalGuard) throws(RedisError) -> DesiredStateStore.RemovalResult {
        try withRedis { redis throws(RedisError) in
            try DesiredStateStore.stop(redis, names: names, sinkID: sinkID, intent: intent, guard: removalGuard)
        }
    }

    @discardableResult
    public func forgetCollector(sinkID: String) throws(RedisError) -> Bool {
        try withRedis { redis throws(RedisError) in try DesiredStateStore.forgetCollector(redis, names: names, sinkID: sinkID) }
    }

    @discardableResult
    public func publish(sinkID: String, _ change: CollectorStatusChange) throws(RedisError) -> Int {
        try FlowTracing.span("status", attributes: { $0["maestro.sink.id"] = sinkID; $0["maestro.status"] = change.status.rawValue }) { _ throws(RedisError) in
            try publishNow(sinkID: sinkID, change)
        }
    }

    private func publishNow(sinkID: String, _ change: CollectorStatusChange) throws(RedisError) -> Int {
        try withRedis { redis throws(RedisError) in
            try StatusPublisher.publish(redis, names: names, sinkID: sinkID, ownerID: change.ownerID, status: change.status,
                                        message: change.message, extra: change.extra, throughProvisioning: change.throughProvisioning,
                                        streamMaxLength: statusStreamMaxLength)
        }
    }

    public func sinkRecords() throws(RedisError) -> [String: SinkRecord] {
        try withRedis { redis throws(RedisError) in
            var records: [String: SinkRecord] = [:]
            var cursor = "0"
            repeat {
                let page = try redis.hscan(names.sinksHash, cursor: cursor, count: 500)
                cursor = page.cursor
                for (sinkID, json) in page.fields {
                    if let record = SinkRecord(json: json) { records[sinkID] = record }
                }
            } while cursor != "0"
            return records
        }
    }

    /// The lock and the reads in one round trip: the reads run after the SET on the server, so what they
    /// see was written before the lock was taken (or by nobody holding it).
    public func acquireReconcileLock(sinkID: String, token: String, milliseconds: Int) throws(RedisError) -> CollectorSnapshot? {
        try withRedis { redis throws(RedisError) in
            let replies = try redis.pipeline([["SET", names.reconcileLockPrefix + sinkID, token, "NX", "PX", String(milliseconds)]]
                                             + snapshotCommands(sinkID))
            if case .error(let text) = replies[0] { throw RedisError.fromReply(text) }
            guard replies[0] != .null else { return nil }
            return try Self.snapshot(Array(replies.dropFirst()))
        }
    }

    public func extendReconcileLock(sinkID: String, token: String, milliseconds: Int) throws(RedisError) -> Bool {
        try withRedis { redis throws(RedisError) in
            try redis.eval(DesiredStateStore.extendScript, keys: [names.reconcileLockPrefix + sinkID], arguments: [token, String(milliseconds)]).integer == 1
        }
    }

    /// A connection that broke is not pooled again, so a second try runs on a fresh one: a Redis hiccup
    /// does not leave the sink locked until the lock expires.
    public func releaseReconcileLock(sinkID: String, token: String) throws(RedisError) {
        let release = { () throws(RedisError) in
            _ = try self.withRedis { redis throws(RedisError) in
                try redis.eval(DesiredStateStore.releaseScript, keys: [self.names.reconcileLockPrefix + sinkID], arguments: [token])
            }
        }
        do {
            try release()
        } catch {
            try release()
        }
    }
}

extension CollectorStorage {
    public func storeDesiredState(sinkID: String, configDigest: String, yaml: String, ownerID: String,
                                  extra: [String: Value]) throws(RedisError) -> DesiredStateStore.StoreResult {
        try storeDesiredState(sinkID: sinkID, configDigest: configDigest, yaml: yaml, ownerID: ownerID, extra: extra, releasing: nil)
    }
}
