import Foundation
import MaestroTestSupport
import Testing

@Suite("maestro checks collector configs against the image the template value selects", .testThreads, .timeLimit(.minutes(2)))
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
}
