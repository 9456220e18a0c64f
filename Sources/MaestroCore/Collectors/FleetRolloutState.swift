internal import Foundation
public import MaestroRedis

/// Where a fleet rollout stands (`maestro rollout status`, `maestro:fleet-rollout` in Redis): the leader
/// writes it after every step, so that a leader change or a restart continues the rollout where it was.
public struct FleetRolloutState: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable {
        /// Waves are being released.
        case running
        /// `maestro rollout pause`: no new wave; the collectors already rolling finish.
        case paused
        /// Too many reached collectors failed: no new wave until `resume` (or `abort`).
        case halted
        /// `maestro rollout abort`: the collectors it reached are back on their previous desired state,
        /// and the change stays held until the next one.
        case aborted
        /// Every collector the change concerns was reached.
        case completed
    }

    /// What became of one collector the rollout reached.
    public enum Outcome: String, Codable, Sendable {
        /// Released; its gate has not decided yet.
        case rolling
        /// Reached `active` on the new desired state.
        case healthy
        /// Not `active` within the gate timeout, or failed (and was rolled back by its own watcher).
        case failed
        /// Its render did not change: nothing rolled.
        case unchanged
        /// It did not reach `active`, but it was already unhealthy before the change: not the change's failure.
        case unhealthyBefore = "unhealthy_before"
        /// Its collector was removed meanwhile.
        case gone
    }

    public struct Reached: Codable, Sendable, Equatable {
        public var wave: Int
        public var admittedAt: Double
        /// SHA-1 of the desired state before the change: what an abort returns to.
        public var previousDigest: String
        public var wasUnhealthy: Bool
        public var outcome: Outcome
        public var message: String
        /// An abort put the previous desired state back.
        public var restored: Bool
    }

    public var id: String
    /// What changed: a template reload, or a render that changed without one (a maestro upgrade).
    public var change: String
    public var startedAt: Double
    public var updatedAt: Double
    public var phase: Phase
    /// Why it is halted, aborted or what it superseded.
    public var reason: String
    /// Waves released so far (the canary is the first).
    public var waves: Int
    /// Size of the last wave that rolled something: the next one doubles it, up to `maxUnavailable`.
    public var lastWaveSize: Int
    public var canary: Int
    public var maxUnavailable: Int
    public var maxFailuresPercent: Int
    public var gateTimeout: Double
    /// Collectors not reached yet, in the order they are released.
    public var pending: [String]
    public var reached: [String: Reached]
    /// Collectors whose render the change did not touch, found before they were released.
    public var unchanged: [String]

    public var isActive: Bool { phase == .running || phase == .paused || phase == .halted }

    public func count(_ outcome: Outcome) -> Int { reached.values.filter { $0.outcome == outcome }.count }

    /// Collectors the change reached and rolled (not counting those it found unchanged or gone).
    public var rolled: Int { reached.values.filter { $0.outcome != .unchanged && $0.outcome != .gone }.count }

    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)).flatMap { String(data: $0, encoding: .utf8) } ?? "{}"
    }

    public init?(json: String?) {
        guard let json, let decoded = try? JSONDecoder().decode(FleetRolloutState.self, from: Data(json.utf8)) else { return nil }
        self = decoded
    }

    init(id: String, change: String, now: Double, options: FleetRolloutOptions, targets: [String]) {
        self.id = id
        self.change = change
        startedAt = now
        updatedAt = now
        phase = .running
        reason = ""
        waves = 0
        lastWaveSize = 0
        canary = max(1, Int((Double(targets.count) * Double(options.canaryPercent) / 100).rounded(.up)))
        maxUnavailable = options.maxUnavailable
        maxFailuresPercent = options.maxFailuresPercent
        gateTimeout = options.gateTimeout
        pending = targets
        reached = [:]
        unchanged = []
    }

    /// What `maestro rollout status` prints.
    public var summary: String {
        var lines = ["rollout \(id): \(phase.rawValue)", "change: \(change)"]
        lines.append("waves released: \(waves) (canary \(canary), at most \(maxUnavailable) rolling at once, halts past \(maxFailuresPercent)% failed, gate \(Int(gateTimeout)) s)")
        lines.append("reached: \(rolled)  healthy: \(count(.healthy))  rolling: \(count(.rolling))  failed: \(count(.failed))  "
                     + "unhealthy before: \(count(.unhealthyBefore))  unchanged: \(unchanged.count + count(.unchanged))  gone: \(count(.gone))  pending: \(pending.count)")
        if !reason.isEmpty { lines.append("why: \(reason)") }
        let failures = reached.filter { $0.value.outcome == .failed }.sorted { $0.key < $1.key }
        for (sinkID, entry) in failures.prefix(10) { lines.append("failed: \(sinkID): \(entry.message)") }
        let unrestored = reached.filter { $0.value.message.hasPrefix("not restored: ") }
        for (sinkID, entry) in unrestored.sorted(by: { $0.key < $1.key }).prefix(10) { lines.append("\(sinkID): \(entry.message)") }
        return lines.joined(separator: "\n")
    }
}

/// The settings of fleet rollouts (`--rollout-canary`, `--rollout-gate-timeout`, `--rollout-max-unavailable`,
/// `--rollout-max-failures`).
public struct FleetRolloutOptions: Sendable, Equatable {
    /// Share of the collectors a change concerns that is released first (at least one).
    public var canaryPercent: Int
    /// How long a released collector has to reach `active` on its new desired state.
    public var gateTimeout: Double
    /// At most this many collectors roll at once.
    public var maxUnavailable: Int
    /// The rollout halts when more than this share of the collectors it rolled failed.
    public var maxFailuresPercent: Int
    /// Off where the backend shows no health (the directory backend never reports `active`): a gate
    /// could never pass there, so a change would stop at its canary. Every collector then rolls at once.
    public var enabled = true

    public init(canaryPercent: Int = 5, gateTimeout: Double = 300, maxUnavailable: Int = 25, maxFailuresPercent: Int = 10) {
        self.canaryPercent = min(100, max(1, canaryPercent))
        self.gateTimeout = gateTimeout
        self.maxUnavailable = max(1, maxUnavailable)
        self.maxFailuresPercent = min(100, max(0, maxFailuresPercent))
    }
}

/// What `maestro rollout pause|resume|abort` asks of the leader (through `maestro:fleet-rollout-requests`);
/// replicas that are not the leader report what their passes saw the same way.
public enum FleetRolloutRequest: Sendable, Equatable {
    case pause, resume, abort
    /// A pass found the collector's render unchanged by rollout `id`.
    case unchanged(rolloutID: String, sinkID: String)
    /// A pass found a render changed with no rollout under way (a maestro upgrade).
    case unplanned

    public var encoded: String {
        switch self {
        case .pause: "pause"
        case .resume: "resume"
        case .abort: "abort"
        case .unplanned: "unplanned"
        case .unchanged(let rolloutID, let sinkID): "unchanged\t\(rolloutID)\t\(sinkID)"
        }
    }

    public init?(encoded: String) {
        switch encoded {
        case "pause": self = .pause
        case "resume": self = .resume
        case "abort": self = .abort
        case "unplanned": self = .unplanned
        default:
            let parts = encoded.split(separator: "\t", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "unchanged" else { return nil }
            self = .unchanged(rolloutID: String(parts[1]), sinkID: String(parts[2]))
        }
    }
}

extension RedisCollectorStorage {
    public func fleetRollout() throws(RedisError) -> String? {
        try withRedis { redis throws(RedisError) in try redis.command(["GET", names.fleetRollout]).string }
    }

    public func storeFleetRollout(_ json: String) throws(RedisError) {
        _ = try withRedis { redis throws(RedisError) in try redis.command(["SET", names.fleetRollout, json]) }
    }

    public func requestFleetRollout(_ request: String) throws(RedisError) {
        _ = try withRedis { redis throws(RedisError) in try redis.command(["RPUSH", names.fleetRolloutRequests, request]) }
    }

    public func takeFleetRolloutRequests(limit: Int) throws(RedisError) -> [String] {
        try withRedis { redis throws(RedisError) in
            let reply = try redis.eval(RolloutHistoryStore.takeScript, keys: [names.fleetRolloutRequests], arguments: [String(max(1, limit))])
            return (reply.array ?? []).compactMap(\.string)
        }
    }
}
