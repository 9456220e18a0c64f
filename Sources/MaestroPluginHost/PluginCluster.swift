public import MaestroCore
internal import MaestroLua
public import MaestroValue
internal import MaestroYAML
internal import Foundation
internal import Synchronization

/// What `maestro.k8s` reaches: objects maestro manages in the collector namespace. Reads happen at
/// once; writes (`apply`, `delete`) are queued and carried out by the host after the handler returned
/// without error, so a failing handler changes nothing in the cluster.
public protocol PluginCluster: Sendable {
    var namespace: String { get }
    func get(apiVersion: String, kind: String, name: String) throws(ClusterError) -> Value?
    func list(apiVersion: String, kind: String, labelSelector: String?) throws(ClusterError) -> [Value]
    func apply(_ object: Value) throws(ClusterError)
    func delete(apiVersion: String, kind: String, name: String) throws(ClusterError)
}

/// The Kubernetes API, limited to the collector namespace and to objects labelled managed-by maestro.
public struct KubernetesPluginCluster: PluginCluster {
    public let client: KubernetesClient
    public let namespace: String

    public init(client: KubernetesClient, namespace: String) {
        self.client = client
        self.namespace = namespace
    }

    public func get(apiVersion: String, kind: String, name: String) throws(ClusterError) -> Value? {
        let response = try client.request("GET", KubeResourcePath.object(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name))
        guard response.status == 200, response.body["metadata"]?["labels"]?["app.kubernetes.io/managed-by"] == .string("maestro") else { return nil }
        return response.body
    }

    public func list(apiVersion: String, kind: String, labelSelector: String?) throws(ClusterError) -> [Value] {
        let selector = ["app.kubernetes.io/managed-by=maestro"] + (labelSelector.map { [$0] } ?? [])
        let response = try client.request("GET", KubeResourcePath.collection(apiVersion: apiVersion, kind: kind, namespace: namespace),
                                          query: [("labelSelector", selector.joined(separator: ","))])
        guard response.status == 200 else { throw ClusterError(.failed, "cannot list \(kind): HTTP \(response.status)") }
        return response.body["items"]?.listValue ?? []
    }

    public func apply(_ object: Value) throws(ClusterError) {
        let backend = KubernetesBackend(client: client, namespace: namespace)
        try backend.apply(DesiredCollector(sinkID: "", name: object["metadata"]?["name"]?.stringValue ?? "", namespace: namespace, objects: [object]))
    }

    public func delete(apiVersion: String, kind: String, name: String) throws(ClusterError) {
        let response = try client.request("DELETE", KubeResourcePath.object(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name))
        guard [200, 202, 404].contains(response.status) else { throw ClusterError(.failed, "cannot delete \(kind) \(name): HTTP \(response.status)") }
    }
}

/// The directory backend's view: objects are files `<root>/<namespace>/<name>.yaml` (collectors) or
/// `<root>/<namespace>/<kind>-<name>.yaml` (objects plugins apply), mode 0600.
public struct DirectoryPluginCluster: PluginCluster {
    public let root: String
    public let namespace: String

    public init(root: String, namespace: String) {
        self.root = root
        self.namespace = namespace
    }

    private func allObjects() -> [Value] {
        let folder = "\(root)/\(namespace)"
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".yaml") && !$0.hasPrefix(".") }
        return files.sorted().flatMap { file in (TextFile.read("\(folder)/\(file)").flatMap { try? YAML.parseAll($0) }) ?? [] }
            .filter { $0["metadata"]?["labels"]?["app.kubernetes.io/managed-by"] == .string("maestro") }
    }

    public func get(apiVersion: String, kind: String, name: String) throws(ClusterError) -> Value? {
        allObjects().first { $0["kind"] == .string(kind) && $0["metadata"]?["name"] == .string(name) }
    }

    public func list(apiVersion: String, kind: String, labelSelector: String?) throws(ClusterError) -> [Value] {
        let terms = (labelSelector ?? "").split(separator: ",").compactMap { term -> (String, String)? in
            let parts = term.split(separator: "=", maxSplits: 1)
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        }
        return allObjects().filter { object in
            object["kind"] == .string(kind) && terms.allSatisfy { object["metadata"]?["labels"]?[$0.0] == .string($0.1) }
        }
    }

    public func apply(_ object: Value) throws(ClusterError) {
        guard let kind = object["kind"]?.stringValue, let name = object["metadata"]?["name"]?.stringValue,
              CollectorNaming.isDNS1035Label(kind.lowercased()), !name.contains("/") else {
            throw ClusterError(.rejected, "an object needs a kind and a metadata.name")
        }
        let backend = DirectoryBackend(root: root)
        try backend.apply(DesiredCollector(sinkID: "", name: "\(kind.lowercased())-\(name)", namespace: namespace, objects: [object]))
    }

    public func delete(apiVersion: String, kind: String, name: String) throws(ClusterError) {
        try DirectoryBackend(root: root).delete(sinkID: "", name: "\(kind.lowercased())-\(name)", namespace: namespace)
    }
}

/// The queue of `maestro.k8s.apply|delete` of one handler call.
public final class PluginClusterAccess: Sendable {
    public let cluster: (any PluginCluster)?
    private let pending = Mutex<[(apply: Value?, delete: (String, String, String)?)]>([])

    public init(cluster: (any PluginCluster)?) { self.cluster = cluster }

    func queue(apply object: Value) { pending.withLock { $0.append((object, nil)) } }
    func queue(delete apiVersion: String, _ kind: String, _ name: String) { pending.withLock { $0.append((nil, (apiVersion, kind, name))) } }
    func discard() { pending.withLock { $0.removeAll() } }

    /// Carries out what the handler queued, in order.
    func flush() throws(ClusterError) {
        let operations = pending.withLock { queue -> [(apply: Value?, delete: (String, String, String)?)] in
            defer { queue.removeAll() }
            return queue
        }
        guard let cluster else { return }
        for operation in operations {
            if let object = operation.apply { try cluster.apply(object) }
            if let (apiVersion, kind, name) = operation.delete { try cluster.delete(apiVersion: apiVersion, kind: kind, name: name) }
        }
    }

    /// `maestro.k8s.get|list|apply|delete`.
    func module() -> LuaHostModule {
        let access = self
        return LuaHostModule(name: "k8s", functions: [
            LuaHostFunction("get") { arguments throws(LuaHostError) in
                let (apiVersion, kind) = try Self.kind(arguments, 1)
                guard case .string(let name)? = arguments.count >= 2 ? arguments[1] : nil else { throw LuaHostError.badArgument(2, "name expected") }
                guard let cluster = access.cluster else { return Self.unavailable }
                do {
                    return [try cluster.get(apiVersion: apiVersion, kind: kind, name: name)]
                } catch {
                    return [nil, .string("maestro.k8s.get: \(error)")]
                }
            },
            LuaHostFunction("list") { arguments throws(LuaHostError) in
                let (apiVersion, kind) = try Self.kind(arguments, 1)
                var selector: String?
                if arguments.count >= 2, case .map(let options)? = arguments[1] { selector = options["label_selector"]?.stringValue }
                guard let cluster = access.cluster else { return Self.unavailable }
                do {
                    return [.list(try cluster.list(apiVersion: apiVersion, kind: kind, labelSelector: selector))]
                } catch {
                    return [nil, .string("maestro.k8s.list: \(error)")]
                }
            },
            LuaHostFunction("apply") { arguments throws(LuaHostError) in
                guard arguments.count >= 1, case .map(var entries)? = arguments[0], entries["kind"]?.stringValue != nil,
                      entries["apiVersion"]?.stringValue != nil, entries["metadata"]?["name"]?.stringValue != nil else {
                    throw LuaHostError.badArgument(1, "an object with apiVersion, kind and metadata.name expected")
                }
                guard let cluster = access.cluster else { return Self.unavailable }
                // Objects plugins apply live in the collector namespace and are maestro's.
                var metadata = entries["metadata"]?.mapValue ?? [:]
                metadata["namespace"] = .string(cluster.namespace)
                var labels = metadata["labels"]?.mapValue ?? [:]
                labels["app.kubernetes.io/managed-by"] = "maestro"
                metadata["labels"] = .map(labels)
                entries["metadata"] = .map(metadata)
                access.queue(apply: .map(entries))
                return [.bool(true)]
            },
            LuaHostFunction("delete") { arguments throws(LuaHostError) in
                let (apiVersion, kind) = try Self.kind(arguments, 1)
                guard case .string(let name)? = arguments.count >= 2 ? arguments[1] : nil else { throw LuaHostError.badArgument(2, "name expected") }
                guard access.cluster != nil else { return Self.unavailable }
                access.queue(delete: apiVersion, kind, name)
                return [.bool(true)]
            },
        ])
    }

    static let unavailable: [Value?] = [nil, .string("maestro.k8s: no cluster in this role (a --role sinker process has none)")]

    /// `"apps/v1/Deployment"`, `"v1/Secret"` or a bare kind maestro knows.
    static func kind(_ arguments: [Value?], _ position: Int) throws(LuaHostError) -> (String, String) {
        guard arguments.count >= position, case .string(let text)? = arguments[position - 1], !text.isEmpty else {
            throw LuaHostError.badArgument(position, "a kind such as \"Deployment\" or \"apps/v1/Deployment\" expected")
        }
        let known: [String: String] = ["Deployment": "apps/v1", "Service": "v1", "Secret": "v1", "ConfigMap": "v1", "Pod": "v1",
                                       "HorizontalPodAutoscaler": "autoscaling/v2", "PodDisruptionBudget": "policy/v1", "ServiceAccount": "v1"]
        if let slash = text.lastIndex(of: "/") {
            return (String(text[..<slash]), String(text[text.index(after: slash)...]))
        }
        guard let apiVersion = known[text] else {
            throw LuaHostError.badArgument(position, "unknown kind \(text): give apiVersion/Kind")
        }
        return (apiVersion, text)
    }
}
