public import MaestroRedis
public import MaestroValue

/// The only writes of the desired state (`orb.maestro.otelCollector`). Each one decides on the sink's
/// **current** record and config inside one server-side script, never on what a caller read earlier:
/// a hand-off, a gRPC call or a resync that was delayed (a crash, a Redis outage, a paused replica)
/// can then never undo a newer event. A tombstoned sink gets no desired state; a desired state is
/// stored only from the config that is stored now; a removal leaves a sink alone that a newer event
/// made live again.
public enum DesiredStateStore {
    /// How a store of rendered objects ended.
    public enum StoreResult: Sendable, Equatable {
        /// Stored; the collector's record (fields merged) as it is now.
        case stored(record: Value)
        /// The sink was removed (its record is a tombstone): any desired state was deleted, nothing stored.
        case tombstoned
        /// The config changed since it was rendered: render again from the current one.
        case configChanged
        /// The sink has no stored config.
        case noConfig
    }

    /// Which removals go ahead.
    public enum RemovalGuard: String, Sendable {
        /// Only while the sink's record is a tombstone or the sink has no record (the sinker's removals,
        /// and any caller under the `eager` policy, where the collector follows the sink).
        case unlessLive = "unless_live"
        /// Always (an idle teardown, which keeps the config).
        case always
    }

    /// KEYS: sinks hash, config hash, deployment hash, collectors hash.
    /// ARGV: sink id, SHA-1 of the config the objects were rendered from, the objects' YAML, the
    /// collector record's fields to merge (JSON), owner id (may be empty), the records' schema version.
    static let storeScript = RedisScript("""
    local sink = redis.call('HGET', KEYS[1], ARGV[1])
    if sink then
      local ok, record = pcall(cjson.decode, sink)
      if ok and type(record) == 'table' and record.removed == true then
        redis.call('HDEL', KEYS[3], ARGV[1])
        return {0}
      end
    end
    local config = redis.call('HGET', KEYS[2], ARGV[1])
    if not config then return {-2} end
    if redis.sha1hex(config) ~= ARGV[2] then return {-1} end
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
    local current = redis.call('HGET', KEYS[4], ARGV[1])
    local collector = {}
    if current then
      local ok, decoded = pcall(cjson.decode, current)
      if ok and type(decoded) == 'table' then collector = decoded end
    end
    local ok, extra = pcall(cjson.decode, ARGV[4])
    if ok and type(extra) == 'table' then
      for key, value in pairs(extra) do collector[key] = value end
    end
    if ARGV[5] ~= '' then collector.owner_id = ARGV[5] end
    if collector.status == nil then collector.status = 'unknown' end
    collector.schema_version = tonumber(ARGV[6])
    local encoded = cjson.encode(collector)
    redis.call('HSET', KEYS[4], ARGV[1], encoded)
    return {1, encoded}
    """)

    /// KEYS: sinks hash, deployment hash. ARGV: sink id, guard. Replies -1 when refused (the sink is
    /// live), else how many entries were deleted.
    static let removeScript = RedisScript("""
    if ARGV[2] == 'unless_live' then
      local sink = redis.call('HGET', KEYS[1], ARGV[1])
      if sink then
        local ok, record = pcall(cjson.decode, sink)
        if ok and type(record) == 'table' and record.removed ~= true then return -1 end
      end
    end
    return redis.call('HDEL', KEYS[2], ARGV[1])
    """)

    /// KEYS: deployment hash, collectors hash. ARGV: sink id. Deletes the collector's record only while
    /// the sink still has no desired state (a store may have come in since the caller looked).
    static let forgetScript = RedisScript("""
    if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
    return redis.call('HDEL', KEYS[2], ARGV[1])
    """)

    /// The digest `store` compares with the stored config.
    public static func digest(ofConfig config: String) -> String {
        RedisScript.sha1Hex(config)
    }

    /// Stores `yaml` as the sink's desired state if the sink is live and its config is still the one
    /// whose digest is given, merging `extra` into the collector's record in the same step.
    public static func store(_ redis: RedisConnection, names: RedisNames, sinkID: String, configDigest: String, yaml: String,
                             ownerID: String, extra: [String: Value]) throws(RedisError) -> StoreResult {
        let reply = try redis.eval(storeScript, keys: [names.sinksHash, names.configHash, names.deploymentHash, names.collectorsHash],
                                   arguments: [sinkID, configDigest, yaml, (try? JSON.encode(.map(extra))) ?? "{}", ownerID,
                                               String(RecordSchema.version)])
        let parts = reply.array ?? []
        switch parts.first?.integer {
        case 1:
            guard let json = parts.dropFirst().first?.string, let record = try? JSON.decode(json) else {
                throw RedisError(kind: .protocolViolation, message: "the desired-state script returned no collector record")
            }
            return .stored(record: record)
        case 0: return .tombstoned
        case -1: return .configChanged
        case -2: return .noConfig
        default: throw RedisError(kind: .protocolViolation, message: "unexpected reply from the desired-state script")
        }
    }

    public enum RemovalResult: Sendable, Equatable {
        case removed
        /// The sink had no desired state.
        case absent
        /// The sink is live: nothing was removed.
        case refusedLive
    }

    /// Deletes the sink's desired state within `removalGuard`.
    public static func remove(_ redis: RedisConnection, names: RedisNames, sinkID: String,
                              guard removalGuard: RemovalGuard) throws(RedisError) -> RemovalResult {
        let reply = try redis.eval(removeScript, keys: [names.sinksHash, names.deploymentHash], arguments: [sinkID, removalGuard.rawValue])
        switch reply.integer {
        case -1: return .refusedLive
        case 0: return .absent
        default: return .removed
        }
    }

    /// Deletes the collector's record unless the sink has a desired state again; true when deleted.
    @discardableResult
    public static func forgetCollector(_ redis: RedisConnection, names: RedisNames, sinkID: String) throws(RedisError) -> Bool {
        try redis.eval(forgetScript, keys: [names.deploymentHash, names.collectorsHash], arguments: [sinkID]).integer == 1
    }
}
