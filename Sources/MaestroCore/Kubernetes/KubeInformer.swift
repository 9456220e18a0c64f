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
    /// The top-level fields the cache keeps (a pod's `status` and `metadata`, not its `spec`); nil keeps all.
    public var keptFields: Set<String>?

    public init(pageSize: Int = 500, watchTimeoutSeconds: Int = 300, idleTimeoutSeconds: Int = 120,
                backoff: Backoff = Backoff(first: 0.5, maximum: 30), metadataOnly: Bool? = nil, keptFields: Set<String>? = nil) {
        self.keptFields = keptFields
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
/// Cached objects are trimmed: `metadata.managedFields` is dropped, and a metadata-only informer (every
/// Secret informer unless told otherwise) asks the server for `PartialObjectMetadata` and keeps nothing
/// but `metadata` — without `kubectl.kubernetes.io/last-applied-configuration`, which repeats a Secret's
/// data — so tenants' credentials are never held in maestro's memory.
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
    private let store = Mutex<[String: Value]>([:])
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
    public func get(_ name: String) -> Value? { store.withLock { $0[name] } }

    /// Every cached object, by name.
    public var objects: [String: Value] { store.withLock { $0 } }

    public var count: Int { store.withLock { $0.count } }

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
                    let list = try client.list(path, labelSelector: labelSelector, pageSize: options.pageSize,
                                               accept: metadataOnly ? Self.metadataListAccept : "application/json")
                    replace(with: list)
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

    /// A complete list: the cache becomes it, and the handler hears every difference.
    private func replace(with list: KubeList) {
        var fresh: [String: Value] = [:]
        for item in list.items {
            let object = trimmed(item)
            guard let name = object["metadata"]?["name"]?.stringValue else { continue }
            fresh[name] = object
        }
        let previous = store.withLock { store in
            let previous = store
            store = fresh
            return previous
        }
        version.withLock { $0 = list.resourceVersion }
        tally.withLock { $0.lists += 1 }
        recordSize(fresh.count)
        for (name, object) in previous where fresh[name] == nil {
            onChange(.deleted, object)
        }
        for (name, object) in fresh.sorted(by: { $0.key < $1.key }) {
            if let old = previous[name] {
                if Self.version(of: old) != Self.version(of: object) { onChange(.updated, object) }
            } else {
                onChange(.added, object)
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
            let object = trimmed(raw)
            guard let name = object["metadata"]?["name"]?.stringValue else { return }
            let (old, size) = store.withLock { store in
                let old = store.updateValue(object, forKey: name)
                return (old, store.count)
            }
            recordSize(size)
            if let old {
                // The same version again (a watch replaying what the list already had) is no change.
                if Self.version(of: old) != Self.version(of: object) { onChange(.updated, object) }
            } else {
                onChange(.added, object)
            }
        case "DELETED":
            let object = trimmed(raw)
            guard let name = object["metadata"]?["name"]?.stringValue else { return }
            let (old, size) = store.withLock { store in (store.removeValue(forKey: name), store.count) }
            recordSize(size)
            if old != nil { onChange(.deleted, object) }
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

    /// What the cache keeps of an object (see the type's comment).
    func trimmed(_ object: Value) -> Value {
        guard case .map(var fields) = object else { return object }
        var metadata = fields["metadata"]?.mapValue ?? [:]
        metadata["managedFields"] = nil
        if metadataOnly {
            if case .map(var annotations)? = metadata["annotations"] {
                annotations["kubectl.kubernetes.io/last-applied-configuration"] = nil
                metadata["annotations"] = .map(annotations)
            }
            fields = ["apiVersion": .string(apiVersion), "kind": .string(kind)]
        } else if let kept = options.keptFields {
            fields = fields.filter { kept.contains($0.key) }
        }
        fields["metadata"] = .map(metadata)
        return .map(fields)
    }
}
