internal import CoreMetrics
internal import Foundation
public import Logging
public import MaestroValue
internal import Synchronization

/// What happened to a cached object, as a `KubeInformer`'s handler hears it.
public enum KubeInformerEvent: String, Sendable, Equatable {
    case added
    case updated
    case deleted
}

/// How a `KubeInformer` talks to the API server.
public struct KubeInformerOptions: Sendable {
    /// Items per page of a list (`limit`); 0 lists in one answer.
    public var pageSize: Int
    /// How long the server keeps one watch open (`timeoutSeconds`) before the informer watches again
    /// from where it was. client-go picks 5 to 10 minutes.
    public var watchTimeoutSeconds: Int
    /// A watch silent this long — no event, no bookmark — is taken for a dead connection and replaced.
    /// An API server sends a bookmark about once a minute to a watch that asks for them.
    public var idleTimeoutSeconds: Int
    /// Between failed attempts to list or watch (Retry-After is honoured, within its cap).
    public var backoff: Backoff
    /// Cache metadata only (`PartialObjectMetadata`): nil decides by kind — Secrets are metadata only.
    public var metadataOnly: Bool?
    /// What the cache keeps of each object, trimmed already (`KubeCaches` keeps of a pod its status, of a
    /// Deployment what its status is judged by, of the rest some metadata); nil keeps the whole object.
    public var projection: (@Sendable (Value) -> Value)?
    /// A label whose value indexes the cache (`objects(labelled:)`): the pods of one collector.
    public var indexLabel: String?

    public init(pageSize: Int = 500, watchTimeoutSeconds: Int = 300, idleTimeoutSeconds: Int = 120,
                backoff: Backoff = Backoff(first: 0.5, maximum: 30), metadataOnly: Bool? = nil,
                projection: (@Sendable (Value) -> Value)? = nil, indexLabel: String? = nil) {
        self.projection = projection
        self.indexLabel = indexLabel
        self.pageSize = pageSize
        self.watchTimeoutSeconds = watchTimeoutSeconds
        self.idleTimeoutSeconds = idleTimeoutSeconds
        self.backoff = backoff
        self.metadataOnly = metadataOnly
    }
}

/// What a `KubeInformer` has done so far (for tests and diagnostics).
public struct KubeInformerCounters: Sendable, Equatable {
    /// Complete lists (each of one or more pages).
    public var lists = 0
    /// Watches opened.
    public var watches = 0
    /// Watches that found their resourceVersion too old (410 Gone), each followed by a list.
    public var expirations = 0
    /// Lists or watches that failed and were retried after a pause.
    public var failures = 0
    /// Bookmarks received.
    public var bookmarks = 0
}

/// A watch-based cache of one kind of object in one namespace (or all, with nil), limited by a label
/// selector: it lists (in pages), then watches from the list's resourceVersion with bookmarks, and keeps
/// every object by name. When the watch breaks it watches again from the last resourceVersion seen (after
/// a backoff if it failed); when that version is too old for the server (410 Gone) it lists again and
/// tells its handler the differences, so that no change is missed — an object deleted while the informer
/// was away is reported deleted. It runs on a thread of its own (libcurl blocks); `onChange` is called
/// on that thread, after the cache holds the change, one call at a time. Reads (`get`, `objects`) are
/// safe from any thread.
///
/// Cached objects are trimmed: `metadata.managedFields` and the annotation
/// `kubectl.kubernetes.io/last-applied-configuration` (which repeats the whole object, a Secret's data
/// included) are dropped, the rest is cut to the options' `projection`, and a metadata-only informer
/// (every Secret informer unless told otherwise) asks the server for `PartialObjectMetadata` and keeps
/// nothing but `metadata` — so tenants' credentials are never held in maestro's memory. Each object is
/// kept as its JSON text, decoded when read: a tree of `Value`s costs several times the text, and
/// a cache of 10,000 collectors' objects must stay within tens of MiB. A list is taken page by page,
/// so not even a re-list holds a whole list of untrimmed objects.
///
/// The gauge `maestro_kube_cached_objects{kind}` shows the cache's size: one informer per kind is
/// expected (two of one kind would report over each other). `start()` once; a stopped informer stays
/// stopped (`BackgroundService` can run it in the service group: start, then stop on shutdown).
public final class KubeInformer: Sendable {
    public let apiVersion: String
    public let kind: String
    public let namespace: String?
    public let labelSelector: String?
    public let options: KubeInformerOptions
    public let metadataOnly: Bool
    private let client: KubernetesClient
    private let logger: Logger
    private let onChange: @Sendable (KubeInformerEvent, Value) -> Void
    private let threads = BackgroundThreads()
    private let store = Mutex(KubeCacheStore())
    private let version = Mutex("")
    private let tally = Mutex(KubeInformerCounters())
    /// Watch events received, bookmarks included.
    private let received = Mutex(0)
    /// Guards `synced`; waiters for the first list wait on it.
    private let syncCondition = NSCondition()
    private nonisolated(unsafe) var synced = false

    static let metadataListAccept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    static let metadataWatchAccept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

    public init(client: KubernetesClient, apiVersion: String, kind: String, namespace: String?, labelSelector: String? = nil,
                options: KubeInformerOptions = KubeInformerOptions(), logger: Logger,
                onChange: @escaping @Sendable (KubeInformerEvent, Value) -> Void = { _, _ in }) {
        self.client = client
        self.apiVersion = apiVersion
        self.kind = kind
        self.namespace = namespace
        self.labelSelector = labelSelector
        self.options = options
        metadataOnly = options.metadataOnly ?? (kind == "Secret")
        self.logger = logger
        self.onChange = onChange
    }

    /// Starts listing and watching on the informer's thread.
    public func start() {
        threads.spawn("kube-informer-\(kind.lowercased())") { [self] in run() }
    }

    /// Asks the informer to stop without waiting (several informers then stop together).
    public func requestStop() {
        threads.requestStop()
        syncCondition.lock()
        syncCondition.broadcast()
        syncCondition.unlock()
    }

    /// Ends the watch (within about a second, even while it waits for an event) and the thread; true
    /// when the thread ended within `timeout` seconds (nil: as long as it takes).
    @discardableResult
    public func stop(timeout: Double? = nil) -> Bool {
        threads.requestStop()
        syncCondition.lock()
        syncCondition.broadcast()
        syncCondition.unlock()
        return threads.waitUntilEnded(deadline: timeout.map { .now() + $0 } ?? .distantFuture)
    }

    /// Whether the first list is in the cache and its objects were handed to the handler.
    public var hasSynced: Bool {
        syncCondition.lock()
        defer { syncCondition.unlock() }
        return synced
    }

    /// Waits until the first list is in the cache; false when `timeout` seconds passed first or the
    /// informer was stopped.
    public func waitUntilSynced(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        syncCondition.lock()
        defer { syncCondition.unlock() }
        while !synced && !threads.isStopping {
            guard syncCondition.wait(until: deadline) else { return synced }
        }
        return synced
    }

    /// The cached object of this name.
    public func get(_ name: String) -> Value? { store.withLock { $0.objects[name] }?.value }

    /// Every cached object, by name (each decoded: for tests and rare sweeps).
    public var objects: [String: Value] { store.withLock { $0.objects }.mapValues(\.value) }

    /// The cached objects whose `indexLabel` has this value.
    public func objects(labelled value: String) -> [Value] {
        store.withLock { store in (store.index[value] ?? []).compactMap { store.objects[$0] } }.map(\.value)
    }

    public var count: Int { store.withLock { $0.objects.count } }

    /// The last resourceVersion the informer saw: of its last list, event or bookmark.
    public var resourceVersion: String { version.withLock { $0 } }

    public var counters: KubeInformerCounters { tally.withLock { $0 } }

    private var path: String { KubeResourcePath.collection(apiVersion: apiVersion, kind: kind, namespace: namespace) }

    private func run() {
        var mustList = true
        var failedAttempts = 0
        while !threads.isStopping {
            do {
                if mustList {
                    try relist()
                    mustList = false
                }
                var query: [(String, String)] = [("allowWatchBookmarks", "true"), ("timeoutSeconds", String(options.watchTimeoutSeconds))]
                let from = resourceVersion
                if !from.isEmpty { query.append(("resourceVersion", from)) }
                if let labelSelector, !labelSelector.isEmpty { query.append(("labelSelector", labelSelector)) }
                tally.withLock { $0.watches += 1 }
                let opened = Date()
                let eventsBefore = received.withLock { $0 }
                let end = try client.watch(path, query: query, accept: metadataOnly ? Self.metadataWatchAccept : "application/json",
                                           idleTimeoutSeconds: options.idleTimeoutSeconds, shouldStop: { [threads] in threads.isStopping }) { type, object in
                    self.receive(type, object)
                    return !self.threads.isStopping
                }
                failedAttempts = 0
                switch end {
                case .expired:
                    // As client-go: the history is gone, so only a new list can say what changed.
                    tally.withLock { $0.expirations += 1 }
                    logger.debug("watch resourceVersion expired, listing again", metadata: ["kube.kind": "\(kind)", "kube.resource_version": "\(from)"])
                    mustList = true
                case .closed where Date().timeIntervalSince(opened) < 1 && received.withLock({ $0 }) == eventsBefore:
                    // A server that closes every watch at once would otherwise be asked again and again
                    // in a tight loop (the rate limiter may be off).
                    threads.pause(options.backoff.first)
                case .closed, .stopped:
                    break
                }
            } catch {
                failedAttempts += 1
                tally.withLock { $0.failures += 1 }
                let delay = options.backoff.delay(attempt: failedAttempts, atLeast: error.retryAfter)
                logger.warning("Kubernetes list or watch failed, will retry",
                               metadata: ["kube.kind": "\(kind)", "error": "\(error)", "retry.seconds": "\(delay)"])
                threads.pause(delay)
            }
        }
    }

    /// Lists again, page by page: the cache becomes the list, and the handler hears every difference.
    private func relist() throws(ClusterError) {
        var fresh = KubeCacheStore()
        let listed = try client.listPages(path, labelSelector: labelSelector, pageSize: options.pageSize,
                                          accept: metadataOnly ? Self.metadataListAccept : "application/json",
                                          restarted: { fresh = KubeCacheStore() }, page: { items in
                                              for item in items { if let (name, object, _) = cached(item) { fresh.insert(object, named: name) } }
                                          })
        let previous = store.withLock { store in
            let previous = store
            store = fresh
            return previous
        }
        version.withLock { $0 = listed }
        tally.withLock { $0.lists += 1 }
        recordSize(fresh.objects.count)
        for (name, object) in previous.objects where fresh.objects[name] == nil {
            onChange(.deleted, object.value)
        }
        for (name, object) in fresh.objects.sorted(by: { $0.key < $1.key }) {
            if let old = previous.objects[name] {
                if old.resourceVersion != object.resourceVersion { onChange(.updated, object.value) }
            } else {
                onChange(.added, object.value)
            }
        }
        // Synced once the handler has heard the first list too: whoever waited for it may rely on both.
        syncCondition.lock()
        synced = true
        syncCondition.broadcast()
        syncCondition.unlock()
    }

    private func receive(_ type: String, _ raw: Value) {
        received.withLock { $0 += 1 }
        if let seen = Self.version(of: raw), !seen.isEmpty { version.withLock { $0 = seen } }
        switch type {
        case "ADDED", "MODIFIED":
            guard let (name, object, kept) = cached(raw) else { return }
            let (old, size) = store.withLock { store in (store.insert(object, named: name), store.objects.count) }
            recordSize(size)
            if let old {
                // The same version again (a watch replaying what the list already had) is no change.
                if old.resourceVersion != object.resourceVersion { onChange(.updated, kept) }
            } else {
                onChange(.added, kept)
            }
        case "DELETED":
            guard let (name, _, kept) = cached(raw) else { return }
            let (old, size) = store.withLock { store in (store.remove(named: name), store.objects.count) }
            recordSize(size)
            if old != nil { onChange(.deleted, kept) }
        case "BOOKMARK":
            tally.withLock { $0.bookmarks += 1 }
        default:
            logger.debug("unknown watch event", metadata: ["kube.kind": "\(kind)", "event.type": "\(type)"])
        }
    }

    private func recordSize(_ size: Int) {
        Gauge(label: "maestro_kube_cached_objects", dimensions: [("kind", kind)]).record(size)
    }

    private static func version(of object: Value) -> String? {
        object["metadata"]?["resourceVersion"]?.stringValue
    }

    /// What the cache keeps of an object (see the type's comment): its name, its stored form and the kept
    /// fields themselves; nil for an object without a name.
    private func cached(_ object: Value) -> (String, KubeCachedObject, Value)? {
        let kept = trimmed(object)
        guard let name = kept["metadata"]?["name"]?.stringValue, let json = try? JSON.encode(kept) else { return nil }
        let labelValue = options.indexLabel.flatMap { kept["metadata"]?["labels"]?[$0]?.stringValue }
        return (name, KubeCachedObject(json: ContiguousArray(json.utf8), resourceVersion: Self.version(of: kept) ?? "", indexValue: labelValue), kept)
    }

    /// What the cache keeps of an object (see the type's comment).
    func trimmed(_ object: Value) -> Value {
        guard case .map(var fields) = object else { return object }
        var metadata = fields["metadata"]?.mapValue ?? [:]
        metadata["managedFields"] = nil
        if case .map(var annotations)? = metadata["annotations"] {
            annotations["kubectl.kubernetes.io/last-applied-configuration"] = nil
            metadata["annotations"] = annotations.isEmpty ? nil : .map(annotations)
        }
        if metadataOnly { fields = [:] }
        fields["metadata"] = .map(metadata)
        if let projection = options.projection { fields = projection(.map(fields)).mapValue ?? [:] }
        fields["apiVersion"] = .string(apiVersion)
        fields["kind"] = .string(kind)
        return .map(fields)
    }
}

/// One cached object: its JSON text, and what the informer reads without decoding it.
struct KubeCachedObject: Sendable {
    /// Exactly as long as the text: a string built by appending keeps up to twice its length.
    let json: ContiguousArray<UInt8>
    let resourceVersion: String
    /// The value of the informer's `indexLabel`.
    let indexValue: String?

    var value: Value { (try? JSON.decode(bytes: Array(json))) ?? .null }
}

/// An informer's objects by name, and the names by the value of its index label.
struct KubeCacheStore: Sendable {
    var objects: [String: KubeCachedObject] = [:]
    var index: [String: Set<String>] = [:]

    /// Answers the object it replaced.
    @discardableResult
    mutating func insert(_ object: KubeCachedObject, named name: String) -> KubeCachedObject? {
        let old = objects.updateValue(object, forKey: name)
        if let stale = old?.indexValue, stale != object.indexValue { unindex(name, from: stale) }
        if let value = object.indexValue { index[value, default: []].insert(name) }
        return old
    }

    @discardableResult
    mutating func remove(named name: String) -> KubeCachedObject? {
        let old = objects.removeValue(forKey: name)
        if let value = old?.indexValue { unindex(name, from: value) }
        return old
    }

    private mutating func unindex(_ name: String, from value: String) {
        index[value]?.remove(name)
        if index[value]?.isEmpty == true { index[value] = nil }
    }
}
