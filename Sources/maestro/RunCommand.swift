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
            let wiring = Wiring(configuration: configuration)
            let redisURL = try wiring.redisURL()
            let role = configuration.string("role") ?? "all"
            let policy = createPolicy(configuration)
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

            var consumers: [StreamConsumer] = []
            var collectors: (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease)?
            var apiServer: APIServer?
            var handOff: (any CollectorService)?

            let catalog = wiring.loadPlugins(logger: logger)
            for plugin in catalog.plugins {
                logger.info("plugin loaded", metadata: ["plugin.name": "\(plugin.name)", "plugin.version": "\(plugin.version)",
                                                        "plugin.backend": "\(plugin.sinkBackend ?? "-")"])
            }

            if role == "all" || role == "maestro" {
                do {
                    collectors = try wiring.collectors(redisURL: redisURL, logger: logger)
                } catch let error as InvalidInput {
                    throw error
                } catch {
                    throw InvalidInput("the collector template cannot be loaded: \(error)")
                }
                handOff = collectors!.manager
                collectors!.lease.start()
                collectors!.reconciler.start()
                let apiConfiguration = wiring.apiServerConfiguration()
                if apiConfiguration.listen != nil || apiConfiguration.socketPath != nil {
                    do {
                        _ = try apiConfiguration.tcpAddress()
                    } catch {
                        throw InvalidInput("\(error)")
                    }
                    let names = wiring.names
                    let api = OtelCollectorAPI(manager: collectors!.manager, redisURL: redisURL, names: names, backend: collectors!.reconciler.backend,
                                               callersAuthenticated: apiConfiguration.callersAuthenticated, logger: logger)
                    let health = HealthService { isReady(catalog: catalog, redisURL: redisURL) }
                    let server = APIServer(configuration: apiConfiguration, collectors: api, health: health, logger: logger)
                    _ = try awaitBlocking { try await server.start() }
                    apiServer = server
                }
            } else {
                guard let target = configuration.string("maestro-target"), !target.isEmpty else {
                    throw InvalidInput("--role sinker hands collectors to the maestro role: give --maestro-target HOST:PORT or unix:PATH")
                }
                handOff = try RemoteCollectorService(configuration: wiring.apiClientConfiguration(target: target))
            }

            let cluster = collectors.map { wiring.pluginCluster(backend: $0.reconciler.backend) }
            if role == "all" || role == "sinker" {
                let context = wiring.sinkerContext(catalog: catalog, collectors: handOff, cluster: cluster, logger: logger)
                let sinker = StreamConsumer(options: wiring.consumerOptions(), redisURL: redisURL, logger: logger,
                                            routingKey: { $0["sink_id"] ?? "" },
                                            makeProcessor: { _ in SinkEventProcessor(context: context) })
                sinker.start()
                consumers.append(sinker)
            }
            if policy == .onActivity, let manager = collectors?.manager {
                let names = wiring.names
                for (stream, kind) in [(names.activityStream, ActivityEventProcessor.Kind.activity), (names.idleStream, .idle)] {
                    var options = wiring.consumerOptions()
                    options.stream = stream
                    options.group = names.maestroGroup
                    let consumer = StreamConsumer(options: options, redisURL: redisURL, logger: logger, routingKey: { $0["sink_id"] ?? "" },
                                                  makeProcessor: { _ in ActivityEventProcessor(kind: kind, manager: manager, names: names, logger: logger) })
                    consumer.start()
                    consumers.append(consumer)
                }
            }
            if catalog.plugins.contains(where: { $0.bindings.contains("collector_status") }) {
                let names = wiring.names
                var options = wiring.consumerOptions()
                options.stream = names.statusStream
                options.group = names.hooksGroup
                // Hooks react to changes from now on, not to the whole history of the status stream.
                options.groupStart = "$"
                let policy = wiring.httpPolicy
                let hooks = StreamConsumer(options: options, redisURL: redisURL, logger: logger, routingKey: { $0["sink_id"] ?? "" },
                                           makeProcessor: { _ in StatusHookProcessor(catalog: catalog, names: names, httpPolicy: policy,
                                                                                     cluster: cluster, logger: logger) })
                hooks.start()
                consumers.append(hooks)
            }
            var operations: OperationsServer?
            if let listen = configuration.string("http-listen") {
                let names = wiring.names
                let server = OperationsServer(registry: registry, logger: logger, ready: { isReady(catalog: catalog, redisURL: redisURL) },
                                              refresh: { refreshGauges(registry: registry, redisURL: redisURL, names: names) })
                do {
                    _ = try server.start(listen: listen)
                } catch {
                    throw InvalidInput("cannot serve --http-listen \(listen): \(error)")
                }
                operations = server
            }
            logger.info("maestro running", metadata: ["redis": "\(redisURL)", "role": "\(role)", "policy": "\(policy.rawValue)",
                                                      "backend": "\(collectors?.reconciler.backend.name ?? "-")",
                                                      "consumer": "\(wiring.consumerName)", "workers": "\(wiring.workers)"])
            let signal = waitForTerminationSignal()
            logger.info("stopping: finishing in-flight events and calls", metadata: ["signal": "\(signal)"])
            var clean = consumers.allSatisfy { $0.stop(timeout: 30) }
            if let apiServer { try? awaitBlocking { await apiServer.stop() } }
            operations?.stop()
            if let collectors {
                clean = collectors.reconciler.stop(timeout: 30) && clean
                collectors.lease.stop()
            }
            let counters = consumers.first?.counters ?? StreamConsumerCounters()
            logger.info("stopped", metadata: ["acknowledged": "\(counters.acknowledged)", "dead_lettered": "\(counters.deadLettered)",
                                              "applied": "\(collectors?.reconciler.counters.applied ?? 0)", "clean": "\(clean)"])
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
        registry.makeGauge(name: "maestro_collectors", labels: [("status", status)]).set(Double(count))
    }
    for stream in [names.sinksStream, names.activityStream, names.idleStream] {
        guard let groups = try? redis.xinfoGroups(stream) else { continue }
        for group in groups where group["name"]?.string == names.sinkerGroup || group["name"]?.string == names.maestroGroup {
            registry.makeGauge(name: "maestro_stream_pending", labels: [("stream", stream)]).set(Double(group["pending"]?.integer ?? 0))
            registry.makeGauge(name: "maestro_stream_lag", labels: [("stream", stream)]).set(Double(group["lag"]?.integer ?? 0))
        }
    }
}

func createPolicy(_ configuration: Configuration) -> CreatePolicy {
    CreatePolicy(rawValue: configuration.string("create-policy") ?? "eager") ?? .eager
}

/// Blocks until SIGTERM or SIGINT; returns the signal's number. A second signal exits at once.
func waitForTerminationSignal() -> Int32 {
    let received = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var which: Int32 = 0
    var sources: [any DispatchSourceSignal] = []
    for number in [SIGTERM, SIGINT] {
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            if which != 0 { exit(1) }
            which = number
            received.signal()
        }
        source.resume()
        sources.append(source)
    }
    received.wait()
    return which
}
