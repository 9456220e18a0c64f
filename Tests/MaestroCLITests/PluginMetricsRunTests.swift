import Foundation
import MaestroCore
import MaestroTestSupport
import Testing

@Suite("plugin metrics under maestro run", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct PluginMetricsRunTests {
    @Test("a plugin's declared metrics reach /metrics as maestro_plugin_<plugin>_<name>; an undeclared one dead-letters the event with its name")
    func servedOnMetrics() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/_lib", toPath: directory.path + "/plugins/_lib")
        try directory.write("plugins/loki/schema.lua", """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = { tenant = { type = "word", required = true } } },
              metrics = { built_total = { type = "counter", help = "Configs built, by tenant.", labels = { "tenant" }, max_label_values = 2 } },
            }
            """)
        try directory.write("plugins/loki/handler.lua", """
            return { on_sink_create = function(sink)
              if sink.config.tenant == "t-undeclared" then maestro.metrics.inc("undeclared_total") end
              maestro.metrics.inc("built_total", { tenant = sink.config.tenant })
              return { exporters = { loki = { tenant = sink.config.tenant } } }
            end }
            """)
        let prefix = RedisTestServer.uniquePrefix("plugmet")
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        let run = try ChildProcess([maestroBinary(), "run", "--plugins-dir", directory.path + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                    "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests", "--max-deliveries", "1",
                                    "--http-listen", "127.0.0.1:0"] + common, logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let port = try loggedPort("http.port", in: directory.path + "/run.log", of: run)
        func metrics() -> String { (try? runProgram([try executable("curl"), "-s", "http://127.0.0.1:\(port)/metrics"]).output) ?? "" }
        for (sink, tenant) in [("m1", "t-1"), ("m2", "t-1"), ("m3", "t-2"), ("m4", "t-3"), ("m5", "t-undeclared")] {
            #expect(try maestro(["sinks", "create", "--sink-id", sink, "--backend", "loki", "--sink-config", #"{"tenant":"\#(tenant)"}"#] + common).code == 0)
        }
        #expect(eventually { samples(metrics(), "maestro_plugin_loki_built_total", [#"tenant="t-1""#]).first == 2 }, "\(metrics())")
        let served = metrics()
        #expect(served.contains("# HELP maestro_plugin_loki_built_total Configs built, by tenant.\n# TYPE maestro_plugin_loki_built_total counter"), "\(served)")
        #expect(eventually { samples(metrics(), "maestro_plugin_loki_built_total", [#"tenant="t-2""#]).first == 1 })
        // The bound of 2 label-value sets: t-3 is refused (nil, err), counted, and the sink still built.
        #expect(eventually { samples(metrics(), "maestro_plugin_metric_refused_total", [#"plugin="loki""#, #"metric="built_total""#]).first == 1 }, "\(metrics())")
        #expect(samples(metrics(), "maestro_plugin_loki_built_total", [#"tenant="t-3""#]).isEmpty)
        #expect(eventually { (try? maestro(["deadletter", "list"] + common).output.contains("metric undeclared_total is not declared in schema.lua")) == true })
    }
}
