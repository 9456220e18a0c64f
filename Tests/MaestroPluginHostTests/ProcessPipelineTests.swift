import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

/// `maestro run` as a child process against the fixture's names.
func startMaestro(_ fixture: PipelineFixture, consumer: String, extra: [String] = [], log: String) throws -> ChildProcess {
    try ChildProcess([maestroBinary(), "run"] + fixture.flags + ["--consumer-name", consumer, "--log-level", "warning"] + extra,
                     environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"], logPath: log)
}

/// The sinks whose stored config is not what their last event asked for: the sinks in `kept` must have
/// the v3 endpoint and credentials the test wrote, every other sink no config at all. Written from
/// the events themselves, not from the config builder under test.
func wrongConfigs(_ stored: [String: String], kept: [Int], sinks: Int) -> [String] {
    var wrong: [String] = []
    let keptSet = Set(kept)
    for index in 0..<sinks {
        let sink = "order-\(index)"
        guard keptSet.contains(index) else {
            if stored[sink] != nil { wrong.append(sink + " (removed, but has a config)") }
            continue
        }
        guard let yaml = stored[sink], let config = try? YAML.parse(yaml) else {
            wrong.append(sink + " (no config)")
            continue
        }
        let auth = config["extensions"]?["basicauth/exporter"]?["client_auth"]
        if config["exporters"]?["prometheusremotewrite"]?["endpoint"] != .string("https://s\(index).example/v3")
            || auth?["username"] != .string("1234123") || auth?["password"] != .string("a\"b: c") {
            wrong.append(sink)
        }
    }
    return wrong
}

@Suite("Sink pipeline across processes", .serialized, .testThreads, .timeLimit(.minutes(5)))
struct ProcessPipelineTests {
    @Test("200 sinks, interleaved events, 2 processes × 4 workers: the hashes equal a sequential replay; a replay changes nothing")
    func ordering() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let logs = try TemporaryDirectory()
        var generator = SystemRandomNumberGenerator()
        var perSink: [[[(String, String)]]] = (0..<200).map { index in
            let sink = "order-\(index)"
            var events = [create(sink, sinkConfig("https://s\(index).example/v1"))]
            events.append(update(sink, sinkConfig("https://s\(index).example/v2")))
            events.append(update(sink, sinkConfig("https://s\(index).example/v3", user: "1234123", password: "a\"b: c")))
            if index % 3 == 0 { events.append(remove(sink)) }
            return events
        }
        var ordered: [[(String, String)]] = []
        while perSink.contains(where: { !$0.isEmpty }) {
            let candidates = perSink.indices.filter { !perSink[$0].isEmpty }
            let pick = candidates.randomElement(using: &generator)!
            ordered.append(perSink[pick].removeFirst())
        }
        // Half the events are written before the consumers start, half while they run.
        for fields in ordered.prefix(ordered.count / 2) { try fixture.add(redis, fields) }
        let first = try startMaestro(fixture, consumer: "proc-a", extra: ["--workers", "4"], log: logs.path + "/a.log")
        let second = try startMaestro(fixture, consumer: "proc-b", extra: ["--workers", "4"], log: logs.path + "/b.log")
        for fields in ordered.dropFirst(ordered.count / 2) { try fixture.add(redis, fields) }
        #expect(try fixture.waitUntilDrained(redis, timeout: 120))

        // Each sink's last event: the v3 update, or the remove for every third sink.
        let kept = (0..<200).filter { $0 % 3 != 0 }
        let stored = try fixture.configs(redis)
        #expect(stored.count == kept.count)
        let wrong = wrongConfigs(stored, kept: kept, sinks: 200)
        #expect(wrong.isEmpty, "sinks whose config is not their last event's: \(wrong.prefix(10))")
        let consumers = try redis.xinfoConsumers(fixture.names.sinksStream, group: fixture.names.sinkerGroup)
        #expect(Set(consumers.compactMap { $0["name"]?.string }) == ["proc-a", "proc-b"])

        // The whole stream again, through a new group: nothing changes.
        let recordsBefore = try redis.hgetall(fixture.names.sinksHash)
        try redis.xgroupCreate(fixture.names.sinksStream, group: fixture.names.sinkerGroup + "-replay", startID: "0")
        let replay = try startMaestro(fixture, consumer: "replayer", extra: ["--group", fixture.names.sinkerGroup + "-replay"], log: logs.path + "/r.log")
        #expect(try fixture.waitUntilDrained(redis, group: fixture.names.sinkerGroup + "-replay", timeout: 120))
        #expect(try fixture.configs(redis) == stored, "the replay changed configs")
        #expect(try redis.hgetall(fixture.names.sinksHash) == recordsBefore)
        for process in [first, second, replay] {
            process.signal(SIGTERM)
            #expect(process.wait(timeout: 30))
            #expect(process.exitCode == 0)
        }
    }

    @Test("kill -9 after reading and before acknowledging: another consumer reclaims, the end state is complete")
    func crashSafety() throws {
        let plugins = try testPlugins()
        try plugins.write("slow/schema.lua", "return { name = 'slow', version = '1.0.0', binds = { sink_backend = 'slow' } }")
        try plugins.write("slow/handler.lua", """
        local handler = {}
        function handler.on_sink_create(sink)
          local started = os.clock()
          while os.clock() - started < 0.15 do end
          return { receivers = { sink = sink.id } }
        end
        return handler
        """)
        let fixture = try PipelineFixture(plugins: plugins.path)
        let redis = try fixture.connect()
        let logs = try TemporaryDirectory()
        for index in 0..<30 { try fixture.add(redis, create("crash-\(index)", "{}", backend: "slow")) }
        let victim = try startMaestro(fixture, consumer: "victim", extra: ["--workers", "1", "--lua-instruction-budget", "5000000000"],
                                      log: logs.path + "/victim.log")
        // Kill it once it has read the entries: handling them takes 30 × 0.15 s of CPU, and a batch's
        // effects are stored together at its end.
        #expect(eventually(timeout: 30) { ((try? redis.xpendingSummary(fixture.names.sinksStream, group: fixture.names.sinkerGroup).count) ?? 0) > 0 })
        victim.signal(SIGKILL)
        victim.wait()
        let pending = try redis.xpendingSummary(fixture.names.sinksStream, group: fixture.names.sinkerGroup)
        #expect(pending.count > 0, "the victim died holding entries")
        #expect(try redis.hlen(fixture.names.configHash) < 30)

        let rescuer = try startMaestro(fixture, consumer: "rescuer", extra: ["--workers", "2", "--min-idle", "1s", "--lua-instruction-budget", "5000000000"],
                                       log: logs.path + "/rescuer.log")
        #expect(try fixture.waitUntilDrained(redis, timeout: 60))
        #expect(try redis.hlen(fixture.names.configHash) == 30)
        #expect(try fixture.deadLetters(redis).isEmpty)
        rescuer.signal(SIGTERM)
        #expect(rescuer.wait(timeout: 30))
    }

    @Test("events written while maestro is down are handled when it starts; a Redis restart loses nothing")
    func downtimeAndRedisRestart() throws {
        let directory = try TemporaryDirectory()
        let server = try LocalRedisServer.start(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"], directory: directory.path)
        defer { server.stop(hard: true) }
        let fixture = try PipelineFixture(redisURL: server.url)
        var redis = try fixture.connect()
        for index in 0..<50 { try fixture.add(redis, create("down-\(index)", sinkConfig("https://d.example/\(index)"))) }
        let logs = try TemporaryDirectory()
        let process = try startMaestro(fixture, consumer: "survivor", extra: ["--workers", "2"], log: logs.path + "/m.log")
        #expect(try fixture.waitUntilDrained(redis, timeout: 60))
        #expect(try redis.hlen(fixture.names.configHash) == 50)

        // Restart Redis in the middle of a stream of events.
        for index in 50..<100 { try fixture.add(redis, create("down-\(index)", sinkConfig("https://d.example/\(index)"))) }
        server.stop()
        let restarted = try LocalRedisServer.start(extraArguments: ["--appendonly", "yes", "--appendfsync", "always"], port: server.port,
                                                   directory: directory.path)
        defer { restarted.stop(hard: true) }
        redis = try fixture.connect()
        for index in 100..<150 { try fixture.add(redis, create("down-\(index)", sinkConfig("https://d.example/\(index)"))) }
        #expect(try fixture.waitUntilDrained(redis, timeout: 60))
        #expect(try redis.hlen(fixture.names.configHash) == 150)
        #expect(try fixture.deadLetters(redis).isEmpty)
        process.signal(SIGTERM)
        #expect(process.wait(timeout: 30))
        #expect(process.exitCode == 0, "\((try? logs.read("m.log")) ?? "")")
    }
}
