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

    /// KEYS: deployment hash, collectors hash, sinks hash. ARGV: sink id. Deletes the collector's record
    /// only while the sink has no desired state and either its sink is removed or nobody asked for the
    /// collector since the caller looked (the intent is `stop`, or absent as before intents): a create or
    /// an idle event records its intent without the reconcile lock.
    static let forgetScript = RedisScript("""
    if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
    local sink = redis.call('HGET', KEYS[3], ARGV[1])
    local removed = false
    if sink then
      local ok, decoded = pcall(cjson.decode, sink)
      removed = ok and type(decoded) == 'table' and decoded.removed == true
    end
    if not removed then
      local current = redis.call('HGET', KEYS[2], ARGV[1])
      if current then
        local ok, record = pcall(cjson.decode, current)
        if ok and type(record) == 'table' and (record.intent == 'run' or record.intent == 'idle') then return 0 end
      end
    end
    return redis.call('HDEL', KEYS[2], ARGV[1])
    """)

    /// The start of `want` and `claim`: unless the sink (KEYS[1]) is removed (replies {0}) or has no
    /// config (KEYS[2]; replies {-2}), records `intent: run` in the collector's record (KEYS[3]), with the
    /// owner (ARGV[2], may be empty) and the schema version (ARGV[3]); leaves `sink`, `config` and
    /// `encoded` (the record) for what follows.
    private static let recordRunIntent = """
    local sink = redis.call('HGET', KEYS[1], ARGV[1])
    if sink then
      local ok, record = pcall(cjson.decode, sink)
      if ok and type(record) == 'table' and record.removed == true then return {0} end
    end
    local config = redis.call('HGET', KEYS[2], ARGV[1])
    if not config then return {-2} end
    local current = redis.call('HGET', KEYS[3], ARGV[1])
    local collector = {}
    if current then
      local ok, decoded = pcall(cjson.decode, current)
      if ok and type(decoded) == 'table' then collector = decoded end
    end
    if ARGV[2] ~= '' then collector.owner_id = ARGV[2] end
    if collector.status == nil then collector.status = 'unknown' end
    collector.intent = 'run'
    collector.schema_version = tonumber(ARGV[3])
    local encoded = cjson.encode(collector)
    redis.call('HSET', KEYS[3], ARGV[1], encoded)

    """

    /// KEYS: sinks hash, config hash, collectors hash. ARGV: sink id, owner id (may be empty), the
    /// records' schema version. Records that the sink's collector should run (`intent: run`) unless the
    /// sink is removed (0) or has no stored config (-2); replies {1, record}.
    static let wantScript = RedisScript(recordRunIntent + "return {1, encoded}\n")

    /// KEYS: sinks hash, config hash, collectors hash, deployment hash, the sink's reconcile lock.
    /// ARGV: sink id, owner id, schema version, lock token, lock milliseconds. `want`, then — when the
    /// intent was recorded — the reconcile lock (taken, or already held by this token: a re-run after
    /// NOSCRIPT takes it again) and the snapshot, in one step. Replies {code, record, locked, sink,
    /// config, desired state, collector record}; code as `want`'s.
    static let claimScript = RedisScript(recordRunIntent + """
    local holder = redis.call('GET', KEYS[5])
    local locked = 0
    if holder == ARGV[4] then
      locked = 1
    elseif not holder then
      redis.call('SET', KEYS[5], ARGV[4], 'PX', ARGV[5])
      locked = 1
    end
    return {1, encoded, locked, sink or false, config, redis.call('HGET', KEYS[4], ARGV[1]) or false, encoded}
    """)

    /// KEYS: the sink's reconcile lock. ARGV: token, milliseconds. Extends the lock if the token still
    /// holds it (1), else 0: the pass lost it (it outlived the lock) and must not write.
    static let extendScript = RedisScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0")

    /// KEYS: the sink's reconcile lock. ARGV: token. Releases the lock if the token holds it.
    static let releaseScript = RedisScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")

    /// KEYS: sinks hash, collectors hash, deployment hash. ARGV: sink id, guard, intent (`stop` or
    /// `idle`), the records' schema version. Records that the collector should not run: -1 when refused
    /// (the guard and a live sink), 0 when there is nothing to stop (no record, no desired state), 1.
    static let stopScript = RedisScript("""
    if ARGV[2] == 'unless_live' then
      local sink = redis.call('HGET', KEYS[1], ARGV[1])
      if sink then
        local ok, record = pcall(cjson.decode, sink)
        if ok and type(record) == 'table' and record.removed ~= true then return -1 end
      end
    end
    local current = redis.call('HGET', KEYS[2], ARGV[1])
    if not current and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then return 0 end
    local collector = {}
    if current then
      local ok, decoded = pcall(cjson.decode, current)
      if ok and type(decoded) == 'table' then collector = decoded end
    end
    if collector.status == nil then collector.status = 'unknown' end
    collector.intent = ARGV[3]
    collector.schema_version = tonumber(ARGV[4])
    redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(collector))
    return 1
    """)

    /// The digest `store` compares with the stored config.
    public static func digest(ofConfig config: String) -> String {
        RedisScript.sha1Hex(config)
    }

    /// Stores `yaml` as the sink's desired state if the sink is live and its config is still the one
    /// whose digest is given, merging `extra` into the collector's record in the same step.
    public static func store(_ redis: RedisConnection, names: RedisNames, sinkID: String, configDigest: String, yaml: String,
                             ownerID: String, extra: [String: Value]) throws(RedisError) -> StoreResult {
        let reply = try redis.pipeline([storeCommand(names: names, sinkID: sinkID, configDigest: configDigest, yaml: yaml, ownerID: ownerID,
                                                     extra: extra)], loading: [storeScript])[0]
        if case .error(let text) = reply { throw RedisError.fromReply(text) }
        return try storeResult(reply)
    }

    static func storeCommand(names: RedisNames, sinkID: String, configDigest: String, yaml: String, ownerID: String,
                             extra: [String: Value]) -> [String] {
        storeScript.command(keys: [names.sinksHash, names.configHash, names.deploymentHash, names.collectorsHash],
                            arguments: [sinkID, configDigest, yaml, (try? JSON.encode(.map(extra))) ?? "{}", ownerID, String(RecordSchema.version)])
    }

    static func storeResult(_ reply: RedisReply) throws(RedisError) -> StoreResult {
        let parts = reply.array ?? []
        switch parts.first?.integer {
        case 1: return .stored(record: try record(in: parts, of: "desired-state"))
        case 0: return .tombstoned
        case -1: return .configChanged
        case -2: return .noConfig
        default: throw RedisError(kind: .protocolViolation, message: "unexpected reply from the desired-state script")
        }
    }

    /// The reply of `want` or `claim` (which begins as `want`'s).
    static func intentResult(_ parts: [RedisReply], of script: String) throws(RedisError) -> IntentResult {
        switch parts.first?.integer {
        case 1: return .recorded(record: try record(in: parts, of: script))
        case 0: return .tombstoned
        case -2: return .noConfig
        default: throw RedisError(kind: .protocolViolation, message: "unexpected reply from the \(script) script")
        }
    }

    /// The collector record a script answered with, second in its reply.
    private static func record(in parts: [RedisReply], of script: String) throws(RedisError) -> Value {
        guard let json = parts.dropFirst().first?.string, let record = try? JSON.decode(json) else {
            throw RedisError(kind: .protocolViolation, message: "the \(script) script returned no collector record")
        }
        return record
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

    /// How a create's intent was recorded.
    public enum IntentResult: Sendable, Equatable {
        /// Recorded; the collector's record as it is now.
        case recorded(record: Value)
        /// The sink was removed: nothing recorded.
        case tombstoned
        /// The sink has no stored config.
        case noConfig
    }

    /// What a caller wants of the collector (kept in its record as `intent`); the reconcile acts on it.
    public enum Intent: String, Sendable {
        case run
        /// Not running, record and status kept (Orb's idle sinks).
        case idle
        /// Not running, record gone once the objects are.
        case stop
    }

    /// Records that the sink's collector should run, unless the sink is removed or has no config.
    public static func want(_ redis: RedisConnection, names: RedisNames, sinkID: String, ownerID: String) throws(RedisError) -> IntentResult {
        let reply = try redis.eval(wantScript, keys: [names.sinksHash, names.configHash, names.collectorsHash],
                                   arguments: [sinkID, ownerID, String(RecordSchema.version)])
        return try intentResult(reply.array ?? [], of: "intent")
    }

    /// Records that the collector should not run (`stop` or `idle`), within `removalGuard`.
    public static func stop(_ redis: RedisConnection, names: RedisNames, sinkID: String, intent: Intent,
                            guard removalGuard: RemovalGuard) throws(RedisError) -> RemovalResult {
        let reply = try redis.eval(stopScript, keys: [names.sinksHash, names.collectorsHash, names.deploymentHash],
                                   arguments: [sinkID, removalGuard.rawValue, intent.rawValue, String(RecordSchema.version)])
        switch reply.integer {
        case -1: return .refusedLive
        case 0: return .absent
        default: return .removed
        }
    }

    /// Deletes the collector's record unless the sink has a desired state again, or is live and a create
    /// or an idle event asked for the collector since; true when deleted.
    @discardableResult
    public static func forgetCollector(_ redis: RedisConnection, names: RedisNames, sinkID: String) throws(RedisError) -> Bool {
        try redis.eval(forgetScript, keys: [names.deploymentHash, names.collectorsHash, names.sinksHash], arguments: [sinkID]).integer == 1
    }
}
