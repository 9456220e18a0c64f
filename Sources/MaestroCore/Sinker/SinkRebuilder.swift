internal import Logging
public import MaestroRedis
internal import MaestroValue
internal import CoreMetrics
internal import Foundation

/// A stored sink as a rebuild sees it, before anything runs.
public struct SinkRebuildCandidate: Sendable, Equatable {
    public enum State: String, Sendable {
        /// Built by another version of its backend's plugin (or by none recorded, with its input kept).
        case pluginChanged = "plugin_changed"
        /// Built by the plugin in use.
        case current
        /// Stored before inputs were kept: nothing to build from; its next event rebuilds it.
        case noInput = "no_input"
        /// No plugin serves its backend now.
        case noPlugin = "no_plugin"
    }

    public var sinkID: String
    public var backend: String
    public var state: State

    public init(sinkID: String, backend: String, state: State) {
        self.sinkID = sinkID
        self.backend = backend
        self.state = state
    }
}

/// What rebuilding one sink did.
public struct SinkRebuildResult: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        /// A new config is stored and the collector handed off (it rolls).
        case rebuilt
        /// The plugin built the config stored already: the record notes the plugin, nothing rolls.
        case unchanged
        /// A stream entry (or another rebuild) changed the sink meanwhile: the newer state stays.
        case superseded
        /// The plugin rejects the kept input: the last good config stays, the sink is in provisioning_error.
        case invalid
        /// The plugin failed (or Redis, or the hand-off): nothing stored; the next sweep tries again.
        case failed
        /// Nothing to do: no input kept, removed, no plugin for its backend, or already built by this plugin.
        case skipped
    }

    public var sinkID: String
    public var backend: String
    public var outcome: Outcome
    /// Why, for `failed`, `invalid`, `skipped` (scrubbed of the sink's secrets by the config source).
    public var detail: String

    public init(sinkID: String, backend: String, outcome: Outcome, detail: String = "") {
        self.sinkID = sinkID
        self.backend = backend
        self.outcome = outcome
        self.detail = detail
    }
}

/// Rebuilds stored sinks' collector configs from the inputs their records keep, with the plugins in
/// use (DESIGN "Plugins": a changed backend plugin rebuilds its sinks). It never writes to the sinks
/// stream (Orb's own services read it): it goes through the same store and hand-off as a stream entry,
/// with a compare-and-set on the whole record read before the plugin ran, so that a rebuild never
/// overwrites an entry (or another rebuild) that arrived meanwhile. One thread at a time.
public final class SinkRebuilder {
    public let settings: SinkerSettings
    public let configSource: any CollectorConfigSource

    public init(settings: SinkerSettings, configSource: any CollectorConfigSource) {
        self.settings = settings
        self.configSource = configSource
    }

    /// Stores the rebuilt config and the record only when the record is still, byte for byte, the one
    /// the rebuild read. 0: superseded; 1: stored, the config changed; 2: only the record (same config).
    public static let script = RedisScript("""
    local current = redis.call('HGET', KEYS[1], ARGV[1])
    if current ~= ARGV[2] then return 0 end
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
    if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[4] then return 2 end
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
    return 1
    """)

    /// The live sinks selected (`backend` and `sinkID` nil: all), in sink id order, with what a rebuild
    /// would start from. Tombstones and sinks never created are left out. Reads only.
    public func candidates(_ redis: RedisConnection, backend: String? = nil, sinkID: String? = nil) throws(RedisError) -> [SinkRebuildCandidate] {
        configSource.beginBatch(redis: redis)
        var records: [(String, SinkRecord)] = []
        if let sinkID {
            if let record = try SinkStore.record(redis, names: settings.names, sinkID: sinkID) { records.append((sinkID, record)) }
        } else {
            var cursor = "0"
            repeat {
                let page = try redis.hscan(settings.names.sinksHash, cursor: cursor, count: 200)
                cursor = page.cursor
                for (id, json) in page.fields {
                    if let record = SinkRecord(json: json) { records.append((id, record)) }
                }
            } while cursor != "0"
        }
        return records.compactMap { id, record in
            guard !record.removed, record.created, let recordBackend = record.backend else { return nil }
            if let backend, recordBackend != backend { return nil }
            return SinkRebuildCandidate(sinkID: id, backend: recordBackend, state: state(of: record, backend: recordBackend))
        }.sorted { $0.sinkID < $1.sinkID }
    }

    private func state(of record: SinkRecord, backend: String) -> SinkRebuildCandidate.State {
        guard record.input != nil else { return .noInput }
        guard let fingerprint = configSource.pluginFingerprint(forBackend: backend) else { return .noPlugin }
        return record.pluginFingerprint == fingerprint ? .current : .pluginChanged
    }

    /// Rebuilds one sink with the plugins in use, from its record as it is now. `onlyIfChanged`: a
    /// sink already built by this plugin is skipped (the sweeps after a reload); by hand, every
    /// selected sink is built again.
    public func rebuild(_ sinkID: String, redis: RedisConnection, onlyIfChanged: Bool) -> SinkRebuildResult {
        configSource.beginBatch(redis: redis)
        let raw: String
        let record: SinkRecord
        do {
            guard let json = try redis.hget(settings.names.sinksHash, field: sinkID), let parsed = SinkRecord(json: json) else {
                return SinkRebuildResult(sinkID: sinkID, backend: "", outcome: .skipped, detail: "no such sink")
            }
            (raw, record) = (json, parsed)
        } catch {
            return counted(SinkRebuildResult(sinkID: sinkID, backend: "", outcome: .failed, detail: "Redis: \(error.message)"))
        }
        guard !record.removed, record.created, let backend = record.backend else {
            return SinkRebuildResult(sinkID: sinkID, backend: record.backend ?? "", outcome: .skipped, detail: "removed or never created")
        }
        let state = state(of: record, backend: backend)
        switch state {
        case .noInput:
            return SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .skipped, detail: "no input kept: rebuilt at its next event")
        case .noPlugin:
            return SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .skipped, detail: "no plugin serves its backend")
        case .current where onlyIfChanged:
            return SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .skipped, detail: "built by this plugin already")
        case .current, .pluginChanged:
            break
        }
        let request = CollectorConfigRequest(operation: .update, sinkID: sinkID, ownerID: record.ownerID, backend: backend,
                                             config: record.input ?? .map([:]))
        switch configSource.collectorConfig(for: request) {
        case .config(let yaml):
            var rebuilt = record
            rebuilt.pluginFingerprint = configSource.pluginFingerprint(forBackend: backend)
            rebuilt.updatedAtMilliseconds = Int64(Date().timeIntervalSince1970 * 1000)
            let reply: RedisReply
            do {
                reply = try redis.eval(Self.script, keys: [settings.names.sinksHash, settings.names.configHash],
                                       arguments: [sinkID, raw, rebuilt.json, yaml])
            } catch {
                return counted(SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .failed, detail: "Redis: \(error.message)"))
            }
            switch reply {
            case .integer(0):
                return counted(SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .superseded,
                                                 detail: "the sink changed meanwhile; the newer state stays"))
            case .integer(2):
                return counted(SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .unchanged))
            case .integer(1):
                if let failure = handOff(sinkID, ownerID: record.ownerID) {
                    // The config is stored: the resync renders it again and rolls the collector.
                    return counted(SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .rebuilt,
                                                     detail: "stored; the hand-off failed (\(failure)): the next resync rolls it"))
                }
                return counted(SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .rebuilt))
            default:
                return counted(SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .failed, detail: "unexpected reply from the rebuild script"))
            }
        case .invalid(let message):
            // Published only while the record still names the entry the rebuild started from.
            let command = StatusPublisher.command(names: settings.names, sinkID: sinkID, ownerID: record.ownerID, status: .provisioningError,
                                                  message: "rebuilt with a changed plugin: \(message) (the collector keeps its last good config)",
                                                  streamMaxLength: settings.streamMaxLength, ifCurrentEntry: record.lastEntryID)
            do {
                _ = try redis.pipeline([command], loading: [StatusPublisher.script])
            } catch {
                return counted(SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .failed, detail: "Redis: \(error.message)"))
            }
            return counted(SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .invalid, detail: message))
        case .failed(let reason, _, _):
            return counted(SinkRebuildResult(sinkID: sinkID, backend: backend, outcome: .failed, detail: reason))
        }
    }

    /// As a stream entry's: an update of the sink's collector under the `eager` policy (the others
    /// store configs only). Nil on success or when a newer event owns the collector.
    private func handOff(_ sinkID: String, ownerID: String) -> String? {
        guard let collectors = settings.collectors, settings.policy == .eager else { return nil }
        do {
            try collectors.update(sinkID: sinkID, ownerID: ownerID)
            return nil
        } catch where error.kind == .notFound {
            return nil
        } catch {
            return error.message
        }
    }

    private func counted(_ result: SinkRebuildResult) -> SinkRebuildResult {
        Counter(label: "maestro_sink_rebuilds_total", dimensions: [("backend", result.backend), ("outcome", result.outcome.rawValue)]).increment()
        let metadata: Logger.Metadata = ["sink.id": "\(result.sinkID)", "sink.backend": "\(result.backend)", "rebuild.outcome": "\(result.outcome.rawValue)",
                                         "reason": "\(result.detail)"]
        switch result.outcome {
        case .failed, .invalid: settings.logger.warning("sink rebuild", metadata: metadata)
        default: settings.logger.debug("sink rebuild", metadata: metadata)
        }
        return result
    }
}
