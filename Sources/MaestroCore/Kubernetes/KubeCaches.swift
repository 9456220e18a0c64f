public import Logging
internal import Foundation
public import MaestroValue
internal import Synchronization

/// The watch-based caches of what maestro manages in the collector namespace: one `KubeInformer` per
/// kind a collector has (Deployments, Services, ConfigMaps, Secrets, and any kind a template adds), plus
/// the collectors' Pods, all selected by `app.kubernetes.io/managed-by=maestro`. The caches keep what the
/// reconcile and the status read, no more (a fleet of 10,000 collectors must fit in tens of MiB): of a
/// Deployment its metadata and the fields its status is judged by, of a pod its labels, annotations and
/// status, of the rest a name, a resourceVersion, times and a sink. Drift is told by the versions
/// maestro's last write produced; only an object whose version moved is read whole (`KubernetesBackend`). A change to any of them names its sink (the
/// `maestro.orb.community/sink-id` annotation) to `onChange`, so the reconcile runs within seconds of a
/// cluster change; the reconcile and the status read the caches instead of the API.
public final class KubeCaches: Sendable {
    public static let managedSelector = "app.kubernetes.io/managed-by=maestro"
    public static let sinkIDAnnotation = "maestro.orb.community/sink-id"
    /// The label the shipped template gives a collector's Deployment selector and pods: the pod cache is
    /// indexed by it.
    public static let instanceLabel = "app.kubernetes.io/instance"

    private let informers: [String: KubeInformer]
    private let changed = SinkCallback()

    /// What a cache knows of one object.
    public enum Lookup: Sendable, Equatable {
        case present(Value)
        case absent
        /// Not cached (a kind without an informer) or not synced yet: ask the API.
        case unknown
    }

    public init(client: KubernetesClient, namespace: String, kinds: [(apiVersion: String, kind: String)], pageSize: Int = 500,
                logger: Logger) {
        let changed = self.changed
        let deployments = DeploymentLookup()
        let notify: @Sendable (KubeInformerEvent, Value) -> Void = { _, object in
            // A pod carries its template's annotations only; its collector is the Deployment it is an
            // instance of.
            let sinkID = object["metadata"]?["annotations"]?[Self.sinkIDAnnotation]?.stringValue
                ?? object["metadata"]?["labels"]?[Self.instanceLabel]?.stringValue
                    .flatMap { deployments.informer.withLock { $0 }?.get($0) }?["metadata"]?["annotations"]?[Self.sinkIDAnnotation]?.stringValue
            guard let sinkID else { return }
            changed(sinkID)
        }
        var informers: [String: KubeInformer] = [:]
        for (apiVersion, kind) in kinds + [("v1", "Pod")] where informers[kind] == nil {
            let options: KubeInformerOptions
            switch kind {
            case "Deployment":
                options = KubeInformerOptions(pageSize: pageSize, metadataOnly: false, projection: Self.deploymentProjection)
            case "Pod":
                options = KubeInformerOptions(pageSize: pageSize, metadataOnly: false, projection: Self.podProjection,
                                              indexLabel: Self.instanceLabel)
            default:
                options = KubeInformerOptions(pageSize: pageSize, metadataOnly: true, projection: Self.referenceProjection)
            }
            informers[kind] = KubeInformer(client: client, apiVersion: apiVersion, kind: kind, namespace: namespace,
                                           labelSelector: Self.managedSelector, options: options, logger: logger, onChange: notify)
        }
        self.informers = informers
        deployments.informer.withLock { $0 = informers["Deployment"] }
    }

    final class DeploymentLookup: Sendable {
        let informer = Mutex<KubeInformer?>(nil)
    }

    /// Who hears that a sink's objects changed (the reconciler's queue).
    public func onChange(_ notify: @escaping @Sendable (_ sinkID: String) -> Void) {
        changed.set(notify)
    }

    public func start() {
        for informer in informers.values { informer.start() }
    }

    public func stop() {
        for informer in informers.values { informer.requestStop() }
        for informer in informers.values { informer.stop(timeout: 10) }
    }

    /// Whether every cache holds its first list.
    public var hasSynced: Bool { informers.values.allSatisfy(\.hasSynced) }

    public func waitUntilSynced(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        return informers.values.allSatisfy { $0.waitUntilSynced(timeout: max(0, deadline.timeIntervalSinceNow)) }
    }

    /// Objects cached, by kind.
    public var counts: [String: Int] { informers.mapValues(\.count) }

    public func lookup(kind: String, name: String) -> Lookup {
        guard let informer = informers[kind], informer.hasSynced else { return .unknown }
        return informer.get(name).map(Lookup.present) ?? .absent
    }

    /// The cached pods whose labels include `matchLabels`; nil when the pod cache is not synced.
    public func pods(matching matchLabels: [String: Value]) -> [Value]? {
        guard let informer = informers["Pod"], informer.hasSynced else { return nil }
        let candidates = matchLabels[Self.instanceLabel]?.stringValue.map { informer.objects(labelled: $0) } ?? Array(informer.objects.values)
        return candidates.filter { pod in
            let labels = pod["metadata"]?["labels"]?.mapValue ?? [:]
            return matchLabels.allSatisfy { labels[$0.key] == $0.value }
        }.sorted { ($0["metadata"]?["name"]?.stringValue ?? "") < ($1["metadata"]?["name"]?.stringValue ?? "") }
    }

    /// Every cached object of the collector kinds (not pods); nil unless every such cache is synced.
    public func managedObjects() -> [Value]? {
        let kinds = informers.filter { $0.key != "Pod" }.values
        guard kinds.allSatisfy(\.hasSynced) else { return nil }
        return kinds.flatMap { $0.objects.values }
    }

    /// Whether this kind is cached.
    public func caches(kind: String) -> Bool { informers[kind] != nil }

    /// What a Deployment's status is judged by (`CollectorHealth`), its pods are found by and its drift is
    /// told by (its generation, uid, labels and annotations; `KubernetesBackend`).
    static let deploymentProjection: @Sendable (Value) -> Value = { deployment in
        let spec = deployment["spec"]
        let template = spec?["template"]?["metadata"]
        var status = deployment["status"]?.mapValue ?? [:]
        if let conditions = status["conditions"]?.listValue {
            status["conditions"] = .list(conditions.map { keeping(["type", "status", "reason", "message"], of: $0) })
        }
        return ["metadata": keeping(["name", "uid", "generation", "resourceVersion", "creationTimestamp", "deletionTimestamp", "labels",
                                     "annotations"], of: deployment["metadata"] ?? .null),
                "spec": ["replicas": spec?["replicas"] ?? .null, "selector": spec?["selector"] ?? .null,
                         "template": ["metadata": keeping(["labels", "annotations"], of: template ?? .null)]],
                "status": .map(status)]
    }

    /// What a pod's health is judged by: which template it runs (labels, annotations), its conditions and
    /// its containers' states — no spec, no image digests, no container ids.
    static let podProjection: @Sendable (Value) -> Value = { pod in
        var status = pod["status"]?.mapValue ?? [:]
        for field in ["containerStatuses", "initContainerStatuses"] {
            guard let containers = status[field]?.listValue else { continue }
            status[field] = .list(containers.map { keeping(["name", "ready", "restartCount", "state", "lastState"], of: $0) })
        }
        if let conditions = status["conditions"]?.listValue {
            status["conditions"] = .list(conditions.map { keeping(["type", "status", "reason", "message", "lastTransitionTime"], of: $0) })
        }
        return ["metadata": keeping(["name", "resourceVersion", "creationTimestamp", "deletionTimestamp", "labels", "annotations"],
                                    of: pod["metadata"] ?? .null),
                "status": keeping(["phase", "conditions", "containerStatuses", "initContainerStatuses"], of: .map(status))]
    }

    /// What is kept of any other object (a Service, a Secret, a ConfigMap): its name, resourceVersion,
    /// times and sink. Its drift is told by its resourceVersion (`KubernetesBackend`).
    static let referenceProjection: @Sendable (Value) -> Value = { object in
        var metadata = keeping(["name", "resourceVersion", "creationTimestamp", "deletionTimestamp"], of: object["metadata"] ?? .null).mapValue ?? [:]
        if let sinkID = object["metadata"]?["annotations"]?[sinkIDAnnotation] { metadata["annotations"] = .map([sinkIDAnnotation: sinkID]) }
        return ["metadata": .map(metadata)]
    }

    private static func keeping(_ fields: Set<String>, of value: Value) -> Value {
        guard case .map(let entries) = value else { return value }
        return .map(entries.filter { fields.contains($0.key) })
    }
}
