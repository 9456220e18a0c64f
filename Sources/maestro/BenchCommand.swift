import ArgumentParser
import Foundation
import Logging
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroValue

/// Benchmarks (not tests): figures printed for a person, never asserted.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure maestro (see scripts/bench).",
        subcommands: [PipelineBench.self]
    )
}

struct PipelineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "sinks.create events pre-loaded in a stream: time until all are handled and their configs stored."
    )

    @OptionGroup var settings: SettingsOptions

    @Option(name: .customLong("events"), help: "Events per run.")
    var events = 10_000

    @Option(name: .customLong("worker-counts"), help: "Comma-separated worker counts to measure (default: 1 and one per core).")
    var workerCounts: String?

    @Option(name: .customLong("runs"), help: "Runs per worker count; the median is reported.")
    var runs = 3

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            LoggingSystem.bootstrap { label in MaestroLogHandler(label: label, format: .text, logLevel: .error) }
            let wiring = Wiring(configuration: configuration)
            var server: LocalRedisServer?
            let url: RedisURL
            if configuration.origin("redis-url") == .defaultValue {
                server = try LocalRedisServer.start()
                url = try RedisURL(parsing: server!.url)
            } else {
                url = try wiring.redisURL()
            }
            defer { server?.stop() }
            let logger = Logger(label: "bench")
            let catalog = wiring.loadPlugins(logger: logger)
            let counts = (workerCounts ?? "1,\(ProcessInfo.processInfo.activeProcessorCount)")
                .split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            print("pipeline: \(events) sinks.create events (prometheus plugin), create-policy external, Redis \(url)")
            print("workers  events/s (median of \(runs))  runs")
            for workers in counts {
                var rates: [Double] = []
                for _ in 0..<runs {
                    rates.append(try measure(workers: workers, url: url, catalog: catalog, wiring: wiring, logger: logger))
                }
                rates.sort()
                let median = rates[rates.count / 2]
                print(String(format: "%7d  %10.0f               %@", workers, median, rates.map { String(format: "%.0f", $0) }.joined(separator: ", ")))
            }
        }
    }

    private func measure(workers: Int, url: RedisURL, catalog: PluginCatalog, wiring: Wiring, logger: Logger) throws -> Double {
        let redis = try RedisConnection(url: url)
        let prefix = "bench:\(UUID().uuidString.prefix(8)):"
        let names = wiring.names.prefixed(prefix)
        let config = try JSON.encode(["exporter": ["remote_host": "https://prometheus.example.com/api/v1/write"],
                                      "authentication": ["type": "basicauth", "username": "bench-user", "password": "bench-password"]])
        var commands: [[String]] = []
        for index in 0..<events {
            commands.append(RedisConnection.xaddArguments(names.sinksStream, fields: [
                ("sink_id", "bench-sink-\(index)"), ("owner", "bench-owner"), ("backend", "prometheus"), ("config", config),
                ("timestamp", "-62135596800"), ("operation", "sinks.create")]))
            if commands.count == 1_000 {
                _ = try redis.pipeline(commands)
                commands.removeAll()
            }
        }
        if !commands.isEmpty { _ = try redis.pipeline(commands) }
        var context = wiring.sinkerContext(catalog: catalog, collectors: nil, logger: logger)
        context.names = names
        context.policy = .external
        let sinker = context
        let options = StreamConsumerOptions(stream: names.sinksStream, group: names.sinkerGroup, consumerName: "bench", workers: workers,
                                            batchSize: 200, blockMilliseconds: 50, deadLetterStream: names.deadLetterStream)
        let consumer = StreamConsumer(options: options, redisURL: url, logger: logger, routingKey: { $0["sink_id"] ?? "" },
                                      makeProcessor: { _ in SinkEventProcessor(context: sinker) })
        let started = Date()
        consumer.start()
        while consumer.counters.acknowledged + consumer.counters.deadLettered < events {
            usleep(2_000)
        }
        let elapsed = Date().timeIntervalSince(started)
        consumer.stop()
        let stored = try redis.hlen(names.configHash)
        if stored != Int64(events) { throw InvalidInput("only \(stored) of \(events) configs were stored") }
        try redis.del(names.keys)
        return Double(events) / elapsed
    }
}
