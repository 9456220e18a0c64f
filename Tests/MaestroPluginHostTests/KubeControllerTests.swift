import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroPluginHost

/// The maestro role as `maestro run` assembles it on Kubernetes: watch caches feeding the reconciler,
/// against the API double. A second fixture over the same double and Redis is a restart.
final class WatchingFixture: Sendable {
    let double: KubeAPIDouble
    let pipeline: PipelineFixture
    let client: KubernetesClient
    let caches: KubeCaches
    let backend: KubernetesBackend
    let reconciler: Reconciler
    let manager: CollectorManager

    init(double existing: KubeAPIDouble? = nil, pipeline existingPipeline: PipelineFixture? = nil,
         options: ReconcilerOptions = ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 1), logReadsPerSecond: Double = 2) throws {
        double = try existing ?? KubeAPIDouble()
        pipeline = try existingPipeline ?? PipelineFixture()
        client = kubeClient(KubeCredentials(server: double.server, origin: "test"))
        caches = KubeCaches(client: client, namespace: "otelcollectors", kinds: KubernetesBackend.collectorKindNames, logger: Logger(label: "test"))
        let client = client
        let caches = caches
        let logs = ExporterLogWatch(client: client, readsPerSecond: logReadsPerSecond, podNames: { name, namespace throws(ClusterError) in
            try KubernetesBackend(client: client, namespace: namespace, caches: caches).podNames(name: name, namespace: namespace)
        })
        backend = KubernetesBackend(client: client, namespace: "otelcollectors", caches: caches, logWatch: logs)
        reconciler = Reconciler(redisURL: try RedisURL(parsing: pipeline.redisURL), names: pipeline.names, backend: backend, options: options,
                                logger: Logger(label: "test"))
        manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test")) {
            try TemplateRenderer(root: repositoryRoot + "/templates", settings: .map([:]))
        }
        caches.onChange { [reconciler] sinkID in reconciler.enqueue(sinkID) }
        logs.onVerdictChange { [reconciler] sinkID in reconciler.enqueue(sinkID) }
    }

    func start() {
        caches.start()
        backend.logWatch?.start()
        reconciler.start()
    }

    func stop() {
        reconciler.stop()
        backend.logWatch?.stop()
        caches.stop()
    }

    func status(_ sinkID: String) -> String? { try? manager.get(sinkID: sinkID).status }

    func errorMessage(_ sinkID: String) -> String { (try? manager.get(sinkID: sinkID).errorMessage) ?? "" }

    func create(_ redis: RedisConnection, _ sinkIDs: [String]) throws {
        for sinkID in sinkIDs {
            try redis.hset(pipeline.names.configHash, field: sinkID, value: "exporters: {otlphttp: {endpoint: https://\(sinkID).example}}\n")
            try manager.create(sinkID: sinkID, ownerID: "o")
        }
    }

    /// Requests the double answered, by method (faults and control calls aside).
    func requests() throws -> [String: Int] {
        (try double.stats()["requests"]?.mapValue ?? [:]).compactMapValues { $0.intValue.map(Int.init) }
    }

    func deployment(_ name: String) throws -> Value? {
        let (status, body) = try double.get("/apis/apps/v1/namespaces/otelcollectors/deployments/\(name)")
        return status == 200 ? body : nil
    }
}

@Suite("The Kubernetes controller: watches, caches, true status", .serialized, .testThreads, .timeLimit(.minutes(4)))
struct KubeControllerTests {
    @Test("an image edited behind maestro's back is restored from the watch event, no resync; the controller's status writes are no drift")
    func driftFromWatch() throws {
        let fixture = try WatchingFixture()
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        try fixture.create(redis, ["w1"])
        #expect(eventually { fixture.status("w1") == "active" })
        let image = try #require(try fixture.deployment("otel-w1")?["spec"]?["template"]?["spec"]?["containers"]?.listValue?.first?["image"]?.stringValue)
        #expect(eventually { fixture.reconciler.backlog == 0 })
        let patchesBefore = try fixture.requests()["PATCH", default: 0]

        // Pods stop being ready and come back: the controller writes status, the watches report it.
        try fixture.double.setRollout("otel-w1", "NotReady")
        #expect(eventually { fixture.status("w1") == "provisioning" })
        try fixture.double.setRollout("otel-w1", nil)
        #expect(eventually { fixture.status("w1") == "active" })
        #expect(eventually { fixture.reconciler.backlog == 0 })
        #expect(try fixture.requests()["PATCH", default: 0] == patchesBefore, "status changes are read, nothing is written")
        #expect(fixture.reconciler.counters.driftCorrected == 0, "a controller's status write is no drift")

        let edit: Value = ["spec": ["template": ["spec": ["containers": [["name": "otel-collector", "image": "evil/collector:1"]]]]]]
        let edited = try fixture.client.request("PATCH", "/apis/apps/v1/namespaces/otelcollectors/deployments/otel-w1",
                                                query: [("fieldManager", "kubectl-edit")], body: edit,
                                                contentType: "application/strategic-merge-patch+json")
        #expect(edited.status == 200)
        #expect(eventually { (try? fixture.deployment("otel-w1"))??["spec"]?["template"]?["spec"]?["containers"]?.listValue?.first?["image"]?.stringValue == image },
                "the image is restored")
        // The image is back as soon as the apply landed; the pass counts the drift when the apply returns.
        #expect(eventually { fixture.reconciler.counters.driftCorrected == 1 })
        #expect(fixture.reconciler.counters.resyncs == 1, "healed by the watch event, not a resync (only the start's)")
    }

    @Test("a field maestro does not render, changed by another writer (an HPA's replicas), is read once and left alone: no write, no drift; the next pass asks nothing")
    func otherWritersFieldsAreNoDrift() throws {
        let fixture = try WatchingFixture(logReadsPerSecond: 0)
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        try fixture.create(redis, ["h1"])
        #expect(eventually { fixture.status("h1") == "active" && fixture.reconciler.backlog == 0 })
        let before = try fixture.requests()
        let passes = fixture.reconciler.counters.applied

        let scale: Value = ["spec": ["replicas": 2]]
        let scaled = try fixture.client.request("PATCH", "/apis/apps/v1/namespaces/otelcollectors/deployments/otel-h1",
                                                query: [("fieldManager", "horizontal-pod-autoscaler")], body: scale,
                                                contentType: "application/merge-patch+json")
        #expect(scaled.status == 200)
        #expect(eventually { fixture.reconciler.counters.applied > passes && fixture.reconciler.backlog == 0 && fixture.status("h1") == "active" })
        let after = try fixture.requests()
        #expect(after["PATCH", default: 0] == before["PATCH", default: 0] + 1, "the HPA's write only: \(before) → \(after)")
        #expect(after["GET", default: 0] == before["GET", default: 0] + 1, "the moved Deployment read once, whole: \(before) → \(after)")
        #expect(fixture.reconciler.counters.driftCorrected == 0)

        let again = fixture.reconciler.counters.applied
        fixture.reconciler.enqueue("h1")
        #expect(eventually { fixture.reconciler.counters.applied > again && fixture.reconciler.backlog == 0 })
        let last = try fixture.requests()
        #expect(last == after, "the version read is remembered: a pass compares with the cache only: \(after) → \(last)")
        #expect(try fixture.deployment("otel-h1")?["spec"]?["replicas"] == 2, "the HPA's replicas stay")
    }

    @Test("attack: a Deployment deleted and made again by another tool while maestro was down, with another image, is restored at restart")
    func recreatedBehindMaestrosBack() throws {
        let first = try WatchingFixture(logReadsPerSecond: 0)
        let redis = try first.pipeline.connect()
        first.start()
        try first.create(redis, ["u1"])
        #expect(eventually { first.status("u1") == "active" && first.reconciler.backlog == 0 })
        first.stop()
        let path = "/apis/apps/v1/namespaces/otelcollectors/deployments/otel-u1"
        var forged = try #require(try first.deployment("otel-u1"))
        let image = forged["spec"]?["template"]?["spec"]?["containers"]?.listValue?.first?["image"]
        #expect(try first.client.request("DELETE", path, query: [("propagationPolicy", "Orphan")]).status == 200)
        #expect(eventually { (try? first.deployment("otel-u1")) == nil })
        // The same labels and annotations (so maestro's caches select it), generation 1 again, another image.
        guard case .map(var fields) = forged, case .map(var metadata)? = fields["metadata"] else { Issue.record("no metadata"); return }
        for generated in ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"] { metadata[generated] = nil }
        fields["metadata"] = .map(metadata)
        fields["status"] = nil
        forged = .map(fields)
        let container: Value = ["name": "otel-collector", "image": "evil/collector:1"]
        forged = replacing(["spec", "template", "spec", "containers"], in: forged, with: [container])
        let made = try first.client.request("POST", "/apis/apps/v1/namespaces/otelcollectors/deployments", body: forged)
        #expect(made.status == 201, "\(made.body)")
        #expect(try first.deployment("otel-u1")?["metadata"]?["generation"] == 1)

        let restarted = try WatchingFixture(double: first.double, pipeline: first.pipeline, logReadsPerSecond: 0)
        restarted.start()
        defer { restarted.stop() }
        #expect(eventually { (try? restarted.deployment("otel-u1"))??["spec"]?["template"]?["spec"]?["containers"]?.listValue?.first?["image"] == image },
                "maestro's image is back")
        #expect(eventually { restarted.reconciler.counters.driftCorrected >= 1 })
        // The Service and the Secret, orphaned with the old Deployment, now belong to the one that runs.
        let uid = try #require(try restarted.deployment("otel-u1")?["metadata"]?["uid"])
        for path in ["/api/v1/namespaces/otelcollectors/services/otel-u1", "/api/v1/namespaces/otelcollectors/secrets/otel-u1"] {
            #expect(eventually { (try? restarted.double.get(path))?.body["metadata"]?["ownerReferences"]?.listValue?.first?["uid"] == uid }, "\(path)")
        }
    }

    @Test("the caches hold what the reconcile and the status read: no pod spec, no Secret values, no last-applied copy, no image digests")
    func cachesKeepOnlyWhatIsRead() throws {
        let fixture = try WatchingFixture(logReadsPerSecond: 0)
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        try fixture.create(redis, ["m1"])
        #expect(eventually { fixture.status("m1") == "active" && fixture.reconciler.backlog == 0 })
        guard case .present(let deployment) = fixture.caches.lookup(kind: "Deployment", name: "otel-m1"),
              case .present(let secret) = fixture.caches.lookup(kind: "Secret", name: "otel-m1"),
              case .present(let service) = fixture.caches.lookup(kind: "Service", name: "otel-m1"),
              let pod = fixture.caches.pods(matching: ["app.kubernetes.io/instance": "otel-m1"])?.first else {
            Issue.record("not cached")
            return
        }
        #expect(deployment["spec"]?["template"]?["spec"] == nil && deployment["status"]?["observedGeneration"] != nil
                && deployment["spec"]?["selector"] != nil && deployment["metadata"]?["generation"] != nil, "\(deployment)")
        #expect(deployment["metadata"]?["managedFields"] == nil)
        #expect(secret["data"] == nil && secret["stringData"] == nil && service["spec"] == nil, "\(secret) \(service)")
        #expect(pod["spec"] == nil && pod["status"]?["conditions"] != nil, "\(pod)")
        let containers = pod["status"]?["containerStatuses"]?.listValue ?? []
        #expect(!containers.isEmpty && containers.allSatisfy { $0["imageID"] == nil && $0["image"] == nil && $0["restartCount"] != nil }, "\(containers)")
    }

    @Test("a crash loop is error with its reason within seconds of the pods' change; healed, active again")
    func crashLoopFromWatch() throws {
        let fixture = try WatchingFixture()
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        try fixture.create(redis, ["c1"])
        #expect(eventually { fixture.status("c1") == "active" })
        try fixture.double.setRollout("otel-c1", "CrashLoopBackOff")
        #expect(eventually { fixture.status("c1") == "error" })
        #expect(fixture.errorMessage("c1").contains("CrashLoopBackOff"), "\(fixture.errorMessage("c1"))")
        try fixture.double.setRollout("otel-c1", nil)
        #expect(eventually { fixture.status("c1") == "active" })
        let events = try redis.xrange(fixture.pipeline.names.statusStream).filter { $0["sink_id"] == "c1" }.map { $0["status"] ?? "" }
        // Pods and Deployments come on two watches: a pass between the healed pod's event and the
        // Deployment's status event sees the pod running and the rollout not yet available (seen once under
        // the full suite's load). Each transition still happens once.
        #expect(events == ["provisioning", "active", "error", "active"] || events == ["provisioning", "active", "error", "provisioning", "active"],
                "each transition once: \(events)")
    }

    @Test("a restart with 500 collectors already running lists each kind, compares, and writes nothing")
    func restartWritesNothing() throws {
        let first = try WatchingFixture(logReadsPerSecond: 0)
        let redis = try first.pipeline.connect()
        let sinkIDs = (0..<500).map { "r\($0)" }
        first.start()
        #expect(first.caches.waitUntilSynced(timeout: 20))
        try first.double.post("/_double/reset-stats", .map([:]))
        try first.create(redis, sinkIDs)
        #expect(eventually(timeout: 150) { sinkIDs.allSatisfy { first.status($0) == "active" } })
        #expect(eventually(timeout: 60) { first.reconciler.backlog == 0 })
        let firstSync = try first.requests()
        // Per new collector: three server-side applies (a pass that runs before the watch brought one of the
        // new objects applies it again: the issue's bound is 3.5 requests per collector); status and pods
        // come from the watches.
        #expect(firstSync["PATCH", default: 0] >= 3 * sinkIDs.count && firstSync["PATCH", default: 0] <= 7 * sinkIDs.count / 2, "\(firstSync)")
        #expect(firstSync["GET", default: 0] < sinkIDs.count, "no look per object before creating it: \(firstSync)")
        first.stop()

        try first.double.post("/_double/reset-stats", .map([:]))
        let restarted = try WatchingFixture(double: first.double, pipeline: first.pipeline, logReadsPerSecond: 0)
        restarted.start()
        defer { restarted.stop() }
        #expect(eventually(timeout: 90) { restarted.reconciler.counters.resyncs == 1 && restarted.reconciler.counters.applied >= sinkIDs.count
                && restarted.reconciler.backlog == 0 })
        let requests = try restarted.requests()
        #expect(requests["PATCH", default: 0] == 0 && requests["POST", default: 0] == 0 && requests["DELETE", default: 0] == 0,
                "nothing changed, nothing written: \(requests)")
        // Per cached kind (5) one list of at most two pages of 500 and one watch: nothing per collector.
        #expect(requests["GET", default: 0] <= 15, "\(requests)")
        #expect(restarted.reconciler.counters.driftCorrected == 0)
    }

    @Test("with 20% of requests failing, every collector converges and becomes active")
    func convergesUnderFaults() throws {
        let fixture = try WatchingFixture()
        let redis = try fixture.pipeline.connect()
        try fixture.double.faults(["error500": 0.2])
        fixture.start()
        defer { fixture.stop() }
        let sinkIDs = (0..<20).map { "f\($0)" }
        try fixture.create(redis, sinkIDs)
        #expect(eventually(timeout: 90) { sinkIDs.allSatisfy { fixture.status($0) == "active" } },
                "\(sinkIDs.map { "\($0): \(fixture.status($0) ?? "-")" })")
        try fixture.double.faults(["error500": 0])
    }
}

/// `value` with the field at `path` replaced.
private func replacing(_ path: [String], in value: Value, with replacement: Value) -> Value {
    guard let key = path.first else { return replacement }
    var entries = value.mapValue ?? [:]
    entries[key] = replacing(Array(path.dropFirst()), in: entries[key] ?? .map([:]), with: replacement)
    return .map(entries)
}
