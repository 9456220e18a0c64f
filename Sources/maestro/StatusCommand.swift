import ArgumentParser
import Foundation
import MaestroCommandLine
import MaestroCore
import MaestroRedis
import MaestroRoles
import MaestroValue
import MaestroYAML

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "A table of sinks, their collectors and their states (never a credential)."
    )

    @OptionGroup var settings: SettingsOptions

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let wiring = Wiring(configuration: configuration)
            let names = wiring.names
            let redis = try RedisConnection(url: wiring.redisURL())
            let records = try redis.hgetall(names.sinksHash)
            let collectors = try redis.hgetall(names.collectorsHash)
            let configs = Set(try redis.hgetall(names.configHash).keys)
            var rows: [[String]] = []
            for sinkID in Set(records.keys).union(collectors.keys).sorted() {
                let record = records[sinkID].flatMap(SinkRecord.init(json:))
                let collector = collectors[sinkID].flatMap { try? JSON.decode($0) }
                let config = record?.removed == true ? "removed" : (configs.contains(sinkID) ? "stored" : "-")
                let error = collector?["error"]?.stringValue ?? ""
                rows.append([sinkID, record?.ownerID ?? collector?["owner_id"]?.stringValue ?? "", record?.backend ?? "", config,
                             collector?["collector_name"]?.stringValue ?? "-", collector?["status"]?.stringValue ?? "-",
                             error.count > 60 ? String(error.prefix(59)) + "…" : error])
            }
            print(formatTable(["SINK", "OWNER", "BACKEND", "CONFIG", "COLLECTOR", "STATUS", "MESSAGE"], rows))
            let pending = (try? redis.xpendingSummary(names.sinksStream, group: names.sinkerGroup).count) ?? 0
            let deadLetters = (try? redis.xlen(names.deadLetterStream)) ?? 0
            print("\n\(rows.count) sinks; \(pending) events pending in \(names.sinkerGroup); \(deadLetters) dead letters in \(names.deadLetterStream)")
        }
    }
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Show how a sink's live objects differ from its desired state (what the next apply changes)."
    )

    @OptionGroup var settings: SettingsOptions

    @Option(name: .customLong("sink-id"), help: "The sink's id.")
    var sinkID: String

    @Flag(name: .customLong("server-dry-run"), help: "Compare with what the API server would store (dryRun=All), not the rendered objects.")
    var serverDryRun: Bool = false

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let wiring = Wiring(configuration: configuration)
            let redis = try RedisConnection(url: wiring.redisURL())
            guard let desiredText = try redis.hget(wiring.names.deploymentHash, field: sinkID) else {
                throw InvalidInput("sink \(sinkID) has no desired state in \(wiring.names.deploymentHash)")
            }
            let collector = try DesiredCollector(sinkID: sinkID, desiredStateYAML: desiredText)
            let desired = collector.objects
            let backend = try wiring.clusterBackend()
            let live = try backend.live(collector)
            var target = desired
            if serverDryRun {
                guard let kubernetes = backend as? KubernetesBackend else {
                    throw InvalidInput("--server-dry-run needs the kubernetes backend")
                }
                target = try kubernetes.dryRunApply(collector)
            }
            let lines = ObjectDiff.lines(desired: ObjectDiff.redacted(target), live: ObjectDiff.redacted(live))
            if lines.isEmpty {
                print("no difference: the live objects match the desired state")
            } else {
                print("--- live\n+++ desired")
                print(lines.joined(separator: "\n"))
            }
        }
    }
}
