public import Logging
public import MaestroCore
internal import MaestroLua
public import MaestroRedis
public import MaestroValue

/// Scripted ops hooks: every plugin that binds `collector_status` gets `on_collector_status(event)` for
/// each status change on `orb.maestro.sink_status` (its own consumer group, so hooks never slow the
/// pipeline). A runtime error retries the entry (hooks should be idempotent); a terminal one
/// dead-letters it.
public final class StatusHookProcessor: StreamBatchProcessor {
    let runtime: PluginRuntime
    let plugins: [PluginManifest]
    let logger: Logger

    public init(catalog: PluginCatalog, names: RedisNames, httpPolicy: HTTPHostPolicy, cluster: (any PluginCluster)? = nil, logger: Logger) {
        runtime = PluginRuntime(catalog: catalog, names: names, logger: logger, httpPolicy: httpPolicy, cluster: cluster)
        plugins = catalog.plugins.filter { $0.bindings.contains("collector_status") }
        self.logger = logger
    }

    public func process(_ batch: [DeliveredEntry], redis: RedisConnection) throws(RedisError) -> [EntryOutcome] {
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
                    _ = try vm.call("handler", "on_collector_status", [event, plugin.settings])
                    do {
                        try runtime.cluster.flush()
                    } catch {
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
