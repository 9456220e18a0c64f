public import MaestroCore
internal import MaestroLua
public import MaestroValue
internal import MaestroYAML
internal import Foundation
internal import Synchronization

/// What `maestro.k8s` reaches: objects maestro manages in the collector namespace. Reads happen at
/// once; writes (`apply`, `delete`) are queued and carried out by the host after the handler returned
/// without error, so a failing handler changes nothing in the cluster. A plugin's objects carry its
/// name (label `maestro.orb.community/plugin`; on the directory backend also their folder), and a
/// plugin writes only objects it owns: never a collector's, never another plugin's.
public protocol PluginCluster: Sendable {
    var namespace: String { get }
    /// Any object maestro manages (collectors' and plugins'); the host decides what a plugin may see.
    func get(apiVersion: String, kind: String, name: String) throws(ClusterError) -> Value?
    func list(apiVersion: String, kind: String, labelSelector: String?) throws(ClusterError) -> [Value]
    /// Who owns the object that `plugin` would write under this kind and name.
    func owner(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError) -> PluginObjectOwner
    func apply(_ object: Value, plugin: String) throws(ClusterError)
    func delete(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError)
}

/// Who owns an object a plugin wants to write.
public enum PluginObjectOwner: Sendable, Equatable {
    /// No such object.
    case none
    /// The object a plugin applied (its `maestro.orb.community/plugin` label).
    case plugin(String)
    /// Anything else: a collector's object, or one maestro does not manage.
    case other
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

    public func owner(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError) -> PluginObjectOwner {
        let response = try client.request("GET", KubeResourcePath.object(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name))
        if response.status == 404 { return .none }
        guard response.status == 200 else { throw ClusterError(.failed, "cannot read \(kind) \(name): HTTP \(response.status)") }
        let labels = response.body["metadata"]?["labels"]
        guard labels?["app.kubernetes.io/managed-by"] == .string("maestro"),
              let owner = labels?[PluginClusterAccess.ownerLabel]?.stringValue else { return .other }
        return .plugin(owner)
    }

    public func apply(_ object: Value, plugin: String) throws(ClusterError) {
        let backend = KubernetesBackend(client: client, namespace: namespace)
        try backend.apply(DesiredCollector(sinkID: "", name: object["metadata"]?["name"]?.stringValue ?? "", namespace: namespace, objects: [object]))
    }

    public func delete(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError) {
        let response = try client.request("DELETE", KubeResourcePath.object(apiVersion: apiVersion, kind: kind, namespace: namespace, name: name))
        guard [200, 202, 404].contains(response.status) else { throw ClusterError(.failed, "cannot delete \(kind) \(name): HTTP \(response.status)") }
    }
}

/// The directory backend's view: collectors are files `<root>/<namespace>/<name>.yaml`; the objects a
/// plugin applies are files `<root>/<namespace>/plugins/<plugin>/<kind>-<name>.yaml` (mode 0600), a
/// folder no collector's file can be in (collector names are DNS labels: no `/`), one per plugin.
public struct DirectoryPluginCluster: PluginCluster {
    public let root: String
    public let namespace: String

    public init(root: String, namespace: String) {
        self.root = root
        self.namespace = namespace
    }

    /// Where plugins' objects live: a backend whose "namespaces" are the plugins.
    var pluginsFolder: String { "\(root)/\(namespace)/plugins" }

    private func allObjects() -> [Value] {
        let folder = "\(root)/\(namespace)"
        var paths = Self.yamlFiles(in: folder)
        let plugins = ((try? FileManager.default.contentsOfDirectory(atPath: pluginsFolder)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        for plugin in plugins { paths += Self.yamlFiles(in: "\(pluginsFolder)/\(plugin)") }
        return paths.flatMap { path in (TextFile.read(path).flatMap { try? YAML.parseAll($0) }) ?? [] }
            .filter { $0["metadata"]?["labels"]?["app.kubernetes.io/managed-by"] == .string("maestro") }
    }

    static func yamlFiles(in folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".yaml") && !$0.hasPrefix(".") }
            .sorted().map { "\(folder)/\($0)" }
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

    /// A plugin name usable as one folder (plugin names are folder names already).
    static func isFolderName(_ text: String) -> Bool {
        !text.isEmpty && text != "." && text != ".." && !text.contains("/") && !text.contains("\0")
    }

    static func fileName(kind: String, name: String) -> String { "\(kind.lowercased())-\(name)" }

    public func owner(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError) -> PluginObjectOwner {
        let backend = DirectoryBackend(root: pluginsFolder)
        guard Self.isFolderName(plugin) else { throw ClusterError(.rejected, "plugin name \(plugin) cannot be a folder") }
        // The layout is the ownership: the plugin's folder holds only what it applied.
        return FileManager.default.fileExists(atPath: backend.path(name: Self.fileName(kind: kind, name: name), namespace: plugin)) ? .plugin(plugin) : .none
    }

    public func apply(_ object: Value, plugin: String) throws(ClusterError) {
        guard let kind = object["kind"]?.stringValue, let name = object["metadata"]?["name"]?.stringValue,
              CollectorNaming.isDNS1035Label(kind.lowercased()), !name.contains("/"), Self.isFolderName(plugin) else {
            throw ClusterError(.rejected, "an object needs a kind and a metadata.name")
        }
        try DirectoryBackend(root: pluginsFolder).apply(DesiredCollector(sinkID: "", name: Self.fileName(kind: kind, name: name), namespace: plugin,
                                                                         objects: [object]))
    }

    public func delete(apiVersion: String, kind: String, name: String, plugin: String) throws(ClusterError) {
        guard Self.isFolderName(plugin) else { return }
        try DirectoryBackend(root: pluginsFolder).delete(sinkID: "", name: Self.fileName(kind: kind, name: name), namespace: plugin)
    }
}

/// The queue of `maestro.k8s.apply|delete` of one handler call. The host validates the whole queue
/// before it carries out any of it (an invalid write leaves the cluster untouched and is the plugin's
/// bug: terminal, not retried), and carries out a queue once per event: a redelivered event whose
/// handler queues the same writes again does not write them again (remembered by this process for
/// the last `rememberedEvents` events; another replica that claims the event re-applies, which
/// server-side apply makes idempotent).
public final class PluginClusterAccess: Sendable {
    enum Operation: Sendable {
        case apply(Value, plugin: String)
        case delete(apiVersion: String, kind: String, name: String, plugin: String)
    }

    /// The label naming the plugin that applied an object: its recorded owner.
    public static let ownerLabel = "maestro.orb.community/plugin"

    public let cluster: (any PluginCluster)?
    private let pending = Mutex<[Operation]>([])
    /// Event key → the queue applied for it, oldest first.
    private let applied = Mutex<[(event: String, queue: String)]>([])
    static let rememberedEvents = 1_024

    public init(cluster: (any PluginCluster)?) { self.cluster = cluster }

    func queue(apply object: Value, plugin: String) { pending.withLock { $0.append(.apply(object, plugin: plugin)) } }
    func queue(delete apiVersion: String, _ kind: String, _ name: String, plugin: String) {
        pending.withLock { $0.append(.delete(apiVersion: apiVersion, kind: kind, name: name, plugin: plugin)) }
    }
    func discard() { pending.withLock { $0.removeAll() } }

    /// Validates what the handler queued, then carries it out in order — unless `event` (the stream
    /// entry and plugin) already had this very queue carried out. A `.rejected` error means nothing
    /// was written.
    func flush(event: String? = nil) throws(ClusterError) {
        let operations = pending.withLock { queue -> [Operation] in
            defer { queue.removeAll() }
            return queue
        }
        guard let cluster, !operations.isEmpty else { return }
        for (index, operation) in operations.enumerated() {
            if let problem = Self.problem(operation, namespace: cluster.namespace) {
                throw ClusterError(.rejected, "write \(index + 1) of \(operations.count) (\(Self.describe(operation))): \(problem); nothing was written")
            }
        }
        // Ownership, before any write: a plugin writes only what it applied itself.
        for (index, operation) in operations.enumerated() {
            let (apiVersion, kind, name, plugin) = Self.target(operation)
            let owner = try cluster.owner(apiVersion: apiVersion, kind: kind, name: name, plugin: plugin)
            if owner == .none || owner == .plugin(plugin) { continue }
            var whose = "a collector, or is no plugin's"
            if case .plugin(let other) = owner { whose = "plugin \(SinkEvent.sanitizedName(other))" }
            throw ClusterError(.rejected, "write \(index + 1) of \(operations.count) (\(Self.describe(operation))): the object belongs to \(whose); "
                               + "a plugin writes only objects it applied; nothing was written")
        }
        let digest = Self.digest(operations)
        if let event, let digest, applied.withLock({ $0.contains { $0.event == event && $0.queue == digest } }) { return }
        for operation in operations {
            switch operation {
            case .apply(let object, let plugin): try cluster.apply(object, plugin: plugin)
            case .delete(let apiVersion, let kind, let name, let plugin): try cluster.delete(apiVersion: apiVersion, kind: kind, name: name, plugin: plugin)
            }
        }
        if let event, let digest {
            applied.withLock { memory in
                memory.removeAll { $0.event == event }
                memory.append((event, digest))
                if memory.count > Self.rememberedEvents { memory.removeFirst(memory.count - Self.rememberedEvents) }
            }
        }
    }

    static func target(_ operation: Operation) -> (apiVersion: String, kind: String, name: String, plugin: String) {
        switch operation {
        case .apply(let object, let plugin):
            return (object["apiVersion"]?.stringValue ?? "", object["kind"]?.stringValue ?? "", object["metadata"]?["name"]?.stringValue ?? "", plugin)
        case .delete(let apiVersion, let kind, let name, let plugin):
            return (apiVersion, kind, name, plugin)
        }
    }

    /// Names collectors may have (`otel-<sink>`): never a plugin's object, so no plugin's write can
    /// meet a collector's object, even one created between the ownership check and the write.
    static let collectorNamePrefix = "otel-"

    /// Why a queued write cannot be carried out, or nil.
    static func problem(_ operation: Operation, namespace: String) -> String? {
        switch operation {
        case .apply(let object, _):
            guard let apiVersion = object["apiVersion"]?.stringValue, isAPIVersion(apiVersion) else { return "apiVersion must be like v1 or apps/v1" }
            guard let kind = object["kind"]?.stringValue, isKind(kind) else { return "kind must be a name like ConfigMap" }
            guard let name = object["metadata"]?["name"]?.stringValue, isDNSSubdomain(name) else {
                return "metadata.name must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
            }
            guard !name.hasPrefix(collectorNamePrefix) else { return "names starting with \(collectorNamePrefix) are the collectors'" }
            guard object["metadata"]?["namespace"] == .string(namespace) else { return "the namespace must be \(namespace)" }
            if case .map(let labels)? = object["metadata"]?["labels"] {
                for (key, value) in labels where value.stringValue == nil || key.isEmpty {
                    return "label \(SinkEvent.sanitizedName(key)) must have a string value"
                }
            } else if object["metadata"]?["labels"] != nil {
                return "metadata.labels must be a map"
            }
            if (try? YAML.emit(object)) == nil { return "the object cannot be written as YAML" }
            return nil
        case .delete(let apiVersion, let kind, let name, _):
            guard isAPIVersion(apiVersion) else { return "apiVersion must be like v1 or apps/v1" }
            guard isKind(kind) else { return "kind must be a name like ConfigMap" }
            guard isDNSSubdomain(name) else { return "the name must be a DNS subdomain" }
            guard !name.hasPrefix(collectorNamePrefix) else { return "names starting with \(collectorNamePrefix) are the collectors'" }
            return nil
        }
    }

    static func isAPIVersion(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let version = parts.last, version.first == "v", version.count <= 32,
              version.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber) }) else { return false }
        return parts.count == 1 || isDNSSubdomain(String(parts[0]))
    }

    static func isKind(_ text: String) -> Bool {
        guard let first = text.first, first.isASCII, first.isUppercase, text.count <= 63 else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
    }

    static func isDNSSubdomain(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
            guard let first = label.first, let last = label.last, label.count <= 63 else { return false }
            return (first.isLowercase || first.isNumber) && (last.isLowercase || last.isNumber)
                && label.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }
        }
    }

    static func describe(_ operation: Operation) -> String {
        switch operation {
        case .apply(let object, _):
            return "apply \(SinkEvent.sanitizedName(object["kind"]?.stringValue ?? "?")) \(SinkEvent.sanitizedName(object["metadata"]?["name"]?.stringValue ?? "?"))"
        case .delete(_, let kind, let name, _):
            return "delete \(SinkEvent.sanitizedName(kind)) \(SinkEvent.sanitizedName(name))"
        }
    }

    /// The queue as text, to compare with what an event applied before (nil: not encodable as JSON,
    /// never deduplicated).
    static func digest(_ operations: [Operation]) -> String? {
        let values: [Value] = operations.map { operation in
            switch operation {
            case .apply(let object, _): return ["apply": object]
            case .delete(let apiVersion, let kind, let name, let plugin):
                return ["delete": .list([.string(apiVersion), .string(kind), .string(name), .string(plugin)])]
            }
        }
        return try? JSON.encode(.list(values))
    }

    /// Whether `plugin`, handling `sinkID`, may read `object`: its own objects and its sink's collector;
    /// every object maestro manages with `collectors:read`.
    static func visible(_ object: Value, plugin: String, capabilities: PluginCapabilities, sinkID: String?) -> Bool {
        if capabilities.has(PluginCapabilities.collectorsRead) { return true }
        let owner = object["metadata"]?["labels"]?[ownerLabel]?.stringValue
        if owner == plugin { return true }
        guard owner == nil, let sinkID else { return false }
        return object["metadata"]?["annotations"]?["maestro.orb.community/sink-id"] == .string(sinkID)
    }

    /// `maestro.k8s.get|list|apply|delete` for one plugin.
    func module(plugin: String, capabilities: PluginCapabilities, invocation: PluginInvocation) -> LuaHostModule {
        let access = self
        return LuaHostModule(name: "k8s", functions: [
            LuaHostFunction("get") { arguments throws(LuaHostError) in
                let (apiVersion, kind) = try Self.kind(arguments, 1)
                guard case .string(let name)? = arguments.count >= 2 ? arguments[1] : nil else { throw LuaHostError.badArgument(2, "name expected") }
                guard let cluster = access.cluster else { return Self.unavailable }
                let object: Value?
                do {
                    object = try cluster.get(apiVersion: apiVersion, kind: kind, name: name)
                } catch {
                    return [nil, .string("maestro.k8s.get: \(error)")]
                }
                if let object, !Self.visible(object, plugin: plugin, capabilities: capabilities, sinkID: invocation.sinkID) {
                    throw LuaHostError("maestro.k8s.get: \(SinkEvent.sanitizedName(kind)) \(SinkEvent.sanitizedName(name)) is neither this plugin's object "
                                       + "nor the collector of the sink this call handles: " + capabilities.refusal(PluginCapabilities.collectorsRead, plugin: plugin))
                }
                return [object]
            },
            LuaHostFunction("list") { arguments throws(LuaHostError) in
                let (apiVersion, kind) = try Self.kind(arguments, 1)
                var selector: String?
                if arguments.count >= 2, case .map(let options)? = arguments[1] { selector = options["label_selector"]?.stringValue }
                guard let cluster = access.cluster else { return Self.unavailable }
                do {
                    // Without collectors:read, only what get would return: the plugin's own objects
                    // and its sink's collector.
                    let sinkID = invocation.sinkID
                    return [.list(try cluster.list(apiVersion: apiVersion, kind: kind, labelSelector: selector)
                        .filter { Self.visible($0, plugin: plugin, capabilities: capabilities, sinkID: sinkID) })]
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
                // Objects plugins apply live in the collector namespace, are maestro's, and name
                // their owner.
                var metadata = entries["metadata"]?.mapValue ?? [:]
                metadata["namespace"] = .string(cluster.namespace)
                var labels = metadata["labels"]?.mapValue ?? [:]
                labels["app.kubernetes.io/managed-by"] = "maestro"
                labels[Self.ownerLabel] = .string(plugin)
                metadata["labels"] = .map(labels)
                entries["metadata"] = .map(metadata)
                access.queue(apply: .map(entries), plugin: plugin)
                return [.bool(true)]
            },
            LuaHostFunction("delete") { arguments throws(LuaHostError) in
                let (apiVersion, kind) = try Self.kind(arguments, 1)
                guard case .string(let name)? = arguments.count >= 2 ? arguments[1] : nil else { throw LuaHostError.badArgument(2, "name expected") }
                guard access.cluster != nil else { return Self.unavailable }
                access.queue(delete: apiVersion, kind, name, plugin: plugin)
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
