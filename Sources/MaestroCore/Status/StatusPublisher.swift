public import MaestroRedis
public import MaestroValue
public import Foundation

/// Orb's sink states (reference §1, §6).
public enum SinkStatus: String, Sendable, CaseIterable {
    case unknown, provisioning, provisioningError = "provisioning_error", active, warning, error, idle
}

/// The one status publisher both roles use: it keeps each sink's state in `orb.maestro.collectors`
/// and adds an Orb-format event to `orb.maestro.sink_status` only when the status or the message
/// changes, atomically (a server-side script), so concurrent writers never publish a change twice.
public enum StatusPublisher {
    public enum Mode: String, Sendable {
        /// Set the status.
        case set
        /// Set the status only if the sink is in provisioning_error now (a fixed config clears it).
        case clearError = "clear_error"
        /// Only merge the extra fields (collector name, config hash…); the status stays as it is.
        case merge
    }

    public static let script = RedisScript("""
    if ARGV[11] ~= '' then
      local sink = redis.call('HGET', KEYS[3], ARGV[1])
      local ok, decoded = pcall(cjson.decode, sink or '')
      if not (ok and type(decoded) == 'table' and decoded.last_entry_id == ARGV[11]) then return 0 end
    end
    local current = redis.call('HGET', KEYS[1], ARGV[1])
    local record = {}
    if current then
      local ok, decoded = pcall(cjson.decode, current)
      if ok and type(decoded) == 'table' then record = decoded end
    end
    if ARGV[8] == 'clear_error' and record.status ~= 'provisioning_error' then return 0 end
    local ok, extra = pcall(cjson.decode, ARGV[7])
    if ok and type(extra) == 'table' then
      for key, value in pairs(extra) do record[key] = value end
    end
    if ARGV[4] ~= '' then record.owner_id = ARGV[4] end
    record.schema_version = tonumber(ARGV[9])
    if ARGV[8] == 'merge' then
      if record.status == nil then record.status = 'unknown' end
      redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
      return 0
    end
    local changed = record.status ~= ARGV[2] or (record.error or '') ~= ARGV[3]
    local previous = record.status
    record.status = ARGV[2]
    record.error = ARGV[3]
    if changed then record.status_changed_at = ARGV[5] end
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
    if not changed then return 0 end
    local events = 1
    if ARGV[10] == '1' and ARGV[2] ~= 'provisioning' and previous ~= 'provisioning' and previous ~= 'active'
       and previous ~= 'warning' and previous ~= 'error' then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'owner_id', record.owner_id or '', 'sink_id', ARGV[1],
        'status', 'provisioning', 'error_message', '', 'timestamp', ARGV[5])
      events = 2
    end
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'owner_id', record.owner_id or '', 'sink_id', ARGV[1],
      'status', ARGV[2], 'error_message', ARGV[3], 'timestamp', ARGV[5])
    return events
    """)

    /// The command publishing `status` for a sink, to be pipelined. `extra` fields (collector name,
    /// namespace, config hash, times) are merged into the stored record. With `throughProvisioning`, a
    /// collector not yet seen provisioning or running gets the `provisioning` event first, in the same
    /// step (Orb's sequence: the cluster accepted it, then what it shows). The reply is how many status
    /// events were added (0 when nothing changed). With `ifCurrentEntry`, nothing is written unless the
    /// sink's record names that stream entry as the last applied (the sinker's status of an entry its
    /// order guard refused as stale is not published).
    public static func command(names: RedisNames, sinkID: String, ownerID: String, status: SinkStatus, message: String = "",
                               extra: [String: Value] = [:], mode: Mode = .set, throughProvisioning: Bool = false,
                               streamMaxLength: Int, ifCurrentEntry entryID: String? = nil, now: Date = Date()) -> [String] {
        script.command(keys: [names.collectorsHash, names.statusStream, names.sinksHash],
                       arguments: [sinkID, status.rawValue, message, ownerID, rfc3339(now), String(streamMaxLength),
                                   (try? JSON.encode(.map(extra))) ?? "{}", mode.rawValue, String(RecordSchema.version),
                                   throughProvisioning ? "1" : "0", entryID ?? ""])
    }

    /// Publishes now, on its own; answers how many status events were added.
    @discardableResult
    public static func publish(_ redis: RedisConnection, names: RedisNames, sinkID: String, ownerID: String, status: SinkStatus,
                               message: String = "", extra: [String: Value] = [:], mode: Mode = .set, throughProvisioning: Bool = false,
                               streamMaxLength: Int) throws(RedisError) -> Int {
        let reply = try redis.pipeline([command(names: names, sinkID: sinkID, ownerID: ownerID, status: status, message: message,
                                                extra: extra, mode: mode, throughProvisioning: throughProvisioning,
                                                streamMaxLength: streamMaxLength)], loading: SinkStore.batchScripts)[0]
        if case .error(let text) = reply { throw RedisError.fromReply(text) }
        return Int(reply.integer ?? 0)
    }

    /// The stored status record of a sink (JSON in the collectors hash), if any.
    public static func record(_ redis: RedisConnection, names: RedisNames, sinkID: String) throws(RedisError) -> Value? {
        guard let json = try redis.hget(names.collectorsHash, field: sinkID) else { return nil }
        return try? JSON.decode(json)
    }

    public static func rfc3339(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
