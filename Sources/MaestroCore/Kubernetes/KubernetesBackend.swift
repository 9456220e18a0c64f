internal import Foundation
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
    public var name: String { "kubernetes" }
    /// The resourceVersion each object had after this process last applied it: a server-side apply that
    /// changes nothing leaves it as it was, so a different one after an apply means the object changed.
    private let appliedVersions = AppliedVersions()

    /// Kinds a collector may have; deletes try each (404 is fine).
    static let collectorKinds: [(apiVersion: String, kind: String)] = [
        ("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "Secret"), ("v1", "ConfigMap"),
    ]

    public init(client: KubernetesClient, namespace: String, createNamespace: Bool = false, dryRun: Bool = false) {
        self.client = client
        self.namespace = namespace
        self.createNamespace = createNamespace
        self.dryRun = dryRun
    }

    @discardableResult
    public func apply(_ collector: DesiredCollector) throws(ClusterError) -> ApplyOutcome {
        var outcome = ApplyOutcome.unchanged
        for object in collector.objects {
            let result = try applyOne(object, namespace: collector.namespace, allowNamespaceCreation: createNamespace)
            let key = "\(object["kind"]?.stringValue ?? "")/\(collector.namespace)/\(object["metadata"]?["name"]?.stringValue ?? "")"
            let version = result?["metadata"]?["resourceVersion"]?.stringValue
            switch appliedVersions.exchange(key, version) {
            case .some(let previous) where previous == version: break
            case .some: outcome = .changed
            case .none where outcome == .unchanged: outcome = .unknown
            case .none: break
            }
        }
        return outcome
    }

    /// What the API server would make of the objects (`dryRun=All`): nothing is stored.
    public func dryRunApply(_ collector: DesiredCollector) throws(ClusterError) -> [Value] {
        let dry = KubernetesBackend(client: client, namespace: namespace, createNamespace: false, dryRun: true)
        var results: [Value] = []
        for object in collector.objects {
            results.append(try dry.applyOne(object, namespace: collector.namespace, allowNamespaceCreation: false) ?? object)
        }
        return results
    }

    @discardableResult
    private func applyOne(_ object: Value, namespace: String, allowNamespaceCreation: Bool) throws(ClusterError) -> Value? {
        guard let apiVersion = object["apiVersion"]?.stringValue, let kind = object["kind"]?.stringValue,
              let name = object["metadata"]?["name"]?.stringValue else {
            throw ClusterError(.rejected, "an object lacks apiVersion, kind or metadata.name")
        }
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
        for (apiVersion, kind) in Self.collectorKinds {
            let response = try client.request("DELETE", KubeResourcePath.object(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name),
                                              query: dryRun ? [("dryRun", "All")] : [])
            guard [200, 202, 404].contains(response.status) else {
                throw ClusterError(.failed, "cannot delete \(kind) \(name): \(response.body["message"]?.stringValue ?? "HTTP \(response.status)")")
            }
        }
    }

    /// `active` when the Deployment has available replicas (the probes make that mean a healthy
    /// collector) and its logs show no exporter failures; `error` for a failed rollout or Orb's error
    /// codes in the logs (401, 404, 502, 504), `warning` for throttling (429, 400).
    public func observe(_ collector: DesiredCollector) throws(ClusterError) -> (status: SinkStatus, message: String) {
        let response = try client.request("GET", KubeResourcePath.object(apiVersion: "apps/v1", kind: "Deployment",
                                                                         namespace: collector.namespace, name: collector.name))
        guard response.status == 200 else { return (.provisioning, "") }
        let status = response.body["status"]
        let conditions = status?["conditions"]?.listValue ?? []
        if conditions.contains(where: { $0["type"] == .string("Progressing") && $0["reason"] == .string("ProgressDeadlineExceeded") }) {
            return (.error, "the collector's rollout failed (ProgressDeadlineExceeded)")
        }
        guard (status?["availableReplicas"]?.intValue ?? 0) > 0 else { return (.provisioning, "") }
        let pods = try client.request("GET", KubeResourcePath.collection(apiVersion: "v1", kind: "Pod", namespace: collector.namespace),
                                      query: [("labelSelector", "app.kubernetes.io/instance=\(collector.name)")])
        for pod in pods.body["items"]?.listValue ?? [] {
            guard let podName = pod["metadata"]?["name"]?.stringValue else { continue }
            let log = try client.request("GET", KubeResourcePath.object(apiVersion: "v1", kind: "Pod", namespace: collector.namespace, name: podName) + "/log",
                                         query: [("tailLines", "200")])
            guard log.status == 200, let found = ExporterLogScan.scan(log.text) else { continue }
            return found
        }
        return (.active, "")
    }

    public func managedCollectors() throws(ClusterError) -> [ManagedCollector] {
        let response = try client.request("GET", KubeResourcePath.collection(apiVersion: "apps/v1", kind: "Deployment", namespace: namespace),
                                          query: [("labelSelector", "app.kubernetes.io/managed-by=maestro")])
        guard response.status == 200 else { throw ClusterError(.failed, "cannot list collectors: HTTP \(response.status)") }
        return (response.body["items"]?.listValue ?? []).compactMap { item in
            guard let name = item["metadata"]?["name"]?.stringValue,
                  let sinkID = item["metadata"]?["annotations"]?["maestro.orb.community/sink-id"]?.stringValue else { return nil }
            let created = item["metadata"]?["creationTimestamp"]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) }
            return ManagedCollector(sinkID: sinkID, name: name, namespace: item["metadata"]?["namespace"]?.stringValue ?? namespace,
                                    createdAt: created?.timeIntervalSince1970)
        }
    }

    public func live(_ collector: DesiredCollector) throws(ClusterError) -> [Value] {
        var objects: [Value] = []
        for object in collector.objects {
            guard let apiVersion = object["apiVersion"]?.stringValue, let kind = object["kind"]?.stringValue,
                  let name = object["metadata"]?["name"]?.stringValue else { continue }
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

final class AppliedVersions: Sendable {
    private let versions = Mutex<[String: String]>([:])

    /// Stores `version` for `key`; returns what was stored before (nil when nothing was).
    func exchange(_ key: String, _ version: String?) -> String?? {
        versions.withLock { versions in
            let previous = versions[key]
            versions[key] = version
            return previous.map { .some($0) }
        }
    }
}
