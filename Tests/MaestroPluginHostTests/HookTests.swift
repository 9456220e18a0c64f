import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroPluginHost

@Suite("Ops hooks and maestro.http", .serialized, .testThreads, .timeLimit(.minutes(2)))
struct HookTests {
    func hookConsumer(_ fixture: PipelineFixture, catalog: PluginCatalog, allow: [String]) throws -> StreamConsumer {
        let names = fixture.names
        let options = StreamConsumerOptions(stream: names.statusStream, group: names.hooksGroup, groupStart: "0", consumerName: "hooks",
                                            workers: 1, blockMilliseconds: 50, maxDeliveries: 2, deadLetterStream: names.deadLetterStream)
        let policy = HTTPHostPolicy(allowedHosts: allow, timeoutMilliseconds: 2_000)
        return StreamConsumer(options: options, redisURL: try RedisURL(parsing: fixture.redisURL), logger: Logger(label: "test"),
                              routingKey: { $0["sink_id"] ?? "" },
                              makeProcessor: { _ in StatusHookProcessor(catalog: catalog, names: names, httpPolicy: policy, logger: Logger(label: "test")) })
    }

    @Test("the shipped webhook-notify POSTs on error; a status it does not watch is ignored; a metadata address is refused")
    func webhook() throws {
        let server = try HTTPTestServer()
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let catalog = PluginCatalog.load(root: repositoryRoot + "/plugins",
                                         settings: ["webhook-notify": ["url": .string(server.baseURL + "/hook"), "statuses": ["error"],
                                                                           "grants": ["http:127.0.0.1"]]])
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        let consumer = try hookConsumer(fixture, catalog: catalog, allow: ["127.0.0.1"])
        consumer.start()
        defer { consumer.stop() }
        try StatusPublisher.publish(redis, names: fixture.names, sinkID: "h1", ownerID: "o", status: .provisioning, streamMaxLength: 1_000)
        try StatusPublisher.publish(redis, names: fixture.names, sinkID: "h1", ownerID: "o", status: .error, message: "exporter failed with HTTP 401", streamMaxLength: 1_000)
        #expect(eventually(timeout: 15) { consumer.counters.acknowledged >= 2 })
        #expect(consumer.counters.acknowledged == 2)
        #expect(try fixture.deadLetters(redis).isEmpty)
        // The receiver got one POST, for the error only, saying which sink and why.
        let received = try server.received()
        #expect(received.count == 1, "\(received)")
        let post = try #require(received.first)
        #expect(post["method"] == "POST")
        #expect(post["path"] == "/hook")
        #expect(post["headers"]?["content-type"] == "application/json")
        let body = try JSON.decode(try #require(post["body"]?.stringValue))
        #expect(body["sink_id"] == "h1")
        #expect(body["owner_id"] == "o")
        #expect(body["status"] == "error")
        #expect(body["error_message"] == "exporter failed with HTTP 401")

        let refusing = try PipelineFixture()
        let refusingRedis = try refusing.connect()
        let metadata = PluginCatalog.load(root: repositoryRoot + "/plugins",
                                          settings: ["webhook-notify": ["url": "http://169.254.169.254/latest/meta-data/", "statuses": ["error"],
                                                                            "grants": ["http:169.254.169.254"]]])
        let blocked = try hookConsumer(refusing, catalog: metadata, allow: ["169.254.169.254"])
        blocked.start()
        defer { blocked.stop() }
        try StatusPublisher.publish(refusingRedis, names: refusing.names, sinkID: "h2", ownerID: "o", status: .error, streamMaxLength: 1_000)
        #expect(eventually(timeout: 15) { blocked.counters.deadLettered >= 1 })
        let letters = try refusing.deadLetters(refusingRedis)
        #expect(letters.count == 1)
        #expect(letters.first?["reason"]?.contains("refused") == true, "\(letters.first?["reason"] ?? "")")
        #expect(letters.first?["plugin"] == "webhook-notify")
    }

    @Test("maestro.http: allow-list, metadata and link-local refusals, no redirects, responses returned")
    func httpPolicy() throws {
        let server = try HTTPTestServer()
        let directory = try TemporaryDirectory()
        let fixture = try PipelineFixture(plugins: directory.path)
        let results = fixture.names.pluginKeyPrefix + "probe:results"
        try directory.write("probe/schema.lua", "return { name = 'probe', binds = { collector_status = true }, capabilities = { 'http:*' } }")
        try directory.write("probe/handler.lua", """
        local handler = {}
        function handler.on_collector_status(event)
          local results = {}
          local function try(url)
            local response, err = maestro.http.request { url = url, method = "POST", body = "{}", timeout_ms = 2000 }
            if response then return tostring(response.status) end
            return err
          end
          results.echo = try("\(server.baseURL)/echo")
          results.redirect = try("\(server.baseURL)/redirect")
          results.other = try("http://example.com/")
          results.metadata = try("http://169.254.169.254/")
          results.google = try("http://metadata.google.internal/")
          results.scheme = try("file:///etc/passwd")
          for key, value in pairs(results) do
            maestro.redis.hset("\(results)", key, value)
          end
        end
        return handler
        """)
        let redis = try fixture.connect()
        let catalog = PluginCatalog.load(root: directory.path,
                                         settings: ["probe": ["grants": ["http:127.0.0.1", "http:169.254.169.254", "http:metadata.google.internal"]]])
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        let consumer = try hookConsumer(fixture, catalog: catalog, allow: ["127.0.0.1", "169.254.169.254", "metadata.google.internal"])
        consumer.start()
        defer { consumer.stop() }
        try StatusPublisher.publish(redis, names: fixture.names, sinkID: "p1", ownerID: "o", status: .active, streamMaxLength: 1_000)
        #expect(eventually(timeout: 15) { consumer.counters.acknowledged >= 1 })
        let answers = try redis.hgetall(results)
        #expect(answers["echo"] == "200")
        #expect(answers["redirect"] == "302", "redirects are returned, never followed")
        #expect(answers["other"]?.contains("not on the allow-list") == true)
        #expect(answers["metadata"]?.contains("refused") == true)
        #expect(answers["google"]?.contains("refused") == true)
        #expect(answers["scheme"]?.contains("only absolute http and https") == true)
    }
}

@Suite("maestro.k8s in plugins", .serialized, .testThreads, .timeLimit(.minutes(2)))
struct PluginClusterTests {
    func probePlugins() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory()
        try directory.write("k8sprobe/schema.lua", "return { name = 'k8sprobe', binds = { sink_backend = 'k8sprobe' } }")
        try directory.write("k8sprobe/handler.lua", """
        local handler = {}
        function handler.on_sink_create(sink)
          assert(maestro.k8s.apply { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "probe-" .. sink.id }, data = { a = "b" } })
          if sink.config.fail then error("boom after apply") end
          local before = maestro.k8s.list("ConfigMap")
          local missing = maestro.k8s.get("ConfigMap", "never-there")
          return { receivers = { seen = #before, missing = missing == nil } }
        end
        return handler
        """)
        return directory
    }

    func run(_ cluster: any PluginCluster, read: (String) throws -> Value?) throws {
        let plugins = try probePlugins()
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        var context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: OrbSecretCipher(secret: "orb"), kafkaURL: "k:1",
                                    policy: .eager, collectors: nil, logger: Logger(label: "test"))
        context.cluster = cluster
        let builder = CollectorConfigBuilder(context: context, runtime: PluginRuntime(catalog: catalog, names: RedisNames(), logger: Logger(label: "test"),
                                                                                      cluster: cluster))
        guard case .config(let first, _) = builder.build(operation: .create, sinkID: "one", ownerID: "o", backend: "k8sprobe", config: .map([:])) else {
            Issue.record("the first call must succeed")
            return
        }
        #expect(first["receivers"]?["seen"] == .int(0), "writes are queued: not visible during the call")
        #expect(first["receivers"]?["missing"] == .bool(true))
        let applied = try #require(try read("probe-one"))
        #expect(applied["metadata"]?["namespace"] == .string("otelcollectors"))
        #expect(applied["metadata"]?["labels"]?["app.kubernetes.io/managed-by"] == .string("maestro"))
        guard case .failed(let error, _) = builder.build(operation: .create, sinkID: "two", ownerID: "o", backend: "k8sprobe", config: ["fail": true]) else {
            Issue.record("the second call must fail")
            return
        }
        #expect(error.kind == .runtime)
        #expect(try read("probe-two") == nil, "a failing handler changes nothing in the cluster")
        guard case .config(let third, _) = builder.build(operation: .create, sinkID: "three", ownerID: "o", backend: "k8sprobe", config: .map([:])) else {
            Issue.record("the third call must succeed")
            return
        }
        #expect(third["receivers"]?["seen"] == .int(1), "list sees what earlier calls applied")
    }

    @Test("directory backend: queued applies land after the handler, a failing handler's are discarded")
    func directory() throws {
        let manifests = try TemporaryDirectory()
        let cluster = DirectoryPluginCluster(root: manifests.path, namespace: "otelcollectors")
        try run(cluster) { name in try cluster.get(apiVersion: "v1", kind: "ConfigMap", name: name) }
    }

    @Test("Kubernetes: the same against the API double")
    func kubernetes() throws {
        let double = try KubeAPIDouble()
        let client = KubernetesClient(credentials: KubeCredentials(server: double.server, origin: "test"), logger: Logger(label: "test"))
        let cluster = KubernetesPluginCluster(client: client, namespace: "otelcollectors")
        try run(cluster) { name in
            let (status, body) = try double.get("/api/v1/namespaces/otelcollectors/configmaps/\(name)")
            return status == 200 ? body : nil
        }
    }
}
