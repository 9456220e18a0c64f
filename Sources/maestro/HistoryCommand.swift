import ArgumentParser
import Foundation
import MaestroCommandLine
import MaestroCore
import MaestroRedis
import MaestroRoles

struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "A sink's rollout history: each desired state with its time, hash and outcome (newest last)."
    )

    @OptionGroup var settings: SettingsOptions

    @Option(name: .customLong("sink-id"), help: "The sink's id.")
    var sinkID: String

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let wiring = Wiring(configuration: configuration)
            let redis = try RedisConnection(url: wiring.redisURL())
            let history = try RolloutHistoryStore.history(redis, names: wiring.names, sinkID: sinkID)
            guard !history.versions.isEmpty else {
                throw InvalidInput("sink \(sinkID) has no rollout history in \(wiring.names.rolloutsHash)")
            }
            print(formatTable(["VERSION", "STORED AT", "HASH", "CONFIG HASH", "SOURCE", "OUTCOME", "KEPT", "REASON"], Self.rows(history)))
            if let failed = history.failed {
                print("\nheld back: version \(failed.version) (\(failed.digest.prefix(12))) is not applied again until the sink's config or template output changes")
            }
        }
    }

    static func rows(_ history: RolloutHistory) -> [[String]] {
        history.versions.map { version in
            let source = version.rolledBackTo.map { "\(version.source.rawValue) to \($0)" } ?? version.source.rawValue
            let reason = version.reason.count > 60 ? String(version.reason.prefix(59)) + "…" : version.reason
            return [String(version.version), StatusPublisher.rfc3339(Date(timeIntervalSince1970: version.storedAt)), String(version.digest.prefix(12)),
                    String(version.configHash.prefix(12)), source, version.outcome.rawValue, version.yaml == nil ? "-" : "yes", reason]
        }
    }
}

struct RollbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Roll a sink's collector back to an earlier version that reached active (default: the newest other than the one deployed).",
        discussion: """
        The sink's config stays stored; its current render is held back until it changes. The running \
        maestro applies the rollback at once (it reads the request from Redis).
        """
    )

    @OptionGroup var settings: SettingsOptions

    @Option(name: .customLong("sink-id"), help: "The sink's id.")
    var sinkID: String

    @Option(name: .customLong("to"), help: "The version to roll back to (maestro history lists them).")
    var version: Int?

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let wiring = Wiring(configuration: configuration)
            let storage = RedisCollectorStorage(redisURL: try wiring.redisURL(), names: wiring.names)
            let rolledBack: RolloutVersion
            do {
                rolledBack = try RolloutWatcher.rollBack(storage: storage, sinkID: sinkID, to: version, keep: wiring.settings.configHistory)
            } catch let error as CollectorServiceError where error.kind != .unavailable {
                throw InvalidInput(error.message)
            }
            try storage.requestReconcile(sinkID: sinkID)
            print("sink \(sinkID): version \(rolledBack.version) re-applies version \(rolledBack.rolledBackTo ?? 0) (\(rolledBack.digest.prefix(12)))")
        }
    }
}
