import Foundation
import MaestroCore
import MaestroTestSupport
import MaestroValue
import Testing

/// Hand-written objects as a cluster shows them: a Deployment `otel-s1` whose current ReplicaSet is
/// `otel-s1-7f9c` (the Progressing condition names it), its pods labelled with `pod-template-hash`.
private enum Cluster {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func stamp(_ secondsAgo: TimeInterval) -> String {
        ISO8601DateFormatter().string(from: now.addingTimeInterval(-secondsAgo))
    }

    static func deployment(generation: Int64 = 2, observedGeneration: Int64? = 2, specReplicas: Int64? = 1, replicas: Int64 = 1,
                           updated: Int64 = 1, available: Int64 = 1, progressing: Value? = nil, extraConditions: [Value] = [],
                           configHash: String = "h2") -> Value {
        var spec: [String: Value] = [
            "selector": ["matchLabels": ["app.kubernetes.io/instance": "otel-s1"]],
            "template": ["metadata": ["labels": ["app.kubernetes.io/instance": "otel-s1", "app": "opentelemetry"],
                                      "annotations": ["maestro.orb.community/config-hash": .string(configHash)]]],
        ]
        if let specReplicas { spec["replicas"] = .int(specReplicas) }
        var status: [String: Value] = ["conditions": .list([progressing ?? progressingCondition("True", "NewReplicaSetAvailable",
                                                                                                  "ReplicaSet \"otel-s1-7f9c\" has successfully progressed.")]
                                                           + extraConditions)]
        if let observedGeneration { status["observedGeneration"] = .int(observedGeneration) }
        // A count of zero is left out, as the API server does.
        for (field, count) in [("replicas", replicas), ("updatedReplicas", updated), ("availableReplicas", available), ("readyReplicas", available)]
            where count > 0 {
            status[field] = .int(count)
        }
        return ["apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": ["name": "otel-s1", "namespace": "otelcollectors", "generation": .int(generation)],
                "spec": .map(spec), "status": .map(status)]
    }

    static func progressingCondition(_ status: String, _ reason: String, _ message: String) -> Value {
        ["type": "Progressing", "status": .string(status), "reason": .string(reason), "message": .string(message)]
    }

    static func healthyContainer() -> Value {
        ["name": "otel-collector", "ready": true, "restartCount": 0, "state": ["running": ["startedAt": .string(stamp(60))]]]
    }

    static func pod(_ name: String = "otel-s1-7f9c-x2k4p", hash: String = "7f9c", configHash: String = "h2", containers: [Value]? = nil,
                    conditions: [Value] = [["type": "PodScheduled", "status": "True"], ["type": "Ready", "status": "True"]],
                    phase: String = "Running", deleting: Bool = false) -> Value {
        var metadata: [String: Value] = [
            "name": .string(name), "namespace": "otelcollectors", "creationTimestamp": .string(stamp(300)),
            "labels": ["app.kubernetes.io/instance": "otel-s1", "app": "opentelemetry", "pod-template-hash": .string(hash)],
            "annotations": ["maestro.orb.community/config-hash": .string(configHash)],
        ]
        if deleting { metadata["deletionTimestamp"] = .string(stamp(1)) }
        return ["apiVersion": "v1", "kind": "Pod", "metadata": .map(metadata),
                "status": ["phase": .string(phase), "conditions": .list(conditions), "containerStatuses": .list(containers ?? [healthyContainer()])]]
    }

    static func waiting(_ reason: String, message: String? = nil, restarts: Int64 = 0, lastTerminated: Value? = nil) -> Value {
        var waiting: [String: Value] = ["reason": .string(reason)]
        if let message { waiting["message"] = .string(message) }
        var container: [String: Value] = ["name": "otel-collector", "ready": false, "restartCount": .int(restarts), "state": ["waiting": .map(waiting)]]
        if let lastTerminated { container["lastState"] = ["terminated": lastTerminated] }
        return .map(container)
    }

    static let notReady: [Value] = [["type": "PodScheduled", "status": "True"], ["type": "Ready", "status": "False", "reason": "ContainersNotReady"]]
    static let rollingOut = progressingCondition("True", "ReplicaSetUpdated", "ReplicaSet \"otel-s1-7f9c\" is progressing.")

    static func evaluate(_ deployment: Value, _ pods: [Value], grace: TimeInterval = 120) -> (status: SinkStatus, message: String) {
        CollectorHealth.evaluate(deployment: deployment, pods: pods, now: now, unschedulableGrace: grace)
    }
}

@Suite("collector status rules", .testThreads, .timeLimit(.minutes(1)))
struct CollectorHealthTests {
    @Test("a complete rollout is active: generation observed, every replica updated and available, none of an older template")
    func completeRollout() {
        #expect(Cluster.evaluate(Cluster.deployment(), [Cluster.pod()]) == (.active, ""))
        #expect(Cluster.evaluate(Cluster.deployment(specReplicas: 3, replicas: 3, updated: 3, available: 3),
                                 [Cluster.pod("otel-s1-7f9c-a"), Cluster.pod("otel-s1-7f9c-b"), Cluster.pod("otel-s1-7f9c-c")]).status == .active)
        #expect(Cluster.evaluate(Cluster.deployment(specReplicas: nil), [Cluster.pod()]).status == .active, "spec.replicas defaults to 1")
    }

    @Test("a rollout in progress is provisioning", arguments: [
        ("the controller has not observed the new generation", Cluster.deployment(generation: 3, observedGeneration: 2)),
        ("no status written yet", Cluster.deployment(generation: 1, observedGeneration: nil, replicas: 0, updated: 0, available: 0)),
        ("a pod of the old template is still there (a stalled rollout)", Cluster.deployment(replicas: 2, updated: 1, available: 1, progressing: Cluster.rollingOut)),
        ("not every replica runs the new template", Cluster.deployment(specReplicas: 3, replicas: 3, updated: 2, available: 3, progressing: Cluster.rollingOut)),
        ("not every replica is available", Cluster.deployment(specReplicas: 2, replicas: 2, updated: 2, available: 1, progressing: Cluster.rollingOut)),
        ("nothing available with the default of one replica", Cluster.deployment(specReplicas: nil, replicas: 1, updated: 1, available: 0, progressing: Cluster.rollingOut)),
        ("a paused rollout", Cluster.deployment(replicas: 2, updated: 0, available: 2,
                                                 progressing: Cluster.progressingCondition("Unknown", "DeploymentPaused", "Deployment is paused"))),
    ])
    func inProgress(_ sample: (String, Value)) {
        #expect(Cluster.evaluate(sample.1, [Cluster.pod(containers: [["name": "otel-collector", "ready": false, "restartCount": 0,
                                                                       "state": ["waiting": ["reason": "ContainerCreating"]]]],
                                                        conditions: Cluster.notReady, phase: "Pending")]) == (.provisioning, ""), "\(sample.0)")
    }

    @Test("Progressing=False with ProgressDeadlineExceeded is an error with the controller's message")
    func progressDeadline() {
        let deployment = Cluster.deployment(replicas: 2, updated: 1, available: 1, progressing: Cluster.progressingCondition(
            "False", "ProgressDeadlineExceeded", "ReplicaSet \"otel-s1-7f9c\" has timed out progressing."))
        let (status, message) = Cluster.evaluate(deployment, [Cluster.pod(conditions: Cluster.notReady)])
        #expect(status == .error)
        #expect(message.contains("ProgressDeadlineExceeded") && message.contains("has timed out progressing"), "\(message)")
    }

    @Test("ReplicaFailure=True (a quota, an admission webhook) is an error carrying its message")
    func replicaFailure() {
        let failure: Value = ["type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                              "message": "pods \"otel-s1-7f9c-\" is forbidden: exceeded quota: compute-resources"]
        let deployment = Cluster.deployment(replicas: 0, updated: 0, available: 0, progressing: Cluster.rollingOut, extraConditions: [failure])
        let (status, message) = Cluster.evaluate(deployment, [])
        #expect(status == .error)
        #expect(message.contains("FailedCreate") && message.contains("exceeded quota: compute-resources"), "\(message)")
    }

    @Test("a pod of the current template that fails for good is an error naming the reason, the pod and the container", arguments: [
        (Cluster.waiting("CrashLoopBackOff", message: "back-off 40s restarting failed container", restarts: 4,
                         lastTerminated: ["reason": "Error", "exitCode": 1]), ["CrashLoopBackOff", "Error", "exit code 1"]),
        (Cluster.waiting("ImagePullBackOff", message: "Back-off pulling image \"otel/collector:nope\""), ["ImagePullBackOff", "otel/collector:nope"]),
        (Cluster.waiting("ErrImagePull", message: "rpc error: manifest unknown"), ["ErrImagePull", "manifest unknown"]),
        (Cluster.waiting("CreateContainerConfigError", message: "secret \"otel-s1\" not found"), ["CreateContainerConfigError", "secret \"otel-s1\" not found"]),
        (Cluster.waiting("CrashLoopBackOff", restarts: 2, lastTerminated: ["reason": "OOMKilled", "exitCode": 137]), ["OOMKilled"]),
        (["name": "otel-collector", "ready": false, "restartCount": 1, "state": ["running": ["startedAt": "2027-01-15T08:00:00Z"]],
          "lastState": ["terminated": ["reason": "OOMKilled", "exitCode": 137]]], ["OOMKilled"]),
    ] as [(Value, [String])])
    func podFailures(_ sample: (Value, [String])) {
        let deployment = Cluster.deployment(replicas: 1, updated: 1, available: 0, progressing: Cluster.rollingOut)
        let (status, message) = Cluster.evaluate(deployment, [Cluster.pod(containers: [sample.0], conditions: Cluster.notReady)])
        #expect(status == .error)
        for part in sample.1 + ["otel-s1-7f9c-x2k4p", "otel-collector"] {
            #expect(message.contains(part), "\(message) lacks \(part)")
        }
    }

    @Test("a crash loop's message stays the same as its restarts and back-off grow (each new message is a status event)")
    func stableMessages() {
        let deployment = Cluster.deployment(replicas: 1, updated: 1, available: 0, progressing: Cluster.rollingOut)
        let first = Cluster.evaluate(deployment, [Cluster.pod(containers: [Cluster.waiting("CrashLoopBackOff", message: "back-off 10s restarting failed container",
                                                                                           restarts: 1, lastTerminated: ["reason": "Error", "exitCode": 1])])])
        let later = Cluster.evaluate(deployment, [Cluster.pod(containers: [Cluster.waiting("CrashLoopBackOff", message: "back-off 5m0s restarting failed container",
                                                                                           restarts: 9, lastTerminated: ["reason": "Error", "exitCode": 1])])])
        #expect(first.status == .error && first == later)
    }

    @Test("a pod of an older template crash-looping while the new one is healthy is no error")
    func oldTemplatePods() {
        let crashing = Cluster.waiting("CrashLoopBackOff", restarts: 5, lastTerminated: ["reason": "Error", "exitCode": 1])
        let oldPod = Cluster.pod("otel-s1-5d2a-q8w1z", hash: "5d2a", configHash: "h1", containers: [crashing], conditions: Cluster.notReady)
        // The old pod is still counted by the controller: the rollout is not over, but nothing failed.
        let midRollout = Cluster.deployment(replicas: 2, updated: 1, available: 1, progressing: Cluster.rollingOut)
        #expect(Cluster.evaluate(midRollout, [Cluster.pod(), oldPod]) == (.provisioning, ""))
        // Being deleted, it no longer counts: the rollout is complete.
        let terminating = Cluster.pod("otel-s1-5d2a-q8w1z", hash: "5d2a", configHash: "h1", containers: [crashing], conditions: Cluster.notReady, deleting: true)
        #expect(Cluster.evaluate(Cluster.deployment(), [Cluster.pod(), terminating]) == (.active, ""))
        // Without a Progressing condition naming the new ReplicaSet, the template's annotations tell them apart.
        let unnamed = Cluster.deployment(replicas: 2, updated: 1, available: 1, progressing: ["type": "Available", "status": "True"])
        #expect(Cluster.evaluate(unnamed, [Cluster.pod(), oldPod]) == (.provisioning, ""))
        // Same template metadata (an image change only): the hash in the condition decides.
        let sameMetadata = Cluster.pod("otel-s1-5d2a-q8w1z", hash: "5d2a", configHash: "h2", containers: [crashing], conditions: Cluster.notReady)
        #expect(Cluster.evaluate(midRollout, [Cluster.pod(), sameMetadata]) == (.provisioning, ""))
    }

    @Test("Unschedulable: provisioning within the grace period, an error with the scheduler's message after it")
    func unschedulable() {
        func pending(since secondsAgo: TimeInterval) -> Value {
            Cluster.pod(containers: [], conditions: [["type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                      "message": "0/3 nodes are available: 3 Insufficient cpu.",
                                                      "lastTransitionTime": .string(Cluster.stamp(secondsAgo))]], phase: "Pending")
        }
        let deployment = Cluster.deployment(replicas: 1, updated: 1, available: 0, progressing: Cluster.rollingOut)
        #expect(Cluster.evaluate(deployment, [pending(since: 30)], grace: 120) == (.provisioning, ""))
        let (status, message) = Cluster.evaluate(deployment, [pending(since: 200)], grace: 120)
        #expect(status == .error)
        #expect(message.contains("Unschedulable") && message.contains("3 Insufficient cpu") && message.contains("otel-s1-7f9c-x2k4p"), "\(message)")
        #expect(Cluster.evaluate(deployment, [pending(since: 1)], grace: 0).status == .error)
    }
}
