import Foundation
import Logging
import MaestroCore
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

/// The shipped template applied and observed through `KubernetesBackend` against the API double, whose
/// Deployment controller writes status later and whose pods fail as a rollout mode says.
private struct StatusFixture {
    let double: KubeAPIDouble
    let client: KubernetesClient
    let backend: KubernetesBackend
    let apps = "/apis/apps/v1/namespaces/otelcollectors/deployments/"
    let core = "/api/v1/namespaces/otelcollectors/"

    init(unschedulableGrace: TimeInterval = 120) throws {
        double = try KubeAPIDouble()
        client = kubeClient(KubeCredentials(server: double.server, origin: "test"))
        backend = KubernetesBackend(client: client, namespace: "otelcollectors", unschedulableGrace: unschedulableGrace)
    }

    func collector(_ sinkID: String, config: String = "receivers: {}\n", hash: String = "h1", settings: Value = .map([:])) throws -> DesiredCollector {
        let rendered = try shippedRenderer(settings: settings).render(CollectorInputs(sinkID: sinkID, ownerID: "o", configYAML: config, configHash: hash))
        return DesiredCollector(sinkID: sinkID, name: rendered.name, namespace: rendered.namespace, objects: rendered.objects)
    }

    func object(_ path: String) throws -> Value? {
        let (status, body) = try double.get(path)
        return status == 200 ? body : nil
    }

    /// Observes until the status is `expected` (or the deadline passes); answers the last observation.
    func observe(_ collector: DesiredCollector, until expected: SinkStatus, timeout: TimeInterval = 20,
                 backend: KubernetesBackend? = nil) -> (status: SinkStatus, message: String)? {
        var last: (status: SinkStatus, message: String)?
        _ = eventually(timeout: timeout) {
            last = try? (backend ?? self.backend).observe(collector)
            return last?.status == expected
        }
        return last
    }

    /// The controller has acted on the Deployment's current spec and has nothing left to do.
    func controllerSettled(_ name: String) throws -> Bool {
        let deployment = try object(apps + name)
        let idle = try double.stats()["pending"]?.listValue?.isEmpty ?? false
        return deployment?["status"]?["observedGeneration"] == deployment?["metadata"]?["generation"] && idle
    }
}

@Suite("collector status against the API double", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct CollectorStatusTests {
    @Test("a crash loop is an error naming the reason, the pod and the container; healed, the collector is active")
    func crashLoopAndHeal() throws {
        let fixture = try StatusFixture()
        let collector = try fixture.collector("s1")
        try fixture.double.setRollout(collector.name, "CrashLoopBackOff")
        try fixture.backend.apply(collector)
        let failed = fixture.observe(collector, until: .error)
        #expect(failed?.status == .error)
        #expect(failed?.message.contains("CrashLoopBackOff") == true && failed?.message.contains("otel-collector") == true
                && failed?.message.contains(collector.name + "-") == true, "\(String(describing: failed))")
        try fixture.double.setRollout(collector.name, nil)
        #expect(fixture.observe(collector, until: .active)?.status == .active)
    }

    @Test("pods that cannot start are an error with their reason", arguments: [
        ("OOMKilled", "OOMKilled"), ("ImagePullBackOff", "ImagePullBackOff"), ("ReplicaFailure", "exceeded quota"),
        ("ProgressDeadlineExceeded", "ProgressDeadlineExceeded"),
    ])
    func failingRollouts(_ sample: (String, String)) throws {
        let fixture = try StatusFixture()
        let collector = try fixture.collector("s1")
        try fixture.double.setRollout(collector.name, sample.0)
        try fixture.backend.apply(collector)
        let observed = fixture.observe(collector, until: .error)
        #expect(observed?.status == .error)
        #expect(observed?.message.contains(sample.1) == true, "\(String(describing: observed))")
    }

    @Test("a stalled rollout of a config change is not active while the old pod keeps serving")
    func stalledRollout() throws {
        let fixture = try StatusFixture()
        try fixture.backend.apply(try fixture.collector("s1"))
        #expect(fixture.observe(try fixture.collector("s1"), until: .active)?.status == .active)
        try fixture.double.setRollout("otel-s1", "Stalled")
        let changed = try fixture.collector("s1", config: "receivers: {otlp: {}}\n", hash: "h2")
        try fixture.backend.apply(changed)
        #expect(try eventually { try fixture.controllerSettled("otel-s1") })
        let deployment = try #require(try fixture.object(fixture.apps + "otel-s1"))
        #expect(deployment["status"]?["availableReplicas"] == .int(1), "the old pod still serves")
        #expect(deployment["status"]?["replicas"] == .int(2) && deployment["status"]?["updatedReplicas"] == .int(1))
        #expect(try fixture.backend.observe(changed) == (.provisioning, ""))
        try fixture.double.setRollout("otel-s1", nil)
        #expect(fixture.observe(changed, until: .active)?.status == .active)
    }

    @Test("exporter logs count only for a collector that is otherwise active: a stalled rollout with a 401 in its log is provisioning")
    func logsOnlyWhenActive() throws {
        let fixture = try StatusFixture()
        try fixture.backend.apply(try fixture.collector("s1"))
        #expect(fixture.observe(try fixture.collector("s1"), until: .active)?.status == .active)
        try fixture.double.setLogs("otel-s1", "2026-12-07T10:00:05Z error exporterhelper: Exporting failed: HTTP 401 Unauthorized\n")
        try fixture.double.setRollout("otel-s1", "Stalled")
        let changed = try fixture.collector("s1", config: "receivers: {otlp: {}}\n", hash: "h2")
        try fixture.backend.apply(changed)
        #expect(try eventually { try fixture.controllerSettled("otel-s1") })
        #expect(try fixture.backend.observe(changed) == (.provisioning, ""), "the rollout decides first")
        try fixture.double.setRollout("otel-s1", nil)
        let healed = fixture.observe(changed, until: .error)
        #expect(healed?.status == .error && healed?.message.contains("401") == true, "then Orb's log rule: \(String(describing: healed))")
    }

    @Test("a config change the controller has not observed (paused) is provisioning, not active from the old pods")
    func unobservedGeneration() throws {
        let fixture = try StatusFixture()
        try fixture.backend.apply(try fixture.collector("s1"))
        #expect(fixture.observe(try fixture.collector("s1"), until: .active)?.status == .active)
        try fixture.double.controller(["paused": true])
        let changed = try fixture.collector("s1", config: "receivers: {otlp: {}}\n", hash: "h2")
        try fixture.backend.apply(changed)
        let deployment = try #require(try fixture.object(fixture.apps + "otel-s1"))
        #expect(deployment["metadata"]?["generation"] == .int(2) && deployment["status"]?["observedGeneration"] == .int(1))
        #expect(deployment["status"]?["availableReplicas"] == .int(1))
        #expect(try fixture.backend.observe(changed) == (.provisioning, ""))
        try fixture.double.controller(["paused": false])
        #expect(fixture.observe(changed, until: .active)?.status == .active)
    }

    @Test("Unschedulable pods: provisioning within the grace period, an error with the scheduler's message past it")
    func unschedulable() throws {
        let fixture = try StatusFixture(unschedulableGrace: 120)
        let collector = try fixture.collector("s1")
        try fixture.double.setRollout(collector.name, "Unschedulable")
        try fixture.backend.apply(collector)
        #expect(try eventually {
            let pods = try fixture.double.get(fixture.core + "pods").body["items"]?.listValue ?? []
            let settled = try fixture.controllerSettled(collector.name)
            return settled && pods.contains { $0["status"]?["conditions"]?.listValue?.contains { $0["reason"] == .string("Unschedulable") } == true }
        })
        #expect(try fixture.backend.observe(collector) == (.provisioning, ""))
        let impatient = KubernetesBackend(client: fixture.client, namespace: "otelcollectors", unschedulableGrace: 0)
        let observed = fixture.observe(collector, until: .error, backend: impatient)
        #expect(observed?.status == .error)
        #expect(observed?.message.contains("Unschedulable") == true && observed?.message.contains("Insufficient cpu") == true,
                "\(String(describing: observed))")
    }

    @Test("the Secret and the Service are owned by the Deployment: deleting it removes them")
    func ownerReferences() throws {
        let fixture = try StatusFixture()
        let collector = try fixture.collector("s1")
        try fixture.backend.apply(collector)
        let deployment = try #require(try fixture.object(fixture.apps + "otel-s1"))
        let expected: Value = ["apiVersion": "apps/v1", "kind": "Deployment", "name": "otel-s1",
                               "uid": deployment["metadata"]?["uid"] ?? .null, "controller": true, "blockOwnerDeletion": true]
        for path in ["secrets/otel-s1", "services/otel-s1"] {
            #expect(try fixture.object(fixture.core + path)?["metadata"]?["ownerReferences"] == .list([expected]), "\(path)")
        }
        #expect(deployment["metadata"]?["ownerReferences"] == nil)
        let deleted = try fixture.client.request("DELETE", fixture.apps + "otel-s1", query: [("propagationPolicy", "Background")])
        #expect(deleted.status == 200)
        #expect(try eventually { try fixture.object(fixture.core + "secrets/otel-s1") == nil && fixture.object(fixture.core + "services/otel-s1") == nil })
    }

    @Test("replicas scaled by another manager (/scale) are not reset by maestro's next apply")
    func scaledElsewhere() throws {
        let fixture = try StatusFixture()
        try fixture.backend.apply(try fixture.collector("s1"))
        let scaled = try fixture.client.request("PATCH", fixture.apps + "otel-s1/scale", query: [("fieldManager", "horizontal-pod-autoscaler")],
                                                body: ["spec": ["replicas": 3]], contentType: "application/merge-patch+json")
        #expect(scaled.status == 200)
        try fixture.backend.apply(try fixture.collector("s1"))
        try fixture.backend.apply(try fixture.collector("s1", config: "receivers: {otlp: {}}\n", hash: "h2"))
        #expect(try fixture.object(fixture.apps + "otel-s1")?["spec"]?["replicas"] == .int(3))
    }

    @Test("a container a sidecar injector added (another field manager) survives maestro's applies")
    func sidecarSurvives() throws {
        let fixture = try StatusFixture()
        try fixture.backend.apply(try fixture.collector("s1"))
        let sidecar: Value = ["apiVersion": "apps/v1", "kind": "Deployment", "metadata": ["name": "otel-s1"],
                              "spec": ["template": ["spec": ["containers": [["name": "proxy", "image": "envoyproxy/envoy:v1.30"]]]]]]
        let injected = try fixture.client.request("PATCH", fixture.apps + "otel-s1", query: [("fieldManager", "sidecar-injector")],
                                                  body: sidecar, contentType: "application/apply-patch+yaml")
        #expect(injected.status == 200, "\(injected.body)")
        try fixture.backend.apply(try fixture.collector("s1"))
        try fixture.backend.apply(try fixture.collector("s1", config: "receivers: {otlp: {}}\n", hash: "h2"))
        let containers = try fixture.object(fixture.apps + "otel-s1")?["spec"]?["template"]?["spec"]?["containers"]?.listValue ?? []
        #expect(Set(containers.compactMap { $0["name"]?.stringValue }) == ["otel-collector", "proxy"])
    }

    @Test("a collector Orb's maestro made with kubectl apply is taken over: same objects, maestro's labels and fields, nothing duplicated")
    func adoptsOrbsCollector() throws {
        let fixture = try StatusFixture()
        let sinkID = "orb1"
        // Orb's objects (reference §5), written as `kubectl apply` (client-side) writes them.
        let podLabels: Value = ["app": "opentelemetry", "component": .string("otel-collector-\(sinkID)")]
        let orbDeployment: Value = [
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": ["name": .string("otel-\(sinkID)"), "namespace": "otelcollectors",
                         "annotations": ["kubectl.kubernetes.io/last-applied-configuration": "{}"]],
            "spec": ["replicas": 1, "selector": ["matchLabels": podLabels],
                     "template": ["metadata": ["labels": podLabels,
                                               "annotations": ["prometheus.io/scrape": "true", "prometheus.io/port": "8888", "prometheus.io/path": "/metrics"]],
                                  "spec": ["containers": [["name": "otel-collector", "image": "otel/opentelemetry-collector-contrib:0.91.0",
                                                           "ports": [["containerPort": 13133], ["containerPort": 8888]],
                                                           "volumeMounts": [["name": "orb-config", "mountPath": "/etc/otelcol-contrib/config.yaml",
                                                                             "subPath": "config.yaml"]]]],
                                           "volumes": [["name": "orb-config", "configMap": ["name": .string("otel-collector-config-\(sinkID)")]]]]]],
        ]
        let orbService: Value = [
            "apiVersion": "v1", "kind": "Service", "metadata": ["name": .string("otel-\(sinkID)"), "namespace": "otelcollectors"],
            "spec": ["type": "ClusterIP", "selector": ["component": .string("otel-collector-\(sinkID)")],
                     "ports": [["name": "metrics", "port": 8888, "targetPort": 8888], ["name": "healthcheck", "port": 13133, "targetPort": 13133]]],
        ]
        let orbConfigMap: Value = ["apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": ["name": .string("otel-collector-config-\(sinkID)"), "namespace": "otelcollectors"],
                                   "data": ["config.yaml": "receivers: {}\n"]]
        let csa = [("fieldManager", "kubectl-client-side-apply")]
        #expect(try fixture.client.request("POST", "/apis/apps/v1/namespaces/otelcollectors/deployments", query: csa, body: orbDeployment).status == 201)
        #expect(try fixture.client.request("POST", fixture.core + "services", query: csa, body: orbService).status == 201)
        #expect(try fixture.client.request("POST", fixture.core + "configmaps", query: csa, body: orbConfigMap).status == 201)
        let deploymentPath = fixture.apps + "otel-\(sinkID)"
        let servicePath = fixture.core + "services/otel-\(sinkID)"
        #expect(fixture.observe(try fixture.collector(sinkID), until: .active)?.status == .active, "Orb's collector runs")
        let uids = try [deploymentPath, servicePath].map { try fixture.object($0)?["metadata"]?["uid"] }

        let collector = try fixture.collector(sinkID)
        try fixture.double.post("/_double/reset-audit", .map([:]))
        try fixture.backend.apply(collector)
        try fixture.backend.apply(collector)
        // The takeover needs nothing maestro's Role (deploy/kubernetes/20-rbac.yaml) does not grant.
        let documents = try YAML.parseAll(try String(contentsOfFile: repositoryRoot + "/deploy/kubernetes/20-rbac.yaml", encoding: .utf8))
        var granted: Set<[String]> = []
        for rule in documents.first(where: { $0["kind"] == "Role" })?["rules"]?.listValue ?? [] {
            for group in rule["apiGroups"]?.listValue ?? [] {
                for resource in rule["resources"]?.listValue ?? [] {
                    for verb in rule["verbs"]?.listValue ?? [] {
                        granted.insert([group.stringValue ?? "", resource.stringValue ?? "", verb.stringValue ?? ""])
                    }
                }
            }
        }
        let used = Set(try fixture.double.post("/_double/audit", .map([:]))["requests"]?.listValue?.map {
            [$0["apiGroup"]?.stringValue ?? "", $0["resource"]?.stringValue ?? "", $0["verb"]?.stringValue ?? ""]
        } ?? [])
        #expect(!used.isEmpty && used.isSubset(of: granted), "not granted: \(used.subtracting(granted))")
        let deployment = try #require(try fixture.object(deploymentPath))
        let service = try #require(try fixture.object(servicePath))
        #expect([deployment["metadata"]?["uid"], service["metadata"]?["uid"]] == uids, "the same objects, not new ones")
        for object in [deployment, service] {
            #expect(object["metadata"]?["labels"]?["app.kubernetes.io/managed-by"] == .string("maestro"))
            #expect(object["metadata"]?["annotations"]?["maestro.orb.community/sink-id"] == .string(sinkID))
            #expect(object["metadata"]?["annotations"]?["kubectl.kubernetes.io/last-applied-configuration"] == nil)
        }
        #expect(deployment["spec"]?["selector"]?["matchLabels"] == podLabels, "a Deployment's selector is immutable: Orb's stays")
        let podSpec = deployment["spec"]?["template"]?["spec"]
        #expect(podSpec?["volumes"]?.listValue?.compactMap { $0["name"]?.stringValue } == ["config", "tmp"], "Orb's ConfigMap volume is gone")
        #expect(podSpec?["volumes"]?.listValue?.first?["secret"]?["secretName"] == .string("otel-\(sinkID)"))
        #expect(podSpec?["containers"]?.listValue?.count == 1)
        #expect(deployment["metadata"]?["managedFields"]?.listValue?.contains { $0["manager"] == .string("maestro") && $0["operation"] == .string("Apply") } == true)
        #expect(try fixture.double.get("/apis/apps/v1/namespaces/otelcollectors/deployments").body["items"]?.listValue?.count == 1)
        #expect(try fixture.double.get(fixture.core + "services").body["items"]?.listValue?.count == 1)
        #expect(try fixture.object(fixture.core + "secrets/otel-\(sinkID)")?["metadata"]?["ownerReferences"]?.listValue?.first?["uid"] == uids[0])
        #expect(fixture.observe(collector, until: .active)?.status == .active, "maestro's template rolled out on the adopted Deployment")
        // A later process (a restart) finds the objects its own: the same apply goes through.
        let restarted = KubernetesBackend(client: fixture.client, namespace: "otelcollectors")
        try restarted.apply(collector)
        #expect(try fixture.object(deploymentPath)?["metadata"]?["generation"] == deployment["metadata"]?["generation"], "nothing changed")
    }
}
