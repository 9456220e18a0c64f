public import MaestroRedis

/// The writes of the rollout history (`orb.maestro.rollouts`) in Redis.
public enum RolloutHistoryStore {
    /// KEYS: sinks hash, deployment hash, rollouts hash. ARGV: sink id, the history's JSON, the desired
    /// state to store with it ('' for none). A removed sink gets no desired state back from a rollback.
    static let storeScript = RedisScript("""
    if ARGV[3] ~= '' then
      local sink = redis.call('HGET', KEYS[1], ARGV[1])
      if sink then
        local ok, record = pcall(cjson.decode, sink)
        if ok and type(record) == 'table' and record.removed == true then return 0 end
      end
      redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
    end
    redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
    return 1
    """)

    /// KEYS: the requests list. ARGV: how many to take at most (one round trip; LPOP's count needs Redis 6.2).
    static let takeScript = RedisScript("""
    local taken = {}
    for _ = 1, tonumber(ARGV[1]) do
      local sinkID = redis.call('LPOP', KEYS[1])
      if not sinkID then break end
      taken[#taken + 1] = sinkID
    end
    return taken
    """)

    public static func history(_ redis: RedisConnection, names: RedisNames, sinkID: String) throws(RedisError) -> RolloutHistory {
        RolloutHistory(json: try redis.hget(names.rolloutsHash, field: sinkID))
    }

    @discardableResult
    public static func store(_ redis: RedisConnection, names: RedisNames, sinkID: String, history: RolloutHistory,
                             desiredState: String?) throws(RedisError) -> Bool {
        try redis.eval(storeScript, keys: [names.sinksHash, names.deploymentHash, names.rolloutsHash],
                       arguments: [sinkID, history.json, desiredState ?? ""]).integer == 1
    }
}

extension RedisCollectorStorage {
    public func rolloutHistory(of sinkID: String) throws(RedisError) -> RolloutHistory {
        try withRedis { redis throws(RedisError) in try RolloutHistoryStore.history(redis, names: names, sinkID: sinkID) }
    }

    @discardableResult
    public func storeRolloutHistory(_ history: RolloutHistory, of sinkID: String, desiredState: String?) throws(RedisError) -> Bool {
        try withRedis { redis throws(RedisError) in
            try RolloutHistoryStore.store(redis, names: names, sinkID: sinkID, history: history, desiredState: desiredState)
        }
    }

    public func forgetRolloutHistory(sinkID: String) throws(RedisError) {
        _ = try withRedis { redis throws(RedisError) in try redis.command(["HDEL", names.rolloutsHash, sinkID]) }
    }

    public func requestReconcile(sinkID: String) throws(RedisError) {
        _ = try withRedis { redis throws(RedisError) in try redis.command(["RPUSH", names.rollbackRequests, sinkID]) }
    }

    public func takeReconcileRequests(limit: Int) throws(RedisError) -> [String] {
        try withRedis { redis throws(RedisError) in
            let reply = try redis.eval(RolloutHistoryStore.takeScript, keys: [names.rollbackRequests], arguments: [String(max(1, limit))])
            return (reply.array ?? []).compactMap(\.string)
        }
    }
}
