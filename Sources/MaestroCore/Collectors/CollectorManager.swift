public import Logging
internal import MaestroRedis
internal import MaestroValue
internal import Foundation

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

/// The maestro role's `CollectorService`: the triggers of DESIGN "One reconcile, many triggers" that
/// callers reach (the sinker's hand-off, the gRPC API, the activity streams, a template reload). Each
/// records what it wants of the collector — guarded on the sink's current record, so a delayed call
/// never undoes a newer event — and queues the sink on the reconciler, which does the rest. A create
/// through the API waits for the reconcile it triggered to decide.
public final class CollectorManager: CollectorService {
    public let reconciler: Reconciler
    private let storage: any CollectorStorage
    private let logger: Logger
    /// What a caller's delete (the gRPC API) may remove: under `eager` the collector follows the sink,
    /// so only a removed sink's; under the other policies the caller owns the collector's life.
    public let deleteGuard: DesiredStateStore.RemovalGuard
    /// How long a create through the API waits for its reconcile to decide.
    public let decisionTimeout: Double

    public init(reconciler: Reconciler, logger: Logger, deleteGuard: DesiredStateStore.RemovalGuard = .unlessLive, decisionTimeout: Double = 30,
                makeRenderer: @escaping @Sendable () throws -> any CollectorRenderer) {
        self.deleteGuard = deleteGuard
        self.storage = reconciler.storage
        self.reconciler = reconciler
        self.logger = logger
        self.decisionTimeout = decisionTimeout
        reconciler.templates.replace(makeRenderer)
    }

    /// Switches to a new template (already checked by the caller) and queues every collector with a
    /// desired state: each reconcile renders it again and applies what changed. Returns how many.
    /// The collectors whose render changes roll out in waves (`FleetRollout`): the rollout starts before
    /// the template switches, so that no pass renders with the new template outside it.
    public func replaceTemplates(_ makeRenderer: @escaping @Sendable () throws -> any CollectorRenderer) -> Int {
        reconciler.fleet.begin(change: "template reload (generation \(reconciler.templates.generation + 1))")
        reconciler.templates.replace(makeRenderer)
        do {
            let sinkIDs = try storage.sinkIDsWithDesiredState()
            for sinkID in sinkIDs { reconciler.enqueue(sinkID) }
            return sinkIDs.count
        } catch {
            logger.error("cannot queue the collectors after a template change", metadata: ["error": "\(error.message)"])
            return 0
        }
    }

    /// A storage call; Redis failing is UNAVAILABLE to the caller.
    private func stored<R>(_ body: () throws(RedisError) -> R) throws(CollectorServiceError) -> R {
        do {
            return try body()
        } catch {
            throw CollectorServiceError(.unavailable, "Redis is unavailable: \(error.message)")
        }
    }

    // MARK: CollectorService

    /// Records that the collector should run and queues its reconcile (the sinker's hand-off and the
    /// activity stream: they do not wait).
    public func create(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        try want(sinkID: sinkID, ownerID: ownerID)
    }

    public func update(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        try want(sinkID: sinkID, ownerID: ownerID)
    }

    private func want(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        try Self.validate(sinkID)
        switch try stored({ () throws(RedisError) in try storage.want(sinkID: sinkID, ownerID: ownerID) }) {
        case .recorded:
            reconciler.enqueue(sinkID)
        case .tombstoned:
            // Its reconcile deletes whatever the removed sink still has.
            reconciler.enqueue(sinkID)
            throw CollectorServiceError(.notFound, "sink \(sinkID) was removed")
        case .noConfig:
            throw CollectorServiceError(.notFound, "sink \(sinkID) has no stored config")
        }
    }

    /// `create`, deciding at once (the reconcile's own decision, on the caller's thread) or waiting for
    /// the pass that holds the sink; answers with the collector's record (the API).
    public func createAndGet(sinkID: String, ownerID: String) throws(CollectorServiceError) -> CollectorInfo {
        try Self.validate(sinkID)
        return CollectorInfo(sinkID: sinkID, record: try reconciler.wantAndDecide(sinkID, ownerID: ownerID, timeout: decisionTimeout))
    }

    public func updateAndGet(sinkID: String, ownerID: String) throws(CollectorServiceError) -> CollectorInfo {
        try createAndGet(sinkID: sinkID, ownerID: ownerID)
    }

    /// The sinker's removal: removes the collector of a removed sink. Decided on the sink's current
    /// record: a sink that a newer event made live again keeps its collector (FAILED_PRECONDITION,
    /// which the sinker's hand-off takes as "superseded"); a sink with no record (configs written by
    /// Orb's own sinker) is the caller's to remove.
    public func remove(sinkID: String) throws(CollectorServiceError) {
        try stopWanting(sinkID: sinkID, intent: .stop, guard: .unlessLive)
    }

    /// A caller's delete (the gRPC API; a remote sinker's removal arrives here too): within `deleteGuard`.
    public func delete(sinkID: String) throws(CollectorServiceError) {
        try stopWanting(sinkID: sinkID, intent: .stop, guard: deleteGuard)
    }

    /// Orb's idle sink (`orb.sink_idle`): the objects go, the config and the record stay, status `idle`.
    public func idle(sinkID: String) throws(CollectorServiceError) {
        try stopWanting(sinkID: sinkID, intent: .idle, guard: .always)
    }

    private func stopWanting(sinkID: String, intent: DesiredStateStore.Intent, guard removalGuard: DesiredStateStore.RemovalGuard) throws(CollectorServiceError) {
        try Self.validate(sinkID)
        let result = try stored { () throws(RedisError) in try storage.stopWanting(sinkID: sinkID, intent: intent, guard: removalGuard) }
        guard result != .refusedLive else {
            throw CollectorServiceError(.failedPrecondition,
                                        "sink \(sinkID) is live (its last event was not a removal): its collector follows the sink; remove the sink to remove it")
        }
        if result == .removed { reconciler.enqueue(sinkID) }
    }

    /// The objects a sink's collector would have, without storing or applying anything.
    public func render(sinkID: String, ownerID: String) throws(CollectorServiceError) -> RenderedCollector {
        try Self.validate(sinkID)
        guard let config = try stored({ () throws(RedisError) in try storage.config(of: sinkID) }) else {
            throw CollectorServiceError(.notFound, "sink \(sinkID) has no stored config")
        }
        let key = try stored { () throws(RedisError) in try storage.installationKey() }
        let inputs = CollectorInputs(sinkID: sinkID, ownerID: ownerID.isEmpty ? config.ownerID : ownerID, configYAML: config.yaml,
                                     configHash: ConfigHasher(keyHex: key).hash(config.yaml))
        do {
            return try reconciler.templates.render(inputs)
        } catch {
            throw CollectorServiceError(.failedPrecondition, "the template failed: \(error)")
        }
    }

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
    /// The sink's rollout history; NOT_FOUND when it has none.
    public func history(sinkID: String) throws(CollectorServiceError) -> RolloutHistory {
        try Self.validate(sinkID)
        let history = try stored { () throws(RedisError) in try storage.rolloutHistory(of: sinkID) }
        guard !history.versions.isEmpty else { throw CollectorServiceError(.notFound, "sink \(sinkID) has no rollout history") }
        return history
    }

    /// `Reconciler.rollBack`: a rollback by hand, reconciled at once.
    public func rollBack(sinkID: String, to version: Int?) throws(CollectorServiceError) -> RolloutVersion {
        try Self.validate(sinkID)
        return try reconciler.rollBack(sinkID: sinkID, to: version)
    }

    static func validate(_ sinkID: String) throws(CollectorServiceError) {
        guard !sinkID.isEmpty else { throw CollectorServiceError(.invalidArgument, "sink_id must not be empty") }
        guard sinkID.utf8.count <= 253 else { throw CollectorServiceError(.invalidArgument, "sink_id is longer than 253 bytes") }
        guard !sinkID.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw CollectorServiceError(.invalidArgument, "sink_id contains control characters")
        }
    }
}
