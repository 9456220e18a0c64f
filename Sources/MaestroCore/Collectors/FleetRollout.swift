internal import Foundation
internal import Logging
internal import Synchronization
internal import CoreMetrics
internal import MaestroValue

/// Changes that reach the whole fleet, in waves (DESIGN "Operating it"). A fleet change is a render that
/// differs from a collector's desired state while its config is the one that desired state was rendered
/// from: a template reload, or a maestro that renders differently. The reconcile asks `admits` before it
/// stores such a render; until the rollout releases the collector, it keeps its desired state. The
/// leader's `tick` releases a canary share first, waits for the gate (each released collector `active`
/// on its new desired state within the gate timeout), then releases growing waves, never more than
/// `maxUnavailable` at once, and halts by itself when too many of the collectors it rolled failed.
/// `pause`, `resume` and `abort` arrive through Redis; an abort puts the previous desired state back on
/// the collectors the rollout reached. A sink's own events (a config change) are never held.
///
/// The state lives in Redis (`maestro:fleet-rollout`): the leader writes it after each step, the other
/// replicas read it to know what is released. A second change while one rolls supersedes it: the new
/// rollout starts over from its canary, with the collectors the older one reached released first.
public final class FleetRollout: Sendable {
    let options: FleetRolloutOptions
    private let storage: any CollectorStorage
    private let logger: Logger
    private let isLeader: @Sendable () -> Bool
    /// The reconciler's queue (connected after both exist).
    private let queue = Mutex<EnqueueBox?>(nil)
    private let keepHistory: Int
    private let lockTimeout: Double
    private let state = Mutex(Memory())

    struct Memory {
        /// The leader's working copy (written to Redis when it changed); the other replicas' last read.
        var rollout: FleetRolloutState?
        var written: FleetRolloutState?
        /// The leader read Redis since it became the leader.
        var loadedAsLeader = false
        /// What passes saw since the last tick (the leader's; others send them through Redis).
        var unchangedSeen: Set<String> = []
        var heldSeen: Set<String> = []
        var joining: Set<String> = []
        var unplanned = false
    }

    init(options: FleetRolloutOptions, storage: any CollectorStorage, logger: Logger, keepHistory: Int, lockTimeout: Double,
         isLeader: @escaping @Sendable () -> Bool) {
        self.options = options
        self.storage = storage
        self.logger = logger
        self.keepHistory = keepHistory
        self.lockTimeout = lockTimeout
        self.isLeader = isLeader
    }

    func connect(_ enqueue: @escaping @Sendable (String) -> Void) {
        queue.withLock { $0 = EnqueueBox(enqueue) }
    }

    private func enqueue(_ sinkID: String) {
        queue.withLock { $0 }?.call(sinkID)
    }

    /// The rollout as this replica knows it.
    public var current: FleetRolloutState? { state.withLock { $0.rollout } }

    // MARK: the reconcile's questions (any worker, under the sink's lock)

    /// Whether the collector may store a render that a fleet change made differ from its desired state.
    func admits(_ sinkID: String) -> Bool {
        guard options.enabled else { return true }
        let leader = isLeader()
        let (admitted, report) = state.withLock { memory -> (Bool, FleetRolloutRequest?) in
            guard let rollout = memory.rollout, rollout.phase != .completed else {
                memory.unplanned = true
                return (false, .unplanned)
            }
            if let entry = rollout.reached[sinkID], entry.outcome == .rolling || entry.outcome == .healthy || entry.outcome == .failed
                || entry.outcome == .unhealthyBefore {
                // Released: its later passes (a resync, drift) store what it was released to render.
                return (rollout.phase != .aborted, nil)
            }
            if rollout.pending.contains(sinkID) {
                memory.heldSeen.insert(sinkID)
            } else {
                // Created before the change but not among its targets, or found unchanged too early (a pass
                // between the rollout's start and the template's switch): it joins the rollout.
                memory.joining.insert(sinkID)
            }
            return (false, nil)
        }
        if !leader, let report { send(report) }
        return admitted
    }

    /// A pass found the collector's render equal to its desired state: the change needs nothing of it.
    func unchanged(_ sinkID: String) {
        let leader = isLeader()
        let rolloutID = state.withLock { memory -> String? in
            guard let rollout = memory.rollout, rollout.isActive else { return nil }
            let concerned = rollout.pending.contains(sinkID) || rollout.reached[sinkID]?.outcome == .rolling
            guard concerned else { return nil }
            memory.unchangedSeen.insert(sinkID)
            return rollout.id
        }
        if !leader, let rolloutID { send(.unchanged(rolloutID: rolloutID, sinkID: sinkID)) }
    }

    private func send(_ request: FleetRolloutRequest) {
        do {
            try storage.requestFleetRollout(request.encoded)
        } catch {
            logger.warning("cannot report to the fleet rollout's leader", metadata: ["error": "\(error.message)"])
        }
    }

    // MARK: changes

    /// A change that concerns every collector with a desired state (a template reload) starts a rollout,
    /// superseding one under way. On the leader only: the others follow the state it writes.
    @discardableResult
    func begin(change: String) -> FleetRolloutState? {
        guard options.enabled, isLeader() else { return nil }
        loadIfNeeded()
        let targets: [String]
        do {
            targets = try storage.sinkIDsWithDesiredState().sorted()
        } catch {
            logger.error("cannot start a fleet rollout; the collectors stay on their desired state until the next change or resync",
                         metadata: ["error": "\(error.message)"])
            return nil
        }
        let now = Date().timeIntervalSince1970
        let started = state.withLock { memory -> FleetRolloutState in
            var order = targets
            var note = ""
            if let previous = memory.rollout, previous.isActive {
                // The collectors the older change reached go first: they run neither the old nor the new render.
                let reachedBefore = Set(previous.reached.filter { $0.value.outcome != .unchanged && $0.value.outcome != .gone }.keys)
                order = targets.filter { reachedBefore.contains($0) } + targets.filter { !reachedBefore.contains($0) }
                note = "supersedes rollout \(previous.id) (\(previous.phase.rawValue), \(previous.rolled) collectors reached: they are re-rendered by this change first)"
            }
            var rollout = FleetRolloutState(id: Self.newID(now: now), change: change, now: now, options: options, targets: order)
            rollout.reason = note
            memory.rollout = rollout
            memory.unchangedSeen = []
            memory.heldSeen = []
            memory.joining = []
            memory.unplanned = false
            return rollout
        }
        logger.info("fleet rollout started", metadata: ["rollout.id": "\(started.id)", "rollout.change": "\(change)",
                                                         "rollout.collectors": "\(targets.count)", "rollout.canary": "\(started.canary)"])
        persist()
        return started
    }

    static func newID(now: Double) -> String {
        let stamp = Int(now * 1000)
        return "r\(stamp)-\(UUID().uuidString.prefix(6).lowercased())"
    }

    // MARK: the leader's steps

    /// One step (the resync loop's second): requests, the gate of the released collectors, halting, the
    /// next wave, an abort's restores; the state written when it changed. Other replicas read it.
    func tick() {
        guard options.enabled else { return }
        guard isLeader() else {
            state.withLock { $0.loadedAsLeader = false }
            do {
                let stored = FleetRolloutState(json: try storage.fleetRollout())
                state.withLock { $0.rollout = stored }
            } catch {
                logger.warning("cannot read the fleet rollout", metadata: ["error": "\(error.message)"])
            }
            return
        }
        loadIfNeeded()
        takeRequests()
        let startsUnplanned = state.withLock { memory in memory.unplanned && !(memory.rollout?.isActive ?? false) && memory.rollout?.phase != .aborted }
        if startsUnplanned {
            // Every collector is queued, so that each pass finds out whether its render changed.
            if begin(change: "the render changed without a template reload (a maestro upgrade, or new templates at start)") != nil {
                for sinkID in (try? storage.sinkIDsWithDesiredState()) ?? [] { enqueue(sinkID) }
            }
        }
        guard var rollout = state.withLock({ $0.rollout }) else { return }
        let seen = state.withLock { memory -> (unchanged: Set<String>, held: Set<String>, joining: Set<String>) in
            defer {
                memory.unchangedSeen = []
                memory.joining = []
            }
            return (memory.unchangedSeen, memory.heldSeen, memory.joining)
        }
        let now = Date().timeIntervalSince1970
        if rollout.isActive {
            for sinkID in seen.joining where rollout.reached[sinkID] == nil && !rollout.pending.contains(sinkID) {
                rollout.unchanged.removeAll { $0 == sinkID }
                rollout.pending.append(sinkID)
            }
            let unchangedPending = rollout.pending.filter { seen.unchanged.contains($0) }
            if !unchangedPending.isEmpty {
                rollout.pending.removeAll { seen.unchanged.contains($0) }
                rollout.unchanged.append(contentsOf: unchangedPending)
            }
            gate(&rollout, unchanged: seen.unchanged, now: now)
            halt(&rollout)
            if rollout.phase == .running { release(&rollout, held: seen.held, now: now) }
        }
        if rollout.phase == .aborted { restore(&rollout) }
        state.withLock { memory in
            // A change that began meanwhile (another thread's `begin`) wins.
            if memory.rollout?.id == rollout.id { memory.rollout = rollout }
        }
        persist()
        publishMetrics()
    }

    private func loadIfNeeded() {
        guard !state.withLock({ $0.loadedAsLeader }) else { return }
        do {
            let stored = FleetRolloutState(json: try storage.fleetRollout())
            state.withLock { memory in
                memory.rollout = stored
                memory.written = stored
                memory.loadedAsLeader = true
            }
            // The passes of the collectors rolling under the last leader report again to this one.
            for (sinkID, entry) in stored?.reached ?? [:] where entry.outcome == .rolling { enqueue(sinkID) }
            if stored?.isActive == true, let stored {
                logger.info("continuing the fleet rollout", metadata: ["rollout.id": "\(stored.id)", "rollout.phase": "\(stored.phase.rawValue)"])
            }
        } catch {
            logger.warning("cannot read the fleet rollout", metadata: ["error": "\(error.message)"])
        }
    }

    private func takeRequests() {
        let taken: [String]
        do {
            taken = try storage.takeFleetRolloutRequests(limit: 1000)
        } catch {
            logger.warning("cannot read the fleet rollout's requests", metadata: ["error": "\(error.message)"])
            return
        }
        for text in taken {
            guard let request = FleetRolloutRequest(encoded: text) else {
                logger.warning("ignored a malformed fleet rollout request", metadata: ["request": "\(text.prefix(100))"])
                continue
            }
            state.withLock { memory in
                switch request {
                case .unplanned:
                    memory.unplanned = true
                case .unchanged(let rolloutID, let sinkID):
                    if memory.rollout?.id == rolloutID { memory.unchangedSeen.insert(sinkID) }
                case .pause, .resume, .abort:
                    guard var rollout = memory.rollout, rollout.isActive else { return }
                    switch request {
                    case .pause:
                        rollout.phase = .paused
                        rollout.reason = "paused by maestro rollout pause"
                    case .resume:
                        rollout.phase = .running
                        rollout.reason = ""
                    default:
                        rollout.phase = .aborted
                        rollout.reason = "aborted by maestro rollout abort after \(rollout.waves) waves; the collectors it reached return to their previous desired state"
                        rollout.pending = []
                    }
                    memory.rollout = rollout
                }
            }
            if request == .resume, state.withLock({ $0.rollout?.phase == .aborted }) {
                // The aborted change, released again from its canary.
                if begin(change: "the render held since an aborted rollout, resumed by maestro rollout resume") != nil {
                    for sinkID in (try? storage.sinkIDsWithDesiredState()) ?? [] { enqueue(sinkID) }
                }
            }
            if [.pause, .resume, .abort].contains(request) {
                logger.warning("fleet rollout \(request.encoded)", metadata: ["rollout.id": "\(current?.id ?? "")"])
            }
        }
    }

    /// The health gate of every released collector still rolling.
    private func gate(_ rollout: inout FleetRolloutState, unchanged: Set<String>, now: Double) {
        for (sinkID, entry) in rollout.reached where entry.outcome == .rolling {
            var entry = entry
            do {
                try judge(sinkID, &entry, unchanged: unchanged.contains(sinkID), gateTimeout: rollout.gateTimeout, now: now)
            } catch {
                logger.warning("cannot read a released collector; its gate is checked again", metadata: ["sink.id": "\(sinkID)", "error": "\(error)"])
            }
            rollout.reached[sinkID] = entry
        }
    }

    private func judge(_ sinkID: String, _ entry: inout FleetRolloutState.Reached, unchanged: Bool, gateTimeout: Double, now: Double) throws {
        guard let desired = try storage.desiredState(of: sinkID) else {
            entry.outcome = .gone
            return
        }
        let history = try storage.rolloutHistory(of: sinkID)
        // The version the change stored (clocks of replicas may differ a little).
        let rolled = history.versions.last { $0.storedAt >= entry.admittedAt - 2 && $0.digest != entry.previousDigest && $0.source == .update }
        if rolled == nil, unchanged, RolloutHistory.digest(ofDesiredState: desired) == entry.previousDigest {
            entry.outcome = .unchanged
            return
        }
        func fail(_ why: String) {
            entry.outcome = entry.wasUnhealthy ? .unhealthyBefore : .failed
            entry.message = why
        }
        if let rolled {
            switch rolled.outcome {
            case .active:
                entry.outcome = .healthy
                return
            case .failed:
                fail(rolled.reason.isEmpty ? "its rollout failed" : rolled.reason)
                return
            case .pending, .superseded:
                let record = try storage.collectorRecord(of: sinkID)
                if record?["status"]?.stringValue == SinkStatus.error.rawValue, RolloutHistory.digest(ofDesiredState: desired) == rolled.digest {
                    fail(record?["error"]?.stringValue ?? "status error")
                    return
                }
            }
        }
        if now - entry.admittedAt >= gateTimeout {
            fail("not active within the gate timeout (\(RolloutWatcher.seconds(gateTimeout)))")
        }
    }

    private func halt(_ rollout: inout FleetRolloutState) {
        guard rollout.phase == .running || rollout.phase == .paused else { return }
        let failed = rollout.count(.failed)
        let rolled = rollout.reached.values.filter { $0.outcome != .unchanged && $0.outcome != .gone && $0.outcome != .unhealthyBefore }.count
        guard failed > 0, failed * 100 > rollout.maxFailuresPercent * max(1, rolled) else { return }
        let first = rollout.reached.filter { $0.value.outcome == .failed }.min { $0.key < $1.key }
        rollout.phase = .halted
        rollout.reason = "\(failed) of \(rolled) collectors rolled failed (over --rollout-max-failures \(rollout.maxFailuresPercent)%) in wave \(rollout.waves)"
            + (first.map { "; first: \($0.key): \($0.value.message)" } ?? "")
        Counter(label: "maestro_fleet_rollouts_halted_total").increment()
        logger.error("fleet rollout halted", metadata: ["rollout.id": "\(rollout.id)", "error": "\(rollout.reason)"])
    }

    /// Releases the next wave once the last one passed its gate; completes when nothing is left.
    private func release(_ rollout: inout FleetRolloutState, held: Set<String>, now: Double) {
        let rolling = rollout.count(.rolling)
        guard rolling == 0 else { return }
        guard !rollout.pending.isEmpty else {
            rollout.phase = .completed
            Counter(label: "maestro_fleet_rollouts_completed_total").increment()
            logger.info("fleet rollout completed", metadata: ["rollout.id": "\(rollout.id)", "rollout.collectors": "\(rollout.rolled)",
                                                               "rollout.waves": "\(rollout.waves)"])
            return
        }
        // The last wave rolled something: the next one doubles it. A wave that found only unchanged
        // collectors proves nothing, and the canary is released again at its size.
        let lastWave = rollout.reached.values.filter { $0.wave == rollout.waves }
        if rollout.waves > 0, lastWave.contains(where: { $0.outcome != .unchanged && $0.outcome != .gone }) {
            rollout.lastWaveSize = max(rollout.lastWaveSize, lastWave.count)
        }
        let size = min(rollout.maxUnavailable, rollout.lastWaveSize == 0 ? rollout.canary : rollout.lastWaveSize * 2)
        // Collectors known to change go first: a canary of unchanged collectors tests nothing.
        let known = rollout.pending.filter { held.contains($0) }
        let chosen = Array((known + rollout.pending.filter { !held.contains($0) }).prefix(size))
        let chosenSet = Set(chosen)
        rollout.pending.removeAll { chosenSet.contains($0) }
        rollout.waves += 1
        for sinkID in chosen {
            let snapshot: CollectorSnapshot
            do {
                snapshot = try storage.snapshot(of: sinkID)
            } catch {
                rollout.pending.insert(sinkID, at: 0)
                continue
            }
            guard let desired = snapshot.desiredState else {
                rollout.reached[sinkID] = .init(wave: rollout.waves, admittedAt: now, previousDigest: "", wasUnhealthy: false, outcome: .gone,
                                                message: "", restored: false)
                continue
            }
            let status = snapshot.record?["status"]?.stringValue
            rollout.reached[sinkID] = .init(wave: rollout.waves, admittedAt: now, previousDigest: RolloutHistory.digest(ofDesiredState: desired),
                                            wasUnhealthy: status == SinkStatus.error.rawValue || status == SinkStatus.provisioningError.rawValue,
                                            outcome: .rolling, message: "", restored: false)
        }
        // Written before the passes run: a leader that dies now leaves the wave released, not lost.
        state.withLock { memory in
            if memory.rollout?.id == rollout.id { memory.rollout = rollout }
        }
        persist()
        for sinkID in chosen where rollout.reached[sinkID]?.outcome == .rolling { enqueue(sinkID) }
        Counter(label: "maestro_fleet_rollout_waves_total").increment()
        logger.info("fleet rollout wave released", metadata: ["rollout.id": "\(rollout.id)", "rollout.wave": "\(rollout.waves)",
                                                               "rollout.wave.size": "\(chosen.count)", "rollout.pending": "\(rollout.pending.count)"])
    }

    /// Puts the previous desired state back on every collector the aborted rollout changed; one that is
    /// being reconciled now is tried again at the next step.
    private func restore(_ rollout: inout FleetRolloutState) {
        for (sinkID, entry) in rollout.reached where !entry.restored && entry.outcome != .unchanged && entry.outcome != .gone {
            var entry = entry
            switch restore(sinkID, rolloutID: rollout.id, previousDigest: entry.previousDigest) {
            case .done:
                entry.restored = true
            case .notKept(let why):
                // Not tried again: nothing it could return to is kept. `status` lists it.
                entry.restored = true
                entry.message = "not restored: " + why
            case .busy:
                continue
            }
            rollout.reached[sinkID] = entry
        }
    }

    enum Restored { case done, busy, notKept(String) }

    private func restore(_ sinkID: String, rolloutID: String, previousDigest: String) -> Restored {
        let token = UUID().uuidString
        do {
            guard let snapshot = try storage.acquireReconcileLock(sinkID: sinkID, token: token, milliseconds: Int(lockTimeout * 1000)) else {
                return .busy
            }
            defer { try? storage.releaseReconcileLock(sinkID: sinkID, token: token) }
            guard snapshot.sink?.removed != true, let desired = snapshot.desiredState else { return .done }
            let deployed = RolloutHistory.digest(ofDesiredState: desired)
            // Rolled back by its own watcher already, or never stored the change.
            guard deployed != previousDigest else { return .done }
            var history = try storage.rolloutHistory(of: sinkID)
            guard let target = history.versions.last(where: { $0.digest == previousDigest && $0.yaml != nil }) else {
                return .notKept("its previous desired state is not kept (it never reached active): it stays on the change")
            }
            let failedBefore = history.failed
            history.rolledBack(failedDigest: deployed, to: target, why: "fleet rollout \(rolloutID) aborted", source: .rollback,
                               message: "", now: Date().timeIntervalSince1970, keep: keepHistory)
            // The aborted rollout holds the change back, not a failed mark: the collector's status stays
            // what its pods show.
            history.failed = failedBefore
            guard try storage.extendReconcileLock(sinkID: sinkID, token: token, milliseconds: Int(lockTimeout * 1000)),
                  try storage.storeRolloutHistory(history, of: sinkID, desiredState: target.yaml) else { return .busy }
            enqueue(sinkID)
            return .done
        } catch {
            logger.warning("cannot restore a collector of the aborted rollout; trying again", metadata: ["sink.id": "\(sinkID)", "error": "\(error)"])
            return .busy
        }
    }

    private func persist() {
        let (rollout, written) = state.withLock { ($0.rollout, $0.written) }
        guard let rollout, rollout != written else { return }
        var stamped = rollout
        stamped.updatedAt = Date().timeIntervalSince1970
        do {
            try storage.storeFleetRollout(stamped.json)
            state.withLock { $0.written = rollout }
        } catch {
            logger.warning("cannot write the fleet rollout; written again at the next step", metadata: ["error": "\(error.message)"])
        }
    }

    private func publishMetrics() {
        guard let rollout = current else { return }
        for outcome in [FleetRolloutState.Outcome.rolling, .healthy, .failed, .unhealthyBefore] {
            Gauge(label: "maestro_fleet_rollout_collectors", dimensions: [("state", outcome.rawValue)]).record(rollout.count(outcome))
        }
        Gauge(label: "maestro_fleet_rollout_collectors", dimensions: [("state", "pending")]).record(rollout.pending.count)
        Gauge(label: "maestro_fleet_rollout_collectors", dimensions: [("state", "unchanged")]).record(rollout.unchanged.count + rollout.count(.unchanged))
        Gauge(label: "maestro_fleet_rollout_waves").record(rollout.waves)
        for phase in [FleetRolloutState.Phase.running, .paused, .halted, .aborted, .completed] {
            Gauge(label: "maestro_fleet_rollout_phase", dimensions: [("phase", phase.rawValue)]).record(rollout.phase == phase ? 1 : 0)
        }
    }
}

/// A closure kept in a `Mutex` lives in a class (scripts/check-boundaries).
final class EnqueueBox: Sendable {
    let call: @Sendable (String) -> Void
    init(_ call: @escaping @Sendable (String) -> Void) { self.call = call }
}
