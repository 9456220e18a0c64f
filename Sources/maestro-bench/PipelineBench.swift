import ArgumentParser
import Foundation
import Logging
import MaestroCommandLine
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroRoles
import MaestroTraceExporter
import MaestroValue

struct PipelineBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "sinks.create events pre-loaded in a stream: time until all are handled and their configs stored; "
            + "with --redis-limit, the same Redis commands replayed by a pipelined client (Redis's own limit)."
    )

    @OptionGroup var settings: SettingsOptions

    @Option(name: .customLong("events"), help: "Events per run.")
    var events = 10_000

    @Option(name: .customLong("worker-counts"), help: "Comma-separated worker counts to measure (default: 1 and one per core).")
    var workerCounts: String?

    @Option(name: .customLong("runs"), help: "Runs per worker count; the median is reported.")
    var runs = 3

    @Flag(name: .customLong("redis-limit"), help: "Also capture maestro's commands (MONITOR) and replay them with a pipelined client.")
    var redisLimit = false

    @Option(name: .customLong("depth"), help: "Pipelining depth of the replay (maestro's batch size).")
    var depth = 200

    func run() throws {
        try exitingOnInvalidInput {
            let (wiring, logger) = try start(settings)
            // With --otel-endpoint, the flow traced and exported as `maestro run` does (P1 with tracing on).
            let tracing = try TraceExporter.start(endpoint: wiring.settings.otelEndpoint, samplePercent: wiring.settings.otelSamplePercent,
                                                  logFormat: "text", logLevel: "error")
            let exporting = tracing.map { exporter in Task { try await exporter.service.run() } }
            defer { exporting?.cancel() }
            var server: LocalRedisServer?
            let url: RedisURL
            if !wiring.settings.redisURLIsGiven {
                server = try LocalRedisServer.start()
                url = try RedisURL(parsing: server!.url)
            } else {
                url = try wiring.redisURL()
            }
            defer { server?.stop() }
            let catalog = wiring.loadPlugins(logger: logger)
            let counts = (workerCounts ?? "1,\(ProcessInfo.processInfo.activeProcessorCount)")
                .split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            let workload = PipelineWorkload(events: events, names: wiring.names.prefixed("bench:pipeline:"), url: url)
            print("pipeline: \(events) sinks.create events (prometheus plugin), create-policy external, Redis \(url), tracing \(tracing == nil ? "off" : "on")")
            var result: [String: Value] = ["events": .int(Int64(events))]
            for workers in counts {
                var rates: [Double] = []
                for run in 0..<runs {
                    rates.append(try workload.runMaestro(workers: workers, catalog: catalog, wiring: wiring, logger: logger))
                    print(String(format: "  maestro, %d worker(s), run %d: %.0f events/s", workers, run + 1, rates.last!))
                }
                result["maestro_\(workers)"] = .list(rates.map { .double($0) })
            }
            if redisLimit {
                let capture = try workload.capture(catalog: catalog, wiring: wiring, logger: logger)
                print("  captured \(capture.commands.count) commands from maestro's connections: \(capture.summary(events: events))")
                var rates: [Double] = []
                for run in 0..<runs {
                    rates.append(try workload.replay(capture.commands, depth: depth))
                    print(String(format: "  the same commands, one pipelined client (depth %d), run %d: %.0f events/s", depth, run + 1, rates.last!))
                }
                result["redis_limit"] = .list(rates.map { .double($0) })
                result["commands_per_event"] = .string(capture.summary(events: events))
            }
            print("RESULT " + (try JSON.encode(.map(result))))
        }
    }
}

/// One pipeline measurement's fixed workload: the same stream entries (with the same ids) before
/// every run, so maestro and the replay of its commands start from the same state.
struct PipelineWorkload {
    let events: Int
    let names: RedisNames
    let url: RedisURL

    func reset() throws {
        let redis = try RedisConnection(url: url)
        defer { redis.close() }
        try redis.del(names.keys)
        let config = try JSON.encode(["exporter": ["remote_host": "https://prometheus.example.com/api/v1/write"],
                                      "authentication": ["type": "basicauth", "username": "bench-user", "password": "bench-password"]])
        var commands: [[String]] = []
        for index in 0..<events {
            commands.append(RedisConnection.xaddArguments(names.sinksStream, fields: [
                ("sink_id", "bench-sink-\(index)"), ("owner", "bench-owner"), ("backend", "prometheus"), ("config", config),
                ("timestamp", "-62135596800"), ("operation", "sinks.create")], id: "1-\(index + 1)"))
            if commands.count == 1_000 {
                _ = try redis.pipeline(commands)
                commands.removeAll()
            }
        }
        if !commands.isEmpty { _ = try redis.pipeline(commands) }
    }

    /// Events per second from start until every event is acknowledged; checks every config was stored.
    func runMaestro(workers: Int, catalog: PluginCatalog, wiring: Wiring, logger: Logger, beforeStart: () throws -> Void = {}) throws -> Double {
        try reset()
        var context = wiring.sinkerContext(catalog: catalog, collectors: nil, logger: logger)
        context.names = names
        context.policy = .external
        let sinker = context
        let options = StreamConsumerOptions(stream: names.sinksStream, group: names.sinkerGroup, consumerName: "bench", workers: workers,
                                            batchSize: 200, blockMilliseconds: 50, deadLetterStream: names.deadLetterStream)
        let consumer = StreamConsumer(options: options, redisURL: url, logger: logger, routingKey: { $0["sink_id"] ?? "" },
                                      makeProcessor: { _ in SinkEventProcessor(context: sinker) })
        try beforeStart()
        let started = Date()
        consumer.start()
        while consumer.counters.acknowledged + consumer.counters.deadLettered < events {
            usleep(1_000)
        }
        let elapsed = Date().timeIntervalSince(started)
        consumer.stop()
        let redis = try RedisConnection(url: url)
        defer { redis.close() }
        let stored = try redis.hlen(names.configHash)
        if stored != Int64(events) { throw InvalidInput("only \(stored) of \(events) configs were stored") }
        return Double(events) / elapsed
    }

    struct Capture {
        var commands: [[String]]

        /// Commands per event by name, most frequent first (e.g. "EVALSHA 2.00, HGET 1.00, …").
        func summary(events: Int) -> String {
            var counts: [String: Int] = [:]
            for command in commands { counts[command[0].uppercased(), default: 0] += 1 }
            return counts.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
                .map { String(format: "%@ %.3f", $0.key, Double($0.value) / Double(events)) }.joined(separator: ", ")
        }
    }

    /// One maestro run (1 worker) with `redis-cli monitor` recording: the commands maestro's own
    /// connections sent, in order (commands run inside scripts are left out: the scripts' EVALSHA is what was sent).
    func capture(catalog: PluginCatalog, wiring: Wiring, logger: Logger) throws -> Capture {
        let file = NSTemporaryDirectory() + "maestro-monitor-\(UUID().uuidString).txt"
        defer { try? FileManager.default.removeItem(atPath: file) }
        var arguments = [try executable("redis-cli"), "-h", url.host, "-p", String(url.port), "-n", String(url.database)]
        if let password = url.password { arguments += ["--no-auth-warning", "-a", password] }
        var monitor: ChildProcess?
        _ = try runMaestro(workers: 1, catalog: catalog, wiring: wiring, logger: logger) {
            monitor = try ChildProcess(arguments + ["monitor"], logPath: file)
            // MONITOR answers OK once registered.
            let deadline = Date().addingTimeInterval(5)
            while Date() < deadline, !((TextFile.read(file) ?? "").hasPrefix("OK")) { usleep(5_000) }
        }
        usleep(200_000)
        monitor?.signal(SIGTERM)
        monitor?.wait()
        guard let text = TextFile.read(file) else { throw InvalidInput("the MONITOR capture could not be read") }
        var commands: [[String]] = []
        for line in text.split(separator: "\n") {
            guard let (client, command) = MonitorLine.parse(line), client != "lua", let name = command.first?.uppercased() else { continue }
            if name == "HLEN" || name == "DEL" || name == "MONITOR" { continue }
            commands.append(MonitorLine.withoutBlocking(command))
        }
        return Capture(commands: commands)
    }

    /// Replays `commands` on one connection, `depth` at a time; events per second.
    func replay(_ commands: [[String]], depth: Int) throws -> Double {
        try reset()
        let redis = try RedisConnection(url: url)
        defer { redis.close() }
        let started = Date()
        var index = 0
        while index < commands.count {
            let chunk = Array(commands[index..<min(index + depth, commands.count)])
            _ = try redis.pipeline(chunk)
            index += chunk.count
        }
        let elapsed = Date().timeIntervalSince(started)
        let stored = try redis.hlen(names.configHash)
        if stored != Int64(events) { throw InvalidInput("the replay stored \(stored) of \(events) configs: the capture is incomplete") }
        return Double(events) / elapsed
    }
}

/// A line of Redis's MONITOR output: `<time> [<db> <client>] "CMD" "arg" …`, arguments quoted the way
/// sdscatrepr quotes them (\\, \", \n, \r, \t, \a, \b, \xHH).
enum MonitorLine {
    static func parse(_ line: Substring) -> (client: String, arguments: [String])? {
        guard let open = line.firstIndex(of: "["), let close = line[open...].firstIndex(of: "]") else { return nil }
        let client = line[line.index(after: open)..<close].split(separator: " ").dropFirst().joined(separator: " ")
        var arguments: [String] = []
        var bytes: [UInt8] = []
        var inside = false
        var iterator = Array(line[line.index(after: close)...].utf8).makeIterator()
        while let byte = iterator.next() {
            if !inside {
                if byte == UInt8(ascii: "\"") { inside = true; bytes.removeAll() }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""):
                inside = false
                arguments.append(String(decoding: bytes, as: UTF8.self))
            case UInt8(ascii: "\\"):
                guard let escaped = iterator.next() else { return nil }
                switch escaped {
                case UInt8(ascii: "n"): bytes.append(10)
                case UInt8(ascii: "r"): bytes.append(13)
                case UInt8(ascii: "t"): bytes.append(9)
                case UInt8(ascii: "a"): bytes.append(7)
                case UInt8(ascii: "b"): bytes.append(8)
                case UInt8(ascii: "x"):
                    guard let high = iterator.next(), let low = iterator.next(),
                          let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return nil }
                    bytes.append(value)
                default: bytes.append(escaped)
                }
            default:
                bytes.append(byte)
            }
        }
        return inside || arguments.isEmpty ? nil : (client, arguments)
    }

    /// A replay must not wait for entries that will never come: BLOCK is dropped from XREADGROUP.
    static func withoutBlocking(_ command: [String]) -> [String] {
        guard command.first?.uppercased() == "XREADGROUP", let block = command.firstIndex(where: { $0.uppercased() == "BLOCK" }),
              block + 1 < command.count else { return command }
        var copy = command
        copy.removeSubrange(block...(block + 1))
        return copy
    }
}
