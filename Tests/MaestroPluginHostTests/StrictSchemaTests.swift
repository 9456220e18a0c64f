import Foundation
import Logging
import MaestroCore
import MaestroLua
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

/// A plugins folder with the shipped `_lib` and one `loki` backend whose schema and handler a test writes.
func lokiPlugins(schema: String, handler: String = "return { on_sink_create = function(sink) return { receivers = { seen = sink.id } } end }") throws
    -> TemporaryDirectory {
    let directory = try TemporaryDirectory()
    try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/_lib", toPath: directory.path + "/_lib")
    try directory.write("loki/schema.lua", schema)
    try directory.write("loki/handler.lua", handler)
    return directory
}

@Suite("Strict schemas, validate hooks and maestro.reject", .testThreads, .timeLimit(.minutes(2)))
struct StrictSchemaTests {
    // Each mistake the new plugin author ran into, and the file:line lint must name.
    static let lintMistakes: [(String, String, String)] = [
        ("a misspelled option", """
         return {
           name = "loki", binds = { sink_backend = "loki" },
           sink = { fields = {
             tenant = { type = "word", requried = true },
           } },
         }
         """, "loki/schema.lua:4: sink.fields.tenant.requried is not a rule option (did you mean required?)"),
        ("an unknown top-level key", """
         return {
           name = "loki", binds = { sink_backend = "loki" },
           sinks = { fields = { tenant = { type = "word" } } },
         }
         """, "loki/schema.lua:3: sinks is not a schema key (did you mean sink?)"),
        ("an ill-typed default", """
         return {
           name = "loki", binds = { sink_backend = "loki" },
           sink = { fields = {
             tenant = { type = "word",
               default = 5 },
           } },
         }
         """, "loki/schema.lua:5: sink.fields.tenant.default must be a string (the default breaks the field's own rule)"),
        ("a validate that is not a function", """
         return {
           name = "loki", binds = { sink_backend = "loki" },
           sink = { fields = { tenant = { type = "word", validate = "t-%d+" } } },
         }
         """, "loki/schema.lua:3: sink.fields.tenant.validate must be a function(value, config)"),
        ("a function where data belongs", """
         return {
           name = "loki", binds = { sink_backend = "loki" },
           sink = { fields = { tenant = { type = "word", default = function() return "x" end } } },
         }
         """, "loki/schema.lua:3: sink.fields.tenant.default is a function; only a field rule's validate may be one"),
        ("a malformed pattern", """
         return {
           name = "loki", binds = { sink_backend = "loki" },
           -- a comment with pattern = in it must not be taken for the key
           sink = { fields = {
             tenant = { type = "word", pattern = "[a-z" },
           } },
         }
         """, "loki/schema.lua:5: sink.fields.tenant.pattern is not a valid Lua pattern: malformed pattern (missing ']')"),
        ("an unknown binding", """
         return {
           name = "loki",
           binds = { sink_backends = "loki" },
         }
         """, "loki/schema.lua:3: binds.sink_backends is not a schema key (did you mean sink_backend?)"),
        ("a mistake in a settings field", """
         return {
           name = "loki", binds = { sink_backend = "loki" },
           settings = { fields = {
             batch = { type = "integer", mni = 1 },
           } },
         }
         """, "loki/schema.lua:4: settings.fields.batch.mni is not a rule option (did you mean min?)"),
    ]

    @Test("attack: a schema table that contains itself fails lint instead of looping")
    func cyclicSchema() throws {
        let plugins = try lokiPlugins(schema: """
            local rule = { type = "map" }
            rule.fields = { again = rule }
            return { name = "loki", binds = { sink_backend = "loki" }, sink = { fields = { loop = rule } } }
            """)
        let message = PluginCatalog.load(root: plugins.path).failures.first?.message ?? ""
        #expect(message.contains("nests more than 64 tables deep (a table that contains itself?)"), "\(message)")
    }

    @Test("lint names file:line for every schema mistake", arguments: lintMistakes.indices)
    func lintMistake(_ index: Int) throws {
        let (name, schema, expected) = Self.lintMistakes[index]
        let plugins = try lokiPlugins(schema: schema)
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.plugins.isEmpty, "\(name) was accepted")
        let message = catalog.failures.first?.message ?? ""
        #expect(message.hasPrefix((plugins.path as NSString).lastPathComponent + "/" + expected), "\(name): \(message)")
    }

    @Test("a mistake in a rule shared through _lib is named in _lib's file")
    func mistakeInLibrary() throws {
        let plugins = try lokiPlugins(schema: """
            local shared = require "_lib.shared"
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = { tenant = shared.tenant } },
            }
            """)
        try plugins.write("_lib/shared.lua", "local shared = {}\n\nshared.tenant = { type = 'word',\n  descripton = 'typo' }\nreturn shared\n")
        let message = PluginCatalog.load(root: plugins.path).failures.first?.message ?? ""
        #expect(message.hasPrefix((plugins.path as NSString).lastPathComponent + "/_lib/shared.lua:4: sink.fields.tenant.descripton is not a rule option"),
                "\(message)")
    }

    @Test("the shipped plugins and the example backend pass the strict checks")
    func shippedPluginsAreStrict() throws {
        #expect(shippedCatalog().failures.isEmpty, "\(shippedCatalog().failures)")
        let plugins = try lokiPlugins(schema: "return { name = 'loki' }")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/examples/02-custom-backend/otlpgrpc", toPath: plugins.path + "/otlpgrpc")
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
    }

    static let hookSchema = """
        return {
          name = "loki", binds = { sink_backend = "loki" },
          sink = { fields = {
            tenant = { type = "word", required = true, validate = function(value, config)
              if value:sub(1, 2) ~= "t-" then return false, "must start with t- (a tenant id)" end
              if config.mode == "strict" and #value > 5 then return nil, "must be short in strict mode" end
              if value == "t-call" then maestro.reject("tenant", "is reserved") end
              if value == "t-error" then error("a bug in the hook") end
              if value == "t-loop" then while true do end end
              if value == "t-yield" then coroutine.yield() end
              if value == "t-pcall" then pcall(maestro.reject, "tenant", "caught?") return true end
              return true
            end },
            mode = { type = "string", default = "lax", one_of = { "lax", "strict" } },
          } },
        }
        """

    func build(_ plugins: TemporaryDirectory, _ config: Value, budget: Int = 2_000_000) -> CollectorConfigResult {
        let catalog = PluginCatalog.load(root: plugins.path, limits: PluginCatalog.LuaLimits(instructionBudget: budget, memoryLimitBytes: 16 << 20))
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        return builder(catalog: catalog).build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: config)
    }

    @Test("a validate hook accepts, or rejects with its message as a provisioning error; it sees the whole checked config")
    func hookVerdicts() throws {
        let plugins = try lokiPlugins(schema: Self.hookSchema)
        guard case .config(let config, _) = build(plugins, ["tenant": "t-12"]) else { Issue.record("t-12 was refused"); return }
        #expect(config["receivers"]?["seen"] == "s1")
        guard case .invalid(let message) = build(plugins, ["tenant": "acme"]) else { Issue.record("acme was accepted"); return }
        #expect(message == "tenant must start with t- (a tenant id)")
        guard case .invalid(let strict) = build(plugins, ["tenant": "t-1234", "mode": "strict"]) else { Issue.record("strict accepted"); return }
        #expect(strict == "tenant must be short in strict mode")
        guard case .invalid(let reserved) = build(plugins, ["tenant": "t-call"]) else { Issue.record("t-call accepted"); return }
        #expect(reserved == "tenant is reserved")
    }

    @Test("attack: a hook that errors, loops, yields or swallows maestro.reject with pcall is the plugin's failure or still a rejection")
    func hookAttacks() throws {
        let plugins = try lokiPlugins(schema: Self.hookSchema)
        guard case .failed(let error, let plugin) = build(plugins, ["tenant": "t-error"]) else { Issue.record("an erroring hook passed"); return }
        #expect(plugin == "loki" && error.kind == .runtime && error.message.contains("a bug in the hook"), "\(error)")
        guard case .failed(let looping, _) = build(plugins, ["tenant": "t-loop"]) else { Issue.record("a looping hook passed"); return }
        #expect(looping.kind == .instructionBudget)
        guard case .failed(let yielding, _) = build(plugins, ["tenant": "t-yield"]) else { Issue.record("a yielding hook passed"); return }
        #expect(yielding.kind == .runtime && yielding.message.contains("yield"), "\(yielding)")
        guard case .invalid(let caught) = build(plugins, ["tenant": "t-pcall"]) else { Issue.record("pcall swallowed maestro.reject"); return }
        #expect(caught == "tenant caught?")
    }

    @Test("maestro.reject in a handler is a rejection with the path and message; the VM is kept; maestro.fail stays a terminal failure")
    func rejectInHandler() throws {
        let plugins = try lokiPlugins(schema: "return { name = 'loki', binds = { sink_backend = 'loki' } }", handler: """
            local calls = 0
            return { on_sink_create = function(sink)
              calls = calls + 1
              if sink.config.tenant == "bad" then maestro.reject("tenant", "is not a tenant of this cluster (" .. sink.config.password .. ")") end
              if sink.config.tenant == "whole" then maestro.reject("", "this backend is closed") end
              if sink.config.tenant == "fail" then maestro.fail("a bug") end
              return { receivers = { calls = calls } }
            end }
            """)
        let catalog = PluginCatalog.load(root: plugins.path)
        let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: OrbSecretCipher(secret: "orb"), kafkaURL: "k:1", policy: .eager,
                                    collectors: nil, logger: Logger(label: "test"))
        let source = PluginConfigSource(context: context)
        func outcome(_ config: Value) -> CollectorConfigOutcome {
            source.collectorConfig(for: CollectorConfigRequest(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: config,
                                                               eventID: "1-0", deliveries: 1))
        }
        guard case .config = outcome(["tenant": "good"]) else { Issue.record("good refused"); return }
        guard case .invalid(let message) = outcome(["tenant": "bad", "password": "hunter2secret"]) else { Issue.record("bad accepted"); return }
        #expect(message.hasPrefix("tenant is not a tenant of this cluster ("), "\(message)")
        #expect(!message.contains("hunter2secret"), "a credential the plugin quoted reached the message")
        guard case .invalid(let whole) = outcome(["tenant": "whole"]) else { Issue.record("whole accepted"); return }
        #expect(whole == "this backend is closed")
        guard case .config(let yaml) = outcome(["tenant": "good"]) else { Issue.record("good refused after a rejection"); return }
        #expect(try YAML.parse(yaml)["receivers"]?["calls"] == 4, "the VM was rebuilt after a rejection: module state lost")
        guard case .failed(_, _, let terminal) = outcome(["tenant": "fail"]) else { Issue.record("fail was not a failure"); return }
        #expect(terminal)
    }

    @Test("maestro.reject refuses bad arguments, and outside a config build")
    func rejectMisuse() throws {
        let plugins = try lokiPlugins(schema: "return { name = 'loki', binds = { sink_backend = 'loki' } }", handler: """
            return { on_sink_create = function(sink)
              if sink.config.case == "no-message" then maestro.reject("tenant") end
              if sink.config.case == "number" then maestro.reject(5, "x") end
              return {}
            end }
            """)
        guard case .failed(let noMessage, _) = build(plugins, ["case": "no-message"]) else { Issue.record("accepted"); return }
        #expect(noMessage.message.contains("maestro.reject: bad argument #2"), "\(noMessage)")
        guard case .failed(let number, _) = build(plugins, ["case": "number"]) else { Issue.record("accepted"); return }
        #expect(number.message.contains("maestro.reject: bad argument #1"), "\(number)")

        let hook = try lokiPlugins(schema: "return { name = 'loki', binds = { collector_status = true } }",
                                   handler: "return { on_collector_status = function() maestro.reject('x', 'y') end }")
        let catalog = PluginCatalog.load(root: hook.path)
        let runtime = PluginRuntime(catalog: catalog, names: RedisNames(), logger: Logger(label: "test"))
        let vm = try runtime.machine(for: try #require(catalog.plugin(named: "loki")))
        #expect(throws: LuaError.self) { try runtime.invocation.handling("s1") { () throws(LuaError) in try vm.call("handler", "on_collector_status", []) } }
        do {
            _ = try runtime.invocation.handling("s1") { () throws(LuaError) in try vm.call("handler", "on_collector_status", []) }
        } catch {
            #expect(error.kind == .runtime && error.message.contains("only a sink backend's handler or a schema validate hook may reject"), "\(error)")
        }
    }
}

@Suite("maestro.reject through the pipeline against a real Redis", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct RejectPipelineTests {
    @Test("maestro.reject → provisioning_error with its message on the status stream; the last good config stays; a fix clears it")
    func rejectEndToEnd() throws {
        let plugins = try lokiPlugins(schema: """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = { tenant = { type = "word", required = true } } },
            }
            """, handler: """
            return { on_sink_create = function(sink)
              if sink.config.tenant:find("^t%-") == nil then maestro.reject("tenant", "must be a tenant id such as t-123") end
              return { exporters = { loki = { tenant = sink.config.tenant } } }
            end, on_sink_update = nil }
            """)
        let fixture = try PipelineFixture(plugins: plugins.path)
        let redis = try fixture.connect()
        let consumer = try fixture.consumer()
        consumer.start()
        defer { consumer.stop() }
        try fixture.add(redis, create("r1", #"{"tenant":"t-1"}"#, backend: "loki"))
        #expect(try fixture.waitUntilDrained(redis))
        let good = try #require(try redis.hget(fixture.names.configHash, field: "r1"))

        try fixture.add(redis, update("r1", #"{"tenant":"acme"}"#))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.hget(fixture.names.configHash, field: "r1") == good, "the last good config was replaced")
        let statuses = try redis.xrange(fixture.names.statusStream)
        #expect(statuses.last?["status"] == "provisioning_error")
        #expect(statuses.last?["error_message"] == "tenant must be a tenant id such as t-123")
        #expect(statuses.last?["sink_id"] == "r1")
        #expect(try fixture.deadLetters(redis).isEmpty, "a rejection was dead-lettered")
        #expect(try SinkStore.record(redis, names: fixture.names, sinkID: "r1") != nil)

        try fixture.add(redis, update("r1", #"{"tenant":"t-2"}"#))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.hget(fixture.names.configHash, field: "r1")?.contains("t-2") == true)
        #expect(try redis.xrange(fixture.names.statusStream).last?["status"] != "provisioning_error")
    }
}

@Suite("_lib/otel pipelines", .testThreads, .timeLimit(.minutes(1)))
struct OtelLibraryTests {
    @Test("an exporter that sends metrics only refuses logs as the user's mistake, naming signals")
    func unsupportedSignal() throws {
        let plugins = try lokiPlugins(schema: """
            local otel = require "_lib.otel"
            return { name = "loki", binds = { sink_backend = "loki" }, sink = { fields = { signals = otel.signals_field } } }
            """, handler: """
            local otel = require "_lib.otel"
            return { on_sink_create = function(sink)
              sink.config.authentication = { type = "bearertokenauth", scheme = "Bearer", token = "t" }
              sink.settings = { topic_prefix = "m-", logs_topic_prefix = "l-", protocol_version = "2.0.0" }
              return otel.collector_config(sink, "prometheusremotewrite", "https://p", nil, { signals = sink.config.signals, supported = { "metrics" } })
            end }
            """)
        let catalog = PluginCatalog.load(root: plugins.path)
        guard case .invalid(let message) = builder(catalog: catalog).build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki",
                                                                           config: ["signals": ["metrics", "logs"]]) else {
            Issue.record("logs were accepted")
            return
        }
        #expect(message == "signals asks for logs, but the prometheusremotewrite exporter sends metrics only")
        guard case .config(let config, _) = builder(catalog: catalog).build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki",
                                                                            config: .map([:])) else {
            Issue.record("metrics were refused")
            return
        }
        #expect(config["service"]?["pipelines"]?["metrics"]?["receivers"] == ["kafka"])
        #expect(config["receivers"]?["kafka"]?["topic"] == "m-s1")
    }
}
