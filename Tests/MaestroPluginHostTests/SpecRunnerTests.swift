import Foundation
import Logging
import MaestroCore
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

/// `maestro plugins test` under production rules, with the real-path helpers and golden pairs.
@Suite("Plugin specs with production rules", .testThreads, .timeLimit(.minutes(2)))
struct SpecRunnerTests {
    static let schema = """
        return {
          name = "loki", binds = { sink_backend = "loki" },
          sink = { fields = {
            tenant = { type = "word", required = true, pattern = "^t%-", validate = function(value, config)
              if value == "t-0" then return false, "is the admin tenant" end
              return true
            end },
            endpoint = { type = "url", required = true },
            retries = { type = "integer", default = 3, min = 0, max = 10 },
          } },
        }
        """
    static let handler = """
        local handler = {}
        function handler.on_sink_create(sink)
          if sink.config.tenant == "t-closed" then maestro.reject("tenant", "is closed") end
          if sink.config.tenant == "t-bug" then error("a bug") end
          return { exporters = { loki = { endpoint = sink.config.endpoint, tenant = sink.config.tenant, retries = sink.config.retries } },
                   receivers = { kafka = { brokers = { sink.kafka_url }, topic = "logs-" .. sink.id } },
                   service = { pipelines = { logs = { receivers = { "kafka" }, exporters = { "loki" } } } } }
        end
        return handler
        """

    func run(_ plugins: TemporaryDirectory, options: SpecOptions = SpecOptions()) -> [SpecResult] {
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        return PluginSpecRunner.run(catalog: catalog, options: options)
    }

    func failures(_ results: [SpecResult]) -> [String: String] {
        Dictionary(results.compactMap { result in result.failure.map { (result.name, $0) } }, uniquingKeysWith: { a, _ in a })
    }

    @Test("a spec that assigns a global fails, as the handler would in maestro run; one that uses locals passes")
    func globalsAreReadOnly() throws {
        let plugins = try lokiPlugins(schema: Self.schema, handler: Self.handler.replacingOccurrences(of: "return handler", with: "function handler.leaky() counter = 1 end\nreturn handler"))
        try plugins.write("loki/spec/globals_spec.lua", """
            local handler = require "loki.handler"
            local count = 0
            describe("globals", function()
              it("assigns a global", function() helper = 1 end)
              it("calls a handler that assigns a global", function() handler.leaky() end)
              it("uses a local", function() count = count + 1 assert.equals(1, count) end)
            end)
            """)
        let results = run(plugins)
        let failed = failures(results)
        #expect(failed["globals assigns a global"]?.contains("attempt to set global 'helper' after load: globals are read-only") == true, "\(failed)")
        #expect(failed["globals calls a handler that assigns a global"]?.contains("attempt to set global 'counter'") == true, "\(failed)")
        #expect(results.contains { $0.name == "globals uses a local" && $0.failure == nil })
    }

    @Test("print and maestro.log are captured per case, in order, not leaked to the next case")
    func outputCaptured() throws {
        let plugins = try lokiPlugins(schema: Self.schema, handler: Self.handler)
        try plugins.write("loki/spec/output_spec.lua", """
            describe("output", function()
              it("prints", function()
                print("hello", 42)
                maestro.log.warn("careful", { ["sink.id"] = "s1", password = "hunter2" })
                assert.equals(1, 2)
              end)
              it("is quiet", function() end)
            end)
            """)
        let results = run(plugins)
        let printing = try #require(results.first { $0.name == "output prints" })
        #expect(printing.output == ["info: hello\t42", "warning: careful password=*** sink.id=s1"], "\(printing.output)")
        #expect(printing.failure?.contains("expected 1, got 2") == true)
        #expect(results.first { $0.name == "output is quiet" }?.output == [])
    }

    @Test("spec.validate runs the schema and its hooks; spec.build the real path to the stored YAML; rejections are nil, message")
    func realPathHelpers() throws {
        let plugins = try lokiPlugins(schema: Self.schema, handler: Self.handler)
        try plugins.write("loki/spec/path_spec.lua", """
            describe("path", function()
              it("validates and fills defaults", function()
                local config, err = spec.validate({ tenant = "t-1", endpoint = "https://loki.example" })
                assert.is_nil(err)
                assert.equals(3, config.retries)
              end)
              it("reports schema and hook rejections", function()
                assert.same({ nil, "tenant must match the pattern ^t%-" }, { spec.validate({ tenant = "acme", endpoint = "https://l" }) })
                assert.same({ nil, "tenant is the admin tenant" }, { spec.validate({ tenant = "t-0", endpoint = "https://l" }) })
                assert.same({ nil, "retries must be at most 10" }, { spec.validate({ tenant = "t-1", endpoint = "https://l", retries = 11 }) })
              end)
              it("builds the collector config and its YAML", function()
                local config, yaml = spec.build({ tenant = "t-1", endpoint = "https://loki.example" }, { sink_id = "s9", kafka_url = "k:1" })
                assert.equals("logs-s9", config.receivers.kafka.topic)
                assert.same({ "k:1" }, config.receivers.kafka.brokers)
                assert(yaml:find("tenant: t%-1"), yaml)
              end)
              it("returns a handler's maestro.reject as nil, message", function()
                assert.same({ nil, "tenant is closed" }, { spec.build({ tenant = "t-closed", endpoint = "https://l" }) })
              end)
              it("raises a plugin failure", function()
                assert.has_error(function() spec.build({ tenant = "t-bug", endpoint = "https://l" }) end, "a bug")
              end)
              it("makes maestro.reject a catchable error in the spec's own calls", function()
                assert.has_error(function() maestro.reject("tenant", "nope") end, "maestro.reject: tenant nope")
              end)
            end)
            """)
        let results = run(plugins)
        #expect(results.count == 6)
        for result in results { #expect(result.failure == nil, "\(result.name): \(result.failure ?? "")") }
    }

    @Test("spec.render renders the objects through the template, with the config the plugin built")
    func renderHelper() throws {
        let plugins = try lokiPlugins(schema: Self.schema, handler: Self.handler)
        try plugins.write("loki/spec/render_spec.lua", """
            it("renders", function()
              local objects = spec.render({ tenant = "t-1", endpoint = "https://loki.example" }, { sink_id = "s9" })
              local kinds = {}
              for _, object in ipairs(objects) do kinds[#kinds + 1] = object.kind end
              assert.same({ "Secret", "Deployment", "Service" }, kinds)
              assert.equals("otel-s9", objects[2].metadata.name)
              local config = maestro.yaml.decode(objects[1].stringData["config.yaml"])
              assert.equals("t-1", config.exporters.loki.tenant)
            end)
            """)
        let results = run(plugins, options: SpecOptions(templatesRoot: repositoryRoot + "/templates"))
        #expect(results.count == 1)
        #expect(results.first?.failure == nil, "\(results)")
        let without = run(plugins)
        #expect(without.first?.failure?.contains("spec.render needs a templates folder") == true, "\(without)")
    }

    @Test("a wrong golden pair fails naming the file and the differing lines; --update-golden rewrites it; a missing one fails")
    func goldenPairs() throws {
        let plugins = try lokiPlugins(schema: Self.schema, handler: Self.handler)
        try plugins.write("loki/spec/golden/basic.json", #"{"sink_id": "g1", "kafka_url": "k:1", "config": {"tenant": "t-7", "endpoint": "https://loki.example"}}"#)
        let right = """
            receivers: {kafka: {brokers: ["k:1"], topic: logs-g1}}
            exporters: {loki: {endpoint: "https://loki.example", tenant: t-7, retries: 3}}
            service: {pipelines: {logs: {receivers: [kafka], exporters: [loki]}}}
            """
        try plugins.write("loki/spec/golden/basic.yaml", right)
        #expect(run(plugins).map(\.failure) == [nil])

        try plugins.write("loki/spec/golden/basic.yaml", right.replacingOccurrences(of: "t-7", with: "t-8"))
        let wrong = run(plugins)
        #expect(wrong.first?.name == "golden basic")
        let failure = try #require(wrong.first?.failure)
        #expect(failure.contains("loki/spec/golden/basic.yaml differs from what the plugin builds from"), "\(failure)")
        let lines = failure.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.contains { $0.hasPrefix("-") && $0.hasSuffix("tenant: t-8") } && lines.contains { $0.hasPrefix("+") && $0.hasSuffix("tenant: t-7") },
                "\(failure)")

        let updated = run(plugins, options: SpecOptions(updateGolden: true))
        #expect(updated.first?.failure == nil)
        #expect(updated.first?.name.contains("wrote") == true)
        #expect(try YAML.parse(try String(contentsOfFile: plugins.path + "/loki/spec/golden/basic.yaml", encoding: .utf8)) == YAML.parse(right))
        #expect(run(plugins).map(\.failure) == [nil])

        try plugins.write("loki/spec/golden/rejected.json", #"{"config": {"tenant": "acme", "endpoint": "https://l"}}"#)
        try plugins.write("loki/spec/golden/new.json", #"{"config": {"tenant": "t-1", "endpoint": "https://l"}}"#)
        let more = failures(run(plugins))
        #expect(more["golden new"]?.contains("new.yaml is missing: run maestro plugins test --update-golden") == true, "\(more)")
        #expect(more["golden rejected"]?.contains("the config was rejected: tenant must match the pattern") == true, "\(more)")
    }
}

@Suite("MaestroPluginHost's embedded Lua", .timeLimit(.minutes(1)))
struct PluginHostEmbeddedLuaTests {
    @Test("the generated EmbeddedLua.swift holds each lua/*.lua file exactly (else run scripts/generate-lua)")
    func generatedSourceIsCurrent() throws {
        let folder = repositoryRoot + "/Sources/MaestroPluginHost/lua"
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".lua") }.sorted()
        #expect(files == EmbeddedLua.files.keys.sorted(), "the .lua files and the generated constants differ: run scripts/generate-lua")
        for file in files {
            #expect(EmbeddedLua.files[file] == (try String(contentsOfFile: folder + "/" + file, encoding: .utf8)), "\(file) changed: run scripts/generate-lua")
        }
    }
}
