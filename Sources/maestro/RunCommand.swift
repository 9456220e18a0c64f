import ArgumentParser
import Foundation
import Logging
import MaestroCommandLine
import MaestroCore
import MaestroRoles
import MaestroTraceExporter
import Metrics
import Prometheus
import ServiceLifecycle

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run maestro until SIGTERM: the sinker (orb.sinks → collector configs), the collectors (templates → cluster), the gRPC API."
    )

    @OptionGroup var settings: SettingsOptions

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let wiring = Wiring(configuration: configuration)
            try wiring.requireSharedFolders(templates: wiring.settings.role != .sinker)
            let tracing = try TraceExporter.start(endpoint: wiring.settings.otelEndpoint, samplePercent: wiring.settings.otelSamplePercent,
                                                  logFormat: wiring.settings.logFormat, logLevel: wiring.settings.logLevel)
            MaestroLogHandler.bootstrap(format: wiring.settings.logFormat, level: wiring.settings.logLevel, metadataProvider: tracing?.loggingMetadata)
            let logger = Logger(label: "maestro")
            let signals = TerminationSignals(logger: logger)
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
            let roles = try Roles(wiring: wiring, registry: registry, logger: logger)
            defer { roles.removeSnapshots() }

            logger.info("maestro running", metadata: ["redis.url": "\(roles.redisURL)", "maestro.role": "\(roles.role.rawValue)", "maestro.create_policy": "\(wiring.createPolicy.rawValue)",
                                                      "cluster.backend": "\(roles.collectors?.reconciler.backend.name ?? "-")",
                                                      "stream.consumer": "\(wiring.consumerName)", "stream.workers": "\(wiring.workers)",
                                                      "tracing": "\(tracing == nil ? "off" : "on")"])
            // The exporter stops last, sending the spans of the roles' last work.
            let group = roles.serviceGroup(first: tracing.map { [$0.service] } ?? [])
            do {
                try awaitBlocking {
                    await signals.attach(group)
                    try await group.run()
                }
            } catch {
                logger.error("shutdown did not complete in time", metadata: ["error": "\(error)"])
                throw ExitCode(1)
            }
            let counters = roles.consumers.first?.counters ?? StreamConsumerCounters()
            logger.info("stopped", metadata: ["stream.acknowledged": "\(counters.acknowledged)", "stream.dead_lettered": "\(counters.deadLettered)",
                                              "reconcile.applied": "\(roles.collectors?.reconciler.counters.applied ?? 0)"])
        }
    }
}
