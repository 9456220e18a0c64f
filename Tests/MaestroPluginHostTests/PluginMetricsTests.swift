import Foundation
import Logging
import MaestroCore
import MaestroLua
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroPluginHost

@Suite("Plugin metrics", .testThreads, .timeLimit(.minutes(2)))
struct PluginMetricsTests {
    static let schema = """
        return {
          name = "loki", binds = { sink_backend = "loki" },
          metrics = {
            built_total = { type = "counter", help = "Configs built, by outcome.", labels = { "outcome" } },
            tenants = { type = "gauge", help = "Tenants seen." },
            endpoint_length = { type = "histogram", help = "Endpoint lengths.", buckets = { 10, 20 } },
            few = { type = "counter", help = "A bounded label.", labels = { "tenant" }, max_label_values = 3 },
          },
        }
        """

    func runtime(_ plugins: TemporaryDirectory, store: PluginMetricsStore) throws -> (CollectorConfigBuilder, PluginManifest) {
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        let logger = Logger(label: "test")
        let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: OrbSecretCipher(secret: "orb"), kafkaURL: "k:1", policy: .eager,
                                    collectors: nil, logger: logger)
        let runtime = PluginRuntime(catalog: catalog, names: RedisNames(), logger: logger, cluster: nil, replacing: [], metrics: store)
        return (CollectorConfigBuilder(context: context, runtime: runtime), try #require(catalog.plugin(named: "loki")))
    }

    @Test("inc, set and observe are served as maestro_plugin_<plugin>_<name> with HELP, TYPE and histogram buckets")
    func exposition() throws {
        let plugins = try lokiPlugins(schema: Self.schema, handler: """
            return { on_sink_create = function(sink)
              maestro.metrics.inc("built_total", { outcome = "ok" })
              maestro.metrics.inc("built_total", { outcome = "ok" }, 2)
              maestro.metrics.set("tenants", 7)
              maestro.metrics.observe("endpoint_length", nil, 15)
              maestro.metrics.observe("endpoint_length", {}, 25.5)
              return { ok = true }
            end }
            """)
        let store = PluginMetricsStore()
        let (builder, _) = try runtime(plugins, store: store)
        guard case .config = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: .map([:])) else {
            Issue.record("the build failed")
            return
        }
        #expect(store.exposition() == """
            # HELP maestro_plugin_loki_built_total Configs built, by outcome.
            # TYPE maestro_plugin_loki_built_total counter
            maestro_plugin_loki_built_total{outcome="ok"} 3
            # HELP maestro_plugin_loki_endpoint_length Endpoint lengths.
            # TYPE maestro_plugin_loki_endpoint_length histogram
            maestro_plugin_loki_endpoint_length_bucket{le="10"} 0
            maestro_plugin_loki_endpoint_length_bucket{le="20"} 1
            maestro_plugin_loki_endpoint_length_bucket{le="+Inf"} 2
            maestro_plugin_loki_endpoint_length_sum 40.5
            maestro_plugin_loki_endpoint_length_count 2
            # HELP maestro_plugin_loki_tenants Tenants seen.
            # TYPE maestro_plugin_loki_tenants gauge
            maestro_plugin_loki_tenants 7

            """)
    }

    static let misuses: [(String, String)] = [
        ("maestro.metrics.inc('nope')", "maestro.metrics.inc: metric nope is not declared in schema.lua"),
        ("maestro.metrics.inc('built_total', { outcome = 'ok', tenant = 't' })", "metric built_total has no label tenant (declared: outcome)"),
        ("maestro.metrics.inc('built_total')", "metric built_total needs a value for its label outcome"),
        ("maestro.metrics.inc('built_total', { outcome = 5 })", "metric built_total: label outcome must be a string"),
        ("maestro.metrics.set('built_total', { outcome = 'ok' }, 1)", "metric built_total is a counter: use maestro.metrics.inc"),
        ("maestro.metrics.inc('built_total', { outcome = 'ok' }, -1)", "metric built_total is a counter: it only goes up"),
        ("maestro.metrics.observe('tenants', nil, 1)", "metric tenants is a gauge: use maestro.metrics.set or inc"),
        ("maestro.metrics.set('tenants', nil, 0/0)", "metric tenants: the value must be a finite number"),
    ]

    @Test("an undeclared metric, an undeclared or missing label, the wrong update: errors naming them", arguments: misuses.indices)
    func misuse(_ index: Int) throws {
        let (call, expected) = Self.misuses[index]
        let plugins = try lokiPlugins(schema: Self.schema, handler: "return { on_sink_create = function(sink) \(call) return {} end }")
        let (builder, _) = try runtime(plugins, store: PluginMetricsStore())
        guard case .failed(let error, _) = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: .map([:])) else {
            Issue.record("\(call) was accepted")
            return
        }
        #expect(error.message.contains(expected), "\(call): \(error.message)")
    }

    @Test("attack: 10,000 label values meet the declared bound: refused past it with nil, err naming the metric; the kept series still count")
    func labelBound() throws {
        let plugins = try lokiPlugins(schema: Self.schema, handler: """
            return { on_sink_create = function(sink)
              local refused, last
              for i = 1, 10000 do
                local ok, err = maestro.metrics.inc("few", { tenant = "t-" .. i })
                if not ok then refused = (refused or 0) + 1 last = err end
              end
              assert(maestro.metrics.inc("few", { tenant = "t-2" }))
              return { refused = refused, last = last }
            end }
            """)
        let store = PluginMetricsStore()
        let (builder, _) = try runtime(plugins, store: store)
        guard case .config(let result, _) = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: .map([:])) else {
            Issue.record("the build failed")
            return
        }
        #expect(result["refused"] == 9997)
        #expect(result["last"]?.stringValue?.hasPrefix("metric few has 3 label-value sets already (its max_label_values): refused tenant=t-10000") == true,
                "\(result)")
        let samples = store.exposition().split(separator: "\n").filter { $0.hasPrefix("maestro_plugin_loki_few{") }
        #expect(samples == [#"maestro_plugin_loki_few{tenant="t-1"} 1"#, #"maestro_plugin_loki_few{tenant="t-2"} 2"#, #"maestro_plugin_loki_few{tenant="t-3"} 1"#])
    }

    static let declarationMistakes: [(String, String)] = [
        ("many = { type = 'counter', help = 'x', labels = { 'tenant' }, max_label_values = 10000 }",
         "metrics.many.max_label_values must be a whole number from 1 to 1000"),
        ("typo = { type = 'counter', hepl = 'x' }", "metrics.typo.hepl is not a metric option (did you mean help?)"),
        ("kind = { type = 'summary', help = 'x' }", "metrics.kind.type must be counter, gauge or histogram"),
        ("mute = { type = 'gauge' }", "metrics.mute.help must say what the metric counts"),
        ("wide = { type = 'gauge', help = 'x', labels = { 'a', 'b', 'c', 'd', 'e', 'f' } }", "metrics.wide.labels has 6 labels; at most 5"),
        ("bucketed = { type = 'counter', help = 'x', buckets = { 1 } }", "metrics.bucketed.buckets applies to histograms only"),
        (#"["Bad-Name"] = { type = 'gauge', help = 'x' }"#, "metrics.Bad-Name is not a metric name"),
    ]

    @Test("a bad declaration fails lint with file:line", arguments: declarationMistakes.indices)
    func declarationMistake(_ index: Int) throws {
        let (declaration, expected) = Self.declarationMistakes[index]
        let plugins = try lokiPlugins(schema: "return {\n  name = 'loki',\n  metrics = {\n    \(declaration),\n  },\n}\n")
        let message = PluginCatalog.load(root: plugins.path).failures.first?.message ?? ""
        #expect(message.contains("loki/schema.lua:4: " + expected), "\(message)")
    }

    @Test("specs record metrics, from the spec's own calls and through spec.build")
    func recordedInSpecs() throws {
        let plugins = try lokiPlugins(schema: Self.schema, handler: """
            return { on_sink_create = function(sink) maestro.metrics.inc("built_total", { outcome = "ok" }) return { ok = true } end }
            """)
        try plugins.write("loki/spec/metrics_spec.lua", """
            local handler = require "loki.handler"
            it("counts", function()
              assert.is_nil(spec.metric("built_total", { outcome = "ok" }))
              handler.on_sink_create({})
              assert.equals(1, spec.metric("built_total", { outcome = "ok" }))
              spec.build({})
              assert.equals(2, spec.metric("built_total", { outcome = "ok" }))
              maestro.metrics.observe("endpoint_length", nil, 3)
              assert.same({ count = 1, sum = 3.0 }, spec.metric("endpoint_length"))
            end)
            """)
        let results = PluginSpecRunner.run(catalog: PluginCatalog.load(root: plugins.path))
        #expect(results.count == 1 && results.first?.failure == nil, "\(results)")
    }

    @Test("two plugins' metrics cannot meet on /metrics, nor take one of maestro's own names")
    func nameCollisions() throws {
        let plugins = try lokiPlugins(schema: "return { name = 'loki', metrics = { built_total = { type = 'counter', help = 'x' } } }")
        try plugins.write("lo/schema.lua", "return { name = 'lo', metrics = { ki_built_total = { type = 'counter', help = 'y' } } }")
        try plugins.write("lo/handler.lua", "return {}")
        try plugins.write("lo-ki/schema.lua", "return { name = 'lo-ki', metrics = { built_total = { type = 'counter', help = 'y' } } }")
        try plugins.write("lo-ki/handler.lua", "return {}")
        try plugins.write("errors/schema.lua", "return {\n  name = 'errors',\n  metrics = {\n    total = { type = 'counter', help = 'z' },\n  },\n}\n")
        try plugins.write("errors/handler.lua", "return {}")
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.plugins.map(\.name) == ["lo", "loki"], "\(catalog.failures)")
        let messages = catalog.failures.map(\.message).joined(separator: "\n")
        #expect(messages.contains("lo-ki/schema.lua: metric built_total would be served as maestro_plugin_lo_ki_built_total, as a metric of plugin lo is"),
                "\(messages)")
        #expect(messages.contains("errors/schema.lua:4: metrics.total would be served as maestro_plugin_errors_total, one of maestro's own metrics"), "\(messages)")
    }

    @Test("attack: a label value with quotes, a backslash and a newline cannot forge a sample line")
    func labelValuesEscaped() throws {
        let plugins = try lokiPlugins(schema: Self.schema, handler: """
            return { on_sink_create = function(sink)
              maestro.metrics.inc("built_total", { outcome = 'x"} 1\\nmaestro_forged 99\\\\' })
              return { ok = true }
            end }
            """)
        let store = PluginMetricsStore()
        let (builder, _) = try runtime(plugins, store: store)
        guard case .config = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: .map([:])) else {
            Issue.record("the build failed")
            return
        }
        let lines = store.exposition().split(separator: "\n")
        #expect(!lines.contains { $0.hasPrefix("maestro_forged") }, "\(lines)")
        #expect(lines.contains(#"maestro_plugin_loki_built_total{outcome="x\"} 1\nmaestro_forged 99\\"} 1"#), "\(lines)")
    }
}
