import ArgumentParser
import Foundation
import Logging
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroValue
import MaestroYAML
import Synchronization

/// Benchmarks (not tests): figures printed for a person, never asserted.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure maestro (see scripts/bench).",
        subcommands: [PipelineBench.self, ApplyBench.self]
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

/// Collectors applied per second against an API server (the test double), next to `kubectl apply -f`
/// once per collector on the same rendered objects (how Orb applied them).
struct ApplyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Apply N collectors through the Kubernetes API, then the same objects with kubectl apply -f per collector."
    )

    @OptionGroup var settings: SettingsOptions

    @Option(name: .customLong("collectors"), help: "Collectors per side.")
    var collectors = 200

    @Option(name: .customLong("parallel"), help: "maestro's concurrent appliers.")
    var parallel = 4

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            LoggingSystem.bootstrap { label in MaestroLogHandler(label: label, format: .text, logLevel: .error) }
            let wiring = Wiring(configuration: configuration)
            let logger = Logger(label: "bench")
            let client = try wiring.kubernetesClient(logger: logger)
            let namespace = configuration.string("namespace") ?? "otelcollectors"
            let backend = KubernetesBackend(client: client, namespace: namespace, createNamespace: true)
            let renderer = try TemplateRenderer(root: wiring.absolute(configuration.string("templates-dir") ?? "./templates"),
                                                settings: wiring.templateSettings(), limits: wiring.luaLimits, logger: logger)
            let config = "receivers: {kafka: {brokers: [kafka:9092]}}\n"
            func render(_ prefix: String) throws -> [DesiredCollector] {
                try (0..<collectors).map { index in
                    let rendered = try renderer.render(CollectorInputs(sinkID: "\(prefix)-\(index)", ownerID: "bench", configYAML: config, configHash: "h\(index)"))
                    return DesiredCollector(sinkID: "\(prefix)-\(index)", name: rendered.name, namespace: rendered.namespace, objects: rendered.objects)
                }
            }
            print("apply: \(collectors) collectors (Secret, Deployment, Service) against \(client.credentials.server)")

            let ours = try render("bench-maestro")
            let cpuBefore = cpuSeconds()
            let started = Date()
            let next = Mutex(0)
            let failures = Mutex(0)
            DispatchQueue.concurrentPerform(iterations: parallel) { _ in
                while true {
                    let index = next.withLock { value -> Int in
                        defer { value += 1 }
                        return value
                    }
                    guard index < ours.count else { return }
                    do {
                        try backend.apply(ours[index])
                    } catch {
                        failures.withLock { $0 += 1 }
                    }
                }
            }
            let elapsed = Date().timeIntervalSince(started)
            let maestroCPU = cpuSeconds() - cpuBefore
            let requests = client.requestCounts.values.reduce(0, +)
            if failures.withLock({ $0 }) > 0 { throw InvalidInput("\(failures.withLock { $0 }) applies failed") }

            let kubectl = try executable("kubectl")
            let folder = NSTemporaryDirectory() + "maestro-bench-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var files: [String] = []
            for collector in try render("bench-kubectl") {
                let path = "\(folder)/\(collector.name).yaml"
                try YAML.emitAll(collector.objects).write(toFile: path, atomically: true, encoding: .utf8)
                files.append(path)
            }
            let kubeconfig = KubeConfigLoader.kubeconfigPath(flag: configuration.string("kubeconfig"), environment: ProcessInfo.processInfo.environment) ?? ""
            let kubectlStarted = Date()
            var kubectlCPU = 0.0
            for file in files {
                let child = try ChildProcess([kubectl, "apply", "--server-side", "--validate=false", "-f", file],
                                             environment: ["KUBECONFIG": kubeconfig, "HOME": folder, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"])
                child.wait()
                guard child.exitCode == 0 else { throw InvalidInput("kubectl apply failed for \(file)") }
            }
            let kubectlElapsed = Date().timeIntervalSince(kubectlStarted)
            kubectlCPU = childrenCPUSeconds()
            let ourRate = Double(collectors) / elapsed
            let theirRate = Double(collectors) / kubectlElapsed
            print("side                 collectors/s   API requests/collector   CPU s/collector")
            print(String(format: "maestro (%d appliers)  %10.1f   %22.1f   %15.4f", parallel, ourRate, Double(requests) / Double(collectors), maestroCPU / Double(collectors)))
            print(String(format: "kubectl apply -f      %10.1f   %22@   %15.4f", theirRate, "n/a", kubectlCPU / Double(collectors)))
            print(String(format: "ratio                 %9.1fx", ourRate / theirRate))
        }
    }

    func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    func childrenCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }
}
