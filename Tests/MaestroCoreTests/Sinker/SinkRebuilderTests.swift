import Logging
import MaestroRedis
import MaestroValue
import MaestroTestSupport
import Testing

@testable import MaestroCore

/// A backend plugin stood in for, with a version: the config names the version that built it and the
/// input's `host`. `whileBuilding` runs inside the build (an entry arriving while the plugin runs).
final class VersionedConfigSource: CollectorConfigSource {
    var version = "v1"
    var rejects = false
    var whileBuilding: (() throws -> Void)?
    var builds = 0

    func beginBatch(redis: RedisConnection) {}

    func collectorConfig(for request: CollectorConfigRequest) -> CollectorConfigOutcome {
        builds += 1
        if let hook = whileBuilding {
            whileBuilding = nil
            try? hook()
        }
        if rejects { return .invalid("host is not allowed by plugin \(version)") }
        return .config(yaml: "exporters: {host: \(request.config["host"]?.stringValue ?? "-"), built_by: \(version)}\n")
    }

    func pluginFingerprint(forBackend backend: String) -> String? { "fingerprint-" + version }
}

@Suite("Rebuilding sinks after a plugin change", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct SinkRebuilderTests {
    let names = RedisNames().prefixed(RedisTestServer.uniquePrefix("rebuild"))
    let source = VersionedConfigSource()
    let collectors = RecordingCollectors()

    func connect() throws -> RedisConnection {
        try RedisConnection(url: RedisURL(parsing: try RedisTestServer.url))
    }

    var settings: SinkerSettings { SinkerSettings(names: names, policy: .eager, collectors: collectors, logger: Logger(label: "test")) }

    /// Applies stream entries as the sinker does (the real rules and scripts, on Redis).
    func apply(_ redis: RedisConnection, _ entries: StreamEntry...) throws {
        let processor = SinkEventProcessor(settings: settings, configSource: source)
        _ = try processor.process(entries.map { DeliveredEntry(entry: $0, deliveries: 1, redelivered: false) }, redis: redis)
    }

    func create(_ sinkID: String, id: String, host: String) -> StreamEntry {
        entry([("sink_id", sinkID), ("owner", "o1"), ("backend", "prometheus"), ("config", #"{"host":"\#(host)"}"#), ("operation", "sinks.create")], id: id)
    }

    func update(_ sinkID: String, id: String, host: String) -> StreamEntry {
        entry([("sink_id", sinkID), ("owner", "o1"), ("backend", ""), ("config", #"{"host":"\#(host)"}"#), ("operation", "sinks.update")], id: id)
    }

    func config(_ redis: RedisConnection, _ sinkID: String) throws -> String? { try redis.hget(names.configHash, field: sinkID) }

    @Test("a sink's record keeps its input and plugin; a changed plugin rebuilds it in place, the collector rolls, the stream is untouched")
    func rebuildsInPlace() throws {
        let redis = try connect()
        defer { redis.close() }
        try apply(redis, create("s1", id: "100-0", host: "a.example"))
        let before = try #require(try SinkStore.record(redis, names: names, sinkID: "s1"))
        #expect(before.input == .map(["host": .string("a.example")]))
        #expect(before.pluginFingerprint == "fingerprint-v1")
        collectors.calls.withLock { $0.removeAll() }

        let rebuilder = SinkRebuilder(settings: settings, configSource: source)
        #expect(try rebuilder.candidates(redis).map(\.state) == [.current])
        source.version = "v2"
        #expect(try rebuilder.candidates(redis) == [SinkRebuildCandidate(sinkID: "s1", backend: "prometheus", state: .pluginChanged)])
        let result = rebuilder.rebuild("s1", redis: redis, onlyIfChanged: true)
        #expect(result.outcome == .rebuilt, "\(result)")
        #expect(try config(redis, "s1") == "exporters: {host: a.example, built_by: v2}\n")
        let after = try #require(try SinkStore.record(redis, names: names, sinkID: "s1"))
        // Still the entry it came from: the order guard of later entries is untouched.
        #expect(after.lastEntryID == "100-0")
        #expect(after.pluginFingerprint == "fingerprint-v2")
        #expect(after.input == before.input)
        #expect(collectors.calls.withLock { $0 } == ["update s1 o1"])
        // Orb's services read the sinks stream: a rebuild never writes to it.
        #expect(try redis.command(["EXISTS", names.sinksStream]).integer == 0)

        // Built by this plugin already: a sweep skips it; by hand it is built again, stores nothing new, rolls nothing.
        #expect(rebuilder.rebuild("s1", redis: redis, onlyIfChanged: true).outcome == .skipped)
        #expect(rebuilder.rebuild("s1", redis: redis, onlyIfChanged: false).outcome == .unchanged)
        #expect(collectors.calls.withLock { $0 } == ["update s1 o1"])

        // A later entry is applied over the rebuilt sink as usual.
        try apply(redis, update("s1", id: "101-0", host: "b.example"))
        #expect(try config(redis, "s1") == "exporters: {host: b.example, built_by: v2}\n")
    }

    @Test("a rebuild racing a newer stream entry loses to it: the entry's config, record and collector stay")
    func rebuildLosesToNewerEntry() throws {
        let redis = try connect()
        defer { redis.close() }
        try apply(redis, create("s2", id: "200-0", host: "old.example"))
        source.version = "v2"
        // The newer entry arrives while the plugin builds the rebuild's config.
        let entryRedis = try connect()
        defer { entryRedis.close() }
        source.whileBuilding = { try self.apply(entryRedis, self.update("s2", id: "201-0", host: "new.example")) }
        collectors.calls.withLock { $0.removeAll() }
        let result = SinkRebuilder(settings: settings, configSource: source).rebuild("s2", redis: redis, onlyIfChanged: true)
        #expect(result.outcome == .superseded, "\(result)")
        #expect(source.builds == 3)
        #expect(try config(redis, "s2") == "exporters: {host: new.example, built_by: v2}\n")
        let record = try #require(try SinkStore.record(redis, names: names, sinkID: "s2"))
        #expect(record.lastEntryID == "201-0")
        #expect(record.input == .map(["host": .string("new.example")]))
        // Only the entry's hand-off: the losing rebuild rolls nothing.
        #expect(collectors.calls.withLock { $0 } == ["update s2 o1"])
    }

    @Test("a sink removed while the plugin builds is not resurrected; a rejected input keeps the last good config")
    func removedAndRejected() throws {
        let redis = try connect()
        defer { redis.close() }
        try apply(redis, create("s3", id: "300-0", host: "a.example"), create("s4", id: "301-0", host: "a.example"))
        source.version = "v2"
        let entryRedis = try connect()
        defer { entryRedis.close() }
        source.whileBuilding = {
            try self.apply(entryRedis, entry([("sink_id", "s3"), ("owner", "o1"), ("operation", "sinks.remove")], id: "302-0"))
        }
        let rebuilder = SinkRebuilder(settings: settings, configSource: source)
        #expect(rebuilder.rebuild("s3", redis: redis, onlyIfChanged: true).outcome == .superseded)
        #expect(try config(redis, "s3") == nil)
        #expect(try SinkStore.record(redis, names: names, sinkID: "s3")?.removed == true)
        #expect(try rebuilder.candidates(redis).map(\.sinkID) == ["s4"])

        source.rejects = true
        let rejected = rebuilder.rebuild("s4", redis: redis, onlyIfChanged: true)
        #expect(rejected.outcome == .invalid)
        #expect(try config(redis, "s4") == "exporters: {host: a.example, built_by: v1}\n")
        #expect(try SinkStore.record(redis, names: names, sinkID: "s4")?.pluginFingerprint == "fingerprint-v1")
        let status = try #require(try redis.hget(names.collectorsHash, field: "s4").flatMap { try JSON.decode($0) })
        #expect(status["status"] == .string("provisioning_error"))
        #expect(status["error"]?.stringValue?.contains("host is not allowed by plugin v2") == true)
    }

    @Test("attack: an input nested as deep as an entry may be cannot make the record unwritable; the order guard holds, the input is not kept")
    func deepInputKeepsOrderGuard() throws {
        let redis = try connect()
        defer { redis.close() }
        // As deep as the JSON reader accepts: one level deeper inside the record than the writer allows.
        let deep = #"{"host":"d.example","a":"# + String(repeating: "[", count: 511) + "1" + String(repeating: "]", count: 511) + "}"
        #expect((try? JSON.decode(deep)) != nil)
        try apply(redis, entry([("sink_id", "deep"), ("owner", "o1"), ("backend", "prometheus"), ("config", deep), ("operation", "sinks.create")], id: "500-0"))
        let record = try #require(try SinkStore.record(redis, names: names, sinkID: "deep"))
        #expect(record.lastEntryID == "500-0")
        #expect(record.input == nil)
        #expect(record.pluginFingerprint == nil)
        // An older entry is still refused.
        try apply(redis, update("deep", id: "499-0", host: "older.example"))
        #expect(try config(redis, "deep") == "exporters: {host: d.example, built_by: v1}\n")
        #expect(try SinkRebuilder(settings: settings, configSource: source).candidates(redis).map(\.state) == [.noInput])
    }

    @Test("a record stored before inputs were kept reads, is listed as such and left for its next event")
    func recordWithoutInput() throws {
        let redis = try connect()
        defer { redis.close() }
        try redis.hset(names.sinksHash, field: "old", value: PreviousFormat.liveSink)
        try redis.hset(names.configHash, field: "old", value: "exporters: {}\n")
        let rebuilder = SinkRebuilder(settings: settings, configSource: source)
        #expect(try rebuilder.candidates(redis, backend: "prometheus") == [SinkRebuildCandidate(sinkID: "old", backend: "prometheus", state: .noInput)])
        #expect(try rebuilder.candidates(redis, backend: "otlphttp").isEmpty)
        let result = rebuilder.rebuild("old", redis: redis, onlyIfChanged: false)
        #expect(result.outcome == .skipped)
        #expect(result.detail.contains("next event"))
        #expect(source.builds == 0)
        #expect(try redis.hget(names.sinksHash, field: "old") == PreviousFormat.liveSink)
        // Its next event builds it and keeps the input from then on.
        try apply(redis, update("old", id: "8-0", host: "c.example"))
        #expect(try SinkStore.record(redis, names: names, sinkID: "old")?.input == .map(["host": .string("c.example")]))
    }
}
