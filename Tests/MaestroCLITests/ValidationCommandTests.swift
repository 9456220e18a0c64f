import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@Suite("maestro checks collector configs against the image the template value selects", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct ValidationCommandTests {
    /// The shipped plugins, component lists included, and a `relay` backend whose config adds an
    /// exporter of the type its sink config names to Orb's pipeline.
    func plugins() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        for name in ["prometheus", "otlphttp", "_lib", "_components"] {
            try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/" + name, toPath: directory.path + "/" + name)
        }
        try directory.write("relay/schema.lua", """
            local otel = require "_lib.otel"
            return {
              name = "relay", version = "1.0.0", binds = { sink_backend = "relay" },
              sink = { fields = { exporter_type = { type = "word", required = true } } },
              settings = { fields = otel.settings_fields },
            }
            """)
        try directory.write("relay/handler.lua", """
            local otel = require "_lib.otel"
            return { on_sink_create = function(sink)
              sink.config.authentication = { type = "bearertokenauth", scheme = "Bearer", token = "t" }
              local config = otel.collector_config(sink, "otlphttp", "https://relay.example/v1", nil, { supported = { "metrics" } })
              config.exporters[sink.config.exporter_type] = maestro.empty_map()
              table.insert(config.service.pipelines.metrics.exporters, sink.config.exporter_type)
              return config
            end }
            """)
        return directory
    }

    @Test("render: an exporter type the default image (contrib 0.91.0) lacks exits 2 naming it; the config file's image 0.100.0 has it")
    func renderFollowsTheTemplateImage() throws {
        let plugins = try plugins()
        let arguments = [maestroBinary(), "render", "--plugins-dir", plugins.path, "--templates-dir", repositoryRoot + "/templates",
                         "--backend", "relay", "--sink-id", "s1", "--sink-config", #"{"exporter_type":"opensearch"}"#]
        let refused = try runProgram(arguments, in: plugins.path)
        #expect(refused.code == 2, "\(refused.output)")
        #expect(refused.output.contains("exporter \"opensearch\": type \"opensearch\" is not an exporter of the image "
                                        + "otel/opentelemetry-collector-contrib:0.91.0"), "\(refused.output)")

        let configFile = try plugins.write("maestro.yaml", "templates:\n  otel-collector:\n    image: otel/opentelemetry-collector-contrib:0.100.0\n")
        let accepted = try runProgram(arguments + ["--config", configFile], in: plugins.path)
        #expect(accepted.code == 0, "\(accepted.output)")
        #expect(accepted.output.contains("opensearch"))
    }

    @Test("maestro run with a broken component list says the lists failed to load (naming the file), not that there are none")
    func brokenListIsNamedAtStart() throws {
        let prefix = RedisTestServer.uniquePrefix("valid")
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/plugins")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/templates", toPath: directory.path + "/templates")
        try directory.write("plugins/_components/broken-1.0.0.yaml", "receivers: [\n")
        let run = try ChildProcess([maestroBinary(), "run", "--redis-url", try RedisTestServer.url, "--plugins-dir", directory.path + "/plugins",
                                    "--templates-dir", directory.path + "/templates", "--kube-backend", "directory",
                                    "--manifests-dir", directory.path + "/manifests"] + MaestroProcess.names(prefix), logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        func log() -> String { (try? directory.read("run.log")) ?? "" }
        #expect(eventually(timeout: 30) { log().contains("collector configs are not checked") }, "\(log())")
        #expect(log().contains("the component lists failed to load"), "\(log())")
        #expect(!log().contains("no component lists in the plugins folder"), "\(log())")
        #expect(log().contains("broken-1.0.0.yaml"), "the error names the file: \(log())")
    }

    @Test("maestro run: a config written straight into Redis is refused by the maestro role, the collector kept; a reloaded list lets it through")
    func runRefusesThenReloadedListAccepts() throws {
        let prefix = RedisTestServer.uniquePrefix("valid")
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/plugins")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/templates", toPath: directory.path + "/templates")
        let run = try ChildProcess([maestroBinary(), "run", "--redis-url", try RedisTestServer.url, "--plugins-dir", directory.path + "/plugins",
                                    "--templates-dir", directory.path + "/templates", "--kube-backend", "directory",
                                    "--manifests-dir", directory.path + "/manifests", "--reload-interval", "200ms", "--resync-interval", "1s"]
                                   + MaestroProcess.names(prefix), logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        let created = try runProgram([maestroBinary(), "sinks", "create", "--sink-id", "v1", "--backend", "prometheus", "--sink-config",
                                      #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#,
                                      "--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix))
        #expect(created.code == 0, "\(created.output)")
        let manifestPath = directory.path + "/manifests/otelcollectors/otel-v1.yaml"
        #expect(waitForFile(manifestPath))
        let applied = try String(contentsOfFile: manifestPath, encoding: .utf8)

        // Another path into the config hash: Orb's config plus an exporter type contrib 0.91.0 lacks.
        var config = try YAML.parse(try #require(try redis.hget(prefix + "config", field: "v1")))
        guard case .map(var sections) = config, case .map(var exporters)? = sections["exporters"] else {
            Issue.record("the stored config is not Orb's shape")
            return
        }
        exporters["opensearch"] = .map([:])
        sections["exporters"] = .map(exporters)
        config = .map(sections)
        _ = try redis.hset(prefix + "config", field: "v1", value: try YAML.emit(config))
        func lastStatus() -> StreamEntry? { ((try? redis.xrange(prefix + "status")) ?? []).last { $0["sink_id"] == "v1" } }
        #expect(eventually { lastStatus()?["status"] == "provisioning_error" }, "\(String(describing: lastStatus()))")
        #expect(lastStatus()?["error_message"] == "collector config: exporters: exporter \"opensearch\": type \"opensearch\" is not an exporter of "
                + "the image otel/opentelemetry-collector-contrib:0.91.0 (_components/otel-collector-contrib-0.91.0.yaml)")
        #expect(try String(contentsOfFile: manifestPath, encoding: .utf8) == applied, "the refused config replaced the running collector")

        // The list gains the type (as a newer image's would): the plugins reload switches the maestro
        // role's lists, and the next resync applies the config.
        let listPath = directory.path + "/plugins/_components/otel-collector-contrib-0.91.0.yaml"
        let list = try String(contentsOfFile: listPath, encoding: .utf8)
        try list.replacingOccurrences(of: "exporters:\n", with: "exporters:\n  - opensearch\n").write(toFile: listPath, atomically: true, encoding: .utf8)
        #expect(eventually(timeout: 30) { ((try? String(contentsOfFile: manifestPath, encoding: .utf8)) ?? "").contains("opensearch") })
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 30))
    }

    @Test("maestro run: the sinker checks against the image of the template in use; a template reloaded with another image changes what it accepts")
    func sinkerFollowsReloadedTemplateImage() throws {
        let prefix = RedisTestServer.uniquePrefix("valid")
        let plugins = try plugins()
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/templates", toPath: directory.path + "/templates")
        let run = try ChildProcess([maestroBinary(), "run", "--redis-url", try RedisTestServer.url, "--plugins-dir", plugins.path,
                                    "--templates-dir", directory.path + "/templates", "--kube-backend", "directory",
                                    "--manifests-dir", directory.path + "/manifests", "--reload-interval", "200ms"]
                                   + MaestroProcess.names(prefix), logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        func create(_ sinkID: String) throws {
            let created = try runProgram([maestroBinary(), "sinks", "create", "--sink-id", sinkID, "--backend", "relay", "--sink-config",
                                          #"{"exporter_type":"opensearch"}"#, "--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix))
            #expect(created.code == 0, "\(created.output)")
        }
        func status(_ sinkID: String) -> StreamEntry? { ((try? redis.xrange(prefix + "status")) ?? []).last { $0["sink_id"] == sinkID } }
        try create("r1")
        #expect(eventually(timeout: 30) { status("r1")?["status"] == "provisioning_error" }, "\(String(describing: status("r1")))")
        #expect(status("r1")?["error_message"]?.contains("not an exporter of the image otel/opentelemetry-collector-contrib:0.91.0") == true)
        #expect(try redis.hget(prefix + "config", field: "r1") == nil, "the sinker stored nothing")

        // The template moves to contrib 0.100.0, which has the type: after the reload the sinker accepts it.
        let templatePath = directory.path + "/templates/otel-collector.lua"
        let template = try String(contentsOfFile: templatePath, encoding: .utf8)
        try template.replacingOccurrences(of: "otel/opentelemetry-collector-contrib:0.91.0", with: "otel/opentelemetry-collector-contrib:0.100.0")
            .write(toFile: templatePath, atomically: true, encoding: .utf8)
        func log() -> String { (try? directory.read("run.log")) ?? "" }
        #expect(eventually(timeout: 30) { log().contains("template reloaded") }, "\(log())")
        try create("r2")
        #expect(eventually(timeout: 30) { ((try? redis.hget(prefix + "config", field: "r2")) ?? nil)?.contains("opensearch") == true },
                "\(String(describing: status("r2")))")
    }
}
