import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Synchronization
import Testing

@testable import MaestroPluginHost

/// A directory cluster that counts the writes it carries out.
final class CountingCluster: PluginCluster {
    let inner: DirectoryPluginCluster
    let writes = Mutex<[String]>([])
    var namespace: String { inner.namespace }

    init(root: String) { inner = DirectoryPluginCluster(root: root, namespace: "otelcollectors") }

    func get(apiVersion: String, kind: String, name: String) throws(ClusterError) -> Value? {
        try inner.get(apiVersion: apiVersion, kind: kind, name: name)
    }
    func list(apiVersion: String, kind: String, labelSelector: String?) throws(ClusterError) -> [Value] {
        try inner.list(apiVersion: apiVersion, kind: kind, labelSelector: labelSelector)
    }
    func owner(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError) -> PluginObjectOwner {
        try inner.owner(apiVersion: apiVersion, kind: kind, name: name, plugin: plugin)
    }
    func apply(_ object: Value, plugin: String) throws(ClusterError) {
        writes.withLock { $0.append("apply \(object["metadata"]?["name"]?.stringValue ?? "?")") }
        try inner.apply(object, plugin: plugin)
    }
    func delete(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError) {
        writes.withLock { $0.append("delete \(name)") }
        try inner.delete(apiVersion: apiVersion, kind: kind, name: name, plugin: plugin)
    }
}

@Suite("hostile plugins and events", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct HostileInputTests {
    func writerPlugins() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        try directory.write("writer/schema.lua", "return { name = 'writer', binds = { sink_backend = 'writer' } }")
        try directory.write("writer/handler.lua", """
        local handler = {}
        function handler.on_sink_create(sink)
          assert(maestro.k8s.apply { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "first-" .. sink.id }, data = { a = "b" } })
          if sink.config.bad_name then
            assert(maestro.k8s.apply { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "Not_A DNS/name" }, data = {} })
          end
          if sink.config.bad_delete then assert(maestro.k8s.delete("ConfigMap", "../escape")) end
          return { receivers = { ok = true } }
        end
        return handler
        """)
        return directory
    }

    func builder(_ plugins: TemporaryDirectory, cluster: CountingCluster) throws -> CollectorConfigBuilder {
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        var context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: OrbSecretCipher(secret: "orb"), kafkaURL: "k:1",
                                    policy: .eager, collectors: nil, logger: Logger(label: "test"))
        context.cluster = cluster
        return CollectorConfigBuilder(context: context, runtime: PluginRuntime(catalog: catalog, names: RedisNames(), logger: Logger(label: "test"),
                                                                                cluster: cluster))
    }

    @Test("a queue with one invalid write writes nothing, and the event is terminal (not retried)")
    func invalidWriteAppliesNothing() throws {
        let manifests = try TemporaryDirectory()
        let cluster = CountingCluster(root: manifests.path)
        let plugins = try writerPlugins()
        let builder = try builder(plugins, cluster: cluster)
        for (id, config) in [("a", ["bad_name": true] as Value), ("b", ["bad_delete": true] as Value)] {
            guard case .failed(let error, _) = builder.build(operation: .create, sinkID: id, ownerID: "o", backend: "writer", config: config,
                                                             eventID: "1-\(id)") else {
                Issue.record("an invalid write must fail the event")
                continue
            }
            #expect(error.isTerminal, "\(error.message)")
            #expect(error.message.contains("nothing was written"), "\(error.message)")
            #expect(try cluster.get(apiVersion: "v1", kind: "ConfigMap", name: "first-\(id)") == nil)
        }
        #expect(cluster.writes.withLock { $0 }.isEmpty, "the valid write before the invalid one was not carried out")
    }

    @Test("a redelivered event does not write its queue again")
    func appliedOncePerEvent() throws {
        let manifests = try TemporaryDirectory()
        let cluster = CountingCluster(root: manifests.path)
        let plugins = try writerPlugins()
        let builder = try builder(plugins, cluster: cluster)
        for _ in 0..<3 {
            guard case .config = builder.build(operation: .create, sinkID: "c", ownerID: "o", backend: "writer", config: .map([:]),
                                               eventID: "5-0", deliveries: 1) else {
                Issue.record("the handler succeeds")
                return
            }
        }
        #expect(cluster.writes.withLock { $0 } == ["apply first-c"])
        #expect(try cluster.get(apiVersion: "v1", kind: "ConfigMap", name: "first-c") != nil)
        // Another event writes again.
        _ = builder.build(operation: .create, sinkID: "c", ownerID: "o", backend: "writer", config: .map([:]), eventID: "6-0")
        #expect(cluster.writes.withLock { $0 } == ["apply first-c", "apply first-c"])
    }

    @Test("an exporter URL aimed at a metadata address is a provisioning_error naming the field; nothing is stored")
    func metadataEndpoint() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let collectors = RecordingCollectorService()
        let consumer = try fixture.consumer(collectors: collectors)
        consumer.start()
        defer { consumer.stop() }
        try fixture.add(redis, create("imds", sinkConfig("http://169.254.169.254/latest/meta-data/iam/security-credentials/")))
        try fixture.add(redis, create("alibaba", sinkConfig("http://100.100.100.200/latest/meta-data/")))
        try fixture.add(redis, create("fine", sinkConfig("https://prom.example/api/v1/write")))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try fixture.configs(redis).keys.sorted() == ["fine"])
        let statuses = try redis.xrange(fixture.names.statusStream).filter { $0["status"] == "provisioning_error" }
        #expect(Set(statuses.compactMap { $0["sink_id"] }) == ["imds", "alibaba"])
        for status in statuses {
            #expect(status["error_message"]?.contains("exporter.remote_host") == true, "\(status["error_message"] ?? "")")
            #expect(status["error_message"]?.contains("metadata") == true)
        }
    }

    @Test("sink ids that are not UTF-8 are dead-lettered as malformed, never merged into one record")
    func invalidUTF8SinkIDs() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let config = sinkConfig("https://prom.example/api/v1/write")
        // Raw bytes through a server-side script: the client API sends text only.
        for byte in [255, 254] {
            _ = try redis.command(["EVAL", "return redis.call('XADD', KEYS[1], '*', 'operation', 'sinks.create', 'sink_id', 'inv' .. string.char(tonumber(ARGV[1])), 'backend', 'prometheus', 'owner', 'o', 'config', ARGV[2])",
                                   "1", fixture.names.sinksStream, "\(byte)", config])
        }
        try fixture.add(redis, create("good-utf8-é", config))
        let consumer = try fixture.consumer()
        consumer.start()
        defer { consumer.stop() }
        #expect(try fixture.waitUntilDrained(redis))
        let letters = try fixture.deadLetters(redis)
        #expect(letters.count == 2)
        for letter in letters {
            #expect(letter["reason"]?.contains("sink_id is not valid UTF-8") == true, "\(letter["reason"] ?? "")")
        }
        let configs = try fixture.configs(redis)
        #expect(configs.keys.sorted() == ["good-utf8-é"], "\(configs.keys.sorted())")
    }
}
