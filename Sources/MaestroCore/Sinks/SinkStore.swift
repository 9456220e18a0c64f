public import MaestroRedis
public import MaestroValue

/// What maestro keeps per sink in `orb.sinker.sinks` (JSON): who owns it, its backend, the id of the
/// last stream entry applied to it, whether it was removed (a tombstone), and whether it was ever
/// created (`created: false`, written only then: a sink whose create was rejected as invalid); for a
/// live sink, the input its collector config was built from and the fingerprint of the plugin that
/// built it, so that a changed plugin can rebuild the config without a new event (`SinkRebuilder`).
public struct SinkRecord: Sendable, Equatable {
    public var ownerID: String
    public var backend: String?
    public var lastEntryID: String
    public var removed: Bool
    /// False while no create or update of the sink was ever applied (its create was invalid): its next
    /// update acts as a create, as in Orb. A record without the field was created.
    public var created: Bool
    public var updatedAtMilliseconds: Int64
    /// The sink's config as the entry that built the stored collector config carried it (Orb-encrypted
    /// values still encrypted: it may hold credentials, as the config hash does). Nil in a tombstone,
    /// and in records written before inputs were kept: such a sink is rebuilt at its next event.
    public var input: Value?
    /// The fingerprint of the backend plugin that built the stored config (`PluginManifest.fingerprint`).
    public var pluginFingerprint: String?

    public init(ownerID: String, backend: String?, lastEntryID: String, removed: Bool, created: Bool = true, updatedAtMilliseconds: Int64,
                input: Value? = nil, pluginFingerprint: String? = nil) {
        self.ownerID = ownerID
        self.backend = backend
        self.lastEntryID = lastEntryID
        self.removed = removed
        self.created = created
        self.updatedAtMilliseconds = updatedAtMilliseconds
        self.input = input
        self.pluginFingerprint = pluginFingerprint
    }

    public var json: String {
        var entries: [String: Value] = ["owner": .string(ownerID), "last_entry_id": .string(lastEntryID),
                                        "removed": .bool(removed), "updated_at": .int(updatedAtMilliseconds),
                                        RecordSchema.field: .int(RecordSchema.version)]
        if let backend { entries["backend"] = .string(backend) }
        if !created { entries["created"] = .bool(false) }
        if let input {
            var kept = entries
            kept["input"] = input
            if let pluginFingerprint { kept["plugin_fingerprint"] = .string(pluginFingerprint) }
            if let encoded = try? JSON.encode(.map(kept)) { return encoded }
            // An input as deep as an entry may carry is one level too deep inside the record: it is not
            // kept (the sink is rebuilt at its next event), the record and its order guard are.
        }
        return (try? JSON.encode(.map(entries))) ?? "{}"
    }

    public init?(json: String) {
        guard let value = try? JSON.decode(json), let lastEntryID = value["last_entry_id"]?.stringValue else { return nil }
        self.init(ownerID: value["owner"]?.stringValue ?? "", backend: value["backend"]?.stringValue, lastEntryID: lastEntryID,
                  removed: value["removed"]?.boolValue ?? false, created: value["created"]?.boolValue ?? true,
                  updatedAtMilliseconds: value["updated_at"]?.intValue ?? 0,
                  input: value["input"].flatMap { $0.isNull ? nil : $0 }, pluginFingerprint: value["plugin_fingerprint"]?.stringValue)
    }
}

/// How a compare-and-set of a sink's state ended.
public enum SinkStoreResult: Sendable, Equatable {
    /// The effect was stored.
    case applied
    /// This very entry was applied before (a redelivery after a crash): nothing changed.
    case alreadyApplied
    /// A newer entry was applied to the sink already: this one is skipped.
    case stale
}

/// The atomic, ordered writes of the sinker role: every effect compares the entry's id with the last
/// one applied to the sink and writes only when it is newer, in one server-side script, so that
/// replicas, reclaimed entries and replays never apply an older event over a newer one.
public enum SinkStore {
    public enum Action: String, Sendable {
        /// Store the config and the record.
        case apply
        /// Delete the config, leave a tombstone.
        case remove
        /// Keep the last good config; only record that this entry was handled.
        case invalid
    }

    /// The scripts a sinker batch pipelines together. Whoever finds one of them missing (NOSCRIPT after
    /// a restart) loads them all, at once: were one known without the other, its commands would run in
    /// the first pass of a pipeline and again in the re-run.
    public static let batchScripts = [script, StatusPublisher.script]

    public static let script = RedisScript("""
    local function parse(id)
      local ms, seq = string.match(id, "^(%d+)-(%d+)$")
      if not ms then return tonumber(id) or 0, 0 end
      return tonumber(ms), tonumber(seq)
    end
    local current = redis.call('HGET', KEYS[1], ARGV[1])
    if current then
      local ok, record = pcall(cjson.decode, current)
      if ok and type(record) == 'table' and type(record.last_entry_id) == 'string' then
        local last_ms, last_seq = parse(record.last_entry_id)
        local new_ms, new_seq = parse(ARGV[2])
        if last_ms > new_ms or (last_ms == new_ms and last_seq > new_seq) then return 0 end
        if last_ms == new_ms and last_seq == new_seq then return 2 end
      end
    end
    if ARGV[3] == 'apply' then
      redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
    elseif ARGV[3] == 'remove' then
      redis.call('HDEL', KEYS[2], ARGV[1])
    end
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
    return 1
    """)

    /// The EVALSHA command for one effect, to be pipelined; see `result(of:)`.
    public static func command(names: RedisNames, sinkID: String, orderingID: String, action: Action, record: SinkRecord,
                               configYAML: String = "") -> [String] {
        script.command(keys: [names.sinksHash, names.configHash],
                       arguments: [sinkID, orderingID, action.rawValue, record.json, configYAML])
    }

    public static func result(of reply: RedisReply) throws(RedisError) -> SinkStoreResult {
        switch reply {
        case .integer(1): return .applied
        case .integer(2): return .alreadyApplied
        case .integer(0): return .stale
        case .error(let text): throw RedisError.fromReply(text)
        default: throw RedisError(kind: .protocolViolation, message: "unexpected reply from the sink store script")
        }
    }

    public static func record(_ redis: RedisConnection, names: RedisNames, sinkID: String) throws(RedisError) -> SinkRecord? {
        try redis.hget(names.sinksHash, field: sinkID).flatMap(SinkRecord.init(json:))
    }
}
