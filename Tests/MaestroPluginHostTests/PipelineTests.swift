import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Synchronization
import Testing

@testable import MaestroPluginHost

/// A plugins folder with the shipped plugins plus test backends that misbehave on purpose.
func testPlugins(pluginKeyPrefix: String = RedisNames().pluginKeyPrefix) throws -> TemporaryDirectory {
    let directory = try TemporaryDirectory()
    for name in ["prometheus", "otlphttp", "_lib"] {
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/" + name, toPath: directory.path + "/" + name)
    }
    func backend(_ name: String, _ body: String) throws {
        try directory.write("\(name)/schema.lua", "return { name = '\(name)', version = '1.0.0', binds = { sink_backend = '\(name)' } }")
        try directory.write("\(name)/handler.lua", "local handler = {}\nfunction handler.on_sink_create(sink)\n\(body)\nend\nreturn handler\n")
    }
    try backend("flaky", "error('backend is flaky')")
    try backend("failing", "maestro.fail('this sink cannot work')")
    try backend("looping", "while true do end")
    try backend("nothing", "return nil")
    try backend("leaky", "error('cannot log in with ' .. tostring(sink.config.authentication and sink.config.authentication.password))")
    try backend("scoped", """
    local prefix = maestro.redis.set and nil
    assert(maestro.redis.hset('\(pluginKeyPrefix)scoped:seen', sink.id, maestro.ctx.event_id))
    local ok, err = pcall(maestro.redis.set, 'orb.sinker.sinks', 'x')
    assert(not ok and tostring(err):find('outside this plugin'), 'write outside the prefix must raise')
    return { receivers = { seen = sink.id, deliveries = maestro.ctx.deliveries } }
    """)
    return directory
}

@Suite("Sink pipeline against a real Redis", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct PipelineTests {
    @Test("an entry in flight longer than min-idle stays this consumer's: its delivery count does not grow, no other replica takes it")
    func ownInFlightEntryNotClaimed() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let release = DispatchSemaphore(value: 0)
        let handledByOther = Mutex(0)
        func consumer(_ name: String, _ process: @escaping @Sendable ([DeliveredEntry]) -> [EntryOutcome]) throws -> StreamConsumer {
            let options = StreamConsumerOptions(stream: fixture.names.sinksStream, group: fixture.names.sinkerGroup, consumerName: name, workers: 1,
                                                blockMilliseconds: 50, minIdleMilliseconds: 300, deadLetterStream: fixture.names.deadLetterStream)
            return StreamConsumer(options: options, redisURL: try RedisURL(parsing: fixture.redisURL), logger: Logger(label: "test"),
                                  routingKey: { $0["sink_id"] ?? "" }, makeProcessor: { _ in ClosureProcessor(process) })
        }
        let holder = try consumer("holder") { batch in
            release.wait()
            return batch.map { _ in .acknowledged }
        }
        holder.start()
        defer { holder.stop() }
        let id = try fixture.add(redis, create("held", sinkConfig("https://one.example/write")))
        func pending() -> PendingEntry? {
            (try? redis.xpending(fixture.names.sinksStream, group: fixture.names.sinkerGroup))?.first { $0.id == id }
        }
        #expect(eventually { pending() != nil })
        let other = try consumer("other") { batch in
            handledByOther.withLock { $0 += batch.count }
            return batch.map { _ in .acknowledged }
        }
        other.start()
        defer { other.stop() }
        // Held past min-idle twice over, until a reclaim scan refreshed it (its idle time drops) after that.
        let heldSince = Date()
        var lastIdle: Int64 = .max
        #expect(eventually(timeout: 30) {
            let idle = pending()?.idleMilliseconds ?? .max
            defer { lastIdle = idle }
            return Date().timeIntervalSince(heldSince) > 0.6 && idle < lastIdle
        }, "the holder refreshed its in-flight entry")
        let entry = try #require(pending())
        #expect(entry.consumer == "holder")
        #expect(entry.deliveries == 1, "refreshing an in-flight entry counts no delivery")
        #expect(handledByOther.withLock { $0 } == 0)
        release.signal()
        #expect(eventually { pending() == nil })
    }

    @Test("an entry that a blocked read returns after the stop was asked is handled and acknowledged, not left pending")
    func stopDuringBlockedRead() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let consumer = try fixture.consumer(workers: 1, blockMilliseconds: 5_000)
        consumer.start()
        try fixture.add(redis, create("first", sinkConfig("https://one.example/write")))
        #expect(eventually { (try? redis.hget(fixture.names.configHash, field: "first")) != nil })
        let stopped = DispatchSemaphore(value: 0)
        Thread {
            consumer.stop()
            stopped.signal()
        }.start()
        #expect(eventually { consumer.isStopRequested })
        try fixture.add(redis, create("late", sinkConfig("https://two.example/write")))
        #expect(stopped.wait(timeout: .now() + 30) == .success)
        let pending = try redis.xpendingSummary(fixture.names.sinksStream, group: fixture.names.sinkerGroup).count
        #expect(pending == 0, "what was delivered to the stopping consumer was handled")
    }

    @Test("create, update, invalid update, remove: configs, records, statuses and hand-offs")
    func lifecycle() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let collectors = RecordingCollectorService()
        let consumer = try fixture.consumer(collectors: collectors)
        consumer.start()
        defer { consumer.stop() }

        let created = try fixture.add(redis, create("s1", sinkConfig("https://one.example/write")))
        #expect(try fixture.waitUntilDrained(redis))
        let first = try YAML.parse(try #require(try redis.hget(fixture.names.configHash, field: "s1")))
        #expect(first["exporters"]?["prometheusremotewrite"]?["endpoint"] == .string("https://one.example/write"))
        let record = try #require(try SinkStore.record(redis, names: fixture.names, sinkID: "s1"))
        #expect(record.backend == "prometheus")
        #expect(record.lastEntryID == created)

        try fixture.add(redis, update("s1", sinkConfig("https://two.example/write")))
        #expect(try fixture.waitUntilDrained(redis))
        let second = try YAML.parse(try #require(try redis.hget(fixture.names.configHash, field: "s1")))
        #expect(second["exporters"]?["prometheusremotewrite"]?["endpoint"] == .string("https://two.example/write"), "the update used the stored backend")

        // An invalid update: provisioning_error naming the field, once; the last good config stays.
        try fixture.add(redis, update("s1", sinkConfig("two.example/write")))
        try fixture.add(redis, update("s1", sinkConfig("two.example/write")))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.hget(fixture.names.configHash, field: "s1").flatMap { try? YAML.parse($0) } == second)
        let statuses = try redis.xrange(fixture.names.statusStream)
        #expect(statuses.count == 1)
        #expect(statuses.first?["status"] == "provisioning_error")
        #expect(statuses.first?["error_message"]?.contains("exporter.remote_host") == true)
        #expect(statuses.first?["sink_id"] == "s1")
        #expect(statuses.first?["owner_id"] == "owner-1")

        // A fixed config clears the error.
        try fixture.add(redis, update("s1", sinkConfig("https://three.example/write")))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.xrange(fixture.names.statusStream).last?["status"] == "unknown")

        try fixture.add(redis, remove("s1"))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.hget(fixture.names.configHash, field: "s1") == nil)
        #expect(try SinkStore.record(redis, names: fixture.names, sinkID: "s1")?.removed == true)
        #expect(collectors.calls == [.create("s1", owner: "owner-1"), .update("s1", owner: "owner-1"), .update("s1", owner: "owner-1"), .remove("s1")])
    }

    @Test("other policies store configs only, but removals always reach the collectors")
    func policies() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let collectors = RecordingCollectorService()
        let consumer = try fixture.consumer(collectors: collectors, policy: .external)
        consumer.start()
        defer { consumer.stop() }
        try fixture.add(redis, create("p1", sinkConfig("https://a.example/w")))
        try fixture.add(redis, remove("p1"))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(collectors.calls == [.remove("p1")])
    }

    @Test("an update of an unknown sink with a backend acts as a create; a late create cannot resurrect a removed sink")
    func orbSemantics() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let collectors = RecordingCollectorService()
        // The create is written with an id older than the remove that follows it, then replayed late.
        let createID = try fixture.add(redis, create("late", sinkConfig("https://late.example/w")))
        try fixture.add(redis, [("sink_id", "u1"), ("owner", "o"), ("backend", "otlphttp"),
                                ("config", #"{"exporter":{"endpoint":"https://u.example"},"authentication":{"type":"bearertokenauth","scheme":"Bearer","token":"t0k3n"}}"#),
                                ("operation", "sinks.update")])
        try fixture.add(redis, remove("late"))
        let consumer = try fixture.consumer(collectors: collectors)
        consumer.start()
        defer { consumer.stop() }
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.hget(fixture.names.configHash, field: "u1") != nil)
        #expect(collectors.calls.contains(.create("u1", owner: "o")))
        // A replayed dead letter of the old create orders as its original id: stale, skipped.
        var replay = create("late", sinkConfig("https://late.example/w"))
        replay.append(("replay_of", createID))
        try fixture.add(redis, replay)
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.hget(fixture.names.configHash, field: "late") == nil)
        #expect(consumer.counters.skippedStale >= 1)
    }

    @Test("30+ malformed entries between good ones: each dead-lettered with its reason, every good one handled")
    func badInputTable() throws {
        let plugins = try testPlugins()
        let fixture = try PipelineFixture(plugins: plugins.path)
        let redis = try fixture.connect()
        let big = "{\"a\":\"" + String(repeating: "x", count: (1 << 20) + 10) + "\"}"
        let malformed: [([(String, String)], String)] = [
            ([("sink_id", "m1")], "missing field operation"),
            ([("operation", ""), ("sink_id", "m2")], "missing field operation"),
            ([("operation", "sinks.explode"), ("sink_id", "m3")], "unknown operation"),
            ([("operation", "SINKS.CREATE"), ("sink_id", "m4")], "unknown operation"),
            ([("operation", "sinks.create"), ("backend", "prometheus"), ("config", "{}")], "missing field sink_id"),
            ([("operation", "sinks.update"), ("sink_id", ""), ("config", "{}")], "missing field sink_id"),
            ([("operation", "sinks.remove")], "missing field sink_id"),
            ([("operation", "sinks.create"), ("sink_id", "m8"), ("config", sinkConfig("https://a/b"))], "without backend"),
            ([("operation", "sinks.create"), ("sink_id", "m9"), ("backend", ""), ("config", sinkConfig("https://a/b"))], "without backend"),
            ([("operation", "sinks.create"), ("sink_id", "m10"), ("backend", "prometheus")], "without config"),
            ([("operation", "sinks.update"), ("sink_id", "m11"), ("backend", "prometheus")], "without config"),
            ([("operation", "sinks.create"), ("sink_id", "m12"), ("backend", "prometheus"), ("config", "{")], "not valid JSON"),
            ([("operation", "sinks.create"), ("sink_id", "m13"), ("backend", "prometheus"), ("config", "")], "not valid JSON"),
            ([("operation", "sinks.create"), ("sink_id", "m14"), ("backend", "prometheus"), ("config", "null")], "not a JSON object"),
            ([("operation", "sinks.create"), ("sink_id", "m15"), ("backend", "prometheus"), ("config", "[]")], "not a JSON object"),
            ([("operation", "sinks.create"), ("sink_id", "m16"), ("backend", "prometheus"), ("config", "42")], "not a JSON object"),
            ([("operation", "sinks.create"), ("sink_id", "m17"), ("backend", "prometheus"), ("config", "\"{}\"")], "not a JSON object"),
            ([("operation", "sinks.update"), ("sink_id", "m18"), ("backend", "prometheus"), ("config", "{'single': 1}")], "not valid JSON"),
            ([("operation", "sinks.create"), ("sink_id", "m19"), ("backend", "prometheus"), ("config", big)], "larger than"),
            ([("operation", "sinks.remove"), ("sink_id", String(repeating: "x", count: 300))], "longer than 253"),
            ([("operation", "sinks.remove"), ("sink_id", "tab\there")], "control characters"),
            ([("operation", "sinks.remove"), ("sink_id", "m22"), ("replay_of", "not-an-id")], "replay_of"),
            ((0..<70).map { ("f\($0)", "v") } + [("operation", "sinks.remove"), ("sink_id", "m23")], "fields"),
            ([("operation", "sinks.create"), ("sink_id", "m24"), ("backend", "failing"), ("config", "{}")], "this sink cannot work"),
            ([("operation", "sinks.create"), ("sink_id", "m25"), ("backend", "looping"), ("config", "{}")], "instruction budget"),
            ([("operation", "sinks.create"), ("sink_id", "m26"), ("backend", "nothing"), ("config", "{}")], "must return the collector config"),
            ([("operation", "sinks.create"), ("sink_id", "m27"), ("backend", "flaky"), ("config", "{}")], "backend is flaky"),
            ([("operation", "sinks.update"), ("sink_id", "m28-never-created"), ("backend", ""), ("config", "{}")], "never created"),
            ([("operation", "sinks.create"), ("sink_id", "m29"), ("backend", "prometheus"), ("config", "{\"a\": [1, 2,]}")], "not valid JSON"),
            ([("operation", "sinks.create\n"), ("sink_id", "m30")], "unknown operation"),
            ([("operation", "sinks.remove"), ("sink_id", "m31\u{7F}")], "control characters"),
            ([("operation", "sinks.create"), ("sink_id", "m32"), ("backend", "prometheus"), ("config", "{\"x\": \"\\ud800\"}")], "not valid JSON"),
            ([("operation", "sinks.create"), ("sink_id", "m33"), ("backend", "leaky"), ("config", sinkConfig("https://a/b"))], "cannot log in with ***"),
        ]
        var expectedReasons: [String: String] = [:]
        var good: [String] = []
        for (index, bad) in malformed.enumerated() {
            let id = try fixture.add(redis, bad.0)
            expectedReasons[id] = bad.1
            let sink = "good-\(index)"
            try fixture.add(redis, create(sink, sinkConfig("https://good.example/\(index)")))
            good.append(sink)
        }
        // Invalid (well-formed, rejected by the rules): a status, not a dead letter.
        try fixture.add(redis, create("invalid-1", sinkConfig("no-scheme.example")))
        try fixture.add(redis, create("invalid-2", "{}", backend: "no-such-backend"))

        let consumer = try fixture.consumer(workers: 3, maxDeliveries: 3)
        consumer.start()
        defer { consumer.stop() }
        #expect(try fixture.waitUntilDrained(redis, timeout: 90))

        let letters = try fixture.deadLetters(redis)
        #expect(letters.count == malformed.count)
        for letter in letters {
            let original = try #require(letter["id"])
            let expected = try #require(expectedReasons[original], "unexpected dead letter \(original): \(letter["reason"] ?? "")")
            #expect(letter["reason"]?.contains(expected) == true, "\(original): \(letter["reason"] ?? "") should contain \(expected)")
            #expect(letter["stream"] == fixture.names.sinksStream)
            #expect(letter["failed_at"]?.isEmpty == false)
            #expect(letter["schema_version"] == "2")
            #expect(Int(letter["deliveries"] ?? "") != nil)
            #expect(try JSON.decode(try #require(letter["fields"])).mapValue != nil)
            #expect(letter["reason"]?.contains("secret-password") == false)
        }
        #expect(letters.first { $0["reason"]?.contains("this sink cannot work") == true }?["plugin"] == "failing")
        #expect(letters.first { $0["reason"]?.contains("flaky") == true }?["deliveries"] == "3", "a plugin error is retried up to max-deliveries")
        let configs = try fixture.configs(redis)
        for sink in good { #expect(configs[sink] != nil, "\(sink) was not handled") }
        let statuses = try redis.xrange(fixture.names.statusStream)
        #expect(statuses.first { $0["sink_id"] == "invalid-1" }?["status"] == "provisioning_error")
        #expect(statuses.first { $0["sink_id"] == "invalid-2" }?["error_message"]?.contains("no plugin serves backend") == true)

        // Still running.
        try fixture.add(redis, create("after", sinkConfig("https://after.example/w")))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.hget(fixture.names.configHash, field: "after") != nil)
    }

    @Test("maestro.redis is scoped to the plugin's prefix; maestro.ctx names the event")
    func scopedRedis() throws {
        let prefix = RedisTestServer.uniquePrefix("pipe")
        let plugins = try testPlugins(pluginKeyPrefix: RedisNames().prefixed(prefix).pluginKeyPrefix)
        let fixture = try PipelineFixture(plugins: plugins.path, prefix: prefix)
        let redis = try fixture.connect()
        let id = try fixture.add(redis, create("scoped-1", "{}", backend: "scoped"))
        let consumer = try fixture.consumer()
        consumer.start()
        defer { consumer.stop() }
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.hget(fixture.names.pluginKeyPrefix + "scoped:seen", field: "scoped-1") == id)
        #expect(try fixture.deadLetters(redis).isEmpty)
    }

    @Test("a failed hand-off is retried and the config is not lost")
    func handOffRetry() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let collectors = RecordingCollectorService()
        collectors.failNext(2)
        let consumer = try fixture.consumer(maxDeliveries: 5, collectors: collectors)
        consumer.start()
        defer { consumer.stop() }
        try fixture.add(redis, create("h1", sinkConfig("https://h.example/w")))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(collectors.calls == [.create("h1", owner: "owner-1")])
        #expect(consumer.counters.retried == 2)
    }

    @Test("an update that waits on an older pending create does not use up its deliveries")
    func deferredUpdate() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        try redis.xgroupCreate(fixture.names.sinksStream, group: fixture.names.sinkerGroup, startID: "0")
        // A dead consumer holds the create.
        try fixture.add(redis, create("d1", sinkConfig("https://d.example/w")))
        _ = try redis.xreadgroup(group: fixture.names.sinkerGroup, consumer: "dead", stream: fixture.names.sinksStream, id: ">", count: 1)
        try fixture.add(redis, update("d1", sinkConfig("https://d2.example/w")))
        let consumer = try fixture.consumer(minIdleMilliseconds: 1_500, maxDeliveries: 2)
        consumer.start()
        defer { consumer.stop() }
        #expect(try fixture.waitUntilDrained(redis, timeout: 30))
        let stored = try YAML.parse(try #require(try redis.hget(fixture.names.configHash, field: "d1")))
        #expect(stored["exporters"]?["prometheusremotewrite"]?["endpoint"] == .string("https://d2.example/w"))
        #expect(try fixture.deadLetters(redis).isEmpty)
        #expect(consumer.counters.deferred >= 1)
        #expect(consumer.counters.reclaimed == 1)
    }

    @Test("NOGROUP at run time re-creates the group")
    func groupRecreated() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let consumer = try fixture.consumer()
        consumer.start()
        defer { consumer.stop() }
        try fixture.add(redis, create("g1", sinkConfig("https://g.example/w")))
        #expect(try fixture.waitUntilDrained(redis))
        try redis.command(["XGROUP", "DESTROY", fixture.names.sinksStream, fixture.names.sinkerGroup])
        try fixture.add(redis, create("g2", sinkConfig("https://g.example/w")))
        #expect(eventually { ((try? redis.hget(fixture.names.configHash, field: "g2")) ?? nil) != nil })
    }
}

@Suite("Dead-letter replay", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct DeadLetterReplayTests {
    @Test("a replayed dead letter is handled as the event it was: applied when newest, skipped when a newer event exists")
    func replay() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let collectors = RecordingCollectorService()
        let consumer = try fixture.consumer(maxDeliveries: 1, collectors: collectors)
        consumer.start()
        defer { consumer.stop() }
        // Two updates of a sink that does not exist yet: both dead-lettered after their one delivery.
        let oldUpdate = try fixture.add(redis, update("r1", sinkConfig("https://old.example/w")))
        try fixture.add(redis, update("r2", sinkConfig("https://r2.example/w")))
        #expect(try fixture.waitUntilDrained(redis))
        let letters = try DeadLetters.list(redis, names: fixture.names)
        #expect(letters.count == 2)
        #expect(letters.allSatisfy { $0.reason.contains("never created") })
        // Now the sinks are created; r1 then gets a newer update.
        try fixture.add(redis, create("r1", sinkConfig("https://create.example/w")))
        try fixture.add(redis, create("r2", sinkConfig("https://create.example/w")))
        try fixture.add(redis, update("r1", sinkConfig("https://newest.example/w")))
        #expect(try fixture.waitUntilDrained(redis))
        // r3 exists, and its update is dead-lettered because the hand-off to the collectors failed: at
        // replay time that update is still r3's newest event.
        try fixture.add(redis, create("r3", sinkConfig("https://create.example/w")))
        #expect(try fixture.waitUntilDrained(redis))
        collectors.failNext(1)
        let r3Update = try fixture.add(redis, update("r3", sinkConfig("https://r3-newest.example/w")))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try DeadLetters.list(redis, names: fixture.names).count == 3)
        #expect(!collectors.calls.contains(.update("r3", owner: "owner-1")), "the failed hand-off reached no collector")

        let replayed = try DeadLetters.replay(redis, names: fixture.names, ids: nil)
        #expect(replayed.count == 3)
        #expect(try DeadLetters.list(redis, names: fixture.names).isEmpty, "replayed letters leave the dead-letter stream")
        #expect(try redis.xrange(fixture.names.sinksStream, start: replayed[0], end: replayed[0]).first?["replay_of"] == oldUpdate)
        #expect(try fixture.waitUntilDrained(redis))
        let r1 = try YAML.parse(try #require(try redis.hget(fixture.names.configHash, field: "r1")))
        #expect(r1["exporters"]?["prometheusremotewrite"]?["endpoint"] == .string("https://newest.example/w"),
                "the replay orders as its original id: older than the newest update, so skipped")
        #expect(eventually(timeout: 10) { consumer.counters.skippedStale >= 2 }, "both replays are older than the creates that followed")
        #expect(collectors.calls.filter { $0 == .update("r3", owner: "owner-1") }.count == 1, "r3's replayed update is the newest: applied")
        #expect(consumer.counters.skippedStale == 2, "only r1's and r2's replays are skipped")
        #expect(try redis.xrange(fixture.names.sinksStream).contains { $0["replay_of"] == r3Update })
        #expect(throws: DeadLetterError.self) { try DeadLetters.replay(redis, names: fixture.names, ids: ["1-1"]) }
    }
}

/// A batch processor from a closure, for consumer tests that need no plugins.
final class ClosureProcessor: StreamBatchProcessor {
    let body: @Sendable ([DeliveredEntry]) -> [EntryOutcome]
    init(_ body: @escaping @Sendable ([DeliveredEntry]) -> [EntryOutcome]) { self.body = body }
    func process(_ batch: [DeliveredEntry], redis: RedisConnection) throws(RedisError) -> [EntryOutcome] { body(batch) }
}
