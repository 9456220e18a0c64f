import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

/// The shipped plugins folder (component lists included) plus a `relay` backend that builds Orb's
/// config and adds to the pipeline the exporter its sink config names, defined or not.
func relayPlugins() throws -> TemporaryDirectory {
    let directory = try TemporaryDirectory()
    for name in ["prometheus", "otlphttp", "_lib", "_components"] {
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/" + name, toPath: directory.path + "/" + name)
    }
    try directory.write("relay/schema.lua", """
        local otel = require "_lib.otel"
        return {
          name = "relay", version = "1.0.0", binds = { sink_backend = "relay" },
          sink = { fields = { also_export_to = { type = "string", required = true } } },
          settings = { fields = otel.settings_fields },
        }
        """)
    try directory.write("relay/handler.lua", """
        local otel = require "_lib.otel"
        local handler = {}
        function handler.on_sink_create(sink)
          sink.config.authentication = { type = "bearertokenauth", scheme = "Bearer", token = "t" }
          local config = otel.collector_config(sink, "otlphttp", "https://relay.example/v1", nil, { supported = { "metrics" } })
          local exporters = config.service.pipelines.metrics.exporters
          exporters[#exporters + 1] = sink.config.also_export_to
          if sink.config.also_export_to == "debug" then config.exporters.debug = maestro.empty_map() end
          return config
        end
        handler.on_sink_update = handler.on_sink_create
        return handler
        """)
    return directory
}

/// The sinker and the maestro role on one Redis and a directory backend, wired as `maestro run` wires
/// them: the reconciler checks configs against the plugins' component lists.
struct ValidationFixture {
    let plugins: TemporaryDirectory
    let pipeline: PipelineFixture
    let manifests: TemporaryDirectory
    let backend: DirectoryBackend
    let reconciler: Reconciler
    let manager: CollectorManager

    init() throws {
        plugins = try relayPlugins()
        pipeline = try PipelineFixture(plugins: plugins.path)
        manifests = try TemporaryDirectory()
        backend = DirectoryBackend(root: manifests.path)
        reconciler = Reconciler(redisURL: try RedisURL(parsing: pipeline.redisURL), names: pipeline.names, backend: backend,
                                options: ReconcilerOptions(resyncInterval: 3_600), logger: Logger(label: "test"))
        reconciler.useComponentLists(PluginCatalog.load(root: plugins.path).components)
        manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test")) {
            try TemplateRenderer(root: repositoryRoot + "/templates")
        }
    }

    func manifest(_ sinkID: String) -> String? {
        FileManager.default.contents(atPath: backend.path(name: CollectorNaming.name(forSinkID: sinkID), namespace: "otelcollectors"))
            .map { String(decoding: $0, as: UTF8.self) }
    }

    func statuses(_ redis: RedisConnection, _ sinkID: String) throws -> [StreamEntry] {
        try redis.xrange(pipeline.names.statusStream).filter { $0["sink_id"] == sinkID }
    }

    func waitUntilIdle() -> Bool {
        eventually(timeout: 20) { reconciler.backlog == 0 }
    }
}

func relayConfig(_ exporter: String) -> String {
    try! JSON.encode(["also_export_to": .string(exporter)])
}

@Suite("Collector configs checked by the collector's rules, sinker and maestro role, against a real Redis", .serialized, .testThreads,
       .timeLimit(.minutes(3)))
struct CollectorValidationTests {
    @Test("a plugin that emits a pipeline naming an undefined exporter: provisioning_error naming it; nothing stored or applied; the running collector stays")
    func undefinedExporterEndToEnd() throws {
        let fixture = try ValidationFixture()
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        let consumer = try fixture.pipeline.consumer(collectors: fixture.manager)
        consumer.start()
        defer { consumer.stop() }

        try fixture.pipeline.add(redis, create("v1", relayConfig("debug"), backend: "relay"))
        #expect(try fixture.pipeline.waitUntilDrained(redis))
        #expect(fixture.waitUntilIdle())
        let goodConfig = try #require(try redis.hget(fixture.pipeline.names.configHash, field: "v1"))
        let goodManifest = try #require(fixture.manifest("v1"), "a valid config is applied")

        try fixture.pipeline.add(redis, update("v1", relayConfig("otlphttp/missing")))
        #expect(try fixture.pipeline.waitUntilDrained(redis))
        #expect(fixture.waitUntilIdle())
        let last = try #require(try fixture.statuses(redis, "v1").last)
        #expect(last["status"] == "provisioning_error")
        #expect(last["error_message"] == "collector config: pipeline \"metrics\": exporter \"otlphttp/missing\" is not defined in exporters or connectors")
        #expect(try redis.hget(fixture.pipeline.names.configHash, field: "v1") == goodConfig, "the refused config was stored")
        #expect(fixture.manifest("v1") == goodManifest, "the running collector was replaced")
        #expect(try fixture.pipeline.deadLetters(redis).isEmpty, "a refusal is the user's mistake, not a dead letter")

        // A sink created with the mistake gets nothing at all.
        try fixture.pipeline.add(redis, create("v2", relayConfig("kafka/nowhere"), backend: "relay"))
        #expect(try fixture.pipeline.waitUntilDrained(redis))
        #expect(fixture.waitUntilIdle())
        #expect(try fixture.statuses(redis, "v2").last?["error_message"]?.contains("exporter \"kafka/nowhere\" is not defined") == true)
        #expect(try redis.hget(fixture.pipeline.names.configHash, field: "v2") == nil)
        #expect(fixture.manifest("v2") == nil)
    }

    @Test("the maestro role refuses a config that reached Redis by another path: provisioning_error, the applied objects kept")
    func maestroRoleRefusesStoredConfig() throws {
        let fixture = try ValidationFixture()
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        let consumer = try fixture.pipeline.consumer(collectors: fixture.manager)
        consumer.start()
        defer { consumer.stop() }
        try fixture.pipeline.add(redis, create("m1", relayConfig("debug"), backend: "relay"))
        #expect(try fixture.pipeline.waitUntilDrained(redis))
        #expect(fixture.waitUntilIdle())
        let goodManifest = try #require(fixture.manifest("m1"))
        let goodDesiredState = try #require(try redis.hget(fixture.pipeline.names.deploymentHash, field: "m1"))

        // Written straight into the config hash: no plugin, no sinker check. An exporter type the image
        // (the template's default, contrib 0.91.0) does not have, in a pipeline that is well formed.
        let stored = try YAML.parse(try #require(try redis.hget(fixture.pipeline.names.configHash, field: "m1")))
        guard case .map(var config) = stored, case .map(var exporters)? = config["exporters"], case .map(var service)? = config["service"],
              case .map(var pipelines)? = service["pipelines"], case .map(var metrics)? = pipelines["metrics"],
              case .list(let used)? = metrics["exporters"] else {
            Issue.record("the stored config is not Orb's shape")
            return
        }
        exporters["opensearch"] = .map([:])
        config["exporters"] = .map(exporters)
        metrics["exporters"] = .list(used + [.string("opensearch")])
        pipelines["metrics"] = .map(metrics)
        service["pipelines"] = .map(pipelines)
        config["service"] = .map(service)
        let yaml = try YAML.emit(.map(config))
        _ = try redis.hset(fixture.pipeline.names.configHash, field: "m1", value: yaml)
        fixture.reconciler.enqueue("m1")
        #expect(eventually(timeout: 20) { (try? fixture.statuses(redis, "m1").last?["status"]) == "provisioning_error" })
        #expect(try fixture.statuses(redis, "m1").last?["error_message"] == "collector config: pipeline \"metrics\": exporter \"opensearch\": "
                + "type \"opensearch\" is not an exporter of the image otel/opentelemetry-collector-contrib:0.91.0 "
                + "(_components/otel-collector-contrib-0.91.0.yaml)")
        #expect(fixture.waitUntilIdle())
        #expect(fixture.manifest("m1") == goodManifest, "the refused config replaced the applied objects")
        #expect(try redis.hget(fixture.pipeline.names.deploymentHash, field: "m1") == goodDesiredState, "the desired state was replaced")
        #expect(fixture.reconciler.counters.rejected >= 1)

        // A gRPC-style create asks for the decision: FAILED_PRECONDITION with the same message.
        #expect(throws: CollectorServiceError.self) { try fixture.manager.createAndGet(sinkID: "m1", ownerID: "") }
    }

    @Test("the sinker checks types against the image the template runs: refused for 0.91.0, stored for 0.100.0")
    func sinkerTypesByImage() throws {
        let plugins = try relayPlugins()
        try plugins.write("relay/handler.lua", """
            local otel = require "_lib.otel"
            return { on_sink_create = function(sink)
              sink.config.authentication = { type = "bearertokenauth", scheme = "Bearer", token = "t" }
              local config = otel.collector_config(sink, "otlphttp", "https://relay.example/v1", nil, { supported = { "metrics" } })
              config.exporters[sink.config.also_export_to] = maestro.empty_map()
              table.insert(config.service.pipelines.metrics.exporters, sink.config.also_export_to)
              return config
            end }
            """)
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.failures.isEmpty)
        func build(image: String) -> CollectorConfigResult {
            var context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: OrbSecretCipher(secret: "orb"), kafkaURL: "kafka:9092",
                                        policy: .eager, collectors: nil, logger: Logger(label: "test"))
            context.collectorImage = image
            let runtime = PluginRuntime(catalog: catalog, names: RedisNames(), logger: Logger(label: "test"))
            return CollectorConfigBuilder(context: context, runtime: runtime)
                .build(operation: .create, sinkID: "t1", ownerID: "o", backend: "relay", config: ["also_export_to": "opensearch"])
        }
        guard case .invalid(let message) = build(image: "otel/opentelemetry-collector-contrib:0.91.0") else {
            Issue.record("an exporter type 0.91.0 lacks was accepted")
            return
        }
        #expect(message == "collector config: pipeline \"metrics\": exporter \"opensearch\": type \"opensearch\" is not an exporter of the image "
                + "otel/opentelemetry-collector-contrib:0.91.0 (_components/otel-collector-contrib-0.91.0.yaml)")
        guard case .config(_, let yaml) = build(image: "otel/opentelemetry-collector-contrib:0.100.0") else {
            Issue.record("an exporter type 0.100.0 has was refused")
            return
        }
        #expect(yaml.contains("opensearch"))
    }
}
