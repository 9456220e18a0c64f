import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import Testing

/// A plugins folder with one backend, `slow`, whose handler counts to `spin` before answering: long
/// enough to have events in flight when a signal arrives.
func slowPlugins(in directory: TemporaryDirectory, spin: Int) throws -> String {
    try directory.write("plugins/slow/schema.lua", #"return { name = "slow", version = "1.0.0", binds = { sink_backend = "slow" } }"#)
    try writeSlowHandler(in: directory, spin: spin)
    return directory.path + "/plugins"
}

func writeSlowHandler(in directory: TemporaryDirectory, spin: Int) throws {
    try directory.write("plugins/slow/handler.lua", """
    local handler = {}
    function handler.on_sink_create(sink)
      local n = 0
      for _ = 1, \(spin) do n = n + 1 end
      return { exporters = { debug = {} }, service = { pipelines = { metrics = { receivers = { "kafka" }, exporters = { "debug" } } } } }
    end
    handler.on_sink_update = handler.on_sink_create
    return handler
    """)
}

/// Writes `count` Orb create events for the `slow` backend straight to the stream.
func emitSlowCreates(_ redis: RedisConnection, stream: String, ids: Range<Int>) throws {
    _ = try redis.pipeline(ids.map { index in
        RedisConnection.xaddArguments(stream, fields: [("operation", "sinks.create"), ("sink_id", "slow-\(index)"), ("owner_id", "o"),
                                                       ("backend", "slow"), ("config", "{}"), ("timestamp", "1700000000")])
    })
}

@Suite("maestro run: graceful shutdown and hot reload", .serialized, .testThreads, .timeLimit(.minutes(4)))
struct RunLifecycleTests {
    let prefix = RedisTestServer.uniquePrefix("life")

    func redis() throws -> RedisConnection { try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url)) }

    func start(_ directory: TemporaryDirectory, plugins: String, extra: [String] = [], log: String = "run.log") throws -> ChildProcess {
        try ChildProcess([maestroBinary(), "run", "--redis-url", try RedisTestServer.url, "--plugins-dir", plugins,
                          "--templates-dir", repositoryRoot + "/templates", "--kube-backend", "directory",
                          "--manifests-dir", directory.path + "/manifests", "--workers", "1", "--consumer-name", "one"]
                         + MaestroProcess.names(prefix) + extra, logPath: directory.path + "/" + log)
    }

    @Test("SIGTERM: in-flight events finish and are acknowledged, exit 0; what was not read is handled after a restart")
    func gracefulShutdown() throws {
        let directory = try TemporaryDirectory()
        let plugins = try slowPlugins(in: directory, spin: 1_000_000)
        let redis = try redis()
        try emitSlowCreates(redis, stream: prefix + "sinks", ids: 0..<60)
        let run = try start(directory, plugins: plugins)
        #expect(eventually { ((try? redis.xpendingSummary(prefix + "sinks", group: prefix + "group").count) ?? 0) > 0 })
        run.signal(SIGTERM)
        try emitSlowCreates(redis, stream: prefix + "sinks", ids: 60..<70)
        #expect(run.wait(timeout: 30))
        #expect(run.exitCode == 0, "\((try? directory.read("run.log")) ?? "")")
        let log = try directory.read("run.log")
        #expect(log.contains("stopping: no new reads"))
        // Everything read was finished and acknowledged: nothing is left pending.
        #expect(try redis.xpendingSummary(prefix + "sinks", group: prefix + "group").count == 0)
        let storedBeforeRestart = try redis.hlen(prefix + "config")
        #expect(storedBeforeRestart >= 1 && storedBeforeRestart <= 70)

        let again = try start(directory, plugins: plugins, log: "again.log")
        defer {
            again.signal(SIGTERM)
            _ = again.wait(timeout: 30)
        }
        #expect(eventually(timeout: 60) { ((try? redis.hlen(prefix + "config")) ?? 0) == 70 })
    }

    @Test("a second signal exits at once; the unfinished entries stay pending and are handled after a restart")
    func secondSignal() throws {
        let directory = try TemporaryDirectory()
        let plugins = try slowPlugins(in: directory, spin: 50_000_000)
        let redis = try redis()
        try emitSlowCreates(redis, stream: prefix + "sinks", ids: 0..<60)
        let run = try start(directory, plugins: plugins, extra: ["--lua-instruction-budget", "1000000000"])
        #expect(eventually(timeout: 30) { ((try? redis.xpendingSummary(prefix + "sinks", group: prefix + "group").count) ?? 0) > 0 })
        run.signal(SIGTERM)
        // Once maestro says it is stopping, it is still running: the first signal waits for the batch in flight.
        #expect(eventually(timeout: 10) { ((try? directory.read("run.log")) ?? "").contains("stopping: no new reads") })
        #expect(run.isRunning, "the first signal waits for the batch in flight")
        run.signal(SIGTERM)
        // Exit code 130 is the second signal's way out; the first waits for the batch, whose 60 slow
        // entries are still pending below. No bound on the time: a loaded machine is slow either way.
        #expect(run.wait(timeout: 30))
        #expect(run.exitCode == 130)
        #expect(try redis.xpendingSummary(prefix + "sinks", group: prefix + "group").count > 0)

        try writeSlowHandler(in: directory, spin: 0)
        let again = try start(directory, plugins: plugins, log: "again.log")
        defer {
            again.signal(SIGTERM)
            _ = again.wait(timeout: 30)
        }
        #expect(eventually(timeout: 60) { ((try? redis.hlen(prefix + "config")) ?? 0) == 60 })
        #expect(eventually { ((try? redis.xpendingSummary(prefix + "sinks", group: prefix + "group").count) ?? 1) == 0 })
    }

    @Test("entries trimmed before the group read them: the gap is logged with its range and counted; what remains is handled")
    func trimmedBeforeRead() throws {
        let directory = try TemporaryDirectory()
        let plugins = try slowPlugins(in: directory, spin: 1)
        let redis = try redis()
        // Orb caps orb.sinks with MAXLEN: 20 events while maestro was down, the stream keeps the last 5.
        var ids: [String] = []
        for index in 0..<20 {
            let reply = try redis.command(["XADD", prefix + "sinks", "MAXLEN", "5", "*", "operation", "sinks.create", "sink_id", "trim-\(index)",
                                           "owner_id", "o", "backend", "slow", "config", "{}", "timestamp", "1700000000"])
            ids.append(try #require(reply.string))
        }
        let run = try start(directory, plugins: plugins, extra: ["--http-listen", "127.0.0.1:0"])
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let port = try loggedPort("http.port", in: directory.path + "/run.log", of: run)
        #expect(eventually(timeout: 60) { ((try? redis.hlen(prefix + "config")) ?? 0) == 5 })
        for index in 15..<20 { #expect(try redis.hget(prefix + "config", field: "trim-\(index)") != nil) }
        #expect(try redis.hget(prefix + "config", field: "trim-14") == nil)
        func metrics() -> String { (try? runProgram([try executable("curl"), "-s", "http://127.0.0.1:\(port)/metrics"]).output) ?? "" }
        #expect(eventually { metrics().contains(#"maestro_stream_trimmed_total{stream="\#(prefix)sinks"} 15"#) }, "\(metrics())")
        let log = try directory.read("run.log")
        #expect(log.contains("entries were trimmed from the stream before this group read them"))
        #expect(log.contains("stream.entries=15") && log.contains("stream.gap_after=0-0") && log.contains("stream.gap_before=\(ids[15])"), "the gap's range: \(log)")
    }

    @Test("hot reload: a changed plugin serves the next events; a broken one is refused with file:line and counted; a template change rolls out")
    func hotReload() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/plugins")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/templates", toPath: directory.path + "/templates")
        let run = try ChildProcess([maestroBinary(), "run", "--redis-url", try RedisTestServer.url, "--plugins-dir", directory.path + "/plugins",
                                    "--templates-dir", directory.path + "/templates", "--kube-backend", "directory",
                                    "--manifests-dir", directory.path + "/manifests", "--reload-interval", "200ms",
                                    "--http-listen", "127.0.0.1:0"] + MaestroProcess.names(prefix), logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let port = try loggedPort("http.port", in: directory.path + "/run.log", of: run)
        let redis = try redis()
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        func create(_ sinkID: String) throws {
            let result = try runProgram([maestroBinary(), "sinks", "create", "--sink-id", sinkID, "--backend", "prometheus", "--sink-config",
                                         #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#] + common)
            #expect(result.code == 0, "\(result.output)")
        }
        func config(_ sinkID: String) -> String { (try? redis.hget(prefix + "config", field: sinkID)) ?? nil ?? "" }
        func metrics() -> String { (try? runProgram([try executable("curl"), "-s", "http://127.0.0.1:\(port)/metrics"]).output) ?? "" }
        let manifest = directory.path + "/manifests/otelcollectors/otel-r1.yaml"

        try create("r1")
        #expect(eventually { config("r1").contains("prometheusremotewrite") })
        #expect(waitForFile(manifest))

        // A good change: the next event uses it, without a restart.
        let handlerPath = directory.path + "/plugins/prometheus/handler.lua"
        let original = try String(contentsOfFile: handlerPath, encoding: .utf8)
        try original.replacingOccurrences(of: "\"prometheusremotewrite\"", with: "\"prometheusremotewrite/reloaded\"")
            .write(toFile: handlerPath, atomically: true, encoding: .utf8)
        #expect(eventually { metrics().contains(#"maestro_reloads_total{what="plugins",result="ok"} 1"#) }, "\(metrics())")
        try create("r2")
        #expect(eventually { config("r2").contains("prometheusremotewrite/reloaded") })

        // A broken change: refused with file:line, counted; the previous generation keeps serving.
        try (original + "\nbroken(\n").write(toFile: handlerPath, atomically: true, encoding: .utf8)
        #expect(eventually { metrics().contains(#"maestro_reloads_total{what="plugins",result="refused"} 1"#) })
        #expect(try directory.read("run.log").contains("plugins/prometheus/handler.lua:"))
        try create("r3")
        #expect(eventually { config("r3").contains("prometheusremotewrite/reloaded") })

        // SIGHUP reloads too (here: nothing changed on disk, the broken file is refused again).
        func refusals() -> Int {
            metrics().split(separator: "\n").first { $0.hasPrefix(#"maestro_reloads_total{what="plugins",result="refused"} "#) }
                .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        }
        let refusedBefore = refusals()
        run.signal(SIGHUP)
        #expect(eventually { refusals() > refusedBefore }, "\(metrics())")
        #expect(run.isRunning)

        // A template change re-renders the desired state and the reconciler rewrites the objects.
        let templatePath = directory.path + "/templates/otel-collector.lua"
        let template = try String(contentsOfFile: templatePath, encoding: .utf8)
        try template.replacingOccurrences(of: #"["app.kubernetes.io/name"] = "opentelemetry-collector","#,
                                          with: #"["app.kubernetes.io/name"] = "opentelemetry-collector", ["example.com/reloaded"] = "yes","#)
            .write(toFile: templatePath, atomically: true, encoding: .utf8)
        #expect(eventually { ((try? String(contentsOfFile: manifest, encoding: .utf8)) ?? "").contains("example.com/reloaded") })
        // A broken template is refused; the collectors stay as they are.
        try (template + "\nerror('no')\n").write(toFile: templatePath, atomically: true, encoding: .utf8)
        #expect(eventually { metrics().contains(#"maestro_reloads_total{what="templates",result="refused"} 1"#) })
        #expect(try directory.read("run.log").contains("templates/otel-collector.lua:"))
        #expect(((try? String(contentsOfFile: manifest, encoding: .utf8)) ?? "").contains("example.com/reloaded"))
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 30))
        #expect(run.exitCode == 0)
    }
}
