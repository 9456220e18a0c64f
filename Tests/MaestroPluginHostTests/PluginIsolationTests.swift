import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroPluginHost

/// A sink plugin that tries what issue 13 item 6 found: writing and deleting other sinks' collector
/// objects and other plugins' objects, and reading other sinks' credentials. `sink.config.mode` picks
/// the attempt; what it read comes back in the collector config.
private let attackerHandler = """
local handler = {}
function handler.on_sink_create(sink)
  local mode, out = sink.config.mode, {}
  if mode == "apply-otel-victim" then
    assert(maestro.k8s.apply { apiVersion = "v1", kind = "Otel", metadata = { name = "victim" }, data = { pwned = "yes" } })
  elseif mode == "delete-otel-victim" then
    assert(maestro.k8s.delete("v1/Otel", "victim"))
  elseif mode == "apply-secret" then
    assert(maestro.k8s.apply { apiVersion = "v1", kind = "Secret", metadata = { name = "otel-victim" }, data = { password = "cHduZWQ=" } })
  elseif mode == "delete-secret" then
    assert(maestro.k8s.delete("Secret", "otel-victim"))
  elseif mode == "apply-shared" then
    assert(maestro.k8s.apply { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "shared" }, data = { by = "attacker" } })
  elseif mode == "delete-shared" then
    assert(maestro.k8s.delete("ConfigMap", "shared"))
  elseif mode == "apply-own" then
    assert(maestro.k8s.apply { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "mine" }, data = { by = "attacker" } })
  elseif mode == "delete-own" then
    assert(maestro.k8s.delete("ConfigMap", "mine"))
  elseif mode == "read-secret" then
    local secret = maestro.k8s.get("Secret", sink.config.target)
    out.secret = secret and secret.data.password or "absent"
  elseif mode == "list-secrets" then
    local names = {}
    for _, item in ipairs(maestro.k8s.list("Secret")) do names[#names + 1] = item.metadata.name end
    out.secrets = table.concat(names, ",")
  elseif mode == "read-config" then
    out.config = maestro.redis.hget(sink.config.hash, sink.config.target) or "absent"
  end
  return { receivers = { out = out } }
end
return handler
"""

/// A collector's objects as the template renders them (the parts that matter here).
private func collectorSecret(sinkID: String, password: String) -> Value {
    ["apiVersion": "v1", "kind": "Secret",
     "metadata": ["name": .string("otel-" + sinkID), "namespace": "otelcollectors",
                  "labels": ["app.kubernetes.io/managed-by": "maestro", "app.kubernetes.io/instance": .string("otel-" + sinkID)],
                  "annotations": ["maestro.orb.community/sink-id": .string(sinkID)]],
     "data": ["password": .string(password)]]
}

private func pluginFolder(capabilities: String = "", extra: [String: String] = [:]) throws -> TemporaryDirectory {
    let directory = try TemporaryDirectory()
    try directory.write("attacker/schema.lua", "return { name = 'attacker', binds = { sink_backend = 'attacker' }\(capabilities) }")
    try directory.write("attacker/handler.lua", attackerHandler)
    for (path, text) in extra { try directory.write(path, text) }
    return directory
}

private func builder(_ catalog: PluginCatalog, cluster: (any PluginCluster)?, names: RedisNames = RedisNames()) -> CollectorConfigBuilder {
    var context = SinkerContext(catalog: catalog, names: names, cipher: OrbSecretCipher(secret: "orb"), kafkaURL: "k:1",
                                policy: .eager, collectors: nil, logger: Logger(label: "test"))
    context.cluster = cluster
    return CollectorConfigBuilder(context: context, runtime: PluginRuntime(catalog: catalog, names: names, logger: Logger(label: "test"),
                                                                            cluster: cluster))
}

private func attempt(_ builder: CollectorConfigBuilder, _ config: Value, sinkID: String = "mine", event: String) -> CollectorConfigResult {
    builder.build(operation: .create, sinkID: sinkID, ownerID: "o", backend: "attacker", config: config, eventID: event)
}

@Suite("plugin isolation: maestro.k8s writes only the plugin's own objects", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct PluginWriteIsolationTests {
    @Test("directory backend: apply{kind=Otel, name=victim} and delete leave the victim's collector file alone")
    func directoryCollectorFile() throws {
        let manifests = try TemporaryDirectory()
        let plugins = try pluginFolder()
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        try DirectoryBackend(root: manifests.path).apply(DesiredCollector(sinkID: "victim", name: "otel-victim", namespace: "otelcollectors",
                                                                          objects: [collectorSecret(sinkID: "victim", password: "dmljdGlt")]))
        let victimFile = manifests.path + "/otelcollectors/otel-victim.yaml"
        let original = try #require(TextFile.read(victimFile))
        let cluster = DirectoryPluginCluster(root: manifests.path, namespace: "otelcollectors")
        let builder = builder(catalog, cluster: cluster)

        guard case .config = attempt(builder, ["mode": "apply-otel-victim"], event: "1-0") else {
            Issue.record("the plugin's own object is written (elsewhere)")
            return
        }
        #expect(TextFile.read(victimFile) == original, "the collector's file is untouched")
        let own = try #require(try cluster.get(apiVersion: "v1", kind: "Otel", name: "victim"))
        #expect(own["metadata"]?["labels"]?["maestro.orb.community/plugin"] == "attacker")
        #expect(FileManager.default.fileExists(atPath: manifests.path + "/otelcollectors/plugins/attacker/otel-victim.yaml"))

        _ = attempt(builder, ["mode": "delete-otel-victim"], event: "2-0")
        #expect(TextFile.read(victimFile) == original, "deleting its own object never removes the collector's file")
        #expect(!FileManager.default.fileExists(atPath: manifests.path + "/otelcollectors/plugins/attacker/otel-victim.yaml"))

        for mode in ["apply-secret", "delete-secret"] {
            guard case .failed(let error, _) = attempt(builder, ["mode": .string(mode)], event: "3-\(mode)") else {
                Issue.record("\(mode) must be refused")
                continue
            }
            #expect(error.isTerminal)
            #expect(error.message.contains("otel-"), "\(error.message)")
            #expect(TextFile.read(victimFile) == original)
        }
    }

    @Test("directory backend: another plugin's object of the same kind and name is not touched")
    func directoryOtherPlugin() throws {
        let manifests = try TemporaryDirectory()
        let cluster = DirectoryPluginCluster(root: manifests.path, namespace: "otelcollectors")
        let shared: Value = ["apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": ["name": "shared", "namespace": "otelcollectors",
                                          "labels": ["app.kubernetes.io/managed-by": "maestro", "maestro.orb.community/plugin": "other"]],
                             "data": ["by": "other"]]
        try cluster.apply(shared, plugin: "other")
        let otherFile = manifests.path + "/otelcollectors/plugins/other/configmap-shared.yaml"
        let original = try #require(TextFile.read(otherFile))
        let plugins = try pluginFolder()
        let builder = builder(PluginCatalog.load(root: plugins.path), cluster: cluster)
        guard case .config = attempt(builder, ["mode": "apply-shared"], event: "1-0"), case .config = attempt(builder, ["mode": "delete-shared"], event: "2-0") else {
            Issue.record("both write only the attacker's own folder")
            return
        }
        #expect(TextFile.read(otherFile) == original)
    }

    @Test("Kubernetes: a collector's Secret and another plugin's object can be neither replaced nor deleted; its own can")
    func kubernetes() throws {
        let double = try KubeAPIDouble()
        let client = KubernetesClient(credentials: KubeCredentials(server: double.server, origin: "test"), logger: Logger(label: "test"))
        try KubernetesBackend(client: client, namespace: "otelcollectors")
            .apply(DesiredCollector(sinkID: "victim", name: "otel-victim", namespace: "otelcollectors",
                                    objects: [collectorSecret(sinkID: "victim", password: "dmljdGlt")]))
        // A collector object whose name a plugin may use (a template could render one): owned by no plugin.
        let extra: Value = ["apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": ["name": "shared", "namespace": "otelcollectors", "labels": ["app.kubernetes.io/managed-by": "maestro"],
                                         "annotations": ["maestro.orb.community/sink-id": "victim"]],
                            "data": ["password": "ZXh0cmE="]]
        try KubernetesBackend(client: client, namespace: "otelcollectors")
            .apply(DesiredCollector(sinkID: "victim", name: "otel-victim", namespace: "otelcollectors", objects: [extra]))
        let cluster = KubernetesPluginCluster(client: client, namespace: "otelcollectors")
        let plugins = try pluginFolder()
        let builder = builder(PluginCatalog.load(root: plugins.path), cluster: cluster)
        let secretPath = "/api/v1/namespaces/otelcollectors/secrets/otel-victim"
        let sharedPath = "/api/v1/namespaces/otelcollectors/configmaps/shared"

        for (index, mode) in ["apply-secret", "delete-secret", "apply-shared", "delete-shared"].enumerated() {
            guard case .failed(let error, _) = attempt(builder, ["mode": .string(mode)], event: "\(index)-0") else {
                Issue.record("\(mode) must be refused")
                continue
            }
            #expect(error.isTerminal, "\(mode): \(error.message)")
            #expect(error.message.contains("nothing was written"), "\(mode): \(error.message)")
        }
        let secret = try double.get(secretPath)
        #expect(secret.status == 200)
        #expect(secret.body["data"]?["password"] == "dmljdGlt")
        let sharedNow = try double.get(sharedPath)
        #expect(sharedNow.status == 200)
        #expect(sharedNow.body["data"]?["password"] == "ZXh0cmE=")

        // Its own object: applied with its name recorded, then deleted.
        guard case .config = attempt(builder, ["mode": "apply-own"], event: "10-0") else {
            Issue.record("a plugin applies its own objects")
            return
        }
        let own = try double.get("/api/v1/namespaces/otelcollectors/configmaps/mine")
        #expect(own.body["metadata"]?["labels"]?["maestro.orb.community/plugin"] == "attacker")
        guard case .config = attempt(builder, ["mode": "delete-own"], event: "11-0") else {
            Issue.record("a plugin deletes its own objects")
            return
        }
        #expect(try double.get("/api/v1/namespaces/otelcollectors/configmaps/mine").status == 404)
    }
}

@Suite("plugin least privilege: reads beyond the current sink need a granted capability", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct PluginReadPrivilegeTests {
    @Test("maestro.k8s.get|list: the current sink's collector Secret, not another sink's, unless collectors:read is declared and granted")
    func collectorSecrets() throws {
        let manifests = try TemporaryDirectory()
        let backend = DirectoryBackend(root: manifests.path)
        for (sink, password) in [("victim", "dmljdGlt"), ("mine", "bWluZQ==")] {
            try backend.apply(DesiredCollector(sinkID: sink, name: "otel-" + sink, namespace: "otelcollectors",
                                               objects: [collectorSecret(sinkID: sink, password: password)]))
        }
        let cluster = DirectoryPluginCluster(root: manifests.path, namespace: "otelcollectors")

        let plainFolder = try pluginFolder()
        let plain = builder(PluginCatalog.load(root: plainFolder.path), cluster: cluster)
        let ownResult = attempt(plain, ["mode": "read-secret", "target": "otel-mine"], event: "1-0")
        guard case .config(let own, _) = ownResult else {
            Issue.record("its own sink's Secret is readable: \(ownResult)")
            return
        }
        #expect(own["receivers"]?["out"]?["secret"] == "bWluZQ==")
        guard case .failed(let refused, _) = attempt(plain, ["mode": "read-secret", "target": "otel-victim"], event: "2-0") else {
            Issue.record("another sink's Secret must be refused")
            return
        }
        #expect(refused.message.contains("collectors:read"), "\(refused.message)")
        #expect(refused.message.contains("does not declare"), "\(refused.message)")
        #expect(!refused.message.contains("dmljdGlt"))
        guard case .config(let listed, _) = attempt(plain, ["mode": "list-secrets"], event: "3-0") else {
            Issue.record("list works")
            return
        }
        #expect(listed["receivers"]?["out"]?["secrets"] == "otel-mine", "list shows only the current sink's collector")

        // Declared, not granted: refused, naming where to grant it.
        let declaring = try pluginFolder(capabilities: ", capabilities = { 'collectors:read' }")
        let ungranted = builder(PluginCatalog.load(root: declaring.path), cluster: cluster)
        guard case .failed(let notGranted, _) = attempt(ungranted, ["mode": "read-secret", "target": "otel-victim"], event: "4-0") else {
            Issue.record("a declared but ungranted capability must be refused")
            return
        }
        #expect(notGranted.message.contains("collectors:read"))
        #expect(notGranted.message.contains("grants"), "\(notGranted.message)")

        // Declared and granted.
        let catalog = PluginCatalog.load(root: declaring.path, settings: ["attacker": ["grants": ["collectors:read"]]])
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        let granted = builder(catalog, cluster: cluster)
        guard case .config(let other, _) = attempt(granted, ["mode": "read-secret", "target": "otel-victim"], event: "5-0") else {
            Issue.record("a granted capability reads")
            return
        }
        #expect(other["receivers"]?["out"]?["secret"] == "dmljdGlt")
    }

    @Test("maestro.redis.hget of the config hashes: the current sink's entry, another sink's only with sinks:read granted")
    func sinkConfigs() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let names = fixture.names
        for hash in [names.configHash, names.deploymentHash, names.sinksHash] {
            _ = try redis.hset(hash, field: "victim", value: "victim-password")
            _ = try redis.hset(hash, field: "mine", value: "my-password")
        }
        defer { _ = try? redis.del([names.configHash, names.deploymentHash, names.sinksHash]) }

        func run(_ catalog: PluginCatalog, target: String, hash: String) -> CollectorConfigResult {
            let builder = builder(catalog, cluster: nil, names: names)
            builder.runtime.redis.connection = redis
            return attempt(builder, ["mode": "read-config", "target": .string(target), "hash": .string(hash)], event: "1-0")
        }
        let plainFolder = try pluginFolder()
        let plain = PluginCatalog.load(root: plainFolder.path)
        for hash in [names.configHash, names.deploymentHash, names.sinksHash] {
            let ownResult = run(plain, target: "mine", hash: hash)
            guard case .config(let own, _) = ownResult else {
                Issue.record("its own sink's entry of \(hash) is readable: \(ownResult)")
                continue
            }
            #expect(own["receivers"]?["out"]?["config"] == "my-password")
            guard case .failed(let refused, _) = run(plain, target: "victim", hash: hash) else {
                Issue.record("another sink's entry of \(hash) must be refused")
                continue
            }
            #expect(refused.message.contains("sinks:read"), "\(refused.message)")
            #expect(!refused.message.contains("victim-password"))
        }
        let declaring = try pluginFolder(capabilities: ", capabilities = { 'sinks:read' }")
        guard case .failed(let ungranted, _) = run(PluginCatalog.load(root: declaring.path), target: "victim", hash: names.configHash) else {
            Issue.record("declared but not granted: refused")
            return
        }
        #expect(ungranted.message.contains("not granted"), "\(ungranted.message)")
        let granted = PluginCatalog.load(root: declaring.path, settings: ["attacker": ["grants": ["sinks:read"]]])
        guard case .config(let other, _) = run(granted, target: "victim", hash: names.configHash) else {
            Issue.record("granted: readable")
            return
        }
        #expect(other["receivers"]?["out"]?["config"] == "victim-password")
    }

    @Test("maestro.http: each plugin calls only the hosts granted to it, within --http-allow-host")
    func perPluginHTTP() throws {
        let server = try HTTPTestServer()
        let plugins = try TemporaryDirectory()
        try plugins.write("leaky/schema.lua", "return { name = 'leaky', binds = { sink_backend = 'leaky' } }")
        try plugins.write("leaky/handler.lua", """
        local handler = {}
        function handler.on_sink_create(sink)
          local response, err = maestro.http.request { method = "POST", url = "\(server.baseURL)/echo", body = sink.config.password }
          return { receivers = { out = { status = response and response.status or 0, err = err or "" } } }
        end
        return handler
        """)
        try plugins.write("hook/schema.lua", "return { name = 'hook', binds = { collector_status = true }, capabilities = { 'http:*' } }")
        try plugins.write("hook/handler.lua", "return { on_collector_status = function() end }")
        let catalog = PluginCatalog.load(root: plugins.path, settings: ["hook": ["grants": ["http:127.0.0.1"]]])
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        var context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: OrbSecretCipher(secret: "orb"), kafkaURL: "k:1",
                                    policy: .eager, collectors: nil, logger: Logger(label: "test"))
        context.httpPolicy = HTTPHostPolicy(allowedHosts: ["127.0.0.1"], timeoutMilliseconds: 2_000)
        let builder = CollectorConfigBuilder(context: context, runtime: PluginRuntime(catalog: catalog, names: RedisNames(), logger: Logger(label: "test"),
                                                                                      httpPolicy: context.httpPolicy))
        guard case .config(let result, _) = builder.build(operation: .create, sinkID: "s", ownerID: "o", backend: "leaky",
                                                          config: ["password": "s3cret"]) else {
            Issue.record("the handler runs")
            return
        }
        #expect(result["receivers"]?["out"]?["status"] == .int(0), "the request was not made")
        let message = result["receivers"]?["out"]?["err"]?.stringValue ?? ""
        #expect(message.contains("http:127.0.0.1") && message.contains("leaky"), "\(message)")

        // The hook, granted the host, reaches it.
        let hook = try #require(catalog.plugin(named: "hook"))
        var policy = HTTPHostPolicy(allowedHosts: ["127.0.0.1"])
        policy.plugin = (hook.name, hook.capabilities)
        guard case .allowed = HTTPHostModule.decide(server.baseURL + "/echo", policy: policy) else {
            Issue.record("the granted hook may call the host")
            return
        }
        // Granted but not on --http-allow-host: still refused.
        guard case .refused(let outside) = HTTPHostModule.decide("http://example.com/", policy: policy) else {
            Issue.record("the global allow-list still applies")
            return
        }
        #expect(outside.contains("--http-allow-host"))
    }
}

@Suite("plugin capabilities: declaring and granting", .testThreads, .timeLimit(.minutes(2)))
struct PluginCapabilityLoadTests {
    @Test("an unknown declared capability fails the plugin's load, naming its schema.lua")
    func unknownDeclared() throws {
        let plugins = try pluginFolder(capabilities: ", capabilities = { 'sinks:write' }")
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.plugins.isEmpty)
        let message = try #require(catalog.failures.first?.message)
        #expect(message.contains("attacker/schema.lua") && message.contains("sinks:write"), "\(message)")
    }

    @Test("a grant the schema does not declare, or an unknown one, fails the load naming plugins.<name>.grants")
    func undeclaredGrant() throws {
        let plugins = try pluginFolder()
        for grant in ["sinks:read", "http:hooks.example.com", "everything"] {
            let catalog = PluginCatalog.load(root: plugins.path, settings: ["attacker": ["grants": .list([.string(grant)])]])
            #expect(catalog.plugins.isEmpty, "\(grant)")
            let message = catalog.failures.first?.message ?? ""
            #expect(message.contains("plugins.attacker.grants") && message.contains(grant), "\(message)")
        }
    }

    @Test("grants never reach the plugin's strict settings validation; both sides show in the manifest")
    func grantsAreNotSettings() throws {
        let plugins = try pluginFolder(capabilities: """
        , capabilities = { 'http:*', 'sinks:read' }, settings = { fields = { url = { type = 'string' } } }
        """)
        let catalog = PluginCatalog.load(root: plugins.path, settings: ["attacker": ["url": "x", "grants": ["http:hooks.example.com"]]])
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        let plugin = try #require(catalog.plugin(named: "attacker"))
        #expect(plugin.settings == ["url": "x"])
        #expect(plugin.capabilities.declared == ["http:*", "sinks:read"])
        #expect(plugin.capabilities.granted == ["http:hooks.example.com"])
        #expect(plugin.capabilities.summary == "http:* (granted: http:hooks.example.com), sinks:read (not granted)")
    }
}
