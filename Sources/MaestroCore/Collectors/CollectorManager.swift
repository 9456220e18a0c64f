public import Logging
public import MaestroRedis
internal import MaestroValue
internal import Foundation
internal import Synchronization

/// What `get` and `list` return about a collector.
public struct CollectorInfo: Sendable, Equatable {
    public var sinkID: String
    public var ownerID: String
    public var status: String
    public var errorMessage: String
    public var collectorName: String
    public var namespace: String
    public var configHash: String
    public var deployedAt: String
    public var statusChangedAt: String

    init(sinkID: String, record: Value) {
        self.sinkID = sinkID
        ownerID = record["owner_id"]?.stringValue ?? ""
        status = record["status"]?.stringValue ?? SinkStatus.unknown.rawValue
        errorMessage = record["error"]?.stringValue ?? ""
        collectorName = record["collector_name"]?.stringValue ?? ""
        namespace = record["namespace"]?.stringValue ?? ""
        configHash = record["config_hash"]?.stringValue ?? ""
        deployedAt = record["deployed_at"]?.stringValue ?? ""
        statusChangedAt = record["status_changed_at"]?.stringValue ?? ""
    }
}

/// The maestro role's `CollectorService`: renders a sink's objects from its stored config (with the
/// renderer PluginHost makes from the Lua template), stores them as the desired state, and hands the
/// sink to the reconciler. Safe to call from any thread: renderers are pooled, one user at a time each.
public final class CollectorManager: CollectorService {
    public let reconciler: Reconciler
    private let storage: any CollectorStorage
    private let logger: Logger
    /// The template in use and its generation; a reload replaces both, pooled renderers of an older
    /// generation are dropped when next taken.
    private let templates: Mutex<(generation: Int, make: @Sendable () throws -> any CollectorRenderer)>
    private let renderers = Mutex<[PooledRenderer]>([])
    private let hashKey = Mutex<String?>(nil)
    /// What a caller's delete (the gRPC API) may remove: under `eager` the collector follows the sink,
    /// so only a removed sink's; under the other policies the caller owns the collector's life.
    public let deleteGuard: DesiredStateStore.RemovalGuard

    public init(storage: any CollectorStorage, reconciler: Reconciler, logger: Logger, deleteGuard: DesiredStateStore.RemovalGuard = .unlessLive,
                makeRenderer: @escaping @Sendable () throws -> any CollectorRenderer) {
        self.deleteGuard = deleteGuard
        self.storage = storage
        self.reconciler = reconciler
        self.logger = logger
        templates = Mutex((1, makeRenderer))
    }

    /// The service on Redis.
    public convenience init(redisURL: RedisURL, names: RedisNames, reconciler: Reconciler, logger: Logger,
                            deleteGuard: DesiredStateStore.RemovalGuard = .unlessLive,
                            makeRenderer: @escaping @Sendable () throws -> any CollectorRenderer) {
        self.init(storage: RedisCollectorStorage(redisURL: redisURL, names: names), reconciler: reconciler, logger: logger,
                  deleteGuard: deleteGuard, makeRenderer: makeRenderer)
    }

    /// Switches to a new template (already checked by the caller) and re-renders every deployed
    /// collector; those whose objects changed are stored and handed to the reconciler. Returns how many.
    public func replaceTemplates(_ makeRenderer: @escaping @Sendable () throws -> any CollectorRenderer) -> Int {
        templates.withLock { $0 = ($0.generation + 1, makeRenderer) }
        renderers.withLock { $0.removeAll() }
        let sinkIDs: [String]
        do {
            sinkIDs = try stored { () throws(RedisError) in try storage.sinkIDsWithDesiredState() }
        } catch {
            logger.error("cannot re-render the collectors after a template change", metadata: ["error": "\(error.message)"])
            return 0
        }
        var changed = 0
        for sinkID in sinkIDs {
            do {
                if try redeployIfChanged(sinkID: sinkID) { changed += 1 }
            } catch {
                logger.error("re-rendering a collector failed", metadata: ["sink.id": "\(sinkID)", "error": "\(error.message)"])
            }
        }
        return changed
    }

    private func redeployIfChanged(sinkID: String) throws(CollectorServiceError) -> Bool {
        let desired = try stored { () throws(RedisError) in try storage.desiredState(of: sinkID) }
        guard desired != nil, try render(sinkID: sinkID, ownerID: "").yaml != desired else { return false }
        try deploy(sinkID: sinkID, ownerID: "")
        return true
    }

    // MARK: pools

    /// A storage call; Redis failing is UNAVAILABLE to the caller.
    private func stored<R>(_ body: () throws(RedisError) -> R) throws(CollectorServiceError) -> R {
        do {
            return try body()
        } catch {
            throw CollectorServiceError(.unavailable, "Redis is unavailable: \(error.message)")
        }
    }

    private func withRenderer<R>(_ body: (any CollectorRenderer) throws -> R) throws -> R {
        let template = templates.withLock { $0 }
        var box = renderers.withLock { $0.popLast() }
        if box?.generation != template.generation {
            box = PooledRenderer(renderer: try template.make(), generation: template.generation)
        }
        defer {
            renderers.withLock { pool in
                if box!.generation == templates.withLock({ $0.generation }) { pool.append(box!) }
            }
        }
        return try body(box!.renderer)
    }

    private func hasher() throws(CollectorServiceError) -> ConfigHasher {
        if let key = hashKey.withLock({ $0 }) { return ConfigHasher(keyHex: key) }
        let key = try stored { () throws(RedisError) in try storage.installationKey() }
        hashKey.withLock { $0 = key }
        return ConfigHasher(keyHex: key)
    }

    // MARK: CollectorService

    public func create(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        _ = try deploy(sinkID: sinkID, ownerID: ownerID)
    }

    public func update(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        _ = try deploy(sinkID: sinkID, ownerID: ownerID)
    }

    /// The sinker's removal: removes the collector of a removed sink. Decided on the sink's current
    /// record: a sink that a newer event made live again keeps its collector (FAILED_PRECONDITION,
    /// which the sinker's hand-off takes as "superseded"); a sink with no record (configs written by
    /// Orb's own sinker) is the caller's to remove.
    public func remove(sinkID: String) throws(CollectorServiceError) {
        try removeDesiredState(sinkID: sinkID, guard: .unlessLive)
    }

    /// A caller's delete (the gRPC API; a remote sinker's removal arrives here too): within `deleteGuard`.
    public func delete(sinkID: String) throws(CollectorServiceError) {
        try removeDesiredState(sinkID: sinkID, guard: deleteGuard)
    }

    /// Deletes the desired state within `removalGuard` and hands the sink to the reconciler, which
    /// deletes its objects.
    public func removeDesiredState(sinkID: String, guard removalGuard: DesiredStateStore.RemovalGuard) throws(CollectorServiceError) {
        try Self.validate(sinkID)
        let result = try stored { () throws(RedisError) in try storage.removeDesiredState(sinkID: sinkID, guard: removalGuard) }
        guard result != .refusedLive else {
            throw CollectorServiceError(.failedPrecondition,
                                        "sink \(sinkID) is live (its last event was not a removal): its collector follows the sink; remove the sink to remove it")
        }
        reconciler.enqueue(sinkID)
    }

    /// The objects a sink's collector would have, without storing or applying anything.
    public func render(sinkID: String, ownerID: String) throws(CollectorServiceError) -> RenderedCollector {
        try renderStoredConfig(sinkID: sinkID, ownerID: ownerID).rendered
    }

    /// The rendered objects and the digest of the config they were rendered from.
    private func renderStoredConfig(sinkID: String, ownerID: String) throws(CollectorServiceError) -> (rendered: RenderedCollector, configDigest: String) {
        try Self.validate(sinkID)
        guard let config = try stored({ () throws(RedisError) in try storage.config(of: sinkID) }) else {
            throw CollectorServiceError(.notFound, "sink \(sinkID) has no stored config")
        }
        let owner = ownerID.isEmpty ? config.ownerID : ownerID
        let inputs = CollectorInputs(sinkID: sinkID, ownerID: owner, configYAML: config.yaml, configHash: try hasher().hash(config.yaml))
        do {
            return (try withRenderer { try $0.render(inputs) }, DesiredStateStore.digest(ofConfig: config.yaml))
        } catch {
            throw CollectorServiceError(.failedPrecondition, "the template failed: \(error)")
        }
    }

    /// `create`, answering with the collector as stored (for the API: one round trip less than create, then get).
    public func createAndGet(sinkID: String, ownerID: String) throws(CollectorServiceError) -> CollectorInfo {
        try deploy(sinkID: sinkID, ownerID: ownerID)
    }

    public func updateAndGet(sinkID: String, ownerID: String) throws(CollectorServiceError) -> CollectorInfo {
        try deploy(sinkID: sinkID, ownerID: ownerID)
    }

    /// Renders the stored config and stores the objects as the desired state, merging the collector's
    /// record in the same step — only while the sink is live and its config is the one rendered (a
    /// config that changed meanwhile is rendered again), so a delayed call never undoes a newer event.
    @discardableResult
    private func deploy(sinkID: String, ownerID: String) throws(CollectorServiceError) -> CollectorInfo {
        for _ in 0..<Self.renderAttempts {
            let (rendered, configDigest) = try renderStoredConfig(sinkID: sinkID, ownerID: ownerID)
            let configHash = rendered.objects.lazy.compactMap {
                $0["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"]?.stringValue
            }.first ?? ""
            let result = try stored { () throws(RedisError) in
                try storage.storeDesiredState(sinkID: sinkID, configDigest: configDigest, yaml: rendered.yaml, ownerID: rendered.ownerID, extra: [
                    "collector_name": .string(rendered.name), "namespace": .string(rendered.namespace),
                    "config_hash": .string(configHash), "deployed_at": .string(StatusPublisher.rfc3339(Date())),
                ])
            }
            switch result {
            case .stored(let record):
                reconciler.enqueue(sinkID)
                return CollectorInfo(sinkID: sinkID, record: record)
            case .tombstoned:
                reconciler.enqueue(sinkID)
                throw CollectorServiceError(.notFound, "sink \(sinkID) was removed")
            case .noConfig:
                throw CollectorServiceError(.notFound, "sink \(sinkID) has no stored config")
            case .configChanged:
                continue
            }
        }
        throw CollectorServiceError(.unavailable, "the config of sink \(sinkID) kept changing while it was rendered; try again")
    }

    static let renderAttempts = 5

    public func get(sinkID: String) throws(CollectorServiceError) -> CollectorInfo {
        try Self.validate(sinkID)
        guard let record = try stored({ () throws(RedisError) in try storage.collectorRecord(of: sinkID) }) else {
            throw CollectorServiceError(.notFound, "sink \(sinkID) has no collector")
        }
        return CollectorInfo(sinkID: sinkID, record: record)
    }

    public func list() throws(CollectorServiceError) -> [CollectorInfo] {
        try stored { () throws(RedisError) in try storage.collectorRecords() }
            .map { CollectorInfo(sinkID: $0.key, record: $0.value) }
            .sorted { $0.sinkID < $1.sinkID }
    }

    /// Only an empty id, one over 253 bytes, or one with control characters is refused; any other id
    /// is mapped to a valid name.
    static func validate(_ sinkID: String) throws(CollectorServiceError) {
        guard !sinkID.isEmpty else { throw CollectorServiceError(.invalidArgument, "sink_id must not be empty") }
        guard sinkID.utf8.count <= 253 else { throw CollectorServiceError(.invalidArgument, "sink_id is longer than 253 bytes") }
        guard !sinkID.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw CollectorServiceError(.invalidArgument, "sink_id contains control characters")
        }
    }
}

/// A renderer handed between threads by the pool; used by one thread at a time.
final class PooledRenderer: @unchecked Sendable {
    let renderer: any CollectorRenderer
    let generation: Int
    init(renderer: any CollectorRenderer, generation: Int) {
        self.renderer = renderer
        self.generation = generation
    }
}
