internal import Foundation
public import Logging
internal import CoreMetrics

/// Safe rollouts, after the apply (DESIGN "Operating it"): the reconcile tells the watcher what it stored
/// and what the cluster shows; the watcher keeps the sink's history (`RolloutHistory`), and rolls a failed
/// rollout back to the last version that reached `active` — a failed Deployment rollout, pods of the new
/// template failing (a crash loop, an image that cannot be pulled…), or no `active` within
/// `rolloutTimeout`. The failed desired state is marked by its digest and not applied again (by a resync,
/// drift healing, a re-render or a rebuild) until the sink's render differs from it. Runs on the
/// reconcile's thread, under the sink's lock.
public struct RolloutWatcher: Sendable {
    let storage: any CollectorStorage
    let backend: any ClusterBackend
    let keep: Int
    let timeout: Double
    let logger: Logger

    public init(storage: any CollectorStorage, backend: any ClusterBackend, keep: Int, timeout: Double, logger: Logger) {
        self.storage = storage
        self.backend = backend
        self.keep = max(1, keep)
        self.timeout = timeout
        self.logger = logger
    }

    /// Why a rollout failed, as `maestro_rollbacks_total{reason}` counts it.
    public enum FailureReason: String, Sendable {
        case progressDeadline = "progress_deadline"
        case crashLoop = "crash_loop"
        case podsFailing = "pods_failing"
        case timeout
        case manual
    }

    /// Whether an `error` the cluster shows is a failed rollout, and of which kind (CollectorHealth's
    /// messages). Exporter failures read from the logs of a running collector are not: its pods run.
    static func failureReason(ofError message: String) -> FailureReason? {
        if message.hasPrefix("the collector's exporter") { return nil }
        if message.contains("ProgressDeadlineExceeded") { return .progressDeadline }
        if message.contains("CrashLoopBackOff") || message.contains("OOMKilled") { return .crashLoop }
        return .podsFailing
    }

    static func short(_ digest: String) -> String { String(digest.prefix(12)) }

    // MARK: before the store

    /// The desired state to keep instead of a render that is marked failed: the one rolled back to (stored
    /// as the desired state by the rollback). Nil: the render goes ahead (a changed render clears the mark
    /// when it is stored).
    func heldBack(rendered yaml: String, desiredState: String?, sinkID: String) throws -> String? {
        let history = try storage.rolloutHistory(of: sinkID)
        guard let failed = history.failed, RolloutHistory.digest(ofDesiredState: yaml) == failed.digest,
              let desiredState, RolloutHistory.digest(ofDesiredState: desiredState) != failed.digest else { return nil }
        return desiredState
    }

    /// A new desired state was stored: it is the version rolling out now.
    func stored(sinkID: String, yaml: String, configHash: String) throws {
        var history = try storage.rolloutHistory(of: sinkID)
        let before = history
        history.stored(digest: RolloutHistory.digest(ofDesiredState: yaml), configHash: configHash, now: Date().timeIntervalSince1970, keep: keep)
        if history != before { try storage.storeRolloutHistory(history, of: sinkID, desiredState: nil) }
    }

    // MARK: after the apply

    /// What the reconcile does with what the cluster shows of the desired state it applied.
    enum Verdict {
        /// Publish this status.
        case publish(SinkStatus, String)
        /// Publish this status and look again after `after` seconds (a rollout's deadline).
        case publishAndLookAgain(SinkStatus, String, after: Double)
        /// Roll back: `target` is stored as the desired state (done); apply it and publish `error` with
        /// `message`; `configHash` is the target's.
        case rollBack(target: DesiredCollector, configHash: String, message: String)
    }

    func observed(sinkID: String, desiredYAML: String, configHash: String, status: SinkStatus, message: String) throws -> Verdict {
        let digest = RolloutHistory.digest(ofDesiredState: desiredYAML)
        let now = Date().timeIntervalSince1970
        var history = try storage.rolloutHistory(of: sinkID)
        let before = history
        defer {
            if history != before { _ = try? storage.storeRolloutHistory(history, of: sinkID, desiredState: nil) }
        }
        // Running a rolled-back version: the sink's own config is not deployed, and its status says so
        // until the config changes.
        if let failed = history.failed, failed.digest != digest {
            if status == .active { history.reachedActive(digest: digest, yaml: desiredYAML, configHash: configHash, now: now, keep: keep) }
            return status == .error ? .publish(status, message) : .publish(.error, failed.message)
        }
        switch status {
        case .active, .warning:
            history.reachedActive(digest: digest, yaml: desiredYAML, configHash: configHash, now: now, keep: keep)
            return .publish(status, message)
        case .error, .provisioning:
            if history.versions.last(where: { $0.digest == digest }) == nil {
                history.stored(digest: digest, configHash: configHash, now: now, keep: keep)
            }
            // This runs after an apply the cluster accepted: the first one starts the rollout's deadline.
            if let last = history.versions.indices.last, history.versions[last].digest == digest, history.versions[last].appliedAt == nil {
                history.versions[last].appliedAt = now
            }
            // Only a rollout of the sink's own config is rolled back, never a rollback (no loop), and only
            // to a good version of something else.
            guard let current = history.latest, current.digest == digest, current.outcome == .pending, current.source == .update,
                  let target = history.lastGood(otherThan: digest), let targetYAML = target.yaml else { return .publish(status, message) }
            let reason: FailureReason
            let why: String
            if status == .error {
                guard let failure = Self.failureReason(ofError: message) else { return .publish(status, message) }
                reason = failure
                why = message
            } else {
                let elapsed = now - (current.appliedAt ?? now)
                guard elapsed >= timeout else { return .publishAndLookAgain(status, message, after: timeout - elapsed + 0.5) }
                reason = .timeout
                why = "the rollout of version \(current.version) was not active within \(Self.seconds(timeout))"
            }
            let rollbackMessage = "rolled back to version \(target.version) (\(Self.short(target.digest))): \(why)"
            let collector = try DesiredCollector(sinkID: sinkID, desiredStateYAML: targetYAML)
            history.rolledBack(failedDigest: digest, to: target, why: why, source: .rollback, message: rollbackMessage, now: now, keep: keep)
            // Written with the desired state, at once: the defer's write is of the same value.
            guard try storage.storeRolloutHistory(history, of: sinkID, desiredState: targetYAML) else {
                history = before
                return .publish(status, message)
            }
            Counter(label: "maestro_rollbacks_total", dimensions: [("reason", reason.rawValue)]).increment()
            logger.warning("rolled back a failed rollout", metadata: ["sink.id": "\(sinkID)", "rollout.reason": "\(reason.rawValue)",
                                                                      "rollout.version": "\(target.version)", "error": "\(why)"])
            return .rollBack(target: collector, configHash: target.configHash, message: rollbackMessage)
        default:
            return .publish(status, message)
        }
    }

    static func seconds(_ value: Double) -> String {
        value >= 60 && value.truncatingRemainder(dividingBy: 60) == 0 ? "\(Int(value / 60)) min" : "\(Int(value.rounded())) s"
    }

    /// An Event on the collector's Deployment, where the backend has them; a failure to record one is
    /// logged (Events are informative: the status and the history hold the facts).
    func report(_ event: CollectorEvent, about collector: DesiredCollector) {
        guard let recorder = backend as? any CollectorEventRecorder else { return }
        do {
            try recorder.record(event, about: collector)
        } catch {
            logger.warning("cannot record a Kubernetes event", metadata: ["sink.id": "\(collector.sinkID)", "event.reason": "\(event.reason)",
                                                                         "error": "\(error.message)"])
        }
    }

    // MARK: by hand

    /// `maestro rollback` and the gRPC `Rollback`: under the sink's lock, the version `to` (default: the
    /// newest good version other than the one deployed) becomes the desired state; the sink's current
    /// render is marked failed (so no pass re-applies it until it changes), and the rollback is a version
    /// of its own. The caller has the maestro role reconcile the sink then. Answers the new version.
    public static func rollBack(storage: any CollectorStorage, sinkID: String, to number: Int?, keep: Int,
                                lockTimeout: Double = 30, waitForLock: Double = 10) throws(CollectorServiceError) -> RolloutVersion {
        let token = UUID().uuidString
        let deadline = Date().addingTimeInterval(waitForLock)
        let snapshot: CollectorSnapshot
        do {
            while true {
                if let taken = try storage.acquireReconcileLock(sinkID: sinkID, token: token, milliseconds: Int(lockTimeout * 1000)) {
                    snapshot = taken
                    break
                }
                guard Date() < deadline else { throw CollectorServiceError(.unavailable, "sink \(sinkID) is being reconciled; try again") }
                Thread.sleep(forTimeInterval: 0.05)
            }
        } catch let error as CollectorServiceError {
            throw error
        } catch {
            throw CollectorServiceError(.unavailable, "Redis is unavailable: \(error)")
        }
        defer { try? storage.releaseReconcileLock(sinkID: sinkID, token: token) }
        do {
            guard snapshot.sink?.removed != true, let desired = snapshot.desiredState else {
                throw CollectorServiceError(.notFound, "sink \(sinkID) has no deployed collector")
            }
            var history = try storage.rolloutHistory(of: sinkID)
            let deployed = RolloutHistory.digest(ofDesiredState: desired)
            let target: RolloutVersion
            if let number {
                guard let version = history.version(number) else {
                    throw CollectorServiceError(.notFound, "sink \(sinkID) has no version \(number) (maestro history --sink-id \(sinkID))")
                }
                guard version.digest != deployed else {
                    throw CollectorServiceError(.failedPrecondition, "version \(number) of sink \(sinkID) is the one deployed")
                }
                guard version.yaml != nil, version.outcome == .active else {
                    throw CollectorServiceError(.failedPrecondition,
                                                "version \(number) of sink \(sinkID) never reached active or is no longer kept; only good versions can be rolled back to")
                }
                target = version
            } else {
                guard let version = history.lastGood(otherThan: deployed) else {
                    throw CollectorServiceError(.failedPrecondition, "sink \(sinkID) has no earlier good version to roll back to")
                }
                target = version
            }
            // Already rolled back: the render marked then stays the one held back.
            let failedDigest = history.failed?.digest ?? deployed
            let why = "rolled back by hand"
            let message = "rolled back by hand to version \(target.version) (\(short(target.digest))); the sink's config rolls out again when it changes"
            let version = history.rolledBack(failedDigest: failedDigest, to: target, why: why, source: .manualRollback, message: message,
                                             now: Date().timeIntervalSince1970, keep: keep)
            guard try storage.extendReconcileLock(sinkID: sinkID, token: token, milliseconds: Int(lockTimeout * 1000)),
                  try storage.storeRolloutHistory(history, of: sinkID, desiredState: target.yaml) else {
                throw CollectorServiceError(.unavailable, "sink \(sinkID) changed during the rollback; try again")
            }
            Counter(label: "maestro_rollbacks_total", dimensions: [("reason", FailureReason.manual.rawValue)]).increment()
            return version
        } catch let error as CollectorServiceError {
            throw error
        } catch {
            throw CollectorServiceError(.unavailable, "Redis is unavailable: \(error)")
        }
    }
}
