import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

func shippedRenderer(settings: Value = .map([:])) throws -> TemplateRenderer {
    try TemplateRenderer(root: repositoryRoot + "/templates", settings: settings)
}

@Suite("Collector names and config hash", .timeLimit(.minutes(2)))
struct CollectorNamingTests {
    @Test("a DNS-1035 id keeps its name; any other id maps to a valid, distinct name",
          arguments: ["sink-id-11", "5f4b9c2e-1d3a-4e6b-9a7c-2b8d0e1f3a45", "My Sink/1", "my sink 1", "UPPER", "a_b", "ends-", "-", "🚀",
                      "", String(repeating: "x", count: 200), "123", "x.y.z", "...."])
    func names(_ sinkID: String) {
        let name = CollectorNaming.name(forSinkID: sinkID)
        #expect(CollectorNaming.isDNS1035Label(name), "\(name)")
        if CollectorNaming.isDNS1035Label("otel-" + sinkID) { #expect(name == "otel-" + sinkID) }
    }

    @Test("different ids never share a name")
    func distinct() {
        let ids = ["My Sink/1", "my sink 1", "my-sink-1", "MY SINK 1", "my_sink_1", "My Sink/2", String(repeating: "a", count: 100),
                   String(repeating: "a", count: 101)]
        #expect(Set(ids.map(CollectorNaming.name(forSinkID:))).count == ids.count)
    }

    @Test("the config hash is an HMAC: same key same hash, another key another hash")
    func hmac() {
        let key = ConfigHasher.randomKeyHex()
        #expect(ConfigHasher(keyHex: key).hash("config") == ConfigHasher(keyHex: key).hash("config"))
        #expect(ConfigHasher(keyHex: key).hash("config") != ConfigHasher(keyHex: ConfigHasher.randomKeyHex()).hash("config"))
        #expect(ConfigHasher(keyHex: key).hash("a") != ConfigHasher(keyHex: key).hash("b"))
        #expect(ConfigHasher(keyHex: key).hash("config").count == 64)
    }

    @Test("the installation key is created once, also by racing first starts")
    func installationKey() throws {
        let names = RedisNames().prefixed(RedisTestServer.uniquePrefix("key"))
        let first = try RedisConnection(url: RedisURL(parsing: RedisTestServer.url))
        let second = try RedisConnection(url: RedisURL(parsing: RedisTestServer.url))
        let keys = try [first, second, first].map { try ConfigHasher.installationKey($0, names: names) }
        #expect(Set(keys).count == 1)
        #expect(keys[0].count == 64)
        try first.del([names.configHashKey])
    }
}

@Suite("The otel-collector template", .timeLimit(.minutes(2)))
struct TemplateTests {
    @Test("golden render: templates/testdata/otel-collector")
    func golden() throws {
        let input = try JSON.decode(try String(contentsOfFile: repositoryRoot + "/templates/testdata/otel-collector/values.json", encoding: .utf8))
        let expected = try YAML.parseAll(try String(contentsOfFile: repositoryRoot + "/templates/testdata/otel-collector/expected.yaml", encoding: .utf8))
        let renderer = try shippedRenderer(settings: input["values"]!)
        let inputs = input["inputs"]!
        let rendered = try renderer.render(CollectorInputs(sinkID: inputs["sink_id"]!.stringValue!, ownerID: inputs["owner_id"]!.stringValue!,
                                                           configYAML: inputs["config_yaml"]!.stringValue!, configHash: inputs["config_hash"]!.stringValue!))
        #expect(rendered.objects.count == 3)
        for (object, wanted) in zip(rendered.objects, expected) {
            #expect(object == wanted, "\(object["kind"]?.stringValue ?? "?") differs")
        }
        #expect(try YAML.parseAll(rendered.yaml) == expected)
        #expect(rendered.name == "otel-sink-id-11")
        #expect(rendered.namespace == "otelcollectors")
    }

    @Test("defaults: one replica, Orb's image, ClusterIP, no resources")
    func defaults() throws {
        let rendered = try shippedRenderer().render(CollectorInputs(sinkID: "s", ownerID: "o", configYAML: "a: 1\n", configHash: "h"))
        let deployment = rendered.objects[1]
        #expect(deployment["spec"]?["replicas"] == .int(1))
        #expect(deployment["spec"]?["template"]?["spec"]?["containers"]?.listValue?.first?["image"] == .string("otel/opentelemetry-collector-contrib:0.91.0"))
        #expect(deployment["spec"]?["template"]?["spec"]?["nodeSelector"] == nil)
        #expect(rendered.objects[2]["spec"]?["type"] == .string("ClusterIP"))
    }

    @Test("tricky values survive into the Secret as the same strings")
    func trickyValues() throws {
        let config: Value = ["extensions": ["basicauth/exporter": ["client_auth": [
            "username": "1234123", "password": "a\"b: c\n'quoted' #not a comment", "flag": "true", "unicode": "🚀 ü", "empty": "",
        ]]]]
        let configYAML = try YAML.emit(config)
        let rendered = try shippedRenderer().render(CollectorInputs(sinkID: "s", ownerID: "o", configYAML: configYAML, configHash: "h"))
        let parsed = try YAML.parseAll(rendered.yaml)
        let secretConfig = try #require(parsed[0]["stringData"]?["config.yaml"]?.stringValue)
        #expect(secretConfig == configYAML)
        #expect(try YAML.parse(secretConfig) == config)
        let viaPyYAML = try JSON.decode(try runPythonYAML(secretConfig))
        #expect(viaPyYAML == config)
    }

    @Test("bad template values are rejected with the field named")
    func badValues() {
        #expect(throws: PluginError.self) { try shippedRenderer(settings: ["replicas": "two"]) }
        #expect(throws: PluginError.self) { try shippedRenderer(settings: ["service_type": "Magic"]) }
    }

    @Test("maestro.template.render renders another template; templates cannot reach Redis")
    func nested() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/templates/otel-collector.lua", toPath: directory.path + "/otel-collector.lua")
        try directory.write("wrapper.lua", """
        return {
          values = { fields = {} },
          render = function(values)
            values.namespace = "wrapped"
            values.replicas = 1
            values.image = "img"
            values.service_type = "ClusterIP"
            local objects = maestro.template.render("otel-collector", values)
            assert(maestro.redis == nil, "templates must not see maestro.redis")
            return objects
          end,
        }
        """)
        let renderer = try TemplateRenderer(root: directory.path, templateName: "wrapper")
        let rendered = try renderer.render(CollectorInputs(sinkID: "s", ownerID: "o", configYAML: "a: 1\n", configHash: "h"))
        #expect(rendered.objects.first?["metadata"]?["namespace"] == .string("wrapped"))
    }
}
