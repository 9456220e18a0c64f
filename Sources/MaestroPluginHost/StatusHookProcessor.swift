public import Logging
public import MaestroCore
internal import MaestroLua
public import MaestroRedis
internal import MaestroValue

/// Scripted ops hooks: every plugin that binds `collector_status` gets `on_collector_status(event)` for
/// each status change on `orb.maestro.sink_status` (its own consumer group, so hooks never slow the
/// pipeline). A runtime error retries the entry (hooks should be idempotent); a terminal one
/// dead-letters it.
public final class StatusHookProcessor: StreamBatchProcessor {
    var runtime: PluginRuntime
    var plugins: [PluginManifest]
    let names: RedisNames
    let httpPolicy: HTTPHostPolicy
    let cluster: (any PluginCluster)?
    let generations: PluginGenerations?
    var generation = 0
    let logger: Logger

    public init(catalog: PluginCatalog, names: RedisNames, httpPolicy: HTTPHostPolicy, cluster: (any PluginCluster)? = nil,
                generations: PluginGenerations? = nil, logger: Logger) {
        let current = generations?.current ?? (number: 0, catalog: catalog)
        runtime = PluginRuntime(catalog: current.catalog, names: names, logger: logger, httpPolicy: httpPolicy, cluster: cluster)
        plugins = current.catalog.plugins.filter { $0.bindings.contains("collector_status") }
        generation = current.number
        self.names = names
        self.httpPolicy = httpPolicy
        self.cluster = cluster
        self.generations = generations
        self.logger = logger
    }

    public func process(_ batch: [DeliveredEntry], redis: RedisConnection) throws(RedisError) -> [EntryOutcome] {
        if let current = generations?.current, current.number != generation {
            runtime = PluginRuntime(catalog: current.catalog, names: names, logger: logger, httpPolicy: httpPolicy, cluster: cluster)
            plugins = current.catalog.plugins.filter { $0.bindings.contains("collector_status") }
            generation = current.number
        }
        runtime.redis.connection = redis
        return batch.map { delivered in
            let entry = delivered.entry
            guard let sinkID = entry["sink_id"], let status = entry["status"] else {
                return .deadLetter(reason: "status event without sink_id or status", plugin: nil)
            }
            let event: Value = .map([
                "sink_id": .string(sinkID), "owner_id": .string(entry["owner_id"] ?? ""), "status": .string(status),
                "error_message": .string(entry["error_message"] ?? ""), "timestamp": .string(entry["timestamp"] ?? ""),
            ])
            for plugin in plugins {
                do throws(LuaError) {
                    let vm = try runtime.machine(for: plugin)
                    guard vm.hasFunction("handler", "on_collector_status") else { continue }
                    try vm.setContext(.map(["plugin": .string(plugin.name), "event_id": .string(entry.id),
                                            "deliveries": .int(Int64(delivered.deliveries)), "sink_id": .string(sinkID)]))
                    _ = try runtime.invocation.handling(sinkID) { () throws(LuaError) in
                        try vm.call("handler", "on_collector_status", [event, plugin.settings])
                    }
                    do throws(ClusterError) {
                        try runtime.cluster.flush(event: "\(entry.id)|\(plugin.name)")
                    } catch {
                        // Validated whole before any write: a rejected queue wrote nothing and would
                        // fail the same way again.
                        if error.kind == .rejected { return .deadLetter(reason: "\(plugin.name): maestro.k8s: \(error)", plugin: plugin.name) }
                        return .retry(reason: "\(plugin.name): maestro.k8s: \(error)")
                    }
                } catch {
                    runtime.cluster.discard()
                    let reason = "\(plugin.name): \(error.message.split(separator: "\n").first ?? "")"
                    return error.isTerminal ? .deadLetter(reason: reason, plugin: plugin.name) : .retry(reason: reason)
                }
            }
            return .acknowledged
        }
    }
}
