public import Logging
internal import Foundation
public import MaestroValue
internal import Synchronization

/// The watch-based caches of what maestro manages in the collector namespace: one `KubeInformer` per
/// kind a collector has (Deployments, Services, ConfigMaps, Secrets as metadata only, and any kind a
/// template adds), plus the collectors' Pods (metadata and status only), all selected by
/// `app.kubernetes.io/managed-by=maestro`. A change to any of them names its sink (the
/// `maestro.orb.community/sink-id` annotation) to `onChange`, so the reconcile runs within seconds of a
/// cluster change; the reconcile and the status read the caches instead of the API.
public final class KubeCaches: Sendable {
    public static let managedSelector = "app.kubernetes.io/managed-by=maestro"
    public static let sinkIDAnnotation = "maestro.orb.community/sink-id"

    private let informers: [String: KubeInformer]
    private let handler = ChangeHandler()

    final class ChangeHandler: Sendable {
        let notify = Mutex<(@Sendable (_ sinkID: String) -> Void)?>(nil)
    }

    /// What a cache knows of one object.
    public enum Lookup: Sendable, Equatable {
        case present(Value)
        case absent
        /// Not cached (a kind without an informer) or not synced yet: ask the API.
        case unknown
    }

    public init(client: KubernetesClient, namespace: String, kinds: [(apiVersion: String, kind: String)], pageSize: Int = 500,
                logger: Logger) {
        let handler = self.handler
        let deployments = DeploymentLookup()
        let notify: @Sendable (KubeInformerEvent, Value) -> Void = { _, object in
            // A pod carries its template's annotations only; its collector is the Deployment it is an
            // instance of.
            let sinkID = object["metadata"]?["annotations"]?[Self.sinkIDAnnotation]?.stringValue
                ?? object["metadata"]?["labels"]?["app.kubernetes.io/instance"]?.stringValue
                    .flatMap { deployments.informer.withLock { $0 }?.get($0) }?["metadata"]?["annotations"]?[Self.sinkIDAnnotation]?.stringValue
            guard let sinkID, let notify = handler.notify.withLock({ $0 }) else { return }
            notify(sinkID)
        }
        var informers: [String: KubeInformer] = [:]
        for (apiVersion, kind) in kinds + [("v1", "Pod")] where informers[kind] == nil {
            let kept: Set<String>? = kind == "Pod" ? ["apiVersion", "kind", "metadata", "status"] : nil
            informers[kind] = KubeInformer(client: client, apiVersion: apiVersion, kind: kind, namespace: namespace,
                                           labelSelector: Self.managedSelector,
                                           options: KubeInformerOptions(pageSize: pageSize, keptFields: kept), logger: logger, onChange: notify)
        }
        self.informers = informers
        deployments.informer.withLock { $0 = informers["Deployment"] }
    }

    final class DeploymentLookup: Sendable {
        let informer = Mutex<KubeInformer?>(nil)
    }

    /// Who hears that a sink's objects changed (the reconciler's queue).
    public func onChange(_ notify: @escaping @Sendable (_ sinkID: String) -> Void) {
        handler.notify.withLock { $0 = notify }
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
        return informer.objects.values.filter { pod in
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
}
