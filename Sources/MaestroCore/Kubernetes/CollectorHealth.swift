public import Foundation
public import MaestroValue

/// The status a collector's Deployment and pods show, by the rules of the Deployment controller and
/// the kubelet (docs/reliability.md has the table). Pure: the objects may come from GETs or from a
/// watch cache.
///
/// A rollout is complete as the controller (and `kubectl rollout status`) counts it: the controller has
/// observed the current generation, every replica runs the current template, none of an older template is
/// left, and all are available. Messages stay the same while the cause does (no restart counts, no
/// back-off times): a status event is published on every change of the message.
public enum CollectorHealth {
    /// Container waiting reasons that will not go away without a change to the collector or the cluster.
    static let failingWaitingReasons: Set<String> = [
        "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
    ]
    /// Waiting reasons whose kubelet message says what is wrong (a missing Secret key, an image name);
    /// a crash loop's message only counts its back-off.
    static let reasonsWithUsefulMessage: Set<String> = [
        "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
    ]

    public static func evaluate(deployment: Value, pods: [Value], now: Date, unschedulableGrace: TimeInterval)
        -> (status: SinkStatus, message: String)
    {
        let name = deployment["metadata"]?["name"]?.stringValue ?? ""
        let status = deployment["status"]
        let conditions = status?["conditions"]?.listValue ?? []
        func condition(_ type: String) -> Value? { conditions.first { $0["type"]?.stringValue == type } }

        if let failure = condition("ReplicaFailure"), failure["status"]?.stringValue == "True" {
            let reason = failure["reason"]?.stringValue ?? "ReplicaFailure"
            return (.error, "the collector's pods cannot be created (\(reason)): \(failure["message"]?.stringValue ?? "")")
        }
        let generation = deployment["metadata"]?["generation"]?.intValue ?? 0
        let observedGeneration = status?["observedGeneration"]?.intValue ?? 0
        // Until the controller has seen the current spec, its status (and which pods are new) is about an
        // older one.
        guard observedGeneration >= generation, status != nil else { return (.provisioning, "") }

        let progressing = condition("Progressing")
        if progressing?["status"]?.stringValue == "False", progressing?["reason"]?.stringValue == "ProgressDeadlineExceeded" {
            return (.error, "the collector's rollout failed (ProgressDeadlineExceeded): \(progressing?["message"]?.stringValue ?? "")")
        }
        let current = currentTemplatePods(pods, deployment: deployment, newReplicaSet: progressing.flatMap { newReplicaSetHash($0, deployment: name) })
        for pod in current {
            if let failure = containerFailure(pod) { return (.error, failure) }
        }
        var waitingForScheduling = false
        for pod in current {
            guard let since = unschedulableSince(pod, now: now) else { continue }
            if now.timeIntervalSince(since) > unschedulableGrace {
                let podName = pod["metadata"]?["name"]?.stringValue ?? ""
                let message = pod["status"]?["conditions"]?.listValue?.first { $0["type"]?.stringValue == "PodScheduled" }?["message"]?.stringValue ?? ""
                return (.error, "pod \(podName) cannot be scheduled (Unschedulable for more than \(Int(unschedulableGrace)) s): \(message)")
            }
            waitingForScheduling = true
        }
        if waitingForScheduling { return (.provisioning, "") }

        let wanted = deployment["spec"]?["replicas"]?.intValue ?? 1
        let updated = status?["updatedReplicas"]?.intValue ?? 0
        let total = status?["replicas"]?.intValue ?? 0
        let available = status?["availableReplicas"]?.intValue ?? 0
        guard updated == wanted, total == updated, available >= wanted else { return (.provisioning, "") }
        return (.active, "")
    }

    /// The pods of the Deployment's current template. A pod carries its template's labels and annotations
    /// (plus `pod-template-hash`); where the Progressing condition names the new ReplicaSet
    /// (`<deployment>-<hash>`), its pods are those with that `pod-template-hash`.
    static func currentTemplatePods(_ pods: [Value], deployment: Value, newReplicaSet hash: String?) -> [Value] {
        let template = deployment["spec"]?["template"]?["metadata"]
        let templateLabels = template?["labels"]?.mapValue ?? [:]
        let templateAnnotations = template?["annotations"]?.mapValue ?? [:]
        return pods.filter { pod in
            let metadata = pod["metadata"]
            if metadata?["deletionTimestamp"] != nil { return false }
            let labels = metadata?["labels"]?.mapValue ?? [:]
            let annotations = metadata?["annotations"]?.mapValue ?? [:]
            guard templateLabels.allSatisfy({ labels[$0.key] == $0.value }),
                  templateAnnotations.allSatisfy({ annotations[$0.key] == $0.value }) else { return false }
            guard let hash else { return true }
            return labels["pod-template-hash"]?.stringValue == hash
        }.sorted { ($0["metadata"]?["name"]?.stringValue ?? "") < ($1["metadata"]?["name"]?.stringValue ?? "") }
    }

    /// The deployment controller names the ReplicaSet it is rolling out in the Progressing condition's
    /// message (`ReplicaSet "<deployment>-<hash>" is progressing.`, `Created new replica set "…"`, …).
    static func newReplicaSetHash(_ progressing: Value, deployment name: String) -> String? {
        guard let message = progressing["message"]?.stringValue else { return nil }
        let quoted = message.split(separator: "\"", omittingEmptySubsequences: false)
        guard quoted.count >= 3 else { return nil }
        let replicaSet = quoted[1]
        guard replicaSet.hasPrefix(name + "-") else { return nil }
        let hash = replicaSet.dropFirst(name.count + 1)
        return hash.isEmpty || hash.contains("-") ? nil : String(hash)
    }

    /// A container of the pod that fails for good: waiting in a failing reason, or last killed for memory.
    static func containerFailure(_ pod: Value) -> String? {
        let podName = pod["metadata"]?["name"]?.stringValue ?? ""
        let statuses = (pod["status"]?["initContainerStatuses"]?.listValue ?? []) + (pod["status"]?["containerStatuses"]?.listValue ?? [])
        for container in statuses {
            let containerName = container["name"]?.stringValue ?? ""
            let waiting = container["state"]?["waiting"]
            let waitingReason = waiting?["reason"]?.stringValue
            let lastTermination = container["lastState"]?["terminated"] ?? container["state"]?["terminated"]
            let terminationReason = lastTermination?["reason"]?.stringValue
            if terminationReason == "OOMKilled" {
                let state = waitingReason.map { " (\($0))" } ?? ""
                return "container \(containerName) of pod \(podName) was OOMKilled\(state): raise its memory limit"
            }
            guard let waitingReason, failingWaitingReasons.contains(waitingReason) else { continue }
            var message = "container \(containerName) of pod \(podName): \(waitingReason)"
            if reasonsWithUsefulMessage.contains(waitingReason), let detail = waiting?["message"]?.stringValue, !detail.isEmpty {
                message += ": \(detail)"
            } else if let terminationReason {
                let code = lastTermination?["exitCode"]?.intValue.map { ", exit code \($0)" } ?? ""
                message += " (last terminated: \(terminationReason)\(code))"
            }
            return message
        }
        return nil
    }

    /// When the scheduler last found no node for the pod (nil when it is scheduled or not yet tried); a pod
    /// without timestamps counts from now.
    static func unschedulableSince(_ pod: Value, now: Date) -> Date? {
        guard let scheduled = pod["status"]?["conditions"]?.listValue?.first(where: { $0["type"]?.stringValue == "PodScheduled" }),
              scheduled["status"]?.stringValue == "False", scheduled["reason"]?.stringValue == "Unschedulable" else { return nil }
        let stamp = scheduled["lastTransitionTime"]?.stringValue ?? pod["metadata"]?["creationTimestamp"]?.stringValue
        return stamp.flatMap { try? Date($0, strategy: .iso8601) } ?? now
    }
}
