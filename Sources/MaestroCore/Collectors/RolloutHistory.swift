internal import Foundation
public import MaestroValue
internal import MaestroRedis

/// One desired state of a sink as it rolled out: what `maestro history` lists.
public struct RolloutVersion: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        /// Applied, not yet seen `active`.
        case pending
        /// Reached `active`: a last known good version (its objects are kept while it is among the newest).
        case active
        /// Its rollout failed and was rolled back (or an operator rolled back from it).
        case failed
        /// Replaced by a newer desired state before its rollout ended.
        case superseded
    }

    public enum Source: String, Sendable {
        /// Rendered from the sink's config (a create, an update, a template re-render).
        case update
        /// Re-applied by an automatic rollback.
        case rollback
        /// Re-applied by `maestro rollback` or the gRPC `Rollback` call.
        case manualRollback = "manual_rollback"
    }

    public var version: Int
    /// SHA-1 of the desired state's YAML: what a failed mark names.
    public var digest: String
    /// The pod template's `maestro.orb.community/config-hash` (the HMAC of the collector config).
    public var configHash: String
    /// When it was stored, in seconds since the epoch.
    public var storedAt: Double
    /// When the cluster first accepted it: its rollout deadline runs from here, not from the store (a
    /// version stored while the API refused writes, or just before a restart, has not started rolling).
    public var appliedAt: Double?
    public var outcome: Outcome
    public var source: Source
    /// Why it failed, or which version a rollback re-applied and why.
    public var reason: String
    /// The version a rollback re-applied.
    public var rolledBackTo: Int?
    /// The desired state's YAML, kept for the newest good versions only (a rollback needs nothing else).
    public var yaml: String?

    public init(version: Int, digest: String, configHash: String, storedAt: Double, outcome: Outcome, source: Source,
                reason: String = "", rolledBackTo: Int? = nil, yaml: String? = nil) {
        self.version = version
        self.digest = digest
        self.configHash = configHash
        self.storedAt = storedAt
        self.outcome = outcome
        self.source = source
        self.reason = reason
        self.rolledBackTo = rolledBackTo
        self.yaml = yaml
    }

    var value: Value {
        var fields: [String: Value] = ["version": .int(Int64(version)), "digest": .string(digest), "config_hash": .string(configHash),
                                       "stored_at": .double(storedAt), "outcome": .string(outcome.rawValue), "source": .string(source.rawValue)]
        if !reason.isEmpty { fields["reason"] = .string(reason) }
        if let rolledBackTo { fields["rolled_back_to"] = .int(Int64(rolledBackTo)) }
        if let yaml { fields["yaml"] = .string(yaml) }
        if let appliedAt { fields["applied_at"] = .double(appliedAt) }
        return .map(fields)
    }

    init?(_ value: Value) {
        guard let version = value["version"]?.intValue, let digest = value["digest"]?.stringValue,
              let outcome = value["outcome"]?.stringValue.flatMap(Outcome.init(rawValue:)),
              let source = value["source"]?.stringValue.flatMap(Source.init(rawValue:)),
              RolloutHistory.versionNumbers.contains(Int(version)) else { return nil }
        self.init(version: Int(version), digest: digest, configHash: value["config_hash"]?.stringValue ?? "", storedAt: Self.seconds(value["stored_at"]) ?? 0,
                  outcome: outcome, source: source, reason: value["reason"]?.stringValue ?? "",
                  rolledBackTo: value["rolled_back_to"]?.intValue.map(Int.init).flatMap { RolloutHistory.versionNumbers.contains($0) ? $0 : nil },
                  yaml: value["yaml"]?.stringValue)
        appliedAt = Self.seconds(value["applied_at"])
    }

    private static func seconds(_ value: Value?) -> Double? {
        switch value {
        case .double(let seconds)?: return seconds
        case .int(let seconds)?: return Double(seconds)
        default: return nil
        }
    }
}

/// A rendered desired state that must not be applied again: its rollout failed (or an operator rolled
/// back from it). It stays marked until the sink's render differs from it — a new collector config from
/// the sinker, or a template whose output for this sink changed.
public struct FailedDesiredState: Sendable, Equatable {
    public var digest: String
    /// The version it was, and the one re-applied instead.
    public var version: Int
    public var rolledBackTo: Int
    /// The status message while the mark holds ("rolled back to version N …: why").
    public var message: String

    public init(digest: String, version: Int, rolledBackTo: Int, message: String) {
        self.digest = digest
        self.version = version
        self.rolledBackTo = rolledBackTo
        self.message = message
    }
}

/// A sink's rollout history (`orb.maestro.rollouts`, one JSON document per sink): its versions, newest
/// last, and the failed mark. Pure: the reconcile reads it, changes it under the sink's lock and writes it
/// back whole.
public struct RolloutHistory: Sendable, Equatable {
    public var versions: [RolloutVersion] = []
    public var nextVersion = 1

    /// The version numbers a document may hold: a sink rolls out far fewer times, and a number past them
    /// (a corrupt or hostile document) would overflow the next one. Versions outside are not read.
    static let versionNumbers = 1...Int(Int32.max)
    public var failed: FailedDesiredState?

    public init() {}

    /// The digest the history and the failed marks name a desired state by.
    public static func digest(ofDesiredState yaml: String) -> String { RedisScript.sha1Hex(yaml) }

    public var latest: RolloutVersion? { versions.last }

    /// The newest version that reached `active` with its objects kept, other than `digest`.
    public func lastGood(otherThan digest: String?) -> RolloutVersion? {
        versions.last { $0.outcome == .active && $0.yaml != nil && $0.digest != digest }
    }

    public func version(_ number: Int) -> RolloutVersion? { versions.first { $0.version == number } }

    /// A new desired state was stored from the sink's config: the rollout in progress (if any) is
    /// superseded, and a mark on an older render no longer holds (the input changed).
    public mutating func stored(digest: String, configHash: String, now: Double, keep: Int) {
        if latest?.digest == digest, latest?.source == .update { return }
        for index in versions.indices where versions[index].outcome == .pending { versions[index].outcome = .superseded }
        failed = nil
        append(RolloutVersion(version: nextVersion, digest: digest, configHash: configHash, storedAt: now, outcome: .pending, source: .update),
               keep: keep)
    }

    /// The desired state `digest` runs and is `active`: the newest version of it becomes a good one
    /// (with its objects, for a later rollback). A collector that was running before maestro kept
    /// history gets a first version here. Answers whether anything changed.
    @discardableResult
    public mutating func reachedActive(digest: String, yaml: String, configHash: String, now: Double, keep: Int) -> Bool {
        if let index = versions.lastIndex(where: { $0.digest == digest }) {
            if versions[index].outcome == .active && versions[index].yaml != nil { return false }
            // Only the newest version can run now; an older one of the same digest stays as it ended.
            guard index == versions.count - 1 else { return false }
            versions[index].outcome = .active
            versions[index].yaml = yaml
            trim(keep: keep)
            return true
        }
        append(RolloutVersion(version: nextVersion, digest: digest, configHash: configHash, storedAt: now, outcome: .active, source: .update,
                              yaml: yaml), keep: keep)
        return true
    }

    /// The rollout of the newest version failed (or an operator rolled back from it): it is marked failed
    /// by its digest (`failedDigest`: the render that must not be applied again), and `target` is
    /// re-applied as a version of its own. Answers the new version.
    @discardableResult
    public mutating func rolledBack(failedDigest: String, to target: RolloutVersion, why: String, source: RolloutVersion.Source,
                                    message: String, now: Double, keep: Int) -> RolloutVersion {
        var failedVersion = 0
        if let index = versions.lastIndex(where: { $0.digest == failedDigest }) {
            versions[index].outcome = .failed
            versions[index].reason = why
            versions[index].yaml = nil
            failedVersion = versions[index].version
        }
        for index in versions.indices where versions[index].outcome == .pending { versions[index].outcome = .superseded }
        let version = RolloutVersion(version: nextVersion, digest: target.digest, configHash: target.configHash, storedAt: now,
                                     outcome: .pending, source: source, reason: why, rolledBackTo: target.version, yaml: target.yaml)
        append(version, keep: keep)
        failed = FailedDesiredState(digest: failedDigest, version: failedVersion, rolledBackTo: target.version, message: message)
        return version
    }

    private mutating func append(_ version: RolloutVersion, keep: Int) {
        versions.append(version)
        nextVersion = max(nextVersion, version.version) + 1
        trim(keep: keep)
    }

    /// At most `keep` good versions keep their objects; versions older than the oldest good one kept are
    /// dropped, and at most `3 × keep` versions are listed in all.
    mutating func trim(keep: Int) {
        let keep = max(1, keep)
        let good = versions.indices.filter { versions[$0].outcome == .active && versions[$0].yaml != nil }
        if good.count > keep {
            for index in good.dropLast(keep) { versions[index].yaml = nil }
            let oldestKept = good[good.count - keep]
            versions.removeFirst(oldestKept)
        }
        if versions.count > 3 * keep { versions.removeFirst(versions.count - 3 * keep) }
    }

    public var value: Value {
        var fields: [String: Value] = ["versions": .list(versions.map(\.value)), "next_version": .int(Int64(nextVersion))]
        if let failed {
            fields["failed"] = .map(["digest": .string(failed.digest), "version": .int(Int64(failed.version)),
                                     "rolled_back_to": .int(Int64(failed.rolledBackTo)), "message": .string(failed.message)])
        }
        return .map(fields)
    }

    /// From the stored JSON; a document this version cannot read is an empty history (rollbacks then start
    /// from the next version that reaches `active`), never an error that stops the sink's reconcile.
    public init(json: String?) {
        guard let json, let value = try? JSON.decode(json) else { return }
        versions = (value["versions"]?.listValue ?? []).compactMap(RolloutVersion.init)
        let statedNext = value["next_version"]?.intValue.map(Int.init).flatMap { Self.versionNumbers.contains($0) ? $0 : nil } ?? 1
        nextVersion = max(statedNext, (versions.map(\.version).max() ?? 0) + 1)
        if let failed = value["failed"], let digest = failed["digest"]?.stringValue {
            let number = { (key: String) in failed[key]?.intValue.map(Int.init).flatMap { Self.versionNumbers.contains($0) ? $0 : nil } ?? 0 }
            self.failed = FailedDesiredState(digest: digest, version: number("version"), rolledBackTo: number("rolled_back_to"),
                                             message: failed["message"]?.stringValue ?? "")
        }
    }

    public var json: String { (try? JSON.encode(value)) ?? "{}" }
}
