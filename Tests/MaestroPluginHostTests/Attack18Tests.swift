import Foundation
import Logging
import MaestroCore
import MaestroLua
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

/// Red-team attacks on issue 18's guarantees (strict schemas, rejections, specs, plugin metrics).
@Suite("Attacks on issue 18", .testThreads, .timeLimit(.minutes(2)))
struct Attack18Tests {
    static let cipher = OrbSecretCipher(secret: "orb")

    func source(_ plugins: TemporaryDirectory) -> PluginConfigSource {
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: Self.cipher, kafkaURL: "k:1", policy: .eager,
                                    collectors: nil, logger: Logger(label: "test"))
        return PluginConfigSource(context: context)
    }

    func outcome(_ source: PluginConfigSource, _ config: Value) -> CollectorConfigOutcome {
        source.collectorConfig(for: CollectorConfigRequest(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: config,
                                                           eventID: "1-0", deliveries: 1))
    }

    // MARK: secrets

    static let authSchema = """
        return {
          name = "loki", binds = { sink_backend = "loki" },
          sink = { fields = {
            mode = { type = "word" },
            authentication = { type = "map", fields = {
              password = { type = "string", secret = true,
                           validate = function(value) if value:sub(1, 4) == "bad-" then return false, "is wrong: " .. value end end },
            } },
          } },
        }
        """

    @Test("attack: an Orb-encrypted password, decrypted for the plugin and quoted by maestro.reject, a hook or an error, never reaches the status message or the reason")
    func encryptedCredentialQuoted() throws {
        let plugins = try lokiPlugins(schema: Self.authSchema, handler: """
            return { on_sink_create = function(sink)
              local password = sink.config.authentication.password
              if sink.config.mode == "reject" then maestro.reject("authentication.password", "is not accepted: " .. password) end
              if sink.config.mode == "fail" then maestro.fail("cannot log in with " .. password) end
              if sink.config.mode == "error" then error("cannot log in with " .. password) end
              return { ok = true }
            end }
            """)
        let source = source(plugins)
        let plain = "hunter2plaintext"
        func config(_ mode: String, _ password: String = plain) -> Value {
            ["mode": .string(mode), "authentication": ["password": .string(Self.cipher.encrypt(password))]]
        }
        guard case .invalid(let rejected) = outcome(source, config("reject")) else { Issue.record("reject was not a rejection"); return }
        #expect(!rejected.contains(plain), "the decrypted password reached the status message: \(rejected)")
        guard case .invalid(let hooked) = outcome(source, config("ok", "bad-" + plain)) else { Issue.record("the hook did not reject"); return }
        #expect(!hooked.contains(plain), "the decrypted password reached the status message: \(hooked)")
        guard case .failed(let failed, _, _) = outcome(source, config("fail")) else { Issue.record("fail was not a failure"); return }
        #expect(!failed.contains(plain), "the decrypted password reached the dead-letter reason: \(failed)")
        guard case .failed(let errored, _, _) = outcome(source, config("error")) else { Issue.record("error was not a failure"); return }
        #expect(!errored.contains(plain), "the decrypted password reached the retry reason: \(errored)")
    }

    @Test("attack: a secret field inside a list's items (a list of secrets, a list of maps with a secret) is masked in a rejection quoting it")
    func secretInListItems() throws {
        let plugins = try lokiPlugins(schema: """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = {
                pins = { type = "list", items = { type = "string", secret = true } },
                routes = { type = "list", items = { type = "map", fields = { pin = { type = "string", secret = true } } } },
              } },
            }
            """, handler: """
            return { on_sink_create = function(sink)
              if sink.config.pins then maestro.reject("pins", "pin " .. sink.config.pins[1] .. " is not known") end
              maestro.reject("routes", "pin " .. sink.config.routes[1].pin .. " is not known")
            end }
            """)
        let source = source(plugins)
        guard case .invalid(let listed) = outcome(source, ["pins": ["pin-4711-secret"]]) else { Issue.record("not rejected"); return }
        #expect(!listed.contains("pin-4711-secret"), "a secret list item reached the status message: \(listed)")
        guard case .invalid(let nested) = outcome(source, ["routes": [["pin": "pin-0815-secret"]]]) else { Issue.record("not rejected"); return }
        #expect(!nested.contains("pin-0815-secret"), "a secret field of a list item reached the status message: \(nested)")
    }

    @Test("attack: a golden case whose config is rejected with the password quoted: the spec output names no credential")
    func goldenRejectionMasked() throws {
        let plugins = try lokiPlugins(schema: Self.authSchema, handler: """
            return { on_sink_create = function(sink)
              maestro.reject("authentication.password", "is not accepted: " .. sink.config.authentication.password)
            end }
            """)
        try plugins.write("loki/spec/golden/leak.json", #"{"config": {"mode": "x", "authentication": {"password": "golden-hunter2"}}}"#)
        try plugins.write("loki/spec/golden/leak.yaml", "ok: true\n")
        let results = PluginSpecRunner.run(catalog: PluginCatalog.load(root: plugins.path))
        #expect(results.count == 1, "\(results)")
        let failure = results.first?.failure ?? ""
        #expect(failure.contains("rejected"), "\(results)")
        #expect(!failure.contains("golden-hunter2"), "the sink's password reached the spec output: \(failure)")
    }

    // MARK: plugin metrics

    func exposition(root plugins: TemporaryDirectory, backends: [String]) throws -> (PluginCatalog, String) {
        let catalog = PluginCatalog.load(root: plugins.path)
        let store = PluginMetricsStore()
        let logger = Logger(label: "test")
        let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: Self.cipher, kafkaURL: "k:1", policy: .eager, collectors: nil, logger: logger)
        let runtime = PluginRuntime(catalog: catalog, names: RedisNames(), logger: logger, cluster: nil, replacing: [], metrics: store)
        let builder = CollectorConfigBuilder(context: context, runtime: runtime)
        for backend in backends where catalog.plugin(forBackend: backend) != nil {
            _ = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: backend, config: .map([:]))
        }
        return (catalog, store.exposition())
    }

    func write(_ plugins: TemporaryDirectory, _ name: String, nameLiteral: String? = nil, metrics: String, handler: String) throws {
        try plugins.write("\(name)/schema.lua", "return { name = \(nameLiteral ?? "'\(name)'"), binds = { sink_backend = \(nameLiteral ?? "'\(name)'") }, metrics = { \(metrics) } }")
        try plugins.write("\(name)/handler.lua", "return { on_sink_create = function(sink) \(handler) return { ok = true } end }")
    }

    @Test("attack: plugin `duration` cannot serve maestro_plugin_duration_seconds_bucket/_count/_sum, the series of maestro's own histogram")
    func ownHistogramSeries() throws {
        let plugins = try TemporaryDirectory()
        try write(plugins, "duration", metrics: """
            seconds_count = { type = 'gauge', help = 'forged' }, seconds_bucket = { type = 'gauge', help = 'forged', labels = { 'plugin', 'le' } }
            """, handler: "maestro.metrics.set('seconds_count', 1e9) maestro.metrics.set('seconds_bucket', { plugin = 'prometheus', le = '+Inf' }, 1e9)")
        let (catalog, text) = try exposition(root: plugins, backends: ["duration"])
        #expect(!catalog.plugins.contains { $0.name == "duration" }, "a plugin took the names of maestro's own maestro_plugin_duration_seconds series")
        #expect(!text.contains("maestro_plugin_duration_seconds_"), "\(text)")
    }

    @Test("attack: a histogram's _bucket/_count/_sum series cannot be taken by another metric of the same plugin")
    func histogramSuffixInOnePlugin() throws {
        let plugins = try TemporaryDirectory()
        try write(plugins, "loki", metrics: """
            latency = { type = 'histogram', help = 'h' }, latency_count = { type = 'gauge', help = 'forged' }
            """, handler: "maestro.metrics.observe('latency', nil, 1) maestro.metrics.set('latency_count', 42)")
        let (catalog, text) = try exposition(root: plugins, backends: ["loki"])
        let countLines = text.split(separator: "\n").filter { $0.hasPrefix("maestro_plugin_loki_latency_count") }
        #expect(!catalog.plugins.contains { $0.name == "loki" } || countLines.count <= 1,
                "two metrics are served under one name, /metrics is corrupt:\n\(text)")
    }

    @Test("attack: plugin loki_latency's counter `bucket` cannot meet plugin loki's histogram `latency` series on /metrics")
    func histogramSuffixAcrossPlugins() throws {
        let plugins = try TemporaryDirectory()
        try write(plugins, "loki", metrics: "latency = { type = 'histogram', help = 'h' }", handler: "maestro.metrics.observe('latency', nil, 1)")
        try write(plugins, "loki_latency", metrics: "bucket = { type = 'gauge', help = 'forged', labels = { 'le' } }",
                  handler: "maestro.metrics.set('bucket', { le = '+Inf' }, 99)")
        let (catalog, text) = try exposition(root: plugins, backends: ["loki", "loki_latency"])
        #expect(catalog.plugins.count == 1, "both loaded: loki_latency forges loki's histogram buckets:\n\(text)")
    }

    /// Every line of a Prometheus text exposition, checked against the format's grammar.
    static func invalidLines(_ text: String) -> [String] {
        let name = "[a-zA-Z_:][a-zA-Z0-9_:]*"
        let comment = try! Regex("^# (HELP|TYPE) \(name)( .*)?$")
        let sample = try! Regex(#"^"# + name + #"(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? [^ ]+$"#)
        return text.split(separator: "\n").map(String.init).filter { line in
            (try? comment.wholeMatch(in: line)) == nil && (try? sample.wholeMatch(in: line)) == nil
        }
    }

    @Test("attack: a plugin whose name is not a metric name (a dot, a space, a newline) cannot corrupt or forge /metrics", arguments: ["loki.v2", "lo ki", "lo\nmaestro_forged 1\n#"])
    func pluginNameInMetricName(_ name: String) throws {
        let plugins = try TemporaryDirectory()
        let literal = "'" + name.replacingOccurrences(of: "\n", with: "\\n") + "'"
        try write(plugins, name, nameLiteral: literal, metrics: "built_total = { type = 'counter', help = 'Configs built.' }", handler: "maestro.metrics.inc('built_total')")
        let (_, text) = try exposition(root: plugins, backends: [name])
        #expect(Self.invalidLines(text).isEmpty, "/metrics is not valid exposition:\n\(text)")
        #expect(!text.split(separator: "\n").contains { $0.hasPrefix("maestro_forged") }, "\(text)")
    }

    @Test("the exposition of ordinary plugin metrics passes the grammar check (the checker itself is sound)")
    func grammarCheckerSound() throws {
        let plugins = try TemporaryDirectory()
        try write(plugins, "loki", metrics: """
            latency = { type = 'histogram', help = 'h\\\\ with \\n newline' }, built_total = { type = 'counter', help = 'c', labels = { 'outcome' } }
            """, handler: "maestro.metrics.observe('latency', nil, 0.3) maestro.metrics.inc('built_total', { outcome = 'a\"b\\\\c\\nd' })")
        let (catalog, text) = try exposition(root: plugins, backends: ["loki"])
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        #expect(text.contains("maestro_plugin_loki_latency_count 1"), "\(text)")
        #expect(Self.invalidLines(text).isEmpty, "\(Self.invalidLines(text))")
    }

    // MARK: strict schemas

    @Test("attack: a NaN default (0/0) on a number field with min and max breaks its rule: lint fails")
    func nanDefault() throws {
        let plugins = try lokiPlugins(schema: """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = {
                ratio = { type = "number", min = 0, max = 1, default = 0/0 },
              } },
            }
            """)
        let failures = PluginCatalog.load(root: plugins.path).failures
        #expect(failures.first?.message.contains("loki/schema.lua:4") == true, "a NaN default outside [0, 1] passed lint: \(failures)")
    }

    @Test("attack: a NaN bound (min = 0/0) would silently check nothing: lint fails")
    func nanBound() throws {
        let plugins = try lokiPlugins(schema: """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = {
                ratio = { type = "number", min = 0/0 },
              } },
            }
            """)
        let failures = PluginCatalog.load(root: plugins.path).failures
        #expect(failures.first?.message.contains("loki/schema.lua:4") == true, "min = NaN passed lint: \(failures)")
    }

    @Test("attack: hostile values against backtracking patterns are refused or accepted quickly, as the user's error, never held",
          arguments: [("^(.-)(.-)(.-)(.-)(.-)x$", String(repeating: "a", count: 200_000)),
                      ("^(a*)*b$", String(repeating: "a", count: 100_000)),
                      ("^(.*)%1%1$", String(repeating: "ab", count: 50_000)),
                      ("^%b()$", String(repeating: "(", count: 200_000)),
                      ("^[%w_%-]+@[%w%.]+$", String(repeating: "a", count: 300_000) + "!")])
    func boundedPatterns(_ pattern: String, _ value: String) throws {
        let plugins = try lokiPlugins(schema: """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = { tenant = { type = "string", pattern = [==[\(pattern)]==] } } },
            }
            """)
        let source = source(plugins)
        let started = Date()
        let result = outcome(source, ["tenant": .string(value)])
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed < 2, "matching \(pattern) took \(elapsed)s")
        if case .failed = result { Issue.record("a value checked against a pattern failed the plugin: \(result)") }
        if case .invalid(let message) = result { #expect(message.hasPrefix("tenant "), "\(message)") }
    }
    // MARK: patterns: the same answers as Lua's string.find

    @Test("attack: LuaPattern answers as Lua 5.4's string.find on random patterns and subjects (differential)")
    func patternDifferential() throws {
        let vm = try LuaVM(configuration: LuaConfiguration(name: "diff", instructionBudget: 0, memoryLimitBytes: 64 << 20))
        var generator = SystemRandomNumberGenerator()
        let atoms = ["a", "b", ".", "%a", "%d", "%w", "%s", "%p", "%x", "%u", "%l", "%c", "%g", "%A", "%D", "[ab]", "[^a]", "[a-c]", "[%d_]", "[]]",
                     "[^]]", "[a-]", "[-a]", "[%]]", "%%", "%.", "%-", "x", "-", "]", "^", "$", "%z"]
        let quantifiers = ["", "", "*", "+", "-", "?"]
        let alphabet: [Character] = ["a", "b", "c", "1", "9", " ", "-", "_", "]", "[", "%", "^", "$", ".", "A", "Z", "(", ")", "x", "\t"]
        var mismatches: [String] = []
        var compared = 0
        var luaErrors: [String] = []
        for _ in 0..<3000 {
            var pattern = Bool.random(using: &generator) ? "^" : ""
            var open = 0
            for _ in 0..<Int.random(in: 1...5, using: &generator) {
                let roll = Int.random(in: 0..<10, using: &generator)
                if roll == 0 && open < 2 { pattern += "("; open += 1; continue }
                if roll == 1 && open > 0 { pattern += ")"; open -= 1; continue }
                if roll == 2 { pattern += "%b()"; continue }
                if roll == 3 { pattern += "%f[%w]"; continue }
                pattern += atoms.randomElement(using: &generator)! + quantifiers.randomElement(using: &generator)!
            }
            pattern += String(repeating: ")", count: open)
            if Bool.random(using: &generator) { pattern += "$" }
            let subject = String((0..<Int.random(in: 0...8, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
            guard let compiled = try? LuaPattern(pattern) else { continue }
            let quotedPattern = pattern.unicodeScalars.map { "\\" + String($0.value) }.joined()
            let quotedSubject = subject.unicodeScalars.map { "\\" + String($0.value) }.joined()
            let lua: Bool
            do {
                lua = try vm.evaluate("return string.find(\"\(quotedSubject)\", \"\(quotedPattern)\") ~= nil").first??.boolValue ?? false
            } catch {
                luaErrors.append("\(error)")
                continue
            }
            compared += 1
            let swift = try? compiled.matches(subject)
            if swift != lua { mismatches.append("\(pattern) on \(subject.debugDescription): Lua \(lua), LuaPattern \(swift.map(String.init) ?? "error")") }
        }
        #expect(compared > 1000, "only \(compared) cases compared; Lua errors: \(luaErrors.prefix(3))")
        #expect(mismatches.isEmpty, "\(mismatches.count) mismatches, e.g. \(mismatches.prefix(10).joined(separator: "\n"))")
    }

    // MARK: hooks under the plugin's budget

    @Test("attack: a config with many list items cannot multiply a validate hook's work past the plugin's instruction budget")
    func hookBudgetPerEvent() throws {
        let plugins = try lokiPlugins(schema: """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = {
                brokers = { type = "list", items = { type = "string",
                  validate = function(value) local n = 0 for i = 1, 20000 do n = n + i end return true end } },
              } },
            }
            """)
        let catalog = PluginCatalog.load(root: plugins.path, limits: PluginCatalog.LuaLimits(instructionBudget: 200_000, memoryLimitBytes: 16 << 20))
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: Self.cipher, kafkaURL: "k:1", policy: .eager, collectors: nil,
                                    logger: Logger(label: "test"))
        let builder = CollectorConfigBuilder(context: context, runtime: PluginRuntime(catalog: catalog, names: RedisNames(), logger: Logger(label: "test")))
        // One item costs well under the budget; 2,000 of them cost a thousand budgets.
        guard case .config = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: ["brokers": ["one"]]) else {
            Issue.record("one item failed"); return
        }
        let started = Date()
        let many = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki",
                                 config: ["brokers": .list(Array(repeating: "b", count: 2_000))])
        let elapsed = Date().timeIntervalSince(started)
        if case .config = many { Issue.record("2,000 hook calls ran \(elapsed)s of plugin code for one event, 1,000 times the plugin's budget") }
    }
    // MARK: secrets in spec output and /metrics

    @Test("attack: a handler that logs or prints the sink's password during spec.build: the spec output names no credential")
    func specOutputMasked() throws {
        let plugins = try lokiPlugins(schema: Self.authSchema, handler: """
            return { on_sink_create = function(sink)
              maestro.log.info("logging in with " .. sink.config.authentication.password)
              print("password is " .. sink.config.authentication.password)
              return { ok = true }
            end }
            """)
        try plugins.write("loki/spec/leak_spec.lua", """
            it("builds", function()
              spec.build({ mode = "x", authentication = { password = "spec-hunter2" } })
              assert(false, "shown with its output")
            end)
            """)
        let results = PluginSpecRunner.run(catalog: PluginCatalog.load(root: plugins.path))
        #expect(results.count == 1 && results.first?.failure != nil, "\(results)")
        let shown = (results.first?.output ?? []).joined(separator: "\n") + (results.first?.failure ?? "")
        #expect(shown.contains("logging in with"), "the log line was not captured: \(shown)")
        #expect(!shown.contains("spec-hunter2"), "the sink's password reached the spec output: \(shown)")
    }

    @Test("attack: a label value that quotes the sink's password does not put the credential on /metrics")
    func metricLabelMasked() throws {
        let plugins = try TemporaryDirectory()
        try plugins.write("loki/schema.lua", """
            return { name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = { authentication = { type = "map", fields = { password = { type = "string", secret = true } } } } },
              metrics = { logins_total = { type = "counter", help = "Logins.", labels = { "user" } } } }
            """)
        try plugins.write("loki/handler.lua", """
            return { on_sink_create = function(sink)
              maestro.metrics.inc("logins_total", { user = sink.config.authentication.password })
              return { ok = true }
            end }
            """)
        let catalog = PluginCatalog.load(root: plugins.path)
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        let store = PluginMetricsStore()
        let logger = Logger(label: "test")
        let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: Self.cipher, kafkaURL: "k:1", policy: .eager, collectors: nil, logger: logger)
        let builder = CollectorConfigBuilder(context: context,
                                             runtime: PluginRuntime(catalog: catalog, names: RedisNames(), logger: logger, cluster: nil, replacing: [], metrics: store))
        _ = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: ["authentication": ["password": "metric-hunter2"]])
        #expect(!store.exposition().contains("metric-hunter2"), "the sink's password is served on /metrics: \(store.exposition())")
    }
    @Test("attack: a rejection or error long enough to be cut at 500 characters does not leak the part of the password before the cut")
    func truncatedSecret() throws {
        let plugins = try lokiPlugins(schema: Self.authSchema, handler: """
            return { on_sink_create = function(sink)
              local message = string.rep("x", 470) .. " " .. sink.config.authentication.password
              if sink.config.mode == "reject" then maestro.reject("", message) end
              error(message, 0)
            end }
            """)
        let source = source(plugins)
        let password = "Sup3rSecretPassw0rdThatIsLong-0123456789"
        let head = String(password.prefix(12))
        let config: Value = ["mode": "reject", "authentication": ["password": .string(password)]]
        guard case .invalid(let rejected) = outcome(source, config) else { Issue.record("not rejected"); return }
        #expect(!rejected.contains(head), "the first characters of the password reached the status message: …\(rejected.suffix(40))")
        guard case .failed(let reason, _, _) = outcome(source, ["mode": "error", "authentication": ["password": .string(password)]]) else {
            Issue.record("not failed"); return
        }
        #expect(!reason.contains(head), "the first characters of the password reached the failure reason: …\(reason.suffix(40))")
    }

    @Test("attack: a password holding a tab, quoted by maestro.reject (which turns control characters into spaces), is still masked")
    func controlCharacterSecret() throws {
        let plugins = try lokiPlugins(schema: Self.authSchema, handler: """
            return { on_sink_create = function(sink)
              maestro.reject("authentication.password", "is not accepted: " .. sink.config.authentication.password)
            end }
            """)
        let source = source(plugins)
        guard case .invalid(let rejected) = outcome(source, ["mode": "x", "authentication": ["password": "tab\tsecret-4711"]]) else {
            Issue.record("not rejected"); return
        }
        #expect(!rejected.contains("secret-4711"), "the password reached the status message: \(rejected)")
    }
    @Test("attack: metrics a reloaded plugin no longer declares are not served (nor kept) after 20 reloads that each rename them")
    func reloadedDeclarationsDoNotAccumulate() throws {
        let store = PluginMetricsStore()
        let plugins = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/_lib", toPath: plugins.path + "/_lib")
        let logger = Logger(label: "test")
        for generation in 1...20 {
            try write(plugins, "loki", metrics: "gen\(generation)_total = { type = 'counter', help = 'g', labels = { 'tenant' }, max_label_values = 1000 }",
                      handler: "for i = 1, 1000 do maestro.metrics.inc('gen\(generation)_total', { tenant = 't' .. i }) end")
            let catalog = PluginCatalog.load(root: plugins.path)
            #expect(catalog.failures.isEmpty, "\(catalog.failures)")
            let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: Self.cipher, kafkaURL: "k:1", policy: .eager, collectors: nil, logger: logger)
            let builder = CollectorConfigBuilder(context: context,
                                                 runtime: PluginRuntime(catalog: catalog, names: RedisNames(), logger: logger, cluster: nil, replacing: [], metrics: store))
            _ = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: .map([:]))
        }
        let families = Set(store.exposition().split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] })
        #expect(families == ["maestro_plugin_loki_gen20_total"], "undeclared metrics of earlier generations are still served: \(families.sorted())")
    }
    @Test("attack: lint names the line of the broken rule, not an earlier nested field of the same name",
          arguments: [("b = { type = \"wrod\" },", "sink.fields.b.type must be one of"),
                      ("b = { type = \"word\", default = 5 },", "(the default breaks the field's own rule)"),
                      ("b = { type = \"word\", requried = true },", "sink.fields.b.requried is not a rule option")])
    func lintLineOfSameNamedField(_ broken: String, _ expected: String) throws {
        let plugins = try lokiPlugins(schema: """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = {
                a = { type = "map", fields = { b = { type = "word", default = "x" } } },
                \(broken)
              } },
            }
            """)
        let message = PluginCatalog.load(root: plugins.path).failures.first?.message ?? ""
        #expect(message.contains(expected), "\(message)")
        #expect(message.contains("loki/schema.lua:5: "), "the wrong line is named: \(message)")
    }

    @Test("attack: an unknown capability in schema.lua is a lint error naming file:line, as every other schema mistake")
    func capabilityLine() throws {
        let plugins = try lokiPlugins(schema: """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              capabilities = { "sinks:raed" },
            }
            """)
        let message = PluginCatalog.load(root: plugins.path).failures.first?.message ?? ""
        #expect(message.contains("unknown capability"), "\(message)")
        #expect(message.contains("loki/schema.lua:3"), "no file:line: \(message)")
    }
}

extension Attack18Tests {
    @Test("attack: a golden .yaml whose .json is missing (renamed, misspelled) is reported, not silently left unchecked")
    func orphanGoldenYAML() throws {
        let plugins = try lokiPlugins(schema: "return { name = 'loki', binds = { sink_backend = 'loki' } }",
                                      handler: "return { on_sink_create = function(sink) return { tenant = sink.config.tenant } end }")
        try plugins.write("loki/spec/golden/basic.json", #"{"config": {"tenant": "t-1"}}"#)
        try plugins.write("loki/spec/golden/basic.yaml", "tenant: t-1\n")
        try plugins.write("loki/spec/golden/second.jsn", #"{"config": {"tenant": "t-2"}}"#)
        try plugins.write("loki/spec/golden/second.yaml", "tenant: WRONG\n")
        let results = PluginSpecRunner.run(catalog: PluginCatalog.load(root: plugins.path))
        #expect(results.contains { $0.failure != nil && ($0.location.contains("second") || ($0.failure ?? "").contains("second")) },
                "second.yaml has no input and was never checked: \(results)")
    }
}

extension Attack18Tests {
    static let globalWrites = ["rawset(_G, 'leak', 1)", "_G.leak = 1", "_ENV.leak = 1", "local g = _G g['leak'] = 1",
                               "setmetatable(_G, nil) leak = 1", "debug.setmetatable(_G, nil) leak = 1", "load('leak = 1')()",
                               "string.leak = 1", "maestro.leak = 1", "require('loki.handler').x = 1 return true"]

    @Test("attack: every way of writing a global from a spec case fails the case, as it fails in production", arguments: globalWrites.indices)
    func specGlobalWrites(_ index: Int) throws {
        let write = Self.globalWrites[index]
        let plugins = try lokiPlugins(schema: "return { name = 'loki', binds = { sink_backend = 'loki' } }")
        try plugins.write("loki/spec/global_spec.lua", "it('writes', function() \(write) end)\n")
        let results = PluginSpecRunner.run(catalog: PluginCatalog.load(root: plugins.path))
        // The handler's module table is the plugin's own (module-level state persists): writing it is allowed.
        if write.hasPrefix("require") { #expect(results.first?.failure == nil, "\(results)"); return }
        #expect(results.count == 1 && results.first?.failure != nil, "\(write) passed in a spec: \(results)")
        // Production: the same write from the handler is refused.
        let production = try lokiPlugins(schema: "return { name = 'loki', binds = { sink_backend = 'loki' } }",
                                         handler: "return { on_sink_create = function(sink) \(write) return {} end }")
        let catalog = PluginCatalog.load(root: production.path)
        let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: Self.cipher, kafkaURL: "k:1", policy: .eager, collectors: nil,
                                    logger: Logger(label: "test"))
        let builder = CollectorConfigBuilder(context: context, runtime: PluginRuntime(catalog: catalog, names: RedisNames(), logger: Logger(label: "test")))
        if case .config = builder.build(operation: .create, sinkID: "s1", ownerID: "o", backend: "loki", config: .map([:])) {
            Issue.record("\(write) passed in production")
        }
    }
}

@Suite("Attacks on issue 18 through the pipeline", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct Attack18PipelineTests {
    @Test("attack: a sink whose create was rejected was never created: its next update acts as a create (on_sink_create), as in Orb")
    func rejectedCreateThenUpdate() throws {
        let plugins = try lokiPlugins(schema: """
            return {
              name = "loki", binds = { sink_backend = "loki" },
              sink = { fields = { tenant = { type = "word", required = true, pattern = "^t%-%d+$" } } },
            }
            """, handler: """
            return {
              on_sink_create = function(sink) return { exporters = { loki = { tenant = sink.config.tenant, via = "create" } } } end,
              on_sink_update = function(sink) return { exporters = { loki = { tenant = sink.config.tenant, via = "update" } } } end,
            }
            """)
        let fixture = try PipelineFixture(plugins: plugins.path)
        let redis = try fixture.connect()
        let consumer = try fixture.consumer()
        consumer.start()
        defer { consumer.stop() }
        try fixture.add(redis, create("r9", #"{"tenant":"acme"}"#, backend: "loki"))
        #expect(try fixture.waitUntilDrained(redis))
        #expect(try redis.xrange(fixture.names.statusStream).last?["status"] == "provisioning_error")
        #expect(try redis.hget(fixture.names.configHash, field: "r9") == nil)
        try fixture.add(redis, update("r9", #"{"tenant":"t-9"}"#))
        #expect(try fixture.waitUntilDrained(redis))
        let stored = try redis.hget(fixture.names.configHash, field: "r9") ?? ""
        #expect(stored.contains("t-9"), "\(stored)")
        #expect(stored.contains("create"), "the sink was never created, yet its plugin was asked to update it: \(stored)")
        #expect(try fixture.deadLetters(redis).isEmpty)
    }
}

extension Attack18Tests {
    @Test("a handler or a hook that logs or prints the sink's password (as sent, or decrypted) puts no credential in maestro's log")
    func productionLogMasked() throws {
        let plugins = try lokiPlugins(schema: Self.authSchema, handler: """
            return { on_sink_create = function(sink)
              maestro.log.info("logging in with " .. sink.config.authentication.password, { password = sink.config.authentication.password })
              print("password is " .. sink.config.authentication.password)
              return { ok = true }
            end }
            """)
        // The spec runner's capture: every line with its fields.
        let captured = PluginSpecRunner.CapturedOutput()
        let logger = captured.logger
        let catalog = PluginCatalog.load(root: plugins.path)
        let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: Self.cipher, kafkaURL: "k:1", policy: .eager, collectors: nil,
                                    logger: logger)
        let source = PluginConfigSource(context: context)
        let plain = "log-hunter2-plain"
        _ = outcome(source, ["mode": "x", "authentication": ["password": .string(Self.cipher.encrypt(plain))]])
        _ = outcome(source, ["mode": "x", "authentication": ["password": "log-hunter2-sent"]])
        let lines = captured.take()
        #expect(lines.contains { $0.contains("logging in with") }, "the plugin's log line was not logged: \(lines)")
        #expect(!lines.contains { $0.contains(plain) || $0.contains("log-hunter2-sent") }, "a password reached maestro's log: \(lines)")
    }
}
