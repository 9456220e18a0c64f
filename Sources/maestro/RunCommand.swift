import ArgumentParser
import Foundation
import Logging
import MaestroAPI
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroValue
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
            MaestroLogHandler.bootstrap(format: configuration.string("log-format") ?? "text", level: configuration.string("log-level") ?? "info")
            let logger = Logger(label: "maestro")
            let signals = TerminationSignals(logger: logger)
            let wiring = Wiring(configuration: configuration)
            let redisURL = try wiring.redisURL()
            let role = configuration.string("role") ?? "all"
            let policy = createPolicy(configuration)
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

            let shutdownTimeout = configuration.duration("shutdown-timeout") ?? 30
            let draining = DrainFlag()
            // Shut down in the reverse of this order: readiness off, consumers drained and acked, the
            // reload watcher, the gRPC server, the reconciler and lease, the metrics server last.
            var services: [any Service] = []

            // maestro loads private copies of plugins/ and templates/ (see SourceSnapshots).
            let snapshots: SourceSnapshots
            let pluginsSnapshot: String
            do {
                snapshots = try SourceSnapshots()
                pluginsSnapshot = try snapshots.take(wiring.pluginsRoot)
            } catch {
                throw InvalidInput("cannot read the plugins folder \(wiring.pluginsRoot): \(error)")
            }
            defer { snapshots.removeAll() }
            let generations = PluginGenerations(wiring.loadPlugins(logger: logger, root: pluginsSnapshot))
            for plugin in generations.catalog.plugins {
                logger.info("plugin loaded", metadata: ["plugin.name": "\(plugin.name)", "plugin.version": "\(plugin.version)",
                                                        "plugin.backend": "\(plugin.sinkBackend ?? "-")"])
            }
            let ready: @Sendable () -> Bool = { !draining.isSet && isReady(catalog: generations.catalog, redisURL: redisURL) }

            if let listen = configuration.string("http-listen") {
                let names = wiring.names
                let server = OperationsServer(registry: registry, logger: logger, ready: ready,
                                              refresh: { refreshGauges(registry: registry, redisURL: redisURL, names: names) })
                do {
                    // The bound port, also when the address asked for port 0 (tests do, to avoid port races).
                    let port = try server.start(listen: listen)
                    logger.notice("serving HTTP", metadata: ["http.listen": "\(listen)", "http.port": "\(port)"])
                } catch {
                    throw InvalidInput("cannot serve --http-listen \(listen): \(error)")
                }
                services.append(BackgroundService("operations", drain: { server.stop() }))
            }

            var collectors: (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease)?
            var handOff: (any CollectorService)?
            if role == "all" || role == "maestro" {
                let started: (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease)
                do {
                    started = try wiring.collectors(redisURL: redisURL, logger: logger, templatesRoot: try snapshots.take(wiring.templatesRoot))
                } catch let error as InvalidInput {
                    throw error
                } catch {
                    throw InvalidInput("the collector template cannot be loaded: \(error)")
                }
                collectors = started
                handOff = started.manager
                services.append(BackgroundService("reconciler", start: {
                    started.lease.start()
                    started.reconciler.start()
                }, drain: {
                    _ = started.reconciler.stop(timeout: shutdownTimeout)
                    started.lease.stop()
                }))
                let apiConfiguration = wiring.apiServerConfiguration()
                if apiConfiguration.listen != nil || apiConfiguration.socketPath != nil {
                    do {
                        _ = try apiConfiguration.tcpAddress()
                    } catch {
                        throw InvalidInput("\(error)")
                    }
                    let api = OtelCollectorAPI(manager: started.manager, redisURL: redisURL, names: wiring.names, backend: started.reconciler.backend,
                                               callersAuthenticated: apiConfiguration.callersAuthenticated, logger: logger)
                    let health = HealthService { ready() }
                    let server = APIServer(configuration: apiConfiguration, collectors: api, health: health, logger: logger)
                    if let port = try awaitBlocking({ try await server.start() }) {
                        logger.notice("serving gRPC", metadata: ["grpc.port": "\(port)"])
                    }
                    services.append(AsyncStoppingService(name: "grpc") { await server.stop() })
                }
            } else {
                guard let target = configuration.string("maestro-target"), !target.isEmpty else {
                    throw InvalidInput("--role sinker hands collectors to the maestro role: give --maestro-target HOST:PORT or unix:PATH")
                }
                handOff = try RemoteCollectorService(configuration: wiring.apiClientConfiguration(target: target))
            }

            let reloader = HotReloader(sources: wiring.reloadSources(manager: collectors?.manager, logger: logger), snapshots: snapshots,
                                       generations: generations,
                                       interval: configuration.duration("reload-interval") ?? 2, logger: logger)
            services.append(BackgroundService("reload", start: reloader.start, drain: reloader.stop))
            services.append(ReloadOnHangup(reloader: reloader))

            var consumers: [StreamConsumer] = []
            let cluster = collectors.map { wiring.pluginCluster(backend: $0.reconciler.backend) }
            if role == "all" || role == "sinker" {
                var context = wiring.sinkerContext(catalog: generations.catalog, collectors: handOff, cluster: cluster, logger: logger)
                context.generations = generations
                let sinker = StreamConsumer(options: wiring.consumerOptions(), redisURL: redisURL, logger: logger,
                                            routingKey: { $0["sink_id"] ?? "" },
                                            makeProcessor: { [context] _ in SinkEventProcessor(context: context) })
                consumers.append(sinker)
            }
            if policy == .onActivity, let manager = collectors?.manager {
                let names = wiring.names
                for (stream, kind) in [(names.activityStream, ActivityEventProcessor.Kind.activity), (names.idleStream, .idle)] {
                    var options = wiring.consumerOptions()
                    options.stream = stream
                    options.group = names.maestroGroup
                    consumers.append(StreamConsumer(options: options, redisURL: redisURL, logger: logger, routingKey: { $0["sink_id"] ?? "" },
                                                    makeProcessor: { _ in ActivityEventProcessor(kind: kind, manager: manager, names: names, logger: logger) }))
                }
            }
            // The hooks' consumer runs whenever plugins run here: a reload may add the first hook plugin.
            if role == "all" || role == "maestro" || generations.catalog.plugins.contains(where: { $0.bindings.contains("collector_status") }) {
                let names = wiring.names
                var options = wiring.consumerOptions()
                options.stream = names.statusStream
                options.group = names.hooksGroup
                // Hooks react to changes from now on, not to the whole history of the status stream.
                options.groupStart = "$"
                let httpPolicy = wiring.httpPolicy
                consumers.append(StreamConsumer(options: options, redisURL: redisURL, logger: logger, routingKey: { $0["sink_id"] ?? "" },
                                                makeProcessor: { _ in StatusHookProcessor(catalog: generations.catalog, names: names, httpPolicy: httpPolicy,
                                                                                          cluster: cluster, generations: generations, logger: logger) }))
            }
            services.append(BackgroundService("consumers", start: { [consumers] in
                for consumer in consumers { consumer.start() }
            }, drain: { [consumers] in
                // Concurrently: each waits for its blocked read to return and its workers to ack.
                DispatchQueue.concurrentPerform(iterations: consumers.count) { index in
                    if !consumers[index].stop(timeout: shutdownTimeout) {
                        logger.warning("shutdown-timeout passed before in-flight events finished; they stay pending and are reclaimed",
                                       metadata: ["stream": "\(consumers[index].options.stream)",
                                                  "pending": "\(consumers[index].inFlightCount)"])
                    }
                }
            }))
            services.append(BackgroundService("readiness", drain: {
                draining.set()
                logger.info("stopping: no new reads; finishing and acknowledging in-flight events")
                // The parts' stops are bounded each; this bounds them all, whatever hangs.
                DispatchQueue.global().asyncAfter(deadline: .now() + 2 * shutdownTimeout + 5) {
                    logger.error("shutdown did not complete in time; exiting")
                    Foundation.exit(1)
                }
            }))

            logger.info("maestro running", metadata: ["redis": "\(redisURL)", "role": "\(role)", "policy": "\(policy.rawValue)",
                                                      "backend": "\(collectors?.reconciler.backend.name ?? "-")",
                                                      "consumer": "\(wiring.consumerName)", "workers": "\(wiring.workers)"])
            var lifecycleLogger = logger
            lifecycleLogger.logLevel = max(logger.logLevel, .info)
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: lifecycleLogger))
            do {
                try awaitBlocking {
                    await signals.attach(group)
                    try await group.run()
                }
            } catch {
                logger.error("shutdown did not complete in time", metadata: ["error": "\(error)"])
                throw ExitCode(1)
            }
            let counters = consumers.first?.counters ?? StreamConsumerCounters()
            logger.info("stopped", metadata: ["acknowledged": "\(counters.acknowledged)", "dead_lettered": "\(counters.deadLettered)",
                                              "applied": "\(collectors?.reconciler.counters.applied ?? 0)"])
        }
    }
}

/// Ready: Redis answers and the plugins are loaded (not the Kubernetes API: an API outage must not take
/// every replica out of service at once).
func isReady(catalog: PluginCatalog, redisURL: RedisURL) -> Bool {
    guard !catalog.plugins.isEmpty,
          let redis = try? RedisConnection(url: redisURL, connectTimeoutMilliseconds: 500, commandTimeoutMilliseconds: 500) else { return false }
    defer { redis.close() }
    return (try? redis.ping()) == "PONG"
}

/// Gauges read at scrape time: collectors by status, and the sinks stream's lag and pending entries.
func refreshGauges(registry: PrometheusCollectorRegistry, redisURL: RedisURL, names: RedisNames) {
    guard let redis = try? RedisConnection(url: redisURL, connectTimeoutMilliseconds: 500, commandTimeoutMilliseconds: 1_000) else { return }
    defer { redis.close() }
    var byStatus: [String: Int] = Dictionary(uniqueKeysWithValues: SinkStatus.allCases.map { ($0.rawValue, 0) })
    for (_, json) in (try? redis.hgetall(names.collectorsHash)) ?? [:] {
        if let status = (try? JSON.decode(json))?["status"]?.stringValue { byStatus[status, default: 0] += 1 }
    }
    for (status, count) in byStatus {
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "maestro_collectors", unitName: "", helpText: ""), labels: [("status", status)]).set(Double(count))
    }
    for stream in [names.sinksStream, names.activityStream, names.idleStream] {
        guard let groups = try? redis.xinfoGroups(stream) else { continue }
        for group in groups where group["name"]?.string == names.sinkerGroup || group["name"]?.string == names.maestroGroup {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "maestro_stream_pending", unitName: "", helpText: ""), labels: [("stream", stream)]).set(Double(group["pending"]?.integer ?? 0))
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "maestro_stream_lag", unitName: "", helpText: ""), labels: [("stream", stream)]).set(Double(group["lag"]?.integer ?? 0))
        }
    }
}

func createPolicy(_ configuration: Configuration) -> CreatePolicy {
    CreatePolicy(rawValue: configuration.string("create-policy") ?? "eager") ?? .eager
}
