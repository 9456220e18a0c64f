import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

func kubeClient(_ credentials: KubeCredentials, attempts: Int = 6) -> KubernetesClient {
    KubernetesClient(credentials: credentials, maximumAttempts: attempts, maximumBackoff: 0.5, logger: Logger(label: "test"))
}

/// The maestro role against the API double.
struct KubeFixture {
    let double: KubeAPIDouble
    let pipeline: PipelineFixture
    let client: KubernetesClient
    let backend: KubernetesBackend
    let reconciler: Reconciler
    let manager: CollectorManager

    init(createNamespace: Bool = false, namespaces: [String] = ["otelcollectors"], templateSettings: Value = .map([:]),
         options: ReconcilerOptions = ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 2)) throws {
        double = try KubeAPIDouble(namespaces: namespaces)
        pipeline = try PipelineFixture()
        client = kubeClient(KubeCredentials(server: double.server, origin: "test"))
        backend = KubernetesBackend(client: client, namespace: "otelcollectors", createNamespace: createNamespace)
        let url = try RedisURL(parsing: pipeline.redisURL)
        reconciler = Reconciler(redisURL: url, names: pipeline.names, backend: backend, options: options, logger: Logger(label: "test"))
        manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test")) {
            try TemplateRenderer(root: repositoryRoot + "/templates", settings: templateSettings)
        }
    }

    func object(_ path: String) throws -> Value? {
        let (status, body) = try double.get(path)
        return status == 200 ? body : nil
    }

    func waitFor(_ timeout: TimeInterval = 20, _ condition: () throws -> Bool) rethrows -> Bool {
        try eventually(timeout: timeout, condition)
    }

    func addConfig(_ redis: RedisConnection, _ sinkID: String, _ config: String = "receivers: {}\n") throws {
        try redis.hset(pipeline.names.configHash, field: sinkID, value: config)
    }

    func status(_ sinkID: String) -> String? {
        try? manager.get(sinkID: sinkID).status
    }

    /// How many events of `status` the status stream holds for the sink.
    func published(_ redis: RedisConnection, _ sinkID: String, _ status: String) throws -> Int {
        try redis.xrange(pipeline.names.statusStream).filter { $0["sink_id"] == sinkID && $0["status"] == status }.count
    }

    /// A resync, waited for: every collector reconciled once more and nothing left to do.
    func resyncAndSettle() throws -> Bool {
        func handled(_ counters: ReconcilerCounters) -> Int { counters.applied + counters.rejected + counters.failed }
        let before = handled(reconciler.counters)
        try reconciler.resync()
        return waitFor { handled(reconciler.counters) > before && reconciler.backlog == 0 }
    }
}

@Suite("Kubernetes backend against the API double", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct KubernetesTests {
    @Test("create → 3 objects; update → same uids, new config hash, nothing deleted; remove → none left; idempotent")
    func lifecycle() throws {
        let fixture = try KubeFixture()
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        try fixture.addConfig(redis, "k1", "exporters: {otlphttp: {endpoint: https://a}}\n")
        try fixture.manager.create(sinkID: "k1", ownerID: "o")
        try fixture.manager.create(sinkID: "k1", ownerID: "o")
        let base = "/api/v1/namespaces/otelcollectors"
        #expect(try fixture.waitFor { try fixture.object(base + "/services/otel-k1") != nil })
        let secret = try #require(try fixture.object(base + "/secrets/otel-k1"))
        let deployment = try #require(try fixture.object("/apis/apps/v1/namespaces/otelcollectors/deployments/otel-k1"))
        #expect(secret["metadata"]?["labels"]?["app.kubernetes.io/managed-by"] == .string("maestro"))
        #expect(secret["metadata"]?["annotations"]?["maestro.orb.community/sink-id"] == .string("k1"))
        let data = try #require(secret["data"]?["config.yaml"]?.stringValue)
        #expect(String(decoding: Data(base64Encoded: data) ?? Data(), as: UTF8.self) == "exporters: {otlphttp: {endpoint: https://a}}\n")
        #expect(deployment["spec"]?["template"]?["spec"]?["containers"]?.listValue?.first?["readinessProbe"]?["httpGet"]?["port"] == .int(13133))
        let uids = try [base + "/secrets/otel-k1", "/apis/apps/v1/namespaces/otelcollectors/deployments/otel-k1", base + "/services/otel-k1"]
            .map { try fixture.object($0)?["metadata"]?["uid"] }
        #expect(fixture.waitFor { fixture.status("k1") == "active" }, "available replicas make the collector active")

        // The controller held back: the update's rollout is not observed yet, so the collector is not active
        // from its old pod.
        try fixture.double.controller(["paused": true])
        try fixture.addConfig(redis, "k1", "exporters: {otlphttp: {endpoint: https://b}}\n")
        try fixture.manager.update(sinkID: "k1", ownerID: "o")
        let hashPath = "/apis/apps/v1/namespaces/otelcollectors/deployments/otel-k1"
        let oldHash = deployment["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"]
        #expect(try fixture.waitFor { try fixture.object(hashPath)?["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"] != oldHash })
        #expect(fixture.waitFor { fixture.status("k1") == "provisioning" }, "an update is provisioning until its rollout is complete")
        try fixture.double.controller(["paused": false])
        // The rollout is over when the update's reconcile has published (no backlog), the controller has
        // observed the new generation and the collector is active.
        #expect(try fixture.waitFor {
            let rolled = try fixture.object(hashPath)
            return fixture.reconciler.backlog == 0 && rolled?["status"]?["observedGeneration"] == rolled?["metadata"]?["generation"]
                && fixture.status("k1") == "active"
        }, "the rolled-out collector is active")
        let newUIDs = try [base + "/secrets/otel-k1", hashPath, base + "/services/otel-k1"].map { try fixture.object($0)?["metadata"]?["uid"] }
        #expect(newUIDs == uids, "an update rolls in place: same objects")
        #expect(fixture.client.requestCounts.keys.contains { $0.hasPrefix("DELETE") } == false, "nothing was deleted by the update")

        try fixture.manager.remove(sinkID: "k1")
        #expect(try fixture.waitFor { try fixture.object(base + "/services/otel-k1") == nil && fixture.object(base + "/secrets/otel-k1") == nil })
        #expect(try fixture.object(hashPath) == nil)
        let statuses = try redis.xrange(fixture.pipeline.names.statusStream).map { $0["status"] ?? "" }
        // Each transition once: the update's rollout in progress, then complete.
        #expect(statuses == ["provisioning", "active", "provisioning", "active"], "each transition published once: \(statuses)")
    }

    @Test("a sink event flows end to end: orb.sinks → plugin → config hash → template → deployment hash → objects on the API double → status events")
    func eventToCluster() throws {
        let fixture = try KubeFixture()
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        let consumer = try fixture.pipeline.consumer(collectors: fixture.manager)
        consumer.start()
        defer { consumer.stop() }
        try fixture.pipeline.add(redis, create("e2e", sinkConfig("https://one.example/w", user: "1234123", password: "a\"b: c")))
        let deployment = "/apis/apps/v1/namespaces/otelcollectors/deployments/otel-e2e"
        #expect(try fixture.waitFor { try fixture.object(deployment) != nil })
        #expect(fixture.waitFor { fixture.status("e2e") == "active" })
        let secret = try #require(try fixture.object("/api/v1/namespaces/otelcollectors/secrets/otel-e2e"))
        let config = String(decoding: Data(base64Encoded: secret["data"]?["config.yaml"]?.stringValue ?? "") ?? Data(), as: UTF8.self)
        #expect(try YAML.parse(config)["extensions"]?["basicauth/exporter"]?["client_auth"]?["password"] == .string("a\"b: c"))
        let firstHash = try fixture.object(deployment)?["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"]

        try fixture.double.controller(["paused": true])
        try fixture.pipeline.add(redis, update("e2e", sinkConfig("https://two.example/w")))
        #expect(try fixture.waitFor {
            try fixture.object(deployment)?["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"] != firstHash
        })
        #expect(fixture.waitFor { fixture.status("e2e") == "provisioning" }, "the update's rollout is not observed yet")
        try fixture.double.controller(["paused": false])
        #expect(fixture.waitFor(30) { fixture.status("e2e") == "active" })
        try fixture.pipeline.add(redis, remove("e2e"))
        #expect(try fixture.waitFor { try fixture.object(deployment) == nil && fixture.object("/api/v1/namespaces/otelcollectors/secrets/otel-e2e") == nil })
        let statuses = try redis.xrange(fixture.pipeline.names.statusStream).map { $0["status"] ?? "" }
        #expect(statuses == ["provisioning", "active", "provisioning", "active"], "\(statuses)")
    }

    @Test("kubeconfig variants: token, token file, CA data and file, insecure, client certificate (files and data), exec plugin")
    func kubeconfigVariants() throws {
        let certificates = try TestCertificates()
        let double = try KubeAPIDouble(token: "s3cr3t-token", tls: (certificates.serverCertificate, certificates.serverKey, certificates.caCertificate))
        let directory = try TemporaryDirectory()
        let caData = try Data(contentsOf: URL(fileURLWithPath: certificates.caCertificate)).base64EncodedString()
        let certData = try Data(contentsOf: URL(fileURLWithPath: certificates.clientCertificate)).base64EncodedString()
        let keyData = try Data(contentsOf: URL(fileURLWithPath: certificates.clientKey)).base64EncodedString()
        try directory.write("token", "s3cr3t-token\n")
        let plugin = try directory.write("plugin.sh", """
        #!/bin/sh
        echo '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"s3cr3t-token","expirationTimestamp":"2099-01-01T00:00:00Z"}}'
        """)
        chmod(plugin, 0o755)
        let variants: [(String, String, String)] = [
            ("token with CA data", "token: s3cr3t-token", "certificate-authority-data: \(caData)"),
            ("token file with CA file", "tokenFile: token", "certificate-authority: \(certificates.caCertificate)"),
            ("insecure", "token: s3cr3t-token", "insecure-skip-tls-verify: true"),
            ("client certificate files", "client-certificate: \(certificates.clientCertificate)\nclient-key: \(certificates.clientKey)",
             "certificate-authority: \(certificates.caCertificate)"),
            ("client certificate data", "client-certificate-data: \(certData)\nclient-key-data: \(keyData)", "certificate-authority-data: \(caData)"),
            ("exec plugin", "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: ./plugin.sh", "certificate-authority-data: \(caData)"),
        ]
        for (name, user, cluster) in variants {
            let path = try double.kubeconfig(in: directory, user: user, cluster: cluster)
            let credentials = try KubeConfigLoader.load(kubeconfig: path)
            #expect(credentials.namespace == "otelcollectors")
            let response = try kubeClient(credentials).request("GET", "/api/v1/namespaces")
            #expect(response.status == 200, "\(name): HTTP \(response.status)")
        }
        let wrong = try double.kubeconfig(in: directory, user: "token: wrong", cluster: "certificate-authority-data: \(caData)")
        #expect(try kubeClient(try KubeConfigLoader.load(kubeconfig: wrong)).request("GET", "/api/v1/namespaces").status == 401)
        let untrusted = try double.kubeconfig(in: directory, user: "token: s3cr3t-token", cluster: "")
        #expect(throws: ClusterError.self) { try kubeClient(try KubeConfigLoader.load(kubeconfig: untrusted), attempts: 1).request("GET", "/api/v1/namespaces") }
    }

    @Test("in-cluster: service account token (re-read as it rotates), CA and namespace")
    func inCluster() throws {
        let certificates = try TestCertificates()
        let double = try KubeAPIDouble(token: "rotated-2", tls: (certificates.serverCertificate, certificates.serverKey, nil))
        let account = try TemporaryDirectory()
        try account.write("token", "rotated-1")
        try FileManager.default.copyItem(atPath: certificates.caCertificate, toPath: account.path + "/ca.crt")
        try account.write("namespace", "otelcollectors\n")
        let credentials = try KubeConfigLoader.load(flag: nil, environment: ["KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                                                              "KUBERNETES_SERVICE_PORT": String(double.port)],
                                                    serviceAccount: account.path)
        #expect(credentials.namespace == "otelcollectors")
        let client = kubeClient(credentials)
        #expect(try client.request("GET", "/api/v1/namespaces").status == 401)
        try account.write("token", "rotated-2")
        #expect(try client.request("GET", "/api/v1/namespaces").status == 200)
        #expect(throws: KubeConfigError.self) { try KubeConfigLoader.load(flag: nil, environment: [:], serviceAccount: account.path) }
    }

    @Test("with 20% of calls failing (500, 429 with Retry-After, resets) and 10% of writes failing after they committed, 100 sinks all converge")
    func faults() throws {
        let fixture = try KubeFixture(options: ReconcilerOptions(resyncInterval: 3_600, workers: 4, maximumBackoff: 1))
        let redis = try fixture.pipeline.connect()
        try fixture.double.faults(["error500": 0.08, "error429": 0.06, "reset": 0.06, "retry_after": 1,
                                   "error500_after_commit": 0.05, "reset_after_commit": 0.05])
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        for index in 0..<100 {
            try fixture.addConfig(redis, "f\(index)")
            try fixture.manager.create(sinkID: "f\(index)", ownerID: "o")
        }
        let converged = try fixture.waitFor(120) {
            let list = try fixture.double.get("/apis/apps/v1/namespaces/otelcollectors/deployments")
            return (list.body["items"]?.listValue?.count ?? 0) == 100 && fixture.reconciler.backlog == 0
        }
        #expect(converged)
        let counts = fixture.client.requestCounts
        #expect(counts.keys.contains { $0.hasSuffix(" 500") } && counts.keys.contains { $0.hasSuffix(" 429") }, "faults were injected: \(counts)")
        #expect(try fixture.double.get("/api/v1/namespaces/otelcollectors/secrets").body["items"]?.listValue?.count == 100)
    }

    @Test("the orphan sweep removes a Secret and a Service whose Deployment is gone; a live sink's objects stay")
    func orphanedObjectsOfEveryKind() throws {
        let fixture = try KubeFixture(options: ReconcilerOptions(resyncInterval: 3_600, orphanGrace: 0, orphanMaxShare: 1, maximumBackoff: 2))
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        for sinkID in ["live", "gone"] {
            try fixture.addConfig(redis, sinkID, "exporters: {otlphttp: {endpoint: https://a}}\n")
            try fixture.manager.create(sinkID: sinkID, ownerID: "o")
        }
        let core = "/api/v1/namespaces/otelcollectors"
        let apps = "/apis/apps/v1/namespaces/otelcollectors"
        #expect(try fixture.waitFor { try fixture.object(core + "/services/otel-gone") != nil && fixture.object(core + "/services/otel-live") != nil })
        #expect(fixture.waitFor { fixture.reconciler.backlog == 0 })
        // A removal that died after deleting the Deployment: no desired state, no record, a Secret and a Service left.
        // Their owner reference to the Deployment would have the garbage collector remove them, so the
        // Deployment goes without its dependents (as `kubectl delete --cascade=orphan`, or objects a maestro
        // without owner references made).
        try redis.hdel(fixture.pipeline.names.deploymentHash, fields: ["gone"])
        try redis.hdel(fixture.pipeline.names.collectorsHash, fields: ["gone"])
        #expect(try fixture.client.request("DELETE", apps + "/deployments/otel-gone", query: [("propagationPolicy", "Orphan")]).status == 200)
        #expect(try fixture.object(core + "/secrets/otel-gone") != nil)

        try fixture.reconciler.resync()
        #expect(try fixture.object(core + "/secrets/otel-gone") == nil, "the orphaned Secret (credentials) is removed")
        #expect(try fixture.object(core + "/services/otel-gone") == nil)
        #expect(fixture.reconciler.counters.orphansDeleted == 1)
        for path in [core + "/secrets/otel-live", core + "/services/otel-live", apps + "/deployments/otel-live"] {
            #expect(try fixture.object(path) != nil, "\(path) of a live sink stays")
        }
    }

    @Test("422 → provisioning_error with the API's message; a missing namespace is an error unless --create-namespace")
    func rejections() throws {
        let invalid = try KubeFixture(templateSettings: ["replicas": -1])
        let redis = try invalid.pipeline.connect()
        invalid.reconciler.start()
        defer { invalid.reconciler.stop() }
        try invalid.addConfig(redis, "r1")
        try invalid.manager.create(sinkID: "r1", ownerID: "o")
        #expect(invalid.waitFor { invalid.status("r1") == "provisioning_error" })
        #expect(try invalid.manager.get(sinkID: "r1").errorMessage.contains("spec.replicas"))
        #expect(try invalid.resyncAndSettle())
        #expect(try invalid.resyncAndSettle())
        #expect(try invalid.published(redis, "r1", "provisioning_error") == 1, "a 422 is published once, not on every reconcile")

        let missing = try KubeFixture(namespaces: [])
        missing.reconciler.start()
        defer { missing.reconciler.stop() }
        let redis2 = try missing.pipeline.connect()
        try missing.addConfig(redis2, "n1")
        try missing.manager.create(sinkID: "n1", ownerID: "o")
        #expect(missing.waitFor { missing.status("n1") == "provisioning_error" })
        #expect(try missing.manager.get(sinkID: "n1").errorMessage.contains("--create-namespace"))

        let creating = try KubeFixture(createNamespace: true, namespaces: [])
        creating.reconciler.start()
        defer { creating.reconciler.stop() }
        let redis3 = try creating.pipeline.connect()
        try creating.addConfig(redis3, "n2")
        try creating.manager.create(sinkID: "n2", ownerID: "o")
        #expect(try creating.waitFor { try creating.object("/api/v1/namespaces/otelcollectors/secrets/otel-n2") != nil })
    }

    @Test("objects deleted behind maestro's back come back on resync; an exporter 401 in the pod log → error")
    func driftAndLogs() throws {
        let fixture = try KubeFixture()
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        try fixture.addConfig(redis, "d1")
        try fixture.manager.create(sinkID: "d1", ownerID: "o")
        let service = "/api/v1/namespaces/otelcollectors/services/otel-d1"
        #expect(try fixture.waitFor { try fixture.object(service) != nil })
        #expect(fixture.waitFor { fixture.reconciler.backlog == 0 })
        let appliedBefore = fixture.reconciler.counters.applied
        try fixture.reconciler.resync()
        #expect(fixture.waitFor { fixture.reconciler.counters.applied > appliedBefore && fixture.reconciler.backlog == 0 })
        #expect(fixture.reconciler.counters.driftCorrected == 0, "an apply that changes nothing keeps the resourceVersions")
        #expect(try fixture.client.request("DELETE", service).status == 200, "deleted behind maestro's back")
        try fixture.reconciler.resync()
        #expect(try fixture.waitFor { try fixture.object(service) != nil })
        #expect(fixture.waitFor { fixture.reconciler.counters.driftCorrected == 1 })

        try fixture.double.setLogs("otel-d1", """
        2026-11-29T10:00:00Z info service started
        2026-11-29T10:00:05Z error exporterhelper: Exporting failed. error: Permanent error: remote write returned HTTP status 401 Unauthorized
        """)
        try fixture.reconciler.resync()
        #expect(fixture.waitFor { fixture.status("d1") == "error" })
        #expect(try fixture.manager.get(sinkID: "d1").errorMessage.contains("401"))
        #expect(try fixture.resyncAndSettle())
        #expect(try fixture.resyncAndSettle())
        #expect(try fixture.published(redis, "d1", "error") == 1, "a 401 in the logs is published once")
    }

    @Test("status is polled while provisioning: pods becoming available → active; a failed rollout → error")
    func statusPolling() throws {
        let fixture = try KubeFixture()
        let redis = try fixture.pipeline.connect()
        try fixture.double.setAvailable("otel-p1", false)
        try fixture.double.setAvailable("otel-p2", false, failed: true)
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        for sink in ["p1", "p2"] {
            try fixture.addConfig(redis, sink)
            try fixture.manager.create(sinkID: sink, ownerID: "o")
        }
        #expect(fixture.waitFor { fixture.status("p1") == "provisioning" })
        #expect(fixture.waitFor { fixture.status("p2") == "error" })
        #expect(try fixture.manager.get(sinkID: "p2").errorMessage.contains("rollout failed"))
        #expect(try fixture.resyncAndSettle())
        #expect(try fixture.published(redis, "p2", "error") == 1, "a failed rollout is published once")
        #expect(try fixture.published(redis, "p1", "provisioning") == 1, "polling a rollout in progress publishes nothing new")
        try fixture.double.setAvailable("otel-p1", true)
        #expect(fixture.waitFor(30) { fixture.status("p1") == "active" })
    }

    @Test("two replicas, one Lease: the holder renews, the other takes over when it stops")
    func kubeLease() throws {
        let double = try KubeAPIDouble()
        let client = kubeClient(KubeCredentials(server: double.server, origin: "test"))
        let first = KubeLease(name: "maestro-leader", namespace: "otelcollectors", holder: "a", timing: LeaseTiming(leaseDuration: 3, renewDeadline: 2, retryPeriod: 1), client: client, logger: Logger(label: "t"))
        let second = KubeLease(name: "maestro-leader", namespace: "otelcollectors", holder: "b", timing: LeaseTiming(leaseDuration: 3, renewDeadline: 2, retryPeriod: 1), client: client, logger: Logger(label: "t"))
        #expect(try first.renew())
        #expect(try second.renew() == false)
        let leasePath = "/apis/coordination.k8s.io/v1/namespaces/otelcollectors/leases/maestro-leader"
        let taken = try double.get(leasePath).body["spec"]?["renewTime"]
        first.start()
        second.start()
        // The holder's own loop renews the lease; the other replica does not take it meanwhile.
        #expect(eventually(timeout: 10) { (try? double.get(leasePath).body["spec"]?["renewTime"]) != taken }, "the holder renews")
        #expect(try double.get(leasePath).body["spec"]?["holderIdentity"] == .string("a"))
        #expect(first.isLeader && !second.isLeader)
        first.stop()
        #expect(eventually(timeout: 15) { second.isLeader })
        second.stop()
        let lease = try double.get("/apis/coordination.k8s.io/v1/namespaces/otelcollectors/leases/maestro-leader").body
        #expect(lease["spec"]?["holderIdentity"] == .string("b"))
    }

    @Test("the fence: once the renew deadline has passed since the last renew started, a write is refused before it is sent")
    func leaderFence() throws {
        let double = try KubeAPIDouble()
        let fence = LeaderFence(holder: "a", logger: Logger(label: "t"))
        let client = KubernetesClient(credentials: KubeCredentials(server: double.server, origin: "test"), maximumAttempts: 2, fence: fence,
                                      logger: Logger(label: "t"))
        let lease = KubeLease(name: "maestro-leader", namespace: "otelcollectors", holder: "a",
                              timing: LeaseTiming(leaseDuration: 3, renewDeadline: 1, retryPeriod: 0.5), client: client, logger: Logger(label: "t"))
        func configMap(_ name: String) -> Value {
            ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": .string(name), "namespace": "otelcollectors"]]
        }
        let collection = "/api/v1/namespaces/otelcollectors/configmaps"
        // Not yet the leader: nothing is written.
        #expect(throws: ClusterError(.notLeader, "not the leader: POST \(collection) refused, the lease is no longer held")) {
            try client.request("POST", collection, body: configMap("before"))
        }
        #expect(try lease.renew())
        #expect(lease.isLeader)
        #expect(try client.request("POST", collection, body: configMap("held")).status == 201)
        // No renew since: the validity runs out at the renew deadline, well before the lease duration.
        #expect(eventually(timeout: 10) { !fence.isValid })
        #expect(!lease.isLeader)
        let posts = try double.stats()["requests"]?["POST"]?.intValue ?? 0
        #expect(throws: ClusterError.self) { try client.request("POST", collection, body: configMap("late")) }
        #expect(try double.stats()["requests"]?["POST"]?.intValue ?? 0 == posts, "the refused write never reached the API")
        #expect(try double.get(collection + "/late").status == 404)
        #expect(try client.request("GET", collection + "/held").status == 200, "reads are not fenced")
        // Renewed again (still the holder): writes go through.
        #expect(try lease.renew())
        #expect(try client.request("POST", collection, body: configMap("again")).status == 201)
    }

    @Test("lease timings that leave no margin are refused", arguments: [
        (LeaseTiming(leaseDuration: 15, renewDeadline: 15, retryPeriod: 2), true), (LeaseTiming(leaseDuration: 10, renewDeadline: 12, retryPeriod: 2), true),
        (LeaseTiming(leaseDuration: 15, renewDeadline: 10, retryPeriod: 10), true), (LeaseTiming(leaseDuration: 15, renewDeadline: 10, retryPeriod: 0), true),
        (LeaseTiming(), false), (LeaseTiming(leaseDuration: 4, renewDeadline: 3, retryPeriod: 1), false),
    ])
    func leaseTimingProblems(_ sample: (LeaseTiming, Bool)) {
        #expect((sample.0.problem != nil) == sample.1, "\(sample.0): \(sample.0.problem ?? "accepted")")
    }

    @Test("a server-side dry run stores nothing; the diff ignores server-set fields and shows real changes")
    func dryRunAndDiff() throws {
        let fixture = try KubeFixture()
        let rendered = try shippedRenderer().render(CollectorInputs(sinkID: "dry-1", ownerID: "o", configYAML: "a: 1\n", configHash: "h1"))
        let collector = DesiredCollector(sinkID: "dry-1", name: rendered.name, namespace: rendered.namespace, objects: rendered.objects)
        let server = try fixture.backend.dryRunApply(collector)
        #expect(server.count == 3)
        #expect(server[1]["metadata"]?["uid"] != nil, "the server's view includes what it would set")
        #expect(try fixture.object("/api/v1/namespaces/otelcollectors/secrets/otel-dry-1") == nil, "nothing was stored")
        try fixture.backend.apply(collector)
        let live = try fixture.backend.live(collector)
        #expect(ObjectDiff.lines(desired: ObjectDiff.redacted(collector.objects), live: ObjectDiff.redacted(live)).isEmpty)
        let changed = try shippedRenderer().render(CollectorInputs(sinkID: "dry-1", ownerID: "o", configYAML: "a: 2\n", configHash: "h2"))
        let lines = ObjectDiff.lines(desired: ObjectDiff.redacted(changed.objects), live: ObjectDiff.redacted(live))
        #expect(lines.contains("+        maestro.orb.community/config-hash: h2"))
        #expect(!lines.joined().contains("a: 2"), "Secret data is redacted")
    }

    @Test("the double is faithful enough for kubectl: apply --server-side, get, delete")
    func kubectlFidelity() throws {
        let double = try KubeAPIDouble()
        let directory = try TemporaryDirectory()
        let kubeconfig = try double.kubeconfig(in: directory)
        let rendered = try shippedRenderer().render(CollectorInputs(sinkID: "kubectl-1", ownerID: "o", configYAML: "a: 1\n", configHash: "h"))
        let manifest = try directory.write("objects.yaml", rendered.yaml)
        let kubectl = try executable("kubectl")
        let environment = ["KUBECONFIG": kubeconfig, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin", "HOME": directory.path]
        let applied = try runProgram([kubectl, "apply", "--server-side", "--validate=false", "-f", manifest], environment: environment)
        #expect(applied.code == 0, "\(applied.output)")
        #expect(applied.output.contains("deployment.apps/otel-kubectl-1 serverside-applied"))
        let listed = try runProgram([kubectl, "get", "deployments", "-o", "jsonpath={.items[*].metadata.name}"], environment: environment)
        #expect(listed.output.contains("otel-kubectl-1"), "\(listed.output)")
        let deleted = try runProgram([kubectl, "delete", "-f", manifest], environment: environment)
        #expect(deleted.code == 0, "\(deleted.output)")
        let gone = try runProgram([kubectl, "get", "secret", "otel-kubectl-1"], environment: environment)
        #expect(gone.code != 0 && gone.output.contains("NotFound"))
    }

    @Test("Orb's log rules", arguments: [
        ("error: remote write returned HTTP status 401 Unauthorized", "error"), ("error exporting: status 404", "error"),
        ("failed to send: 502 Bad Gateway", "error"), ("dropping data: 504", "error"), ("error: HTTP 429 Too Many Requests", "warning"),
        ("error: 400 Bad Request", "warning"), ("info listening on 0.0.0.0:13133", "none"), ("error at 10:04:01", "none"),
    ])
    func logRules(_ sample: (String, String)) {
        #expect(ExporterLogScan.scan(sample.0)?.status.rawValue ?? "none" == sample.1)
    }
}
