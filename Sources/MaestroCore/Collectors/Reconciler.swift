public import Foundation
public import Logging
public import MaestroRedis
internal import MaestroValue
internal import Synchronization
internal import CoreMetrics

public struct ReconcilerOptions: Sendable {
    /// Every collector is checked again this often (drift, template upgrades, lost applies).
    public var resyncInterval: Double
    /// Objects of a sink with no desired state are deleted only when older than this.
    public var orphanGrace: Double
    /// At most this share of the managed collectors is deleted by one sweep.
    public var orphanMaxShare: Double
    public var workers: Int
    /// Retry delays double from 1 s up to this cap (or what Retry-After asks).
    public var maximumBackoff: Double
    public var statusStreamMaxLength: Int
    /// Under the `eager` policy every live sink with a stored config has a desired state; the resync
    /// checks it (and that no tombstoned sink has one) and repairs what it finds.
    public var checksEagerInvariant: Bool
    /// How long a sink must have been live without a desired state before the resync repairs it (its
    /// entry may still be on its way through the sinker until then).
    public var invariantGrace: Double
    /// How long one replica may hold a sink's reconcile lock before another may take it (a replica
    /// that died holding it).
    public var lockTimeout: Double

    public init(resyncInterval: Double = 300, orphanGrace: Double = 600, orphanMaxShare: Double = 0.10, workers: Int = 2,
                maximumBackoff: Double = 60, statusStreamMaxLength: Int = 100_000, checksEagerInvariant: Bool = false,
                invariantGrace: Double? = nil, lockTimeout: Double = 30) {
        self.resyncInterval = resyncInterval
        self.orphanGrace = orphanGrace
        self.orphanMaxShare = orphanMaxShare
        self.workers = max(1, workers)
        self.maximumBackoff = maximumBackoff
        self.statusStreamMaxLength = statusStreamMaxLength
        self.checksEagerInvariant = checksEagerInvariant
        self.invariantGrace = invariantGrace ?? resyncInterval
        self.lockTimeout = lockTimeout
    }
}

public struct ReconcilerCounters: Sendable, Equatable {
    public var applied = 0
    public var deleted = 0
    public var failed = 0
    public var rejected = 0
    public var orphansDeleted = 0
    public var resyncs = 0
    /// Re-applies of an unchanged desired state that changed the cluster: someone edited or deleted it.
    public var driftCorrected = 0
    /// Breaches of the desired-state invariant the resync found and repaired (each one is a bug).
    public var invariantRepairs = 0
}

/// Another replica (or worker) is reconciling the sink now: try again shortly.
struct SinkBusy: Error {}

/// Makes the cluster match the desired state in `orb.maestro.otelCollector` (level-based): a sink
/// with desired objects gets them applied, a sink without gets its objects deleted. Failures retry
/// with capped backoff; every collector is re-checked on each resync, and objects whose sink has no
/// desired state are swept — after a grace period and never more than a share per pass, so that an
/// emptied Redis cannot tear down every collector. Status changes go through the status publisher.
public final class Reconciler: Sendable {
    public let options: ReconcilerOptions
    public let backend: any ClusterBackend
    private let redisURL: RedisURL
    private let names: RedisNames
    private let logger: Logger
    private let isLeader: @Sendable () -> Bool
    private let state = Mutex(State())
    /// The workers and the resync loop.
    private let threads = BackgroundThreads()
    /// Renders and stores the desired state of a live sink (the maestro role's guarded deploy), for the
    /// invariant check's repairs; set once the collector service exists.
    private let desiredStateRenderer = Mutex<(@Sendable (_ sinkID: String, _ ownerID: String) throws -> Void)?>(nil)

    struct State {
        /// Collectors still provisioning: their status is polled (leader only), backing off to a minute.
        var observations: [String: (due: Date, attempt: Int)] = [:]
        var due: [String: Date] = [:]
        var active: Set<String> = []
        var attempts: [String: Int] = [:]
        /// The desired state each sink's objects were last applied from (a hash), to tell drift from change.
        var lastApplied: [String: Int] = [:]
        var started = false
        var counters = ReconcilerCounters()
    }

    public init(redisURL: RedisURL, names: RedisNames, backend: any ClusterBackend, options: ReconcilerOptions = ReconcilerOptions(),
                logger: Logger, isLeader: @escaping @Sendable () -> Bool = { true }) {
        self.redisURL = redisURL
        self.names = names
        self.backend = backend
        self.options = options
        self.logger = logger
        self.isLeader = isLeader
    }

    public var counters: ReconcilerCounters { state.withLock { $0.counters } }

    /// What the resync uses to repair a live sink without a desired state (`checksEagerInvariant`).
    public func setDesiredStateRenderer(_ render: @escaping @Sendable (_ sinkID: String, _ ownerID: String) throws -> Void) {
        desiredStateRenderer.withLock { $0 = render }
    }

    /// Sinks waiting to be reconciled (and those being reconciled now).
    public var backlog: Int { state.withLock { $0.due.count + $0.active.count } }

    /// Asks for a sink to be reconciled (after `delay` seconds); repeated asks collapse into one.
    public func enqueue(_ sinkID: String, after delay: Double = 0) {
        let when = Date().addingTimeInterval(delay)
        state.withLock { state in
            if let existing = state.due[sinkID], existing <= when { return }
            state.due[sinkID] = when
        }
        threads.wake()
    }

    public func start() {
        let first = state.withLock { state -> Bool in
            defer { state.started = true }
            return !state.started
        }
        guard first else { return }
        for index in 0..<options.workers {
            threads.spawn("maestro-reconciler-\(index)") { [self] in runWorker() }
        }
        threads.spawn("maestro-resync") { [self] in runResync() }
    }

    @discardableResult
    public func stop(timeout: TimeInterval = 30) -> Bool {
        threads.stop(timeout: timeout)
    }

    // MARK: workers

    private func next() -> String? {
        while true {
            let (sinkID, wait): (String?, Double) = state.withLock { state in
                if threads.isStopping { return (nil, 0) }
                let now = Date()
                let candidates = state.due.filter { !state.active.contains($0.key) }
                guard let earliest = candidates.min(by: { $0.value < $1.value }) else { return (nil, 1) }
                if earliest.value <= now {
                    state.due[earliest.key] = nil
                    state.active.insert(earliest.key)
                    return (earliest.key, 0)
                }
                return (nil, earliest.value.timeIntervalSince(now))
            }
            if let sinkID { return sinkID }
            guard threads.pause(min(max(wait, 0.01), 1)) else { return nil }
        }
    }

    private func runWorker() {
        var redis: RedisConnection?
        while let sinkID = next() {
            defer { _ = state.withLock { $0.active.remove(sinkID) } }
            do {
                if redis == nil || redis!.isBroken { redis = try RedisConnection(url: redisURL) }
                try reconcile(sinkID, redis: redis!)
                Counter(label: "maestro_reconcile_total", dimensions: [("result", "ok")]).increment()
                state.withLock { _ = $0.attempts.removeValue(forKey: sinkID) }
            } catch is SinkBusy {
                enqueue(sinkID, after: 0.2)
            } catch let error as ClusterError where error.kind == .rejected {
                state.withLock { state in
                    state.counters.rejected += 1
                    state.attempts[sinkID] = nil
                }
                Counter(label: "maestro_reconcile_total", dimensions: [("result", "rejected")]).increment()
                logger.warning("objects rejected", metadata: ["sink.id": "\(sinkID)", "error": "\(error.message)"])
                if let redis {
                    _ = try? StatusPublisher.publish(redis, names: names, sinkID: sinkID, ownerID: "", status: .provisioningError,
                                                     message: "objects rejected: \(error.message)")
                }
            } catch {
                let attempt = state.withLock { state -> Int in
                    state.counters.failed += 1
                    state.attempts[sinkID, default: 0] += 1
                    return state.attempts[sinkID]!
                }
                let delay = Backoff(first: 1, maximum: options.maximumBackoff)
                    .delay(attempt: attempt, atLeast: (error as? ClusterError)?.retryAfter)
                if (error as? RedisError)?.isConnectionFailure == true { redis?.close() }
                Counter(label: "maestro_reconcile_total", dimensions: [("result", "retry")]).increment()
                logger.warning("reconcile failed, will retry", metadata: ["sink.id": "\(sinkID)", "error": "\(error)", "retry.seconds": "\(delay)"])
                enqueue(sinkID, after: delay)
            }
        }
        redis?.close()
    }

    /// Takes the sink's reconcile lock: one sink is reconciled by one worker of one replica at a time,
    /// so an apply decided on an older desired state never lands after one decided on a newer.
    private func lock(_ sinkID: String, redis: RedisConnection) throws -> String {
        let token = UUID().uuidString
        guard try redis.set(names.reconcileLockPrefix + sinkID, token, onlyIfAbsent: true,
                            expireMilliseconds: Int(options.lockTimeout * 1000)) else { throw SinkBusy() }
        return token
    }

    private static let unlockScript = RedisScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")

    /// Releases the lock if this token still holds it — on a new connection when the pass failed because
    /// its own broke, so a Redis hiccup does not leave the sink locked until the lock expires.
    private func unlock(_ sinkID: String, token: String, redis: RedisConnection) {
        let release = { (connection: RedisConnection) throws(RedisError) in
            _ = try connection.eval(Self.unlockScript, keys: [self.names.reconcileLockPrefix + sinkID], arguments: [token])
        }
        do {
            try release(redis)
        } catch {
            guard let fresh = try? RedisConnection(url: redisURL) else { return }
            defer { fresh.close() }
            try? release(fresh)
        }
    }

    /// One level-based pass over one sink, under the sink's lock.
    public func reconcile(_ sinkID: String, redis: RedisConnection) throws {
        let token = try lock(sinkID, redis: redis)
        defer { unlock(sinkID, token: token, redis: redis) }
        try reconcileLocked(sinkID, redis: redis)
    }

    private func reconcileLocked(_ sinkID: String, redis: RedisConnection) throws {
        let record = try StatusPublisher.record(redis, names: names, sinkID: sinkID)
        guard let desiredYAML = try redis.hget(names.deploymentHash, field: sinkID) else {
            // No desired state: the collector must not run.
            if let name = record?["collector_name"]?.stringValue, let namespace = record?["namespace"]?.stringValue {
                try backend.delete(sinkID: sinkID, name: name, namespace: namespace)
                state.withLock { state in
                    state.counters.deleted += 1
                    state.lastApplied[sinkID] = nil
                }
            }
            if record?["status"]?.stringValue == SinkStatus.idle.rawValue {
                return
            }
            try DesiredStateStore.forgetCollector(redis, names: names, sinkID: sinkID)
            return
        }
        let collector: DesiredCollector
        do {
            collector = try DesiredCollector(sinkID: sinkID, desiredStateYAML: desiredYAML)
        } catch {
            throw ClusterError(.rejected, error.message)
        }
        let (name, namespace) = (collector.name, collector.namespace)
        let outcome = try backend.apply(collector)
        let corrected = state.withLock { state -> Bool in
            state.counters.applied += 1
            let drifted = outcome == .changed && state.lastApplied[sinkID] == desiredYAML.hashValue
            state.lastApplied[sinkID] = desiredYAML.hashValue
            if drifted { state.counters.driftCorrected += 1 }
            return drifted
        }
        if corrected {
            Counter(label: "maestro_drift_corrected_total").increment()
            logger.info("corrected drift: the cluster differed from the desired state", metadata: ["sink.id": "\(sinkID)", "collector.name": "\(name)"])
        }
        let owner = record?["owner_id"]?.stringValue ?? ""
        let current = record?["status"]?.stringValue
        let observed = try backend.observe(collector)
        if observed.status != .provisioning,
           ![SinkStatus.provisioning, .active, .warning, .error].map(\.rawValue).contains(current ?? "") {
            // Accepted by the cluster: provisioning comes first, a transition of its own, even when the
            // collector is already seen further along.
            try StatusPublisher.publish(redis, names: names, sinkID: sinkID, ownerID: owner, status: .provisioning)
        }
        try StatusPublisher.publish(redis, names: names, sinkID: sinkID, ownerID: owner, status: observed.status, message: observed.message,
                                    extra: ["collector_name": .string(name), "namespace": .string(namespace),
                                            "applied_at": .string(StatusPublisher.rfc3339(Date()))])
        scheduleObservation(sinkID, status: observed.status, attempt: 0)
    }

    /// A collector that is still provisioning on a backend that can see pods is looked at again later.
    private func scheduleObservation(_ sinkID: String, status: SinkStatus, attempt: Int) {
        state.withLock { state in
            guard status == .provisioning, backend.name != "directory" else {
                state.observations[sinkID] = nil
                return
            }
            // `attempt` counts the looks already taken: the first comes 2 s after the apply.
            let delay = Backoff(first: 2, maximum: 60).delay(attempt: attempt + 1)
            state.observations[sinkID] = (Date().addingTimeInterval(delay), attempt + 1)
        }
    }

    /// Polls the status of due collectors (bounded: each backs off to once a minute).
    private func observeDue(_ redis: RedisConnection) throws {
        let now = Date()
        let due = state.withLock { state -> [(String, Int)] in
            state.observations.filter { $0.value.due <= now }.map { ($0.key, $0.value.attempt) }
        }
        for (sinkID, attempt) in due {
            guard let desiredYAML = try redis.hget(names.deploymentHash, field: sinkID),
                  let collector = try? DesiredCollector(sinkID: sinkID, desiredStateYAML: desiredYAML) else {
                state.withLock { $0.observations[sinkID] = nil }
                continue
            }
            let observed = try backend.observe(collector)
            let owner = try StatusPublisher.record(redis, names: names, sinkID: sinkID)?["owner_id"]?.stringValue ?? ""
            try StatusPublisher.publish(redis, names: names, sinkID: sinkID, ownerID: owner, status: observed.status, message: observed.message)
            scheduleObservation(sinkID, status: observed.status, attempt: attempt)
        }
    }

    // MARK: resync and orphan sweep

    private func runResync() {
        var lastResync = Date.distantPast
        var redis: RedisConnection?
        while !threads.isStopping {
            if isLeader() {
                do {
                    if redis == nil || redis!.isBroken { redis = try RedisConnection(url: redisURL) }
                    try observeDue(redis!)
                } catch {
                    redis?.close()
                    logger.warning("status polling failed", metadata: ["error": "\(error)"])
                }
            }
            if Date().timeIntervalSince(lastResync) >= options.resyncInterval {
                lastResync = Date()
                if isLeader() {
                    do {
                        try resync()
                    } catch {
                        logger.warning("resync failed", metadata: ["error": "\(error)"])
                    }
                }
            }
            threads.pause(min(1, options.resyncInterval))
        }
    }

    /// Re-checks every collector with a desired state, and sweeps orphans within the guard.
    public func resync() throws {
        let redis = try RedisConnection(url: redisURL)
        defer { redis.close() }
        var desired = Set<String>()
        var cursor = "0"
        repeat {
            let page = try redis.hscan(names.deploymentHash, cursor: cursor, count: 500)
            cursor = page.cursor
            for (sinkID, _) in page.fields { desired.insert(sinkID) }
        } while cursor != "0"
        for sinkID in desired { enqueue(sinkID) }
        // A collector record without desired state: a removal whose delete did not finish (the process
        // died between its retries). Reconciling it deletes what is left and then the record; idle
        // collectors keep their record on purpose.
        cursor = "0"
        repeat {
            let page = try redis.hscan(names.collectorsHash, cursor: cursor, count: 500)
            cursor = page.cursor
            for (sinkID, json) in page.fields where !desired.contains(sinkID) {
                if (try? JSON.decode(json))?["status"]?.stringValue != SinkStatus.idle.rawValue { enqueue(sinkID) }
            }
        } while cursor != "0"
        if options.checksEagerInvariant { try checkInvariant(redis, desired: desired) }
        state.withLock { $0.counters.resyncs += 1 }
        Counter(label: "maestro_resyncs_total").increment()

        let managed = try backend.managedCollectors()
        let now = Date().timeIntervalSince1970
        let orphans = managed.filter { !desired.contains($0.sinkID) && (now - ($0.createdAt ?? now)) >= options.orphanGrace }
        guard !orphans.isEmpty else { return }
        let limit = max(1, Int(Double(managed.count) * options.orphanMaxShare))
        if orphans.count > limit {
            logger.warning("more orphaned collectors than one sweep may delete; the rest waits for the next resync",
                           metadata: ["orphans.count": "\(orphans.count)", "orphans.limit": "\(limit)", "orphans.managed": "\(managed.count)"])
        }
        for orphan in orphans.prefix(limit) {
            // A sink that got a desired state since the scan is not an orphan.
            if try redis.hget(names.deploymentHash, field: orphan.sinkID) != nil { continue }
            try backend.delete(sinkID: orphan.sinkID, name: orphan.name, namespace: orphan.namespace)
            state.withLock { $0.counters.orphansDeleted += 1 }
            Counter(label: "maestro_orphans_deleted_total").increment()
            logger.info("deleted an orphaned collector", metadata: ["sink.id": "\(orphan.sinkID)", "collector.name": "\(orphan.name)"])
        }
    }

    /// DESIGN "One reconcile, many triggers": under `eager`, every live sink with a stored config has
    /// a desired state and no tombstoned sink has one. A breach means an event's effect was lost
    /// somewhere; it is repaired through the same guarded writes as any trigger, logged and counted.
    private func checkInvariant(_ redis: RedisConnection, desired: Set<String>) throws {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var cursor = "0"
        repeat {
            let page = try redis.hscan(names.sinksHash, cursor: cursor, count: 500)
            cursor = page.cursor
            for (sinkID, json) in page.fields {
                guard let record = SinkRecord(json: json) else { continue }
                // A younger breach may be an entry still on its way through the sinker.
                guard Double(now - record.updatedAtMilliseconds) >= options.invariantGrace * 1000 else { continue }
                if record.removed {
                    guard desired.contains(sinkID),
                          try DesiredStateStore.remove(redis, names: names, sinkID: sinkID, guard: .unlessLive) == .removed else { continue }
                    repaired(sinkID, kind: "tombstoned_with_desired_state")
                    enqueue(sinkID)
                } else if !desired.contains(sinkID),
                          try redis.hget(names.deploymentHash, field: sinkID) == nil,
                          try redis.hget(names.configHash, field: sinkID) != nil,
                          let render = desiredStateRenderer.withLock({ $0 }) {
                    do {
                        try render(sinkID, record.ownerID)
                        repaired(sinkID, kind: "live_without_desired_state")
                    } catch {
                        logger.warning("a live sink has no desired state and rendering it failed",
                                       metadata: ["sink.id": "\(sinkID)", "error": "\(error)"])
                    }
                }
            }
        } while cursor != "0"
    }

    private func repaired(_ sinkID: String, kind: String) {
        state.withLock { $0.counters.invariantRepairs += 1 }
        Counter(label: "maestro_invariant_repairs_total", dimensions: [("kind", kind)]).increment()
        logger.error("repaired a breach of the desired-state invariant (a lost effect: please report it)",
                     metadata: ["sink.id": "\(sinkID)", "repair.kind": "\(kind)"])
    }
}
