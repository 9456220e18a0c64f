import MaestroTestSupport
import MaestroValue
import Foundation
import Testing

@testable import MaestroCore

@Suite("Configuration", .testThreads, .timeLimit(.minutes(2)))
struct ConfigurationTests {
    @Test("the typed settings: the documented defaults, and given values in their types")
    func typedSettings() throws {
        let defaults = MaestroSettings(try Configuration.resolve(ConfigurationInput()))
        #expect(defaults.redisURL == "redis://127.0.0.1:6379/0")
        #expect(!defaults.redisURLIsGiven)
        #expect(defaults.luaInstructionBudget == 50_000_000)
        #expect(defaults.luaMemoryMB == 64)
        #expect(defaults.kafkaURL == "kafka1:19092")
        #expect(defaults.secretKey == "orb")
        #expect(defaults.role == .all)
        #expect(defaults.maestroTarget == nil && defaults.grpcListen == nil && defaults.httpListen == nil)
        #expect(defaults.resyncInterval == 300)
        #expect(defaults.orphanGrace == 600)
        #expect(defaults.orphanMaxShare == 10)
        #expect(defaults.createPolicy == .eager)
        #expect(defaults.workers == ProcessInfo.processInfo.activeProcessorCount)
        #expect(defaults.streamMaxLength == 100_000)
        #expect(defaults.groupStart == "0")
        #expect(defaults.shutdownTimeout == 30)
        #expect(defaults.reloadInterval == 2)
        #expect(defaults.minIdle == 60)
        #expect(defaults.maxDeliveries == 5)
        #expect(defaults.namespace == "otelcollectors" && !defaults.namespaceIsGiven)
        #expect(defaults.manifestsDir == "./manifests")
        #expect(defaults.names.sinksStream == "orb.sinks")
        #expect(defaults.names.sinkerGroup == "orb.sinker")
        #expect(defaults.names.configHash == "orb.sinker.otelConfigYaml")
        #expect(defaults.names.statusStream == "orb.maestro.sink_status")
        #expect(defaults.logFormat == "text" && defaults.logLevel == "info" && !defaults.logLevelIsGiven)
        #expect(!defaults.grpcInsecure && !defaults.createNamespace && defaults.resolvesCollectorEndpoints)
        #expect(defaults.collectorDeniedRanges == ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                                   "fc00::/7"])

        let given = MaestroSettings(try Configuration.resolve(ConfigurationInput(flags: [
            "role": ["sinker"], "maestro-target": ["unix:/run/maestro.sock"], "workers": ["3"], "resync-interval": ["1m30s"],
            "min-idle": ["500ms"], "group": ["my.group"], "namespace": ["collectors"], "create-policy": ["on-activity"],
            "collector-endpoint-resolution": ["off"], "grpc-insecure": ["true"], "log-level": ["debug"],
        ])))
        #expect(given.role == .sinker)
        #expect(given.maestroTarget == "unix:/run/maestro.sock")
        #expect(given.workers == 3)
        #expect(given.resyncInterval == 90)
        #expect(given.minIdle == 0.5)
        #expect(given.names.sinkerGroup == "my.group")
        #expect(given.namespace == "collectors" && given.namespaceIsGiven)
        #expect(given.createPolicy == .onActivity)
        #expect(!given.resolvesCollectorEndpoints)
        #expect(given.grpcInsecure)
        #expect(given.logLevel == "debug" && given.logLevelIsGiven)
    }

    @Test("flag > MAESTRO_* > Orb's variable > config file > default")
    func precedence() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("maestro.yaml", "kafka-url: file:1\nlog-level: debug\nplugins-dir: /from/file\n")
        let environment = ["MAESTRO_KAFKA_URL": "maestro-env:1", "ORB_MAESTRO_OTEL_KAFKA_URL": "orb:1",
                           "ORB_MAESTRO_LOG_LEVEL": "warn", "MAESTRO_CONFIG": file]
        let withFlag = try Configuration.resolve(ConfigurationInput(flags: ["kafka-url": ["flag:1"]], environment: environment))
        #expect(withFlag.string("kafka-url") == "flag:1")
        #expect(withFlag.origin("kafka-url") == .flag("kafka-url"))

        let fromEnvironment = try Configuration.resolve(ConfigurationInput(environment: environment))
        #expect(fromEnvironment.string("kafka-url") == "maestro-env:1")
        #expect(fromEnvironment.origin("kafka-url") == .environment("MAESTRO_KAFKA_URL"))

        var orbOnly = environment
        orbOnly["MAESTRO_KAFKA_URL"] = nil
        let fromOrb = try Configuration.resolve(ConfigurationInput(environment: orbOnly))
        #expect(fromOrb.string("kafka-url") == "orb:1")
        #expect(fromOrb.string("log-level") == "warning", "Orb's warn maps to warning and beats the file")

        let fromFile = try Configuration.resolve(ConfigurationInput(environment: ["MAESTRO_CONFIG": file]))
        #expect(fromFile.string("kafka-url") == "file:1")
        #expect(fromFile.origin("kafka-url") == .file(file))
        #expect(fromFile.string("plugins-dir") == "/from/file")

        let defaults = try Configuration.resolve(ConfigurationInput())
        #expect(defaults.string("kafka-url") == "kafka1:19092")
        #expect(defaults.string("redis-url") == "redis://127.0.0.1:6379/0")
        #expect(defaults.origin("kafka-url") == .defaultValue)
    }

    @Test("Orb's split Redis variables become one URL")
    func orbRedis() throws {
        let resolved = try Configuration.resolve(ConfigurationInput(environment: [
            "ORB_MAESTRO_STREAM_ES_URL": "redis.orb:6380", "ORB_MAESTRO_STREAM_ES_PASS": "p@ss", "ORB_MAESTRO_STREAM_ES_DB": "2",
        ]))
        #expect(resolved.string("redis-url") == "redis://:p%40ss@redis.orb:6380/2")
        let shown = resolved.describe().first { $0.key == "redis-url" }
        #expect(shown?.value == "redis://:***@redis.orb:6380/2")
    }

    @Test("an unknown key in the file is an error naming the key")
    func unknownKey() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("maestro.yaml", "redis-url: redis://x:1/0\nredis-ulr: typo\n")
        let error = try #require(throws: ConfigurationError.self) {
            try Configuration.resolve(ConfigurationInput(flags: ["config": [file]]))
        }
        #expect(error.message.contains("unknown key \"redis-ulr\""))
    }

    static let badValues: [(String, String, String)] = [
        ("MAESTRO_LUA_MEMORY_MB", "lots", "lua-memory-mb"),
        ("MAESTRO_LUA_MEMORY_MB", "0", "lua-memory-mb"),
        ("MAESTRO_LOG_FORMAT", "xml", "log-format"),
        ("MAESTRO_LUA_INSTRUCTION_BUDGET", "-1", "lua-instruction-budget"),
        ("ORB_MAESTRO_LOG_LEVEL", "loud", "log-level"),
    ]

    @Test("a bad value is an error naming the setting and its source", arguments: badValues)
    func badValue(_ bad: (String, String, String)) throws {
        let error = try #require(throws: ConfigurationError.self) {
            try Configuration.resolve(ConfigurationInput(environment: [bad.0: bad.1]))
        }
        #expect(error.message.contains("invalid value for \(bad.2)"))
        #expect(error.message.contains(bad.0))
    }

    @Test("bad values in the file name the key")
    func badFileValue() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("maestro.yaml", "lua-memory-mb: [1, 2]\n")
        let error = try #require(throws: ConfigurationError.self) { try Configuration.resolve(ConfigurationInput(flags: ["config": [file]])) }
        #expect(error.message.contains("lua-memory-mb"))
        let broken = try directory.write("broken.yaml", "a: [\n")
        let syntax = try #require(throws: ConfigurationError.self) { try Configuration.resolve(ConfigurationInput(flags: ["config": [broken]])) }
        #expect(syntax.message.contains("line"))
        #expect(throws: ConfigurationError.self) { try Configuration.resolve(ConfigurationInput(flags: ["config": ["/nonexistent.yaml"]])) }
    }

    @Test("secrets come from files at every level, never from a plain flag, and are never shown")
    func secrets() throws {
        let directory = try TemporaryDirectory()
        let keyFile = try directory.write("key", "from-file-secret\n")
        let viaFlag = try Configuration.resolve(ConfigurationInput(flags: ["secret-key-file": [keyFile]]))
        #expect(viaFlag.string("secret-key") == "from-file-secret")
        let viaEnvironment = try Configuration.resolve(ConfigurationInput(environment: ["MAESTRO_SECRET_KEY_FILE": keyFile]))
        #expect(viaEnvironment.string("secret-key") == "from-file-secret")
        let config = try directory.write("maestro.yaml", "secret-key-file: \(keyFile)\n")
        let viaConfig = try Configuration.resolve(ConfigurationInput(flags: ["config": [config]]))
        #expect(viaConfig.string("secret-key") == "from-file-secret")
        let orb = try Configuration.resolve(ConfigurationInput(environment: ["ORB_SINKS_SECRET_KEY": "orb-secret"]))
        #expect(orb.string("secret-key") == "orb-secret")
        #expect(!orb.describe().contains { $0.value.contains("orb-secret") })
        let refused = try #require(throws: ConfigurationError.self) {
            try Configuration.resolve(ConfigurationInput(flags: ["secret-key": ["on-the-command-line"]]))
        }
        #expect(!refused.message.contains("on-the-command-line"))
        let redisFile = try directory.write("redis", "redis://:pw@127.0.0.1:7000/1\n")
        let redis = try Configuration.resolve(ConfigurationInput(flags: ["redis-url-file": [redisFile]]))
        #expect(redis.string("redis-url") == "redis://:pw@127.0.0.1:7000/1")
        #expect(throws: ConfigurationError.self) {
            try Configuration.resolve(ConfigurationInput(environment: ["MAESTRO_SECRET_KEY_FILE": "/nonexistent"]))
        }
    }

    @Test("the plugins section is kept per plugin")
    func pluginSection() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("maestro.yaml", "plugins:\n  prometheus:\n    topic_prefix: otlp_metrics-\n    protocol_version: 2.0.0\n")
        let resolved = try Configuration.resolve(ConfigurationInput(flags: ["config": [file]]))
        #expect(resolved.plugins["prometheus"]?["topic_prefix"] == .string("otlp_metrics-"))
    }

    @Test("durations", arguments: [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1m30s", 90.0), ("2", 2.0)])
    func durations(_ sample: (String, Double)) {
        #expect(parseDuration(sample.0) == sample.1)
    }

    @Test("invalid durations", arguments: ["", "m", "5x", "1.2.3s", "-1s"])
    func invalidDurations(_ text: String) {
        #expect(parseDuration(text) == nil)
    }
}

@Suite("Configuration docs", .testThreads, .timeLimit(.minutes(2)))
struct ConfigurationDocsTests {
    @Test("docs/configuration.md lists every setting with its environment variable")
    func everySettingDocumented() throws {
        let text = try String(contentsOfFile: repositoryRoot + "/docs/configuration.md", encoding: .utf8)
        for definition in Settings.all {
            #expect(text.contains("| `\(definition.key)`"), "\(definition.key) is missing from docs/configuration.md")
            #expect(text.contains(definition.environmentVariable), "\(definition.environmentVariable) is missing")
        }
    }

    @Test("docs/configuration.md shows each default as the settings table has it, and no setting that is gone")
    func defaultsAgree() throws {
        let text = try String(contentsOfFile: repositoryRoot + "/docs/configuration.md", encoding: .utf8)
        // The settings table: from its header row to the first line that is not a row.
        let rows = text.split(separator: "\n", omittingEmptySubsequences: false)
            .drop { !$0.hasPrefix("| setting (flag / file key)") }.dropFirst(2)
            .prefix { $0.hasPrefix("|") }
        var documented: [String: String] = [:]
        for row in rows {
            // | `key` (notes) | environment | Orb's variable | default | meaning |
            let cells = row.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            try #require(cells.count >= 6, "a settings row with too few cells: \(row)")
            let key = try #require(cells[1].split(separator: "`").first.map(String.init), "a settings row without a key: \(row)")
            documented[key] = cells[4]
        }
        #expect(Set(documented.keys) == Set(Settings.all.map(\.key)))
        // A list's default is not in the table but in the code that applies it.
        let deniedRanges = documented["collector-deny-cidr"]?.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
        #expect(deniedRanges == EndpointPolicy.defaultDeniedRanges)
        for definition in Settings.all {
            guard let shown = documented[definition.key] else { continue }
            if let value = definition.defaultValue {
                #expect(shown == "`\(value)`", "\(definition.key): the docs say \(shown), the default is \(value)")
            } else {
                // No default: the docs may say what happens instead (off, none, one per core …), never one value.
                let oneValue = shown.hasPrefix("`") && shown.hasSuffix("`") && shown.filter { $0 == "`" }.count == 2
                #expect(!oneValue, "\(definition.key) has no default, the docs show \(shown)")
            }
        }
    }
}
