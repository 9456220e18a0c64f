import ArgumentParser
import Foundation
import Logging
import MaestroAPI
import MaestroCommandLine
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroRoles

/// `maestro sinks rebuild`: a backend plugin's sinks rebuilt by hand, from the inputs their records keep,
/// through the same store and hand-off as a stream entry (nothing is written to the sinks stream).
struct RebuildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild",
        abstract: "Rebuild stored sinks' collector configs with the plugins of --plugins-dir, paced by --rebuild-rate; their collectors roll.",
        discussion: """
        Every live sink selected is built again from the input its record keeps; a config that changed is \
        stored under a compare-and-set on the sink's record (an entry that arrived meanwhile wins) and its \
        collector rolls: through the running maestro with --maestro-target, else applied from here. Sinks \
        stored before inputs were kept are rebuilt at their next event. With --dry-run, lists what a \
        rebuild would start from and changes nothing. Exit 1 when a sink failed or was invalid.
        """
    )

    @OptionGroup var settings: SettingsOptions
    @Option(name: .customLong("backend"), help: "Only the sinks of this backend.") var backend: String?
    @Option(name: .customLong("sink-id"), help: "Only this sink.") var sinkID: String?
    @Flag(name: .customLong("dry-run"), help: "List the sinks and what each would be rebuilt from; change nothing.") var dryRun = false

    func validate() throws {
        if backend != nil && sinkID != nil { throw ValidationError("give --backend or --sink-id, not both") }
    }

    func run() throws {
        var failed = false
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let wiring = Wiring(configuration: configuration)
            var logger = Logger(label: "maestro")
            logger.logLevel = .error
            try wiring.requireSharedFolders(templates: !dryRun && wiring.settings.maestroTarget == nil)
            let catalog = wiring.loadPlugins(logger: logger)
            for failure in catalog.failures { printError("maestro: \(failure.folder): \(failure.message)") }
            guard catalog.failures.isEmpty else { throw InvalidInput("the plugins of \(wiring.pluginsRoot) do not all load") }
            if let backend, catalog.plugin(forBackend: backend) == nil {
                throw InvalidInput("no plugin in \(wiring.pluginsRoot) serves backend \(backend)")
            }
            let redisURL = try wiring.redisURL()
            let redis = try RedisConnection(url: redisURL)
            defer { redis.close() }
            let handOff: (any CollectorService)? = dryRun ? nil : try Self.handOff(wiring: wiring, redisURL: redisURL, catalog: catalog, logger: logger)
            let rebuilder = SinkRebuilder(context: wiring.sinkerContext(catalog: catalog, collectors: handOff, logger: logger))
            let candidates = try rebuilder.candidates(redis, backend: backend, sinkID: sinkID)
            if let sinkID, candidates.isEmpty { throw InvalidInput("sink \(sinkID) has no live record in \(wiring.names.sinksHash)") }
            if dryRun {
                print(formatTable(["SINK", "BACKEND", "STATE"], candidates.map { [$0.sinkID, $0.backend, Self.describe($0.state)] }))
                print(Self.summary(candidates.map(\.state.rawValue)))
                return
            }
            let rate = wiring.settings.rebuildRate
            var results: [SinkRebuildResult] = []
            for (index, candidate) in candidates.enumerated() {
                if index > 0 && rate > 0 { Thread.sleep(forTimeInterval: 1 / Double(rate)) }
                let result = rebuilder.rebuild(candidate.sinkID, redis: redis, onlyIfChanged: false)
                results.append(result)
                print([result.sinkID, result.backend, result.outcome.rawValue, result.detail].filter { !$0.isEmpty }.joined(separator: "  "))
            }
            print(Self.summary(results.map(\.outcome.rawValue)))
            failed = results.contains { $0.outcome == .failed || $0.outcome == .invalid }
        }
        if failed { throw ExitCode(1) }
    }

    static func describe(_ state: SinkRebuildCandidate.State) -> String {
        switch state {
        case .pluginChanged: return "plugin_changed: built by another version of its plugin"
        case .current: return "current: built by this plugin (a rebuild changes nothing unless the plugin depends on something else)"
        case .noInput: return "no_input: stored before inputs were kept; rebuilt at its next event"
        case .noPlugin: return "no_plugin: no plugin serves its backend"
        }
    }

    static func summary(_ outcomes: [String]) -> String {
        let counts = Dictionary(outcomes.map { ($0, 1) }, uniquingKeysWith: +)
        return "\(outcomes.count) sinks" + (counts.isEmpty ? "" : ": " + counts.keys.sorted().map { "\($0) \(counts[$0]!)" }.joined(separator: ", "))
    }

    /// The running maestro (gRPC) when --maestro-target names it; else the collectors are applied from
    /// here, one reconcile pass per rebuilt sink, under the same per-sink lock as the maestro role's.
    static func handOff(wiring: Wiring, redisURL: RedisURL, catalog: PluginCatalog, logger: Logger) throws -> any CollectorService {
        if let target = wiring.settings.maestroTarget {
            return try RemoteCollectorService(configuration: wiring.apiClientConfiguration(target: target))
        }
        let reconciler = Reconciler(redisURL: redisURL, names: wiring.names, backend: try wiring.clusterBackend(logger: logger),
                                    options: wiring.reconcilerOptions(), logger: logger)
        reconciler.useComponentLists(catalog.components)
        let makeRenderer = wiring.templateFactory(root: wiring.templatesRoot, logger: logger)
        do {
            _ = try makeRenderer()
        } catch {
            throw InvalidInput("the collector template cannot be loaded: \(error)")
        }
        let manager = CollectorManager(reconciler: reconciler, logger: logger, makeRenderer: makeRenderer)
        return ReconcilingHandOff(manager: manager, reconciler: reconciler)
    }
}

/// The collector manager's hand-off followed by the reconcile pass a running maestro's worker would
/// make: a command has no workers.
final class ReconcilingHandOff: CollectorService {
    let manager: CollectorManager
    let reconciler: Reconciler

    init(manager: CollectorManager, reconciler: Reconciler) {
        self.manager = manager
        self.reconciler = reconciler
    }

    func create(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        try manager.create(sinkID: sinkID, ownerID: ownerID)
        try reconcile(sinkID)
    }

    func update(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        try manager.update(sinkID: sinkID, ownerID: ownerID)
        try reconcile(sinkID)
    }

    func remove(sinkID: String) throws(CollectorServiceError) {
        try manager.remove(sinkID: sinkID)
        try reconcile(sinkID)
    }

    private func reconcile(_ sinkID: String) throws(CollectorServiceError) {
        do {
            try reconciler.reconcile(sinkID)
        } catch {
            throw CollectorServiceError(.unavailable, "the reconcile pass failed: \(error)")
        }
    }
}
