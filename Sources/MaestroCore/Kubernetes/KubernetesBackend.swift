public import Foundation
internal import Logging
public import MaestroValue
internal import Synchronization

/// Deploys collectors through the Kubernetes API: server-side apply of each object (field manager
/// `maestro`, force), deletes by name, status from the Deployment and the collector's logs.
public struct KubernetesBackend: ClusterBackend {
    public let client: KubernetesClient
    public let namespace: String
    public let createNamespace: Bool
    public let dryRun: Bool
    /// How long a pod may wait for a node (PodScheduled=False, Unschedulable) before the collector is
    /// `error`: a cluster autoscaler adds nodes in a minute or two.
    public let unschedulableGrace: TimeInterval
    /// How far back the logs are read for exporter failures: an old failure that stopped is no error.
    public let logWindowSeconds: Int
    public var name: String { "kubernetes" }
    /// Kinds a collector may have: the shipped template's, plus every kind this process applied (a
    /// template may add more); deletes and the orphan sweep cover each.
    private let kinds = CollectorKinds(KubernetesBackend.defaultKinds)

    struct ObjectKind: Equatable, Sendable {
        let apiVersion: String
        let kind: String
    }

    /// The kinds of the shipped template's objects, which the caches watch.
    public static var collectorKindNames: [(apiVersion: String, kind: String)] { defaultKinds.map { ($0.apiVersion, $0.kind) } }

    static let defaultKinds: [ObjectKind] = [
        ObjectKind(apiVersion: "apps/v1", kind: "Deployment"), ObjectKind(apiVersion: "v1", kind: "Service"),
        ObjectKind(apiVersion: "v1", kind: "Secret"), ObjectKind(apiVersion: "v1", kind: "ConfigMap"),
    ]

    var collectorKinds: [ObjectKind] { kinds.all }

    private func learnKind(apiVersion: String, kind: String) {
        kinds.insert(ObjectKind(apiVersion: apiVersion, kind: kind))
    }

    /// The watch-based caches the apply, the status and the sweep read instead of the API (nil: the API).
    public let caches: KubeCaches?
    /// Reads healthy collectors' logs at a bounded rate (nil: read at each status look).
    public let logWatch: ExporterLogWatch?

    public init(client: KubernetesClient, namespace: String, createNamespace: Bool = false, dryRun: Bool = false,
                unschedulableGrace: TimeInterval = 120, logWindowSeconds: Int = 600, caches: KubeCaches? = nil,
                logWatch: ExporterLogWatch? = nil) {
        self.caches = caches
        self.logWatch = logWatch
        self.client = client
        self.namespace = namespace
        self.createNamespace = createNamespace
        self.dryRun = dryRun
        self.unschedulableGrace = unschedulableGrace
        self.logWindowSeconds = logWindowSeconds
    }

    public var watchesChanges: Bool { caches != nil }

    public func waitUntilReady(timeout: Double) -> Bool {
        caches?.waitUntilSynced(timeout: timeout) ?? true
    }

    /// Server-side applies every object, the Deployment first (see `applyOwnedByDeployment`). An
    /// object's version after the write (`version(of:)`) is compared with what the last apply left: a
    /// write that changed nothing leaves it as it was.
    public func apply(_ collector: DesiredCollector, previous: AppliedState?) throws(ClusterError) -> ApplyResult {
        var applied = AppliedState(desiredDigest: collector.digest, adoptedSelectors: previous?.adoptedSelectors ?? [:])
        var moved: [String] = []
        for (object, result, _) in try applyOwnedByDeployment(collector, previous: previous, adoptedSelectors: &applied.adoptedSelectors) {
            let key = "\(object["kind"]?.stringValue ?? "")/\(object["metadata"]?["name"]?.stringValue ?? "")"
            switch result {
            case .unchanged(let version):
                // Not written: the live object already is as rendered. Its version is kept even when another
                // writer moved it (a status write, an HPA's replicas), so the next pass need not look again.
                if let version = version ?? previous?.versions[key] { applied.versions[key] = version }
            case .written(_, let version):
                if let version { applied.versions[key] = version }
                if previous?.versions[key] != version { moved.append(key) }
            }
        }
        guard !moved.isEmpty else { return ApplyResult(outcome: .unchanged, applied: applied) }
        guard let previous else { return ApplyResult(outcome: .unknown, applied: applied) }
        return ApplyResult(outcome: previous.desiredDigest == applied.desiredDigest ? .drifted(paths: moved) : .changed, applied: applied)
    }

    /// What the API server would make of the objects (`dryRun=All`): nothing is stored.
    public func dryRunApply(_ collector: DesiredCollector) throws(ClusterError) -> [Value] {
        let dry = KubernetesBackend(client: client, namespace: namespace, createNamespace: false, dryRun: true,
                                    unschedulableGrace: unschedulableGrace, logWindowSeconds: logWindowSeconds)
        var selectors: [String: Value] = [:]
        let applied = try dry.applyOwnedByDeployment(collector, previous: nil, adoptedSelectors: &selectors, allowNamespaceCreation: false)
        return collector.objects.indices.map { index in
            guard case .written(let answer, _)? = applied.first(where: { $0.index == index })?.result else { return collector.objects[index] }
            return answer
        }
    }

    /// What one object's apply did, with the object's version (`version(of:ownerUID:)`).
    enum ObjectApply {
        /// Written: the server's answer.
        case written(Value, version: String?)
        /// Nothing to write: the live object holds what is rendered.
        case unchanged(version: String?)
    }

    /// The version maestro records of an object it applied: a Deployment's generation (a controller's
    /// status write does not move it; a change of its spec does), with its uid (an object deleted and made
    /// again by someone else starts at generation 1 again); else the resourceVersion, which no other object
    /// ever has — with the uid of the Deployment that owns it, since a Deployment made again means a new
    /// owner reference to write.
    static func version(of object: Value, ownerUID: String?) -> String? {
        let metadata = object["metadata"]
        if let generation = metadata?["generation"]?.intValue {
            return "\(metadata?["uid"]?.stringValue ?? "")/generation \(generation)"
        }
        guard let resourceVersion = metadata?["resourceVersion"]?.stringValue else { return nil }
        return ownerUID.map { "\(resourceVersion) owned by \($0)" } ?? resourceVersion
    }

    /// Applies the collector's Deployment first, then every other namespaced object of it with an
    /// ownerReference to the Deployment (its uid is known only once it exists), so that Kubernetes'
    /// garbage collector removes them with it. An object the last apply did not leave (`previous`) is
    /// taken over first (`adopt`). Answers each object as applied, with the server's answer.
    private func applyOwnedByDeployment(_ collector: DesiredCollector, previous: AppliedState?, adoptedSelectors: inout [String: Value],
                                        allowNamespaceCreation: Bool? = nil)
        throws(ClusterError) -> [(object: Value, result: ObjectApply, index: Int)]
    {
        let deployments = collector.objects.indices.filter { collector.objects[$0]["kind"] == .string("Deployment") }
        let ownerIndex = deployments.first { collector.objects[$0]["metadata"]?["name"]?.stringValue == collector.name } ?? deployments.first
        var order = collector.objects.indices.filter { $0 != ownerIndex }
        if let ownerIndex { order.insert(ownerIndex, at: 0) }
        var owner: (reference: Value, namespace: String)?
        var applied: [(object: Value, result: ObjectApply, index: Int)] = []
        for index in order {
            var object = collector.objects[index]
            var ownerUID: String?
            if let owner, index != ownerIndex, Self.ownable(object, in: owner.namespace, defaultNamespace: collector.namespace) {
                object = Self.adding(ownerReference: owner.reference, to: object)
                ownerUID = owner.reference["uid"]?.stringValue
            }
            let key = "\(object["kind"]?.stringValue ?? "")/\(object["metadata"]?["name"]?.stringValue ?? "")"
            // An object the cache knows is not there is created, not taken over: no look first.
            if !dryRun && previous?.versions[key] == nil && !cachedAbsent(object, collector: collector) {
                if let selector = try adopt(object, namespace: collector.namespace) { adoptedSelectors[key] = selector }
            }
            if let selector = adoptedSelectors[key] { object = Self.keeping(selector: selector, in: object) }
            let result: ObjectApply
            let uidSource: Value?
            if let live = try unchangedLive(object, key: key, ownerUID: ownerUID, collector: collector, previous: previous) {
                result = .unchanged(version: Self.version(of: live, ownerUID: ownerUID))
                uidSource = live
            } else {
                let answer = try applyOne(object, namespace: collector.namespace, allowNamespaceCreation: allowNamespaceCreation ?? createNamespace)
                result = .written(answer, version: Self.version(of: answer, ownerUID: ownerUID))
                uidSource = answer
            }
            if index == ownerIndex, let uid = uidSource?["metadata"]?["uid"]?.stringValue, let name = object["metadata"]?["name"]?.stringValue {
                owner = (["apiVersion": "apps/v1", "kind": "Deployment", "name": .string(name), "uid": .string(uid),
                          "controller": true, "blockOwnerDeletion": true],
                         object["metadata"]?["namespace"]?.stringValue ?? collector.namespace)
            }
            applied.append((object, result, index))
        }
        return applied
    }

    private func cachedAbsent(_ object: Value, collector: DesiredCollector) -> Bool {
        guard let caches, let kind = object["kind"]?.stringValue, let name = object["metadata"]?["name"]?.stringValue,
              (object["metadata"]?["namespace"]?.stringValue ?? collector.namespace) == namespace else { return false }
        return caches.lookup(kind: kind, name: name) == .absent
    }

    /// The live object when nothing needs writing: the desired state is the one the last apply wrote and
    /// the cached object's version (`version(of:ownerUID:)`) is the one maestro's last write left — nobody
    /// changed what maestro applied (of a Deployment, whose generation its metadata does not move, the
    /// cached labels and annotations also hold the rendered ones). An object another writer moved since (an
    /// HPA's replicas, a `kubectl edit`) is read whole and must hold every field as rendered
    /// (`LiveObjectDrift`), or is written; a Secret, whose values maestro keeps nowhere, is written. Nil
    /// means write.
    private func unchangedLive(_ object: Value, key: String, ownerUID: String?, collector: DesiredCollector,
                               previous: AppliedState?) throws(ClusterError) -> Value? {
        guard !dryRun, let caches, let previous, previous.desiredDigest == collector.digest,
              let apiVersion = object["apiVersion"]?.stringValue, let kind = object["kind"]?.stringValue,
              let name = object["metadata"]?["name"]?.stringValue,
              (object["metadata"]?["namespace"]?.stringValue ?? collector.namespace) == namespace,
              case .present(let cached) = caches.lookup(kind: kind, name: name) else { return nil }
        if Self.version(of: cached, ownerUID: ownerUID) == previous.versions[key] {
            guard cached["metadata"]?["generation"] != nil else { return cached }
            let labelsAndAnnotations: Value = ["metadata": ["labels": object["metadata"]?["labels"] ?? .null,
                                                            "annotations": object["metadata"]?["annotations"] ?? .null]]
            return LiveObjectDrift.differences(rendered: labelsAndAnnotations, live: cached).isEmpty ? cached : nil
        }
        guard kind != "Secret" else { return nil }
        let response = try client.request("GET", KubeResourcePath.object(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name))
        guard response.status == 200 else { return nil }
        return LiveObjectDrift.differences(rendered: object, live: response.body).isEmpty ? response.body : nil
    }

    /// Takes over an object another tool made before this process first applies it: a Deployment's live
    /// selector is kept (it is immutable), and an object `kubectl apply` (client-side) manages and maestro
    /// never applied has its contents replaced once by maestro's version, so the fields only the old tool set (Orb's
    /// ConfigMap volume, its last-applied annotation) go instead of lingering under the old manager.
    /// Server-side apply then owns every field maestro sets.
    /// Answers the live selector a Deployment keeps, if it differs from the rendered one.
    private func adopt(_ rendered: Value, namespace: String) throws(ClusterError) -> Value? {
        guard let apiVersion = rendered["apiVersion"]?.stringValue, let kind = rendered["kind"]?.stringValue,
              let name = rendered["metadata"]?["name"]?.stringValue else { return nil }
        let path = KubeResourcePath.object(apiVersion: apiVersion, kind: kind, namespace: rendered["metadata"]?["namespace"]?.stringValue ?? namespace,
                                           name: name)
        let response = try client.request("GET", path)
        guard response.status == 200 else { return nil }
        let live = response.body
        var object = rendered
        var keptSelector: Value?
        if kind == "Deployment", let selector = live["spec"]?["selector"], selector != rendered["spec"]?["selector"] {
            keptSelector = selector
            object = Self.keeping(selector: selector, in: object)
        }
        let managers = live["metadata"]?["managedFields"]?.listValue ?? []
        let appliedByMaestro = managers.contains { $0["manager"] == .string("maestro") && $0["operation"] == .string("Apply") }
        let clientSideApplied = managers.contains { $0["manager"] == .string("kubectl-client-side-apply") }
            || live["metadata"]?["annotations"]?["kubectl.kubernetes.io/last-applied-configuration"] != nil
        guard clientSideApplied && !appliedByMaestro else { return keptSelector }
        // A JSON patch rather than a PUT: it needs only the `patch` verb maestro's Role grants, and replaces
        // each part as a whole (nothing of Orb's merged in); the test makes it lose to a concurrent write.
        var operations: [Value] = [["op": "test", "path": "/metadata/resourceVersion", "value": live["metadata"]?["resourceVersion"] ?? .null]]
        let unmanaged: Set<String> = ["apiVersion", "kind", "metadata", "status"]
        for (field, value) in (object.mapValue ?? [:]).sorted(by: { $0.key < $1.key }) where !unmanaged.contains(field) {
            operations.append(["op": "add", "path": .string("/" + field), "value": value])
        }
        for field in (live.mapValue ?? [:]).keys.sorted() where !unmanaged.contains(field) && object[field] == nil {
            operations.append(["op": "remove", "path": .string("/" + field)])
        }
        for field in ["labels", "annotations"] {
            operations.append(["op": "add", "path": .string("/metadata/" + field), "value": object["metadata"]?[field] ?? .map([:])])
        }
        let replaced = try client.request("PATCH", path, query: [("fieldManager", "maestro")], body: .list(operations),
                                          contentType: "application/json-patch+json")
        switch replaced.status {
        case 200, 201: return keptSelector
        case 409: throw ClusterError(.failed, "\(kind) \(name): changed while maestro took it over, will retry")
        case 400, 403, 404, 422: throw ClusterError(.rejected, "\(kind) \(name): cannot take over: \(replaced.body["message"]?.stringValue ?? "HTTP \(replaced.status)")")
        default: throw ClusterError(.failed, "\(kind) \(name): cannot take over: HTTP \(replaced.status)")
        }
    }

    /// The Deployment with the live selector, its pod template labelled to match it.
    static func keeping(selector: Value, in deployment: Value) -> Value {
        guard case .map(var entries) = deployment, case .map(var spec)? = entries["spec"] else { return deployment }
        spec["selector"] = selector
        if case .map(var template)? = spec["template"] {
            var metadata = template["metadata"]?.mapValue ?? [:]
            var labels = metadata["labels"]?.mapValue ?? [:]
            for (label, value) in selector["matchLabels"]?.mapValue ?? [:] { labels[label] = value }
            metadata["labels"] = .map(labels)
            template["metadata"] = .map(metadata)
            spec["template"] = .map(template)
        }
        entries["spec"] = .map(spec)
        return .map(entries)
    }

    /// An owner reference must name an object of the same namespace; cluster-scoped objects and
    /// Deployments (owned by no one) get none.
    static func ownable(_ object: Value, in ownerNamespace: String, defaultNamespace: String) -> Bool {
        guard let kind = object["kind"]?.stringValue, kind != "Deployment", !KubeResourcePath.clusterScoped.contains(kind) else { return false }
        return (object["metadata"]?["namespace"]?.stringValue ?? defaultNamespace) == ownerNamespace
    }

    static func adding(ownerReference: Value, to object: Value) -> Value {
        guard case .map(var entries) = object, case .map(var metadata)? = entries["metadata"] else { return object }
        let others = (metadata["ownerReferences"]?.listValue ?? []).filter { $0["uid"] != ownerReference["uid"] }
        metadata["ownerReferences"] = .list(others + [ownerReference])
        entries["metadata"] = .map(metadata)
        return .map(entries)
    }

    @discardableResult
    private func applyOne(_ object: Value, namespace: String, allowNamespaceCreation: Bool) throws(ClusterError) -> Value {
        guard let apiVersion = object["apiVersion"]?.stringValue, let kind = object["kind"]?.stringValue,
              let name = object["metadata"]?["name"]?.stringValue else {
            throw ClusterError(.rejected, "an object lacks apiVersion, kind or metadata.name")
        }
        learnKind(apiVersion: apiVersion, kind: kind)
        let objectNamespace = object["metadata"]?["namespace"]?.stringValue ?? namespace
        var query = [("fieldManager", "maestro"), ("force", "true")]
        if dryRun { query.append(("dryRun", "All")) }
        let response = try client.request("PATCH", KubeResourcePath.object(apiVersion: apiVersion, kind: kind, namespace: objectNamespace, name: name),
                                          query: query, body: object, contentType: "application/apply-patch+yaml")
        switch response.status {
        case 200, 201:
            return response.body
        case 404 where response.body["details"]?["kind"]?.stringValue == "namespaces":
            guard allowNamespaceCreation else {
                throw ClusterError(.rejected, "namespace \(objectNamespace) does not exist (start maestro with --create-namespace to create it)")
            }
            try ensureNamespace(objectNamespace)
            return try applyOne(object, namespace: namespace, allowNamespaceCreation: false)
        case 422, 400, 403, 404:
            throw ClusterError(.rejected, "\(kind) \(name): \(response.body["message"]?.stringValue ?? "HTTP \(response.status)")")
        case 409:
            throw ClusterError(.failed, "\(kind) \(name): conflict, will retry: \(response.body["message"]?.stringValue ?? "")")
        default:
            throw ClusterError(.failed, "\(kind) \(name): HTTP \(response.status)")
        }
    }

    private func ensureNamespace(_ name: String) throws(ClusterError) {
        let response = try client.request("POST", "/api/v1/namespaces", body: ["apiVersion": "v1", "kind": "Namespace",
                                                                               "metadata": ["name": .string(name), "labels": ["app.kubernetes.io/managed-by": "maestro"]]])
        guard [200, 201, 409].contains(response.status) else {
            throw ClusterError(.rejected, "cannot create namespace \(name): \(response.body["message"]?.stringValue ?? "HTTP \(response.status)")")
        }
    }

    public func delete(sinkID: String, name: String, namespace: String) throws(ClusterError) {
        for objectKind in collectorKinds {
            let kind = objectKind.kind
            let response = try client.request("DELETE", KubeResourcePath.object(apiVersion: objectKind.apiVersion, kind: kind, namespace: namespace, name: name),
                                              query: dryRun ? [("dryRun", "All")] : [])
            guard [200, 202, 404].contains(response.status) else {
                throw ClusterError(.failed, "cannot delete \(kind) \(name): \(response.body["message"]?.stringValue ?? "HTTP \(response.status)")")
            }
        }
    }

    /// The status by the rules of `CollectorHealth` (a complete rollout, failing pods of the current
    /// template); a collector that is otherwise active is then `error` or `warning` by Orb's rules for
    /// exporter failures in its recent logs.
    public func observe(_ collector: DesiredCollector) throws(ClusterError) -> (status: SinkStatus, message: String) {
        let deployment: Value
        switch caches?.lookup(kind: "Deployment", name: collector.name) ?? .unknown {
        case .present(let cached):
            deployment = cached
        case .absent:
            logWatch?.forget(sinkID: collector.sinkID)
            return (.provisioning, "")
        case .unknown:
            let response = try client.request("GET", KubeResourcePath.object(apiVersion: "apps/v1", kind: "Deployment",
                                                                             namespace: collector.namespace, name: collector.name))
            guard response.status == 200 else { return (.provisioning, "") }
            deployment = response.body
        }
        let pods = try self.pods(of: deployment, collector: collector)
        let health = CollectorHealth.evaluate(deployment: deployment, pods: pods, now: Date(), unschedulableGrace: unschedulableGrace)
        guard health.status == .active else {
            logWatch?.forget(sinkID: collector.sinkID)
            return health
        }
        if let logWatch {
            // Read first when the rollout or a pod changed (a new generation, a restart).
            let restarts = pods.flatMap { $0["status"]?["containerStatuses"]?.listValue ?? [] }.compactMap { $0["restartCount"]?.intValue }.reduce(0, +)
            let podNames = pods.compactMap { $0["metadata"]?["name"]?.stringValue }.joined(separator: ",")
            let fingerprint = "\(deployment["metadata"]?["generation"]?.intValue ?? 0)/\(restarts)/\(podNames)"
            logWatch.watch(sinkID: collector.sinkID, name: collector.name, namespace: collector.namespace, fingerprint: fingerprint)
            return logWatch.verdict(sinkID: collector.sinkID) ?? health
        }
        for pod in pods {
            guard let podName = pod["metadata"]?["name"]?.stringValue else { continue }
            let log = try client.request("GET", KubeResourcePath.object(apiVersion: "v1", kind: "Pod", namespace: collector.namespace, name: podName) + "/log",
                                         query: [("tailLines", "200"), ("sinceSeconds", String(logWindowSeconds))])
            guard log.status == 200, let found = ExporterLogScan.scan(log.text) else { continue }
            return found
        }
        return health
    }

    /// The Deployment's pods: from the pod cache, else listed by its selector.
    func pods(of deployment: Value, collector: DesiredCollector) throws(ClusterError) -> [Value] {
        if let matchLabels = deployment["spec"]?["selector"]?["matchLabels"]?.mapValue, !matchLabels.isEmpty,
           deployment["spec"]?["selector"]?["matchExpressions"]?.listValue?.isEmpty ?? true,
           let cached = caches?.pods(matching: matchLabels) {
            return cached
        }
        let response = try client.request("GET", KubeResourcePath.collection(apiVersion: "v1", kind: "Pod", namespace: collector.namespace),
                                          query: [("labelSelector", Self.selector(of: deployment) ?? "app.kubernetes.io/instance=\(collector.name)")])
        guard response.status == 200 else {
            throw ClusterError(.failed, "cannot list the pods of \(collector.name): HTTP \(response.status)")
        }
        return response.body["items"]?.listValue ?? []
    }

    /// The pod names of a collector, for the log watch: from the pod cache, else listed.
    public func podNames(name: String, namespace: String) throws(ClusterError) -> [String] {
        let selector: [String: Value] = ["app.kubernetes.io/instance": .string(name)]
        let pods: [Value]
        if let cached = caches?.pods(matching: selector) {
            pods = cached
        } else {
            let response = try client.request("GET", KubeResourcePath.collection(apiVersion: "v1", kind: "Pod", namespace: namespace),
                                              query: [("labelSelector", "app.kubernetes.io/instance=\(name)")])
            pods = response.body["items"]?.listValue ?? []
        }
        return pods.filter { $0["metadata"]?["deletionTimestamp"] == nil }.compactMap { $0["metadata"]?["name"]?.stringValue }
    }

    /// The Deployment's `matchLabels` as a label selector (its pods, whatever labels a template gives them).
    static func selector(of deployment: Value) -> String? {
        guard let labels = deployment["spec"]?["selector"]?["matchLabels"]?.mapValue, !labels.isEmpty,
              deployment["spec"]?["selector"]?["matchExpressions"]?.listValue?.isEmpty ?? true else { return nil }
        return labels.sorted { $0.key < $1.key }.compactMap { key, value in value.stringValue.map { "\(key)=\($0)" } }.joined(separator: ",")
    }

    /// Objects of every collector kind labelled `managed-by: maestro`, grouped by their sink: a Secret
    /// or a Service whose Deployment is gone (a crash between deletes, a manual delete) is found too.
    /// A group's time is its newest object's, so the grace period counts from the last object made.
    public func managedCollectors() throws(ClusterError) -> [ManagedCollector] {
        var groups: [String: ManagedCollector] = [:]
        var order: [String] = []
        // The caches when they hold the kind (a kind a template added later may have none), else a LIST.
        let cached = caches?.managedObjects()
        var items = cached ?? []
        for objectKind in collectorKinds where cached == nil || caches?.caches(kind: objectKind.kind) != true {
            let response = try client.request("GET", KubeResourcePath.collection(apiVersion: objectKind.apiVersion, kind: objectKind.kind, namespace: namespace),
                                              query: [("labelSelector", KubeCaches.managedSelector)])
            guard response.status == 200 else {
                throw ClusterError(.failed, "cannot list \(objectKind.kind) objects: HTTP \(response.status)")
            }
            items += response.body["items"]?.listValue ?? []
        }
        for item in items {
            guard let name = item["metadata"]?["name"]?.stringValue,
                  let sinkID = item["metadata"]?["annotations"]?[KubeCaches.sinkIDAnnotation]?.stringValue else { continue }
            let objectNamespace = item["metadata"]?["namespace"]?.stringValue ?? namespace
            let created = item["metadata"]?["creationTimestamp"]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) }?.timeIntervalSince1970
            let key = "\(objectNamespace)/\(name)/\(sinkID)"
            if var group = groups[key] {
                if let created { group.createdAt = max(group.createdAt ?? created, created) }
                groups[key] = group
            } else {
                groups[key] = ManagedCollector(sinkID: sinkID, name: name, namespace: objectNamespace, createdAt: created)
                order.append(key)
            }
        }
        return order.compactMap { groups[$0] }
    }

    public func live(_ collector: DesiredCollector) throws(ClusterError) -> [Value] {
        var objects: [Value] = []
        for object in collector.objects {
            guard let apiVersion = object["apiVersion"]?.stringValue, let kind = object["kind"]?.stringValue,
                  let name = object["metadata"]?["name"]?.stringValue else { continue }
            // Read whole from the API: the caches keep only what the reconcile and the status read.
            let response = try client.request("GET", KubeResourcePath.object(apiVersion: apiVersion, kind: kind, namespace: collector.namespace, name: name))
            if response.status == 200 { objects.append(response.body) }
        }
        return objects
    }
}

/// Orb's rules (reference §6) for reading a collector's log: HTTP codes in exporter errors.
public enum ExporterLogScan {
    static let errorCodes = ["401", "404", "502", "504"]
    static let warningCodes = ["429", "400"]

    public static func scan(_ log: String) -> (status: SinkStatus, message: String)? {
        var warning: (SinkStatus, String)?
        for line in log.split(separator: "\n").reversed() {
            let lowered = line.lowercased()
            guard lowered.contains("error") || lowered.contains("failed") || lowered.contains("dropping") else { continue }
            for code in errorCodes where containsCode(lowered, code) {
                return (.error, "the collector's exporter failed with HTTP \(code)")
            }
            if warning == nil, let code = warningCodes.first(where: { containsCode(lowered, $0) }) {
                warning = (.warning, "the collector's exporter got HTTP \(code)")
            }
        }
        return warning
    }

    /// The code as a whole number, not part of a longer one (a port or a timestamp).
    static func containsCode(_ line: String, _ code: String) -> Bool {
        var searchStart = line.startIndex
        while let range = line.range(of: code, range: searchStart..<line.endIndex) {
            let before = range.lowerBound == line.startIndex ? nil : line[line.index(before: range.lowerBound)]
            let after = range.upperBound == line.endIndex ? nil : line[range.upperBound]
            if !(before?.isNumber ?? false) && !(after?.isNumber ?? false) && before != ":" && before != "." { return true }
            searchStart = range.upperBound
        }
        return false
    }
}

final class CollectorKinds: Sendable {
    private let kinds: Mutex<[KubernetesBackend.ObjectKind]>

    init(_ kinds: [KubernetesBackend.ObjectKind]) { self.kinds = Mutex(kinds) }

    var all: [KubernetesBackend.ObjectKind] { kinds.withLock { $0 } }

    func insert(_ kind: KubernetesBackend.ObjectKind) {
        kinds.withLock { if !$0.contains(kind) { $0.append(kind) } }
    }
}
