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

@Suite("Collector names and config hash", .testThreads, .timeLimit(.minutes(2)))
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

@Suite("The otel-collector template", .testThreads, .timeLimit(.minutes(2)))
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

    @Test("defaults: replicas left to the cluster (an HPA or kubectl scale may own them), Orb's image, ClusterIP")
    func defaults() throws {
        let rendered = try shippedRenderer().render(CollectorInputs(sinkID: "s", ownerID: "o", configYAML: "a: 1\n", configHash: "h"))
        let deployment = rendered.objects[1]
        #expect(deployment["spec"]?["replicas"] == nil)
        #expect(deployment["spec"]?["selector"] != nil)
        #expect(deployment["spec"]?["template"]?["spec"]?["containers"]?.listValue?.first?["image"] == .string("otel/opentelemetry-collector-contrib:0.91.0"))
        #expect(deployment["spec"]?["template"]?["spec"]?["nodeSelector"] == nil)
        #expect(rendered.objects[2]["spec"]?["type"] == .string("ClusterIP"))
        #expect(rendered.objects.count == 3, "no NetworkPolicy unless asked")
    }

    @Test("the pod runs hardened: restricted securityContext, no service-account token, default requests and limits")
    func hardened() throws {
        let rendered = try shippedRenderer().render(CollectorInputs(sinkID: "s", ownerID: "o", configYAML: "a: 1\n", configHash: "h"))
        let pod = try #require(rendered.objects[1]["spec"]?["template"]?["spec"])
        let container = try #require(pod["containers"]?.listValue?.first)
        #expect(pod["automountServiceAccountToken"] == .bool(false))
        #expect(pod["securityContext"] == ["runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                           "seccompProfile": ["type": "RuntimeDefault"]])
        #expect(container["securityContext"] == ["allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                                                 "capabilities": ["drop": ["ALL"]], "seccompProfile": ["type": "RuntimeDefault"]])
        #expect(container["resources"] == ["requests": ["cpu": "100m", "memory": "128Mi"], "limits": ["cpu": "1", "memory": "512Mi"]])
        #expect(pod["volumes"]?.listValue?.contains(["name": "tmp", "emptyDir": ["sizeLimit": "64Mi"]]) == true, "a writable /tmp")
    }

    @Test("network_policy renders a NetworkPolicy: DNS, everything but the denied ranges, and the allowed ones")
    func networkPolicy() throws {
        let rendered = try shippedRenderer(settings: ["network_policy": true, "egress_allow_cidrs": ["10.20.0.0/16"]])
            .render(CollectorInputs(sinkID: "s", ownerID: "o", configYAML: "a: 1\n", configHash: "h"))
        #expect(rendered.objects.count == 4)
        let policy = rendered.objects[3]
        #expect(policy["kind"] == "NetworkPolicy")
        #expect(policy["apiVersion"] == "networking.k8s.io/v1")
        #expect(policy["metadata"]?["name"] == "otel-s")
        #expect(policy["metadata"]?["labels"]?["app.kubernetes.io/managed-by"] == "maestro")
        #expect(policy["spec"]?["podSelector"] == ["matchLabels": ["app.kubernetes.io/instance": "otel-s"]])
        #expect(policy["spec"]?["policyTypes"] == ["Egress"])
        let egress = try #require(policy["spec"]?["egress"]?.listValue)
        #expect(egress.count == 3)
        #expect(egress[0]["ports"] == [["protocol": "UDP", "port": 53], ["protocol": "TCP", "port": 53]])
        #expect(egress[1]["to"] == [
            ["ipBlock": ["cidr": "0.0.0.0/0", "except": ["169.254.0.0/16", "100.64.0.0/10", "192.0.0.192/32", "168.63.129.16/32", "10.0.0.0/8",
                                                         "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "0.0.0.0/8"]]],
            ["ipBlock": ["cidr": "::/0", "except": ["fe80::/10", "fc00::/7", "::1/128"]]],
        ])
        #expect(egress[2]["to"] == [["ipBlock": ["cidr": "10.20.0.0/16"]]])
        let custom = try shippedRenderer(settings: ["network_policy": true, "egress_deny_cidrs": ["203.0.113.0/24"]])
            .render(CollectorInputs(sinkID: "s", ownerID: "o", configYAML: "a: 1\n", configHash: "h"))
        #expect(custom.objects[3]["spec"]?["egress"]?.listValue?[1]["to"] == [
            ["ipBlock": ["cidr": "0.0.0.0/0", "except": ["203.0.113.0/24"]]], ["ipBlock": ["cidr": "::/0"]],
        ])
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
