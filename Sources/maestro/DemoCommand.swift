import ArgumentParser
import Foundation
import Logging
import MaestroCore
import MaestroLua
import MaestroRedis
import MaestroValue
import MaestroYAML

/// A narrated tour of what maestro does today, against a real Redis: an Orb-format sink event goes
/// through a Redis stream and consumer group, a sandboxed Lua function builds the collector config,
/// the YAML is stored in a Redis hash and read back intact, and the sandbox stops hostile code.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run maestro's flow end to end against a private redis-server and narrate each step."
    )

    @OptionGroup var settings: SettingsOptions

    func run() throws {
        try exitingOnInvalidInput {
            let environment = ProcessInfo.processInfo.environment
            let configuration = try settings.resolve(environment: environment)
            MaestroLogHandler.bootstrap(format: configuration.string("log-format") ?? "text",
                                        level: configuration.string("log-level") ?? "info")
            try DemoRun(configuration: configuration).run()
        }
    }
}

struct DemoRun {
    let configuration: Configuration
    let stream = "maestro.demo.sinks"
    let group = "maestro.demo"
    let configHash = "maestro.demo.otelConfigYaml"

    func say(_ step: Int, _ text: String) {
        print("\n[\(step)] \(text)")
    }

    func run() throws {
        print("maestro \(MaestroVersion.current) demo")
        var privateServer: LocalRedisServer?
        let redisURL: RedisURL
        if configuration.origin("redis-url") == .defaultValue {
            let server = try LocalRedisServer.start()
            privateServer = server
            redisURL = try RedisURL(parsing: server.url)
        } else {
            do {
                redisURL = try RedisURL(parsing: configuration.string("redis-url") ?? "")
            } catch {
                throw InvalidInput("invalid value for redis-url: \(error.message)")
            }
        }
        defer {
            privateServer?.stop()
            if let directory = privateServer?.directory { try? FileManager.default.removeItem(atPath: directory) }
        }

        let redis = try RedisConnection(url: redisURL)
        let version = try redis.command(["INFO", "server"]).string?
            .split(separator: "\r\n").first { $0.hasPrefix("redis_version:") }?.dropFirst("redis_version:".count) ?? "?"
        say(1, "Redis \(version) at \(redisURL)\(privateServer == nil ? "" : " (a private server started for this demo)")")
        try redis.del([stream, configHash])

        let sinkID = "5f4b9c2e-1d3a-4e6b-9a7c-2b8d0e1f3a45"
        let sinkConfig: Value = [
            "exporter": ["remote_host": "https://prometheus.example.com/api/v1/write", "headers": ["X-Scope-OrgID": "tenant-1"]],
            "authentication": ["type": "basicauth", "username": "1234123", "password": "a\"b: c"],
        ]
        try redis.xgroupCreate(stream, group: group, startID: "0")
        let eventID = try redis.xadd(stream, fields: [
            ("sink_id", sinkID), ("owner", "0c8b5a40-6c4e-4f8e-9d3b-1a2b3c4d5e6f"), ("backend", "prometheus"),
            ("config", try JSON.encode(sinkConfig)), ("timestamp", "-62135596800"), ("operation", "sinks.create"),
        ], trim: .approximateMaxLength(100_000))
        say(2, "An Orb-format sinks.create event was added to the stream \(stream) as \(eventID):")
        print(indent(try YAML.emit(masked(sinkConfig))), terminator: "")

        let entries = try redis.xreadgroup(group: group, consumer: "demo", stream: stream, id: ">", count: 10)
        guard let entry = entries.first, let configText = entry["config"] else { throw InvalidInput("the demo event was not read back") }
        say(3, "Read through the consumer group \(group): \(entries.count) entry, \(entry.fields.count) fields, pending until acknowledged.")

        let vm = try LuaVM(configuration: LuaConfiguration(
            name: "demo", instructionBudget: configuration.integer("lua-instruction-budget") ?? LuaConfiguration.defaultInstructionBudget,
            memoryLimitBytes: (configuration.integer("lua-memory-mb") ?? 64) << 20, logger: Logger(label: "maestro.lua")))
        try vm.loadModule(source: demoCollectorConfigLua, chunkName: "=demo/collector.lua", as: "collector")
        try vm.sealGlobals()
        let built = try vm.call("collector", "build", [try JSON.decode(configText), .string(sinkID), .string(configuration.string("kafka-url") ?? "kafka1:19092")])
        guard let collectorConfig = built.first ?? nil else { throw InvalidInput("the Lua function returned nothing") }
        let yaml = try YAML.emit(collectorConfig)
        let instructions = vm.statistics.instructions == 0 ? "under 1,000" : "about \(vm.statistics.instructions)"
        say(4, "A sandboxed Lua function built the collector config (\(instructions) instructions, \(vm.statistics.peakMemory / 1024) KiB of Lua memory):")
        print(indent(try YAML.emit(masked(collectorConfig))), terminator: "")

        try redis.hset(configHash, field: sinkID, value: yaml)
        let stored = try redis.hget(configHash, field: sinkID) ?? ""
        let parsed = try YAML.parse(stored)
        let username = parsed["extensions"]?["basicauth/exporter"]?["client_auth"]?["username"]
        let password = parsed["extensions"]?["basicauth/exporter"]?["client_auth"]?["password"]
        let intact = parsed == collectorConfig && username == .string("1234123") && password == .string("a\"b: c")
        say(5, "Stored with HSET \(configHash) \(sinkID) and read back: \(intact ? "every value intact (the user name is still the string \"1234123\", the password keeps its quote and colon)" : "VALUES CHANGED")")
        guard intact else { throw InvalidInput("the stored YAML did not read back equal") }

        try redis.xack(stream, group: group, ids: [entry.id])
        let pending = try redis.xpendingSummary(stream, group: group).count
        say(6, "Acknowledged \(entry.id) after the config was stored; \(pending) entries pending.")

        say(7, "The sandbox contains hostile code:")
        for (label, code) in [("while true do end", "while true do end"), ("io.open('/etc/passwd')", "return io.open('/etc/passwd')"),
                              ("a 1 GiB string.rep", "return string.rep('x', 1 << 30)")] {
            let started = Date()
            do {
                _ = try vm.evaluate(code)
                print("    \(label): NOT STOPPED")
            } catch {
                let elapsed = Int(Date().timeIntervalSince(started) * 1000)
                print("    \(label): stopped after \(elapsed) ms — \(error.message.split(separator: "\n").first ?? "")")
            }
        }
        let answer = try vm.evaluate("return 6 * 7").first.flatMap { $0 } ?? .null
        print("    each limit left the VM to be rebuilt (\(vm.resets) rebuilds); it still answers 6 * 7 = \((try? JSON.encode(answer)) ?? "?")")

        try redis.del([stream, configHash])
        print("\nDone: demo keys removed\(privateServer == nil ? "" : ", private redis-server stopped").")
    }

    func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.isEmpty ? "" : "    " + $0 }.joined(separator: "\n")
    }

    /// Credentials are never shown on screen.
    func masked(_ value: Value) -> Value {
        switch value {
        case .map(let entries):
            var result: [String: Value] = [:]
            for (key, item) in entries {
                result[key] = ["password", "token"].contains(key) ? .string("***") : masked(item)
            }
            return .map(result)
        case .list(let items):
            return .list(items.map(masked))
        default:
            return value
        }
    }
}

/// The demo's Lua: Orb's collector config shape (reference §4) for a prometheus sink with basic auth.
let demoCollectorConfigLua = #"""
local M = {}

function M.build(config, sink_id, kafka_url)
  local auth = config.authentication
  local exporter = { endpoint = config.exporter.remote_host, auth = { authenticator = "basicauth/exporter" } }
  if config.exporter.headers then exporter.headers = config.exporter.headers end
  maestro.log.debug("building collector config", { ["sink.id"] = sink_id, password = auth.password })
  return {
    receivers = { kafka = { brokers = { kafka_url }, topic = "otlp_metrics-" .. sink_id, protocol_version = "2.0.0" } },
    extensions = {
      pprof = { endpoint = "0.0.0.0:1888" },
      health_check = { endpoint = "0.0.0.0:13133" },
      ["basicauth/exporter"] = { client_auth = { username = auth.username, password = auth.password } },
    },
    exporters = { prometheusremotewrite = exporter },
    service = {
      extensions = { "pprof", "health_check", "basicauth/exporter" },
      pipelines = { metrics = { receivers = { "kafka" }, exporters = { "prometheusremotewrite" } } },
    },
  }
end

return M
"""#
