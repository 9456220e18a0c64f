import Foundation
public import Logging
import MaestroAPI
public import MaestroCore
public import MaestroPluginHost
public import MaestroRedis
import MaestroValue
public import Prometheus
public import ServiceLifecycle

/// maestro's roles assembled from the resolved settings, started, and handed over as services for one
/// `ServiceGroup`: the operations server, the maestro role (collector manager, reconciler, lease, gRPC
/// API) or a sinker's remote hand-off, hot reload, and the stream consumers (sinks, activity and idle,
/// status hooks). `maestro run` and `maestro demo` start this same assembly.
public struct Roles {
    public let wiring: Wiring
    public let redisURL: RedisURL
    public let role: MaestroSettings.Role
    /// The maestro role's parts, where this process runs it.
    public let collectors: (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease)?
    public let consumers: [StreamConsumer]
    public let generations: PluginGenerations
    /// In start order; the group stops them in reverse: readiness off, consumers drained and acked, the
    /// reload watcher, the gRPC server, the reconciler and lease, the operations server last.
    public let services: [any Service]
    private let snapshots: SourceSnapshots
    private let logger: Logger

    /// `registry`: where the operations server's metrics are (it serves only with `http-listen`).
    public init(wiring: Wiring, registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), logger: Logger) throws {
        self.wiring = wiring
        self.logger = logger
        let redisURL = try wiring.redisURL()
        self.redisURL = redisURL
        let role = wiring.settings.role
        self.role = role
        let shutdownTimeout = wiring.settings.shutdownTimeout
        let draining = DrainFlag()
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
        self.snapshots = snapshots
        // From here on a failure must not leave the snapshots behind.
        var started = false
        defer { if !started { snapshots.removeAll() } }
        let generations = PluginGenerations(wiring.loadPlugins(logger: logger, root: pluginsSnapshot))
        self.generations = generations
        if !generations.catalog.components.checksConfigs {
            let folder = CollectorComponentLists.folder(inPlugins: wiring.pluginsRoot)
            // A folder that failed to load was logged with its file and error; saying it is missing would mislead.
            let why = FileManager.default.fileExists(atPath: folder) ? "the component lists failed to load (the error above names the file)"
                : "no component lists in the plugins folder"
            logger.warning("\(why): collector configs are not checked before they are stored or applied",
                           metadata: ["plugin.folder": "\(folder)"])
        }
        for plugin in generations.catalog.plugins {
            logger.info("plugin loaded", metadata: ["plugin.name": "\(plugin.name)", "plugin.version": "\(plugin.version)",
                                                    "plugin.backend": "\(plugin.sinkBackend ?? "-")"])
        }
        let ready: @Sendable () -> Bool = { !draining.isSet && isReady(catalog: generations.catalog, redisURL: redisURL) }

        if let listen = wiring.settings.httpListen {
            services.append(try Self.operationsServer(listen: listen, registry: registry, names: wiring.names, redisURL: redisURL,
                                                      ready: ready, logger: logger))
        }

        var collectors: (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease)?
        var handOff: (any CollectorService)?
        if role == .all || role == .maestro {
            let maestro = try Self.maestroRole(wiring: wiring, redisURL: redisURL, templatesRoot: try snapshots.take(wiring.templatesRoot),
                                               shutdownTimeout: shutdownTimeout, ready: ready, logger: logger)
            collectors = maestro.collectors
            maestro.collectors.reconciler.useComponentLists(generations.catalog.components)
            handOff = maestro.collectors.manager
            services += maestro.services
        } else {
            guard let target = wiring.settings.maestroTarget else {
                throw InvalidInput("--role sinker hands collectors to the maestro role: give --maestro-target HOST:PORT or unix:PATH")
            }
            handOff = try RemoteCollectorService(configuration: wiring.apiClientConfiguration(target: target))
        }
        self.collectors = collectors

        var reloadSources = wiring.reloadSources(manager: collectors?.manager, logger: logger)
        var rebuilds: SinkRebuildLoop?
        if role == .all || role == .sinker {
            // A changed backend plugin rebuilds its sinks: a sweep at start (plugins changed while maestro was
            // down, or a new version ships new ones) and after every plugin reload.
            var context = wiring.sinkerContext(catalog: generations.catalog, collectors: handOff,
                                               cluster: collectors.map { wiring.pluginCluster(backend: $0.reconciler.backend) }, logger: logger)
            context.generations = generations
            let loop = SinkRebuildLoop(redisURL: redisURL, ratePerSecond: Double(wiring.settings.rebuildRate), logger: logger,
                                       makeRebuilder: { [context] in SinkRebuilder(context: context) })
            let previous = reloadSources.pluginsReloaded
            reloadSources.pluginsReloaded = { catalog in
                previous?(catalog)
                loop.requestSweep()
            }
            // A batch built on the old plugins while the reload's sweep ran is stored before its worker
            // moves on: one more sweep then rebuilds those sinks too.
            generations.workerMovedOn.set { loop.requestSweep() }
            rebuilds = loop
        }
        let reloader = HotReloader(sources: reloadSources, snapshots: snapshots,
                                   generations: generations,
                                   interval: wiring.settings.reloadInterval, logger: logger)
        services.append(BackgroundService("reload", start: reloader.start, drain: reloader.stop))
        services.append(ReloadOnHangup(reloader: reloader))
        if let rebuilds {
            services.append(BackgroundService("rebuild", start: rebuilds.start, drain: rebuilds.stop))
        }

        let consumers = Self.consumers(wiring: wiring, redisURL: redisURL, role: role, generations: generations, handOff: handOff,
                                       collectors: collectors, logger: logger)
        self.consumers = consumers
        services.append(BackgroundService("consumers", start: { [consumers] in
            for consumer in consumers { consumer.start() }
        }, drain: { [consumers] in
            // Concurrently: each waits for its blocked read to return and its workers to ack.
            DispatchQueue.concurrentPerform(iterations: consumers.count) { index in
                if !consumers[index].stop(timeout: shutdownTimeout) {
                    logger.warning("shutdown-timeout passed before in-flight events finished; they stay pending and are reclaimed",
                                   metadata: ["stream.name": "\(consumers[index].options.stream)",
                                              "stream.pending": "\(consumers[index].inFlightCount)"])
                }
            }
        }))
        services.append(BackgroundService("readiness", drain: {
            draining.set()
            logger.info("stopping: no new reads; finishing and acknowledging in-flight events")
            // The parts' stops are bounded each — the consumers' and the reconciler's by shutdown-timeout,
            // the lease's release by its own timeout — and this bounds them all, whatever hangs.
            DispatchQueue.global().asyncAfter(deadline: .now() + 2 * shutdownTimeout + leaseReleaseTimeout + 5) {
                logger.error("shutdown did not complete in time; exiting")
                Foundation.exit(1)
            }
        }))
        self.services = services
        started = true
    }

    /// One group for the services; it stops them in the reverse of their order.
    /// `first`: services that stop after all of the roles' (the trace exporter, which flushes the last spans).
    public func serviceGroup(first: [any Service] = []) -> ServiceGroup {
        var lifecycleLogger = logger
        lifecycleLogger.logLevel = max(logger.logLevel, .info)
        return ServiceGroup(configuration: ServiceGroupConfiguration(services: first + services, logger: lifecycleLogger))
    }

    /// Removes the private copies of plugins/ and templates/, once the group has stopped.
    public func removeSnapshots() {
        snapshots.removeAll()
    }

    private static func operationsServer(listen: String, registry: PrometheusCollectorRegistry, names: RedisNames, redisURL: RedisURL,
                                         ready: @escaping @Sendable () -> Bool, logger: Logger) throws -> any Service {
        let server = OperationsServer(registry: registry, logger: logger, ready: ready,
                                      refresh: { refreshGauges(registry: registry, redisURL: redisURL, names: names) },
                                      extra: { PluginMetricsStore.shared.exposition() })
        do {
            // The bound port, also when the address asked for port 0 (tests do, to avoid port races).
            let port = try server.start(listen: listen)
            logger.notice("serving HTTP", metadata: ["http.listen": "\(listen)", "http.port": "\(port)"])
        } catch {
            throw InvalidInput("cannot serve --http-listen \(listen): \(error)")
        }
        return BackgroundService("operations", drain: { server.stop() })
    }

    /// The collector manager, its reconciler and lease (started), and the gRPC API when it listens.
    private static func maestroRole(wiring: Wiring, redisURL: RedisURL, templatesRoot: String, shutdownTimeout: Double,
                                    ready: @escaping @Sendable () -> Bool, logger: Logger)
        throws -> (collectors: (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease), services: [any Service]) {
        let started: (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease)
        do {
            started = try wiring.collectors(redisURL: redisURL, logger: logger, templatesRoot: templatesRoot)
        } catch let error as InvalidInput {
            throw error
        } catch {
            throw InvalidInput("the collector template cannot be loaded: \(error)")
        }
        let kubernetes = started.reconciler.backend as? KubernetesBackend
        var services: [any Service] = [BackgroundService("reconciler", start: {
            kubernetes?.caches?.start()
            kubernetes?.logWatch?.start()
            started.lease.start()
            started.reconciler.start()
        }, drain: {
            _ = started.reconciler.stop(timeout: shutdownTimeout)
            kubernetes?.logWatch?.stop()
            kubernetes?.caches?.stop()
            started.lease.stop()
        })]
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
        return (started, services)
    }

    /// The sinker on the sinks stream; the activity and idle streams (on-activity policy); the status hooks.
    private static func consumers(wiring: Wiring, redisURL: RedisURL, role: MaestroSettings.Role, generations: PluginGenerations,
                                  handOff: (any CollectorService)?,
                                  collectors: (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease)?,
                                  logger: Logger) -> [StreamConsumer] {
        let names = wiring.names
        var consumers: [StreamConsumer] = []
        let cluster = collectors.map { wiring.pluginCluster(backend: $0.reconciler.backend) }
        if role == .all || role == .sinker {
            var context = wiring.sinkerContext(catalog: generations.catalog, collectors: handOff, cluster: cluster, logger: logger)
            context.generations = generations
            consumers.append(StreamConsumer(options: wiring.consumerOptions(), redisURL: redisURL, logger: logger,
                                            routingKey: { $0["sink_id"] ?? "" },
                                            makeProcessor: { [context] _ in SinkEventProcessor(context: context) }))
        }
        if wiring.createPolicy == .onActivity, let manager = collectors?.manager {
            for (stream, kind) in [(names.activityStream, ActivityEventProcessor.Kind.activity), (names.idleStream, .idle)] {
                var options = wiring.consumerOptions()
                options.stream = stream
                options.group = names.maestroGroup
                consumers.append(StreamConsumer(options: options, redisURL: redisURL, logger: logger, routingKey: { $0["sink_id"] ?? "" },
                                                makeProcessor: { _ in ActivityEventProcessor(kind: kind, manager: manager, logger: logger) }))
            }
        }
        // The hooks' consumer runs whenever plugins run here: a reload may add the first hook plugin.
        if role == .all || role == .maestro || generations.catalog.plugins.contains(where: { $0.bindings.contains("collector_status") }) {
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
        return consumers
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
