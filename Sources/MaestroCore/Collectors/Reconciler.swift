public import Foundation
public import Logging
public import MaestroRedis
public import MaestroValue
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
    /// Passes started a second once `passBurst` have gone at once (DESIGN: one rate-limited queue): a
    /// storm of triggers — a resync of thousands, a flood of watch events — is spread, not piled on
    /// Redis and the API at once. 0: no limit.
    public var passesPerSecond: Double
    public var passBurst: Int
    /// The time the pass limiter reads and waits on (a test's own).
    public var passClock: any KubeRateLimiterClock
    /// Desired states that reached `active` kept per sink, and how long a rollout may take before it is
    /// rolled back (`RolloutWatcher`).
    public var configHistory: Int
    public var rolloutTimeout: Double
    /// Passes run on the lease holder only (fenced leadership on Kubernetes): a standby hands each
    /// sink it was asked to reconcile to the leader (the reconcile requests list, read every second).
    public var passesOnLeaderOnly: Bool = false
    /// How fleet changes (a template reload, a maestro that renders differently) roll out (`FleetRollout`).
    public var fleet: FleetRolloutOptions

    public init(resyncInterval: Double = 300, orphanGrace: Double = 600, orphanMaxShare: Double = 0.10, workers: Int = 4,
                maximumBackoff: Double = 60, statusStreamMaxLength: Int = 100_000, checksEagerInvariant: Bool = false,
                invariantGrace: Double? = nil, lockTimeout: Double = 30, passesPerSecond: Double = 100, passBurst: Int = 200,
                passClock: any KubeRateLimiterClock = MonotonicClock(), configHistory: Int = 3, rolloutTimeout: Double = 300,
                fleet: FleetRolloutOptions = FleetRolloutOptions()) {
        self.fleet = fleet
        self.configHistory = max(1, configHistory)
        self.rolloutTimeout = rolloutTimeout
        self.passesPerSecond = passesPerSecond
        self.passBurst = passBurst
        self.passClock = passClock
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

/// The one reconcile per sink of DESIGN "One reconcile, many triggers". Every trigger — the sinker's
/// hand-off, a gRPC call, an activity or idle event, a template reload, the resync — records what it
/// wants in the collector's record (`intent`) and queues the sink; `reconcile` reads the sink's record
/// and config, the intent, the desired state and the collector's record, and is the only writer of the
/// desired state, the objects and the collector's status: it renders the config (with the template in
/// `templates`), stores the objects as the desired state when they changed, applies them, and publishes
/// what the cluster shows — or, for a collector that should not run, deletes the desired state and the
/// objects. One sink is reconciled by one worker of one replica at a time (a lock in the storage), so a
/// pass decided on an older state never lands after one decided on a newer. Failures retry with capped
/// backoff; every collector is re-checked on each resync, and objects whose sink has no desired state
/// are swept — after a grace period and never more than a share per pass, so that an emptied Redis
/// cannot tear down every collector.
public final class Reconciler: Sendable {
    public let options: ReconcilerOptions
    public let backend: any ClusterBackend
    public let storage: any CollectorStorage
    /// The template collectors are rendered with; `CollectorManager` installs and replaces it.
    public let templates = CollectorTemplates()
    private let logger: Logger
    private let isLeader: @Sendable () -> Bool
    private let state = Mutex(State())
    /// The workers and the resync loop.
    private let threads = BackgroundThreads()
    private let hashKey = Mutex<String?>(nil)
    private let passLimiter: KubeRateLimiter
    /// The component types of the images maestro knows (the plugins' `_components`), installed by the
    /// maestro role's wiring and replaced when the plugins reload. Configs are checked only while there
    /// are lists: a plugins folder without `_components/` turns the checks off (and maestro says so).
    private let componentLists = Mutex(CollectorComponentLists())
    /// The rollout history, failed marks and automatic rollbacks.
    let rollouts: RolloutWatcher
    /// The traced hand-offs waiting for their sink's pass (ReconcileTraces).
    let traces = ReconcileTraces()
    /// Fleet changes in waves: what a template reload re-renders is released by it.
    public let fleet: FleetRollout

    struct State {
        /// Collectors still provisioning: their status is polled (leader only), backing off to a minute.
        var observations: [String: (due: Date, attempt: Int)] = [:]
        var due = DueSinks()
        var active: Set<String> = []
        var attempts: [String: Int] = [:]
        /// Callers waiting for the next pass over a sink to decide (a gRPC create), and those the
        /// running pass answers.
        var waiting: [String: [ReconcileWaiter]] = [:]
        var answering: [String: [ReconcileWaiter]] = [:]
        /// Collectors an apply wrote after its pass had lost the sink's lock (an apply cannot be fenced):
        /// the next pass deletes them if the sink is not to run, even when no record names them any more.
        var strays: [String: (name: String, namespace: String)] = [:]
        var started = false
        var counters = ReconcilerCounters()
    }

    public init(storage: any CollectorStorage, backend: any ClusterBackend, options: ReconcilerOptions = ReconcilerOptions(),
                logger: Logger, isLeader: @escaping @Sendable () -> Bool = { true }) {
        self.storage = storage
        self.backend = backend
        self.options = options
        self.logger = logger
        self.isLeader = isLeader
        rollouts = RolloutWatcher(storage: storage, backend: backend, keep: options.configHistory, timeout: options.rolloutTimeout, logger: logger)
        passLimiter = KubeRateLimiter(queriesPerSecond: options.passesPerSecond, burst: options.passBurst, clock: options.passClock)
        fleet = FleetRollout(options: options.fleet, storage: storage, logger: logger, keepHistory: options.configHistory,
                             lockTimeout: options.lockTimeout, isLeader: isLeader)
        fleet.connect { [weak self] sinkID in self?.enqueue(sinkID) }
    }

    /// The reconciler on Redis.
    public convenience init(redisURL: RedisURL, names: RedisNames, backend: any ClusterBackend, options: ReconcilerOptions = ReconcilerOptions(),
                            logger: Logger, isLeader: @escaping @Sendable () -> Bool = { true }) {
        self.init(storage: RedisCollectorStorage(redisURL: redisURL, names: names, statusStreamMaxLength: options.statusStreamMaxLength),
                  backend: backend, options: options, logger: logger, isLeader: isLeader)
    }

    public var counters: ReconcilerCounters { state.withLock { $0.counters } }

    /// Checks every config by the collector's rules from now on, types against these lists (loaded
    /// and checked by the caller; empty lists turn the checks off); called again, switches to newer
    /// lists for the next passes.
    public func useComponentLists(_ lists: CollectorComponentLists) {
        let changed = componentLists.withLock { current -> Bool in
            defer { current = lists }
            return current != lists
        }
        // Other lists decide otherwise about stored configs: a refused one may pass now (its sink has no
        // desired state, only a provisioning_error), a running one may not. Before the start, the first
        // resync checks every sink anyway.
        guard changed, state.withLock({ $0.started }) else { return }
        do {
            for sinkID in try storage.sinkIDsWithDesiredState() { enqueue(sinkID) }
            for (sinkID, record) in try storage.collectorRecords() where record["status"]?.stringValue == SinkStatus.provisioningError.rawValue {
                enqueue(sinkID)
            }
        } catch {
            logger.warning("cannot queue the collectors after the component lists changed; the next resync checks them",
                           metadata: ["error": "\(error.message)"])
        }
    }

    /// Sinks waiting to be reconciled (and those being reconciled now).
    public var backlog: Int { state.withLock { $0.due.count + $0.active.count } }

    /// Asks for a sink to be reconciled (after `delay` seconds); repeated asks collapse into one.
    public func enqueue(_ sinkID: String, after delay: Double = 0) {
        let when = Date().addingTimeInterval(delay)
        traces.carry(sinkID)
        state.withLock { $0.due.schedule(sinkID, at: when) }
        threads.wake()
    }

    /// Queues the sink and waits until a pass that started after this call has decided what runs: the
    /// collector's record once its desired state is stored, or why it does not run (NOT_FOUND for a
    /// removed sink or one without config, FAILED_PRECONDITION when the template fails). The apply
    /// itself is not waited for: the cluster's answer arrives as status.
    public func reconcileAndWait(_ sinkID: String, timeout: Double = 30) throws(CollectorServiceError) -> Value {
        let waiter = ReconcileWaiter()
        state.withLock { $0.waiting[sinkID, default: []].append(waiter) }
        enqueue(sinkID)
        if let result = waiter.wait(timeout: timeout) { return try result.get() }
        state.withLock { state in
            state.waiting[sinkID]?.removeAll { $0 === waiter }
            state.answering[sinkID]?.removeAll { $0 === waiter }
            if state.waiting[sinkID]?.isEmpty == true { state.waiting[sinkID] = nil }
            if state.answering[sinkID]?.isEmpty == true { state.answering[sinkID] = nil }
        }
        throw CollectorServiceError(.unavailable, "sink \(sinkID) was not reconciled within \(Int(timeout)) s; try again")
    }

    private func answer(_ sinkID: String, _ result: Result<Value, CollectorServiceError>) {
        let waiters = state.withLock { $0.answering.removeValue(forKey: sinkID) ?? [] }
        for waiter in waiters { waiter.answer(result) }
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
                let taken = state.due.takeNext(now: Date(), skipping: state.active)
                guard let sinkID = taken.sinkID else { return (nil, taken.wait ?? 1) }
                state.active.insert(sinkID)
                // Whoever waits now is answered by this pass: it reads the state after they wrote it.
                if let waiters = state.waiting.removeValue(forKey: sinkID) {
                    state.answering[sinkID, default: []].append(contentsOf: waiters)
                }
                return (sinkID, 0)
            }
            if let sinkID { return sinkID }
            guard threads.pause(min(max(wait, 0.01), 1)) else { return nil }
        }
    }

    /// Waits (in short turns, so that a stop is not held up) until the backend's view of the cluster is
    /// complete, so that the first passes compare with the caches instead of writing what is already
    /// there — at most `readinessWait` seconds: a cluster whose caches cannot fill is then worked
    /// through the API. False when stopping.
    private func waitForBackend() -> Bool {
        let readyBy = Date().addingTimeInterval(Self.readinessWait)
        while !backend.waitUntilReady(timeout: 1) {
            if threads.isStopping { return false }
            if Date() >= readyBy {
                logger.warning("the caches of the cluster are not complete; working through the API")
                return true
            }
        }
        return !threads.isStopping
    }

    static let readinessWait: Double = 60

    private func runWorker() {
        guard waitForBackend() else { return }
        while let sinkID = next() {
            passLimiter.acquire()
            defer {
                // Every pass answers its waiters; one that ended before deciding answers here.
                answer(sinkID, .failure(CollectorServiceError(.unavailable, "the reconcile of sink \(sinkID) ended without a decision; try again")))
                // Asked for again while it ran: its turn is now.
                let dueAgain = state.withLock { state in
                    state.active.remove(sinkID)
                    return state.due.contains(sinkID)
                }
                if dueAgain { threads.wake() }
            }
            if options.passesOnLeaderOnly && !isLeader() {
                handToLeader(sinkID)
                continue
            }
            do {
                try traces.reconcile(sinkID) { try reconcile(sinkID) }
                Counter(label: "maestro_reconcile_total", dimensions: [("result", "ok")]).increment()
                state.withLock { _ = $0.attempts.removeValue(forKey: sinkID) }
            } catch is SinkBusy {
                // The pass that holds the lock may have read the state before the waiters wrote theirs.
                state.withLock { state in
                    if let waiters = state.answering.removeValue(forKey: sinkID) { state.waiting[sinkID, default: []].append(contentsOf: waiters) }
                }
                enqueue(sinkID, after: 0.2)
            } catch is RenderFailed {
                state.withLock { state in
                    state.counters.rejected += 1
                    state.attempts[sinkID] = nil
                }
                Counter(label: "maestro_reconcile_total", dimensions: [("result", "rejected")]).increment()
            } catch let error as ClusterError where error.kind == .notLeader {
                // The lease ran out under this pass: no retry here, the leader does the work.
                handToLeader(sinkID)
            } catch let error as ClusterError where error.kind == .rejected {
                state.withLock { state in
                    state.counters.rejected += 1
                    state.attempts[sinkID] = nil
                }
                Counter(label: "maestro_reconcile_total", dimensions: [("result", "rejected")]).increment()
                logger.warning("objects rejected", metadata: ["sink.id": "\(sinkID)", "error": "\(error.message)"])
            } catch {
                let attempt = state.withLock { state -> Int in
                    state.counters.failed += 1
                    state.attempts[sinkID, default: 0] += 1
                    return state.attempts[sinkID]!
                }
                answer(sinkID, .failure(CollectorServiceError(.unavailable, "the reconcile of sink \(sinkID) failed: \(error)")))
                let delay = Backoff(first: 1, maximum: options.maximumBackoff)
                    .delay(attempt: attempt, atLeast: (error as? ClusterError)?.retryAfter)
                Counter(label: "maestro_reconcile_total", dimensions: [("result", "retry")]).increment()
                logger.warning("reconcile failed, will retry", metadata: ["sink.id": "\(sinkID)", "error": "\(error)", "retry.seconds": "\(delay)"])
                enqueue(sinkID, after: delay)
            }
        }
    }

    /// A standby's (or a stepped-down leader's) sink goes to the leader, which takes the requests
    /// every second; when Redis cannot take it, the leader's resync finds the sink.
    private func handToLeader(_ sinkID: String) {
        Counter(label: "maestro_reconcile_total", dimensions: [("result", "handed_to_leader")]).increment()
        do {
            try storage.requestReconcile(sinkID: sinkID)
        } catch {
            logger.warning("cannot hand a sink to the leader; its resync will find it", metadata: ["sink.id": "\(sinkID)", "error": "\(error.message)"])
        }
    }

    /// One level-based pass over one sink, under the sink's lock.
    public func reconcile(_ sinkID: String) throws {
        let token = UUID().uuidString
        guard let snapshot = try storage.acquireReconcileLock(sinkID: sinkID, token: token, milliseconds: Int(options.lockTimeout * 1000)) else {
            throw SinkBusy()
        }
        defer { try? storage.releaseReconcileLock(sinkID: sinkID, token: token) }
        do {
            try reconcileLocked(sinkID, snapshot: snapshot, token: token)
        } catch let error as ClusterError where error.kind == .rejected {
            // Published under the lock: a newer pass's status is never overwritten by this one's.
            try holdLock(sinkID, token: token)
            try storage.publish(sinkID: sinkID, CollectorStatusChange(.provisioningError, message: "objects rejected: \(error.message)"))
            throw error
        }
    }

    /// Extends the sink's lock before a write; a pass that outlived its lock (paused past its expiry,
    /// another pass may have taken the sink since) stops here and is retried, writing nothing.
    private func holdLock(_ sinkID: String, token: String) throws {
        guard try storage.extendReconcileLock(sinkID: sinkID, token: token, milliseconds: Int(options.lockTimeout * 1000)) else {
            logger.warning("a reconcile outlived its lock; it stops and runs again", metadata: ["sink.id": "\(sinkID)"])
            throw SinkBusy()
        }
    }

    /// What a pass decided for a sink.
    enum Decision: Equatable {
        case run(ownerID: String, config: String)
        /// Not running; `idle` keeps the record (Orb's idle sinks); `why` answers a waiting create.
        case stop(idle: Bool, why: String)

        var runs: Bool {
            if case .run = self { return true }
            return false
        }
    }

    /// Whether the collector runs: it is wanted (its record's intent; a record without one was written
    /// by a maestro before intents, when a desired state meant "wanted"), the sink is not removed and
    /// its config is stored.
    static func decide(_ sinkID: String, _ snapshot: CollectorSnapshot) -> Decision {
        // A record last written by a maestro before intents (schema 1) may carry an intent a newer
        // replica wrote before: the older one's later writes (an idle, a create) did not change it.
        let current = (snapshot.record?[RecordSchema.field]?.intValue ?? 0) >= 2
        let intent = current ? snapshot.record?["intent"]?.stringValue.flatMap(DesiredStateStore.Intent.init(rawValue:)) : nil
        let wanted = intent.map { $0 == .run } ?? (snapshot.desiredState != nil)
        if snapshot.sink?.removed == true { return .stop(idle: false, why: "sink \(sinkID) was removed") }
        // Before intents, an idle collector was one whose record said so.
        let idle = intent.map { $0 == .idle } ?? (snapshot.record?["status"]?.stringValue == SinkStatus.idle.rawValue)
        guard wanted else { return .stop(idle: idle, why: "the collector of sink \(sinkID) was removed") }
        guard let config = snapshot.config else { return .stop(idle: false, why: "sink \(sinkID) has no stored config") }
        let owner = snapshot.record?["owner_id"]?.stringValue ?? ""
        return .run(ownerID: owner.isEmpty ? snapshot.sink?.ownerID ?? "" : owner, config: config)
    }

    static let renderAttempts = 5

    private func reconcileLocked(_ sinkID: String, snapshot first: CollectorSnapshot, token: String) throws {
        for attempt in 0..<Self.renderAttempts {
            let snapshot = attempt == 0 ? first : try storage.snapshot(of: sinkID)
            switch Self.decide(sinkID, snapshot) {
            case .stop(let idle, let why):
                answer(sinkID, .failure(CollectorServiceError(.notFound, why)))
                try stopCollector(sinkID, snapshot: snapshot, idle: idle, token: token)
                return
            case .run(let ownerID, let config):
                let stored: StoredDesiredState
                do {
                    stored = try storeDesiredState(sinkID, snapshot: snapshot, ownerID: ownerID, config: config, releasing: nil)
                } catch let failure as RenderFailed {
                    answer(sinkID, .failure(CollectorServiceError(.failedPrecondition, failure.message)))
                    throw failure
                }
                guard case .current(let desiredYAML, let record, _) = stored else { continue }
                answer(sinkID, .success(record))
                try applyDesiredState(sinkID, yaml: desiredYAML, ownerID: ownerID, record: record, token: token)
                return
            }
        }
        throw ClusterError(.failed, "the config of sink \(sinkID) kept changing while it was rendered")
    }

    /// A create's pass up to its decision, on the caller's thread, so that a gRPC create's answer waits
    /// neither for a free worker nor for other sinks' applies: the intent and the sink's lock (and what
    /// the pass reads) in one step, the render, the desired state stored and the lock released in
    /// another; the apply is left to a worker. When another pass holds the lock, or the config changed
    /// while it was rendered, the answer is the next worker pass's decision.
    public func wantAndDecide(_ sinkID: String, ownerID: String, timeout: Double = 30) throws(CollectorServiceError) -> Value {
        let token = UUID().uuidString
        let claimed: (intent: DesiredStateStore.IntentResult, snapshot: CollectorSnapshot?)
        do {
            claimed = try storage.wantAndLock(sinkID: sinkID, ownerID: ownerID, token: token, milliseconds: Int(options.lockTimeout * 1000))
        } catch {
            throw CollectorServiceError(.unavailable, "Redis is unavailable: \(error.message)")
        }
        switch claimed.intent {
        case .tombstoned:
            // Its reconcile deletes whatever the removed sink still has.
            enqueue(sinkID)
            throw CollectorServiceError(.notFound, "sink \(sinkID) was removed")
        case .noConfig:
            throw CollectorServiceError(.notFound, "sink \(sinkID) has no stored config")
        case .recorded:
            break
        }
        guard let snapshot = claimed.snapshot else { return try reconcileAndWait(sinkID, timeout: timeout) }
        var holdsLock = true
        defer {
            if holdsLock { try? storage.releaseReconcileLock(sinkID: sinkID, token: token) }
            enqueue(sinkID)
        }
        switch Self.decide(sinkID, snapshot) {
        case .stop(_, let why):
            throw CollectorServiceError(.notFound, why)
        case .run(let owner, let config):
            let stored: StoredDesiredState
            do {
                stored = try storeDesiredState(sinkID, snapshot: snapshot, ownerID: owner, config: config, releasing: token)
            } catch let failure as RenderFailed {
                throw CollectorServiceError(.failedPrecondition, failure.message)
            } catch {
                throw CollectorServiceError(.unavailable, "Redis is unavailable: \(error)")
            }
            switch stored {
            case .current(_, let record, let released):
                holdsLock = !released
                return record
            case .superseded:
                holdsLock = false
                enqueue(sinkID)
                return try reconcileAndWait(sinkID, timeout: timeout)
            }
        }
    }

    enum StoredDesiredState {
        /// The desired state is the one rendered now (stored by this pass, or already); `releasedLock`
        /// when the store released the lock too.
        case current(yaml: String, record: Value, releasedLock: Bool)
        /// The sink changed while it was rendered: decide again.
        case superseded
    }

    /// Renders the config and stores the objects when they differ from the desired state (releasing the
    /// lock `releasing` holds in the same step, whatever the store decided). A template that fails is the
    /// sink's provisioning error.
    private func storeDesiredState(_ sinkID: String, snapshot: CollectorSnapshot, ownerID: String, config: String,
                                   releasing token: String?) throws -> StoredDesiredState {
        let rendered: RenderedCollector
        let generation = templates.generation
        defer {
            // A template replaced while this pass rendered: the reload queued only sinks with a desired
            // state then, so this one renders again with the new template.
            if templates.generation != generation { enqueue(sinkID) }
        }
        do {
            rendered = try templates.render(CollectorInputs(sinkID: sinkID, ownerID: ownerID, configYAML: config,
                                                            configHash: try hasher().hash(config)))
        } catch let error as RedisError {
            throw error
        } catch {
            logger.warning("the template failed", metadata: ["sink.id": "\(sinkID)", "error": "\(error)"])
            try storage.publish(sinkID: sinkID, CollectorStatusChange(.provisioningError, message: "the template failed: \(error)", ownerID: ownerID))
            throw RenderFailed(message: "the template failed: \(error)")
        }
        // The collector's own rules, for the image the template runs, before anything is stored or
        // applied: a refused config leaves the desired state and the running collector as they are.
        let lists = componentLists.withLock { $0 }
        if lists.checksConfigs,
           let violation = CollectorConfigRules.violation(inYAML: config, components: Self.collectorImages(in: rendered.objects).lazy
               .compactMap { lists.components(forImage: $0) }.first) {
            logger.warning("collector config refused", metadata: ["sink.id": "\(sinkID)", "error": "\(violation)"])
            try storage.publish(sinkID: sinkID, CollectorStatusChange(.provisioningError, message: violation, ownerID: ownerID))
            throw RenderFailed(message: violation)
        }
        let configDigest = DesiredStateStore.digest(ofConfig: config)
        if rendered.yaml == snapshot.desiredState, let record = snapshot.record, record["collector_name"] != nil {
            fleet.unchanged(sinkID)
            return .current(yaml: rendered.yaml, record: record, releasedLock: false)
        }
        // A render whose rollout failed stays rolled back until the sink's render changes.
        if let record = snapshot.record, record["collector_name"] != nil,
           let kept = try rollouts.heldBack(rendered: rendered.yaml, desiredState: snapshot.desiredState, sinkID: sinkID) {
            return .current(yaml: kept, record: record, releasedLock: false)
        }
        // The same config rendering differently is a fleet change: it waits for its wave. A change of the
        // sink's own config is never held.
        if let record = snapshot.record, record["collector_name"] != nil, let current = snapshot.desiredState,
           try Self.renderedFromSameConfig(record, configDigest: configDigest, configHash: hasher().hash(config)), !fleet.admits(sinkID) {
            return .current(yaml: current, record: record, releasedLock: false)
        }
        let configHash = rendered.objects.lazy.compactMap {
            $0["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"]?.stringValue
        }.first ?? ""
        try rollouts.stored(sinkID: sinkID, yaml: rendered.yaml, configHash: configHash)
        switch try storage.storeDesiredState(sinkID: sinkID, configDigest: configDigest, yaml: rendered.yaml,
                                             ownerID: rendered.ownerID, extra: [
                                                 "config_digest": .string(configDigest),
                                                 "collector_name": .string(rendered.name), "namespace": .string(rendered.namespace),
                                                 "config_hash": .string(configHash), "deployed_at": .string(StatusPublisher.rfc3339(Date())),
                                             ], releasing: token) {
        case .stored(let record): return .current(yaml: rendered.yaml, record: record, releasedLock: token != nil)
        case .configChanged, .tombstoned, .noConfig: return .superseded
        }
    }

    /// Whether the collector's desired state was rendered from this config: the digest its store recorded,
    /// or (a record stored before digests were) the config hash the template wrote.
    static func renderedFromSameConfig(_ record: Value, configDigest: String, configHash: String) -> Bool {
        if let stored = record["config_digest"]?.stringValue { return stored == configDigest }
        return record["config_hash"]?.stringValue == configHash
    }

    /// The images of the rendered Deployments' containers: the collector image the template runs.
    static func collectorImages(in objects: [Value]) -> [String] {
        objects.filter { $0["kind"]?.stringValue == "Deployment" }.flatMap { deployment in
            (deployment["spec"]?["template"]?["spec"]?["containers"]?.listValue ?? []).compactMap { $0["image"]?.stringValue }
        }
    }

    /// A template failure, or a config the collector's rules refuse, is reported as the sink's status and
    /// not retried: the next trigger (a fixed config, a template reload, the resync) tries again.
    struct RenderFailed: Error {
        let message: String
    }

    private func hasher() throws(RedisError) -> ConfigHasher {
        if let key = hashKey.withLock({ $0 }) { return ConfigHasher(keyHex: key) }
        let key = try storage.installationKey()
        hashKey.withLock { $0 = key }
        return ConfigHasher(keyHex: key)
    }

    private func stopCollector(_ sinkID: String, snapshot: CollectorSnapshot, idle: Bool, token: String) throws {
        try holdLock(sinkID, token: token)
        if snapshot.desiredState != nil { _ = try storage.removeDesiredState(sinkID: sinkID, guard: .always) }
        let named = snapshot.record.flatMap { record -> (String, String)? in
            guard let name = record["collector_name"]?.stringValue, let namespace = record["namespace"]?.stringValue else { return nil }
            return (name, namespace)
        } ?? snapshot.desiredState.flatMap { try? DesiredCollector(sinkID: sinkID, desiredStateYAML: $0) }.map { ($0.name, $0.namespace) }
            ?? state.withLock { $0.strays[sinkID] }
        if let (name, namespace) = named {
            try backend.delete(sinkID: sinkID, name: name, namespace: namespace)
            state.withLock { state in
                state.counters.deleted += 1
                state.observations[sinkID] = nil
                state.strays[sinkID] = nil
            }
        }
        try holdLock(sinkID, token: token)
        // An idle collector comes back as it was; a removed one starts a new history.
        if !idle { try storage.forgetRolloutHistory(sinkID: sinkID) }
        if idle {
            try storage.publish(sinkID: sinkID, CollectorStatusChange(.idle))
        } else if snapshot.record != nil {
            try storage.forgetCollector(sinkID: sinkID)
        }
    }

    private func applyDesiredState(_ sinkID: String, yaml desiredYAML: String, ownerID: String, record: Value, token: String) throws {
        let collector: DesiredCollector
        do {
            collector = try DesiredCollector(sinkID: sinkID, desiredStateYAML: desiredYAML)
        } catch {
            throw ClusterError(.rejected, error.message)
        }
        try holdLock(sinkID, token: token)
        let result = try backend.apply(collector, previous: AppliedState(record: record))
        state.withLock { $0.counters.applied += 1 }
        if case .drifted(let paths) = result.outcome {
            state.withLock { $0.counters.driftCorrected += 1 }
            Counter(label: "maestro_drift_corrected_total").increment()
            logger.info("corrected drift: the cluster differed from the desired state",
                        metadata: ["sink.id": "\(sinkID)", "collector.name": "\(collector.name)", "drift.paths": "\(paths.joined(separator: ","))"])
        }
        do {
            try holdLock(sinkID, token: token)
        } catch {
            state.withLock { $0.strays[sinkID] = (collector.name, collector.namespace) }
            throw error
        }
        state.withLock { $0.strays[sinkID] = nil }
        let observed = try backend.observe(collector)
        try holdLock(sinkID, token: token)
        let verdict = try rollouts.observed(sinkID: sinkID, desiredYAML: desiredYAML, configHash: record["config_hash"]?.stringValue ?? "",
                                            status: observed.status, message: observed.message)
        switch verdict {
        case .publish(let status, let message), .publishAndLookAgain(let status, let message, _):
            // Accepted by the cluster: provisioning comes first, a transition of its own, even when the
            // collector is already seen further along.
            try publishObserved(sinkID, CollectorStatusChange(status, message: message, ownerID: ownerID,
                                                              extra: appliedFields(collector, result: result, record: record),
                                                              throughProvisioning: true), collector: collector)
            scheduleObservation(sinkID, status: status)
            if case .publishAndLookAgain(_, _, let after) = verdict { enqueue(sinkID, after: after) }
        case .rollBack(let target, let configHash, let message):
            try holdLock(sinkID, token: token)
            let rolledBack = try backend.apply(target, previous: result.applied)
            state.withLock { $0.counters.applied += 1 }
            try holdLock(sinkID, token: token)
            var fields = appliedFields(target, result: rolledBack, record: record)
            fields["config_hash"] = .string(configHash)
            try publishObserved(sinkID, CollectorStatusChange(.error, message: message, ownerID: ownerID, extra: fields), collector: target)
            rollouts.report(CollectorEvent(reason: "RolledBack", action: "Rollback", note: message, severity: .warning), about: target)
            scheduleObservation(sinkID, status: .provisioning)
        }
    }

    /// Publishes the status; a new `error` is also an Event on the collector's Deployment.
    private func publishObserved(_ sinkID: String, _ change: CollectorStatusChange, collector: DesiredCollector) throws {
        let events = try storage.publish(sinkID: sinkID, change)
        if events > 0, change.status == .error {
            rollouts.report(CollectorEvent(reason: "CollectorError", action: "Reconcile", note: change.message, severity: .warning), about: collector)
        }
    }

    /// The record's fields an apply sets: what it left, and when it last wrote (a pass that wrote nothing
    /// keeps the time of the last one).
    private func appliedFields(_ collector: DesiredCollector, result: ApplyResult, record: Value) -> [String: Value] {
        var fields: [String: Value] = ["collector_name": .string(collector.name), "namespace": .string(collector.namespace),
                                       "applied": result.applied.recordValue]
        if result.outcome != .unchanged || record["applied_at"] == nil { fields["applied_at"] = .string(StatusPublisher.rfc3339(Date())) }
        return fields
    }

    /// A collector still provisioning on a backend that can see pods but does not watch them is looked
    /// at again later, backing off to once a minute.
    private func scheduleObservation(_ sinkID: String, status: SinkStatus) {
        state.withLock { state in
            guard status == .provisioning, backend.name != "directory", !backend.watchesChanges else {
                state.observations[sinkID] = nil
                return
            }
            let attempt = (state.observations[sinkID]?.attempt ?? 0) + 1
            state.observations[sinkID] = (Date().addingTimeInterval(Backoff(first: 2, maximum: 60).delay(attempt: attempt)), attempt)
        }
    }

    /// Queues the collectors whose look is due: the reconcile looks, under the sink's lock (a look and a
    /// publish of its own could land after a newer pass removed the sink). Every replica polls what it
    /// applied.
    private func observeDue() {
        let now = Date()
        let due = state.withLock { state -> [String] in
            let due = state.observations.filter { $0.value.due <= now }.map(\.key)
            for sinkID in due { state.observations[sinkID]?.due = .distantFuture }
            return due
        }
        for sinkID in due { enqueue(sinkID) }
    }

    // MARK: resync and orphan sweep

    private func runResync() {
        var lastResync = Date.distantPast
        var wasLeader = false
        guard waitForBackend() else { return }
        while !threads.isStopping {
            observeDue()
            takeRollbackRequests()
            // A new leader resyncs at once: what the old one had in flight when it died is found now,
            // from the caches this replica filled as a standby.
            let leader = isLeader()
            if leader && !wasLeader { lastResync = .distantPast }
            wasLeader = leader
            fleet.tick()
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

    /// Rolls a sink back by hand (`RolloutWatcher.rollBack`) and reconciles it at once.
    @discardableResult
    public func rollBack(sinkID: String, to version: Int?) throws(CollectorServiceError) -> RolloutVersion {
        let rolledBack = try RolloutWatcher.rollBack(storage: storage, sinkID: sinkID, to: version, keep: options.configHistory,
                                                     lockTimeout: options.lockTimeout)
        enqueue(sinkID)
        return rolledBack
    }

    /// Sinks `maestro rollback` changed from another process: reconciled now rather than at the resync.
    private func takeRollbackRequests() {
        guard isLeader() else { return }
        do {
            for sinkID in try storage.takeReconcileRequests(limit: 100) { enqueue(sinkID) }
        } catch {
            logger.warning("cannot read the rollback requests", metadata: ["error": "\(error.message)"])
        }
    }

    /// Re-checks every collector with a desired state or a record, and sweeps orphans within the guard.
    public func resync() throws {
        let desired = Set(try storage.sinkIDsWithDesiredState())
        for sinkID in desired { enqueue(sinkID) }
        // A record without desired state: a removal whose delete did not finish (the process died
        // between its retries), or a create whose pass never ran. Idle collectors keep their record
        // on purpose and need nothing.
        let records = try storage.collectorRecords()
        for (sinkID, record) in records where !desired.contains(sinkID) {
            let intent = record["intent"]?.stringValue
            if record["status"]?.stringValue != SinkStatus.idle.rawValue || (intent != nil && intent != DesiredStateStore.Intent.idle.rawValue) {
                enqueue(sinkID)
            }
        }
        if options.checksEagerInvariant { try checkInvariant(desired: desired, records: records) }
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
            // Under the sink's lock, so that no pass stores and applies between the check and the
            // delete; a sink that got a desired state (or a create asked for one) since the scan is not
            // an orphan.
            let token = UUID().uuidString
            guard let snapshot = try storage.acquireReconcileLock(sinkID: orphan.sinkID, token: token,
                                                                  milliseconds: Int(options.lockTimeout * 1000)) else { continue }
            defer { try? storage.releaseReconcileLock(sinkID: orphan.sinkID, token: token) }
            if snapshot.desiredState != nil || Self.decide(orphan.sinkID, snapshot).runs { continue }
            try backend.delete(sinkID: orphan.sinkID, name: orphan.name, namespace: orphan.namespace)
            state.withLock { $0.counters.orphansDeleted += 1 }
            Counter(label: "maestro_orphans_deleted_total").increment()
            logger.info("deleted an orphaned collector", metadata: ["sink.id": "\(orphan.sinkID)", "collector.name": "\(orphan.name)"])
        }
    }

    /// DESIGN "One reconcile, many triggers": under `eager`, every live sink with a stored config has
    /// a desired state and no tombstoned sink has one. A breach means an event's effect was lost
    /// somewhere; it is repaired through the same intent and reconcile as any trigger, logged and counted.
    private func checkInvariant(desired: Set<String>, records: [String: Value]) throws {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for (sinkID, record) in try storage.sinkRecords() {
            // A younger breach may be an entry still on its way through the sinker.
            guard Double(now - record.updatedAtMilliseconds) >= options.invariantGrace * 1000 else { continue }
            if record.removed {
                guard desired.contains(sinkID) else { continue }
                repaired(sinkID, kind: "tombstoned_with_desired_state")
                enqueue(sinkID)
            } else if !desired.contains(sinkID),
                      // A template that fails is the sink's provisioning error, not a lost effect.
                      records[sinkID]?["status"]?.stringValue != SinkStatus.provisioningError.rawValue,
                      try storage.desiredState(of: sinkID) == nil {
                guard case .recorded = try storage.want(sinkID: sinkID, ownerID: record.ownerID) else { continue }
                repaired(sinkID, kind: "live_without_desired_state")
                enqueue(sinkID)
            }
        }
    }

    private func repaired(_ sinkID: String, kind: String) {
        state.withLock { $0.counters.invariantRepairs += 1 }
        Counter(label: "maestro_invariant_repairs_total", dimensions: [("kind", kind)]).increment()
        logger.error("repaired a breach of the desired-state invariant (a lost effect: please report it)",
                     metadata: ["sink.id": "\(sinkID)", "repair.kind": "\(kind)"])
    }
}

/// A caller blocked until a reconcile pass decides (answered once).
final class ReconcileWaiter: Sendable {
    private let result = Mutex<Result<Value, CollectorServiceError>?>(nil)
    private let signal = DispatchSemaphore(value: 0)

    func answer(_ outcome: Result<Value, CollectorServiceError>) {
        let first = result.withLock { current -> Bool in
            guard current == nil else { return false }
            current = outcome
            return true
        }
        if first { signal.signal() }
    }

    func wait(timeout: Double) -> Result<Value, CollectorServiceError>? {
        guard signal.wait(timeout: .now() + timeout) == .success else { return nil }
        return result.withLock { $0 }
    }
}
