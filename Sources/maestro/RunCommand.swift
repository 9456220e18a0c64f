import ArgumentParser
import Foundation
import Logging
import MaestroCore
import MaestroPluginHost
import MaestroRedis

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Consume orb.sinks and store each sink's collector config (the sinker role) until SIGTERM."
    )

    @OptionGroup var settings: SettingsOptions

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            MaestroLogHandler.bootstrap(format: configuration.string("log-format") ?? "text", level: configuration.string("log-level") ?? "info")
            let logger = Logger(label: "maestro")
            let wiring = Wiring(configuration: configuration)
            let redisURL = try wiring.redisURL()
            let catalog = wiring.loadPlugins(logger: logger)
            for plugin in catalog.plugins {
                logger.info("plugin loaded", metadata: ["plugin.name": "\(plugin.name)", "plugin.version": "\(plugin.version)",
                                                        "plugin.backend": "\(plugin.sinkBackend ?? "-")"])
            }
            let role = configuration.string("role") ?? "all"
            let collectors: (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease)
            do {
                collectors = try wiring.collectors(redisURL: redisURL, logger: logger)
            } catch let error as InvalidInput {
                throw error
            } catch {
                throw InvalidInput("the collector template cannot be loaded: \(error)")
            }
            collectors.lease.start()
            collectors.reconciler.start()
            var consumer: StreamConsumer?
            if role == "all" {
                let context = wiring.sinkerContext(catalog: catalog, collectors: collectors.manager, logger: logger)
                let options = wiring.consumerOptions()
                let sinker = StreamConsumer(options: options, redisURL: redisURL, logger: logger,
                                            routingKey: { $0["sink_id"] ?? "" },
                                            makeProcessor: { _ in SinkEventProcessor(context: context) })
                sinker.start()
                consumer = sinker
            }
            var activityConsumers: [StreamConsumer] = []
            if createPolicy(configuration) == .onActivity {
                let names = wiring.names
                for (stream, kind) in [(names.activityStream, ActivityEventProcessor.Kind.activity), (names.idleStream, .idle)] {
                    var options = wiring.consumerOptions()
                    options.stream = stream
                    options.group = names.maestroGroup
                    let manager = collectors.manager
                    let consumer = StreamConsumer(options: options, redisURL: redisURL, logger: logger, routingKey: { $0["sink_id"] ?? "" },
                                                  makeProcessor: { _ in ActivityEventProcessor(kind: kind, manager: manager, names: names, logger: logger) })
                    consumer.start()
                    activityConsumers.append(consumer)
                }
            }
            logger.info("maestro running", metadata: ["redis": "\(redisURL)", "role": "\(role)", "backend": "\(collectors.reconciler.backend.name)",
                                                      "consumer": "\(wiring.consumerName)", "workers": "\(wiring.workers)"])
            let signal = waitForTerminationSignal()
            logger.info("stopping: finishing in-flight events", metadata: ["signal": "\(signal)"])
            let clean = (consumer?.stop(timeout: 30) ?? true) && activityConsumers.allSatisfy { $0.stop(timeout: 30) }
                && collectors.reconciler.stop(timeout: 30)
            collectors.lease.stop()
            let counters = consumer?.counters ?? StreamConsumerCounters()
            logger.info("stopped", metadata: ["acknowledged": "\(counters.acknowledged)", "dead_lettered": "\(counters.deadLettered)",
                                              "applied": "\(collectors.reconciler.counters.applied)", "clean": "\(clean)"])
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
