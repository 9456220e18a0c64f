import Foundation
import MaestroCore
import MaestroTestSupport
import Testing

func maestro(_ arguments: [String], environment: [String: String] = [:]) throws -> (code: Int32, output: String) {
    var base = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAESTRO_") && !$0.key.hasPrefix("ORB_") }
    base.merge(environment) { _, new in new }
    return try runProgram([maestroBinary()] + arguments, environment: base)
}

@Suite("maestro command line", .testThreads, .timeLimit(.minutes(2)))
struct CLITests {
    @Test("--version and --help")
    func versionAndHelp() throws {
        let version = try maestro(["--version"])
        #expect(version.code == 0)
        #expect(version.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0.1.0")
        let help = try maestro(["--help"])
        #expect(help.code == 0)
        #expect(help.output.contains("demo"))
        #expect(help.output.contains("config"))
    }

    @Test("the shipped program has no benchmarks: they are maestro-bench's")
    func noBenchCommand() throws {
        let help = try maestro(["--help"])
        #expect(help.code == 0)
        // Names are indented by two spaces; their wrapped descriptions, further.
        let subcommands = help.output.split(separator: "\n").drop { !$0.hasPrefix("SUBCOMMANDS:") }
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") }
            .compactMap { $0.split(separator: " ").first.map(String.init) }
        #expect(subcommands.contains("run"), "the subcommand list was not found: \(help.output)")
        #expect(!subcommands.contains("bench"))
        #expect(try maestro(["bench", "pipeline"]).code == 64)
    }

    @Test("--help shows each setting's help and default as the settings table has them")
    func helpShowsDefaults() throws {
        let help = try maestro(["config", "--help"])
        #expect(help.code == 0)
        // Lines are wrapped to the terminal: compare with the whitespace folded.
        let flat = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(flat.contains("Memory cap of each Lua VM, in MiB. (default: 64)"))
        for definition in Settings.all {
            #expect(flat.contains("--\(definition.allowsFlagValue ? definition.key : definition.key + "-file") "), "--\(definition.key) is not in --help")
            var shown = definition.help
            if let value = definition.defaultValue, definition.kind != .boolean { shown += " (default: \(value))" }
            #expect(flat.contains(shown), "--help does not show \(definition.key)'s \(shown)")
        }
    }

    @Test("usage errors exit 64")
    func usageErrors() throws {
        #expect(try maestro(["--no-such-flag"]).code == 64)
        #expect(try maestro(["config", "--redis-url"]).code == 64)
        #expect(try maestro(["no-such-command"]).code == 64)
    }

    @Test("invalid input exits 2 with a message naming the setting")
    func invalidInput() throws {
        let bad = try maestro(["config", "--lua-memory-mb", "lots"])
        #expect(bad.code == 2)
        #expect(bad.output.contains("invalid value for lua-memory-mb (from flag --lua-memory-mb)"))
        let environment = try maestro(["config"], environment: ["MAESTRO_LOG_FORMAT": "xml"])
        #expect(environment.code == 2)
        #expect(environment.output.contains("MAESTRO_LOG_FORMAT"))
    }

    @Test("config shows values, origins and masks secrets")
    func configOutput() throws {
        let directory = try TemporaryDirectory()
        let file = try directory.write("maestro.yaml", "kafka-url: kafka.example:9092\n")
        let result = try maestro(["config", "--config", file, "--log-level", "debug"],
                                 environment: ["ORB_SINKS_SECRET_KEY": "very-secret-key", "MAESTRO_REDIS_URL": "redis://:pw-123@10.1.1.1:6379/0"])
        #expect(result.code == 0)
        #expect(result.output.contains("kafka.example:9092"))
        #expect(result.output.contains("config file \(file)"))
        #expect(result.output.contains("flag --log-level"))
        #expect(result.output.contains("Orb environment ORB_SINKS_SECRET_KEY"))
        #expect(!result.output.contains("very-secret-key"))
        #expect(!result.output.contains("pw-123"))
    }

    @Test("every setting has its flag", arguments: Settings.all.map(\.key))
    func everySettingHasAFlag(_ key: String) throws {
        let definition = try #require(Settings.definition(key))
        let directory = try TemporaryDirectory()
        let file = try directory.write("value", "x")
        var arguments = ["config"]
        if definition.kind == .boolean {
            arguments.append("--\(key)")
        } else if definition.allowsFlagValue {
            arguments += ["--\(key)", "x"]
        }
        if definition.isSecret { arguments += ["--\(key)-file", file] }
        let result = try maestro(arguments)
        #expect(result.code != 64, "--\(key) is not accepted: \(result.output)")
    }

    @Test("the demo runs end to end against Redis and exits 0")
    func demo() throws {
        let result = try runProgram([maestroBinary(), "demo", "--redis-url", try RedisTestServer.url], in: repositoryRoot)
        #expect(result.code == 0, "\(result.output)")
        #expect(result.output.contains("the password kept its quote and colon"))
        #expect(result.output.contains("decrypted with the Orb secret key: yes"))
        #expect(result.output.contains("provisioning_error"))
        #expect(result.output.contains("missing field sink_id"))
        #expect(result.output.contains("(mode 600)"))
        #expect(result.output.contains("the config hash changed"))
        #expect(result.output.contains("its collector file is gone"))
        #expect(result.output.contains(#"exporter "otlphttp/missing" is not defined"#), "\(result.output)")
        #expect(result.output.contains("the collector file is unchanged"), "\(result.output)")
        #expect(result.output.contains("OUTCOME") && result.output.contains("superseded"), "\(result.output)")
        #expect(!result.output.contains("t0k3n-from-orb"))
        #expect(result.output.contains("stopped after"))
        #expect(!result.output.contains("NOT STOPPED"))
        #expect(!result.output.contains("a\"b: c"), "the password never reaches the screen")
    }
}

@Suite("maestro run, status, diff and render --objects", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct OperatorCommandTests {
    @Test("render --objects prints the objects and says when the hash key is a placeholder")
    func renderObjects() throws {
        let result = try runProgram([maestroBinary(), "render", "--backend", "prometheus", "--sink-id", "s1", "--objects", "--sink-config",
                                     #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#],
                                    in: repositoryRoot)
        #expect(result.code == 0, "\(result.output)")
        #expect(result.output.contains("kind: Deployment"))
        #expect(result.output.contains("maestro.orb.community/config-hash"))
        #expect(result.output.contains("placeholder key"))
    }

    @Test("render redacts credentials unless asked to reveal them")
    func renderRedacts() throws {
        let config = #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"render-pass-1"}}"#
        for extra in [[], ["--objects"]] {
            let hidden = try runProgram([maestroBinary(), "render", "--backend", "prometheus", "--sink-id", "s1", "--sink-config", config] + extra,
                                        in: repositoryRoot)
            #expect(hidden.code == 0, "\(hidden.output)")
            #expect(!hidden.output.contains("render-pass-1"), "\(hidden.output)")
            #expect(hidden.output.contains("<redacted>"))
        }
        let shown = try runProgram([maestroBinary(), "render", "--backend", "prometheus", "--sink-id", "s1", "--sink-config", config, "--reveal-secrets"],
                                   in: repositoryRoot)
        #expect(shown.output.contains("render-pass-1"))
    }

    @Test("run with the directory backend, then status and diff")
    func runStatusDiff() throws {
        let directory = try TemporaryDirectory()
        let prefix = RedisTestServer.uniquePrefix("cli")
        let names = ["--sinks-stream", prefix + "sinks", "--config-hash", prefix + "config", "--sinks-hash", prefix + "records",
                     "--deployment-hash", prefix + "deployments", "--collectors-hash", prefix + "collectors", "--status-stream", prefix + "status",
                     "--deadletter-stream", prefix + "dl", "--group", prefix + "group"]
        let common = ["--redis-url", try RedisTestServer.url] + names
        let run = try ChildProcess([maestroBinary(), "run", "--manifests-dir", directory.path + "/manifests", "--kube-backend", "directory",
                                    "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates"] + common,
                                   logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let emitted = try runProgram([maestroBinary(), "sinks", "create", "--sink-id", "cli-1", "--owner", "o1", "--backend", "prometheus",
                                      "--sink-config", #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"hunter2"}}"#]
                                     + common)
        #expect(emitted.code == 0, "\(emitted.output)")
        var status = ""
        #expect(eventually {
            status = (try? runProgram([maestroBinary(), "status"] + common).output) ?? ""
            return status.contains("provisioning")
        })
        #expect(status.contains("cli-1"))
        #expect(status.contains("otel-cli-1"))
        #expect(status.contains("provisioning"))
        #expect(!status.contains("hunter2"))
        let diff = try runProgram([maestroBinary(), "diff", "--sink-id", "cli-1", "--kube-backend", "directory",
                                   "--manifests-dir", directory.path + "/manifests"] + common)
        #expect(diff.output.contains("no difference"), "\(diff.output)")
        #expect(FileManager.default.fileExists(atPath: directory.path + "/manifests/otelcollectors/otel-cli-1.yaml"))
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 30))
        #expect(run.exitCode == 0, "\((try? directory.read("run.log")) ?? "")")
    }
}

@Suite("maestro plugins", .testThreads, .timeLimit(.minutes(2)))
struct PluginsCommandTests {
    @Test("list shows the shipped plugins; lint passes them and fails a broken one with file:line")
    func listAndLint() throws {
        let listed = try runProgram([maestroBinary(), "plugins", "list", "--plugins-dir", repositoryRoot + "/plugins"])
        #expect(listed.code == 0)
        #expect(listed.output.contains("prometheus") && listed.output.contains("sink_backend=otlphttp"))
        #expect(listed.output.contains("CAPABILITIES"))
        #expect(listed.output.contains("http:* (not granted)"), "webhook-notify declares http:*; nothing grants it here")
        let config = try TemporaryDirectory()
        let file = try config.write("maestro.yaml", "plugins:\n  webhook-notify:\n    grants: [http:hooks.example.com]\n")
        let granted = try runProgram([maestroBinary(), "plugins", "list", "--plugins-dir", repositoryRoot + "/plugins", "--config", file])
        #expect(granted.code == 0, "\(granted.output)")
        #expect(granted.output.contains("http:* (granted: http:hooks.example.com)"), "\(granted.output)")
        #expect(try runProgram([maestroBinary(), "plugins", "lint", "--plugins-dir", repositoryRoot + "/plugins"]).code == 0)
        let directory = try TemporaryDirectory()
        try directory.write("broken/schema.lua", "return { name = 'broken', binds = { sink_backend = 'x' } }")
        try directory.write("broken/handler.lua", "local h = {}\nfunction h.on_sink_create(\nreturn h\n")
        let linted = try runProgram([maestroBinary(), "plugins", "lint", "--plugins-dir", directory.path])
        #expect(linted.code == 1)
        #expect(linted.output.contains("FAIL") && linted.output.contains("handler.lua:3"), "\(linted.output)")
    }

    @Test("test runs the shipped specs; a failing case is reported with file:line and exit 1")
    func specs() throws {
        let shipped = try runProgram([maestroBinary(), "plugins", "test", "--plugins-dir", repositoryRoot + "/plugins"])
        #expect(shipped.code == 0, "\(shipped.output)")
        // Every `it(` of every shipped spec file ran and passed, each reported at its own line.
        var cases: [String] = []
        for plugin in try FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/plugins").sorted() {
            let folder = "plugins/\(plugin)/spec"
            for file in ((try? FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/" + folder)) ?? []) where file.hasSuffix("_spec.lua") {
                let lines = try String(contentsOfFile: repositoryRoot + "/\(folder)/\(file)", encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
                for (index, line) in lines.enumerated() where line.trimmingCharacters(in: .whitespaces).hasPrefix("it(") {
                    cases.append("ok    \(folder)/\(file):\(index + 1)  ")
                }
            }
        }
        #expect(cases.count >= 8, "the shipped specs: \(cases)")
        // And every golden pair of every plugin.
        var golden = 0
        for plugin in try FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/plugins") {
            let folder = repositoryRoot + "/plugins/\(plugin)/spec/golden"
            golden += ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".json") }.count
        }
        #expect(golden >= 4)
        let total = cases.count + golden
        #expect(shipped.output.contains("\(total) cases ran: \(total) passed, 0 failed"), "\(shipped.output)")
        for location in cases { #expect(shipped.output.contains(location), "\(location) did not run:\n\(shipped.output)") }
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/prometheus", toPath: directory.path + "/prometheus")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/_lib", toPath: directory.path + "/_lib")
        try directory.write("prometheus/spec/broken_spec.lua", """
        describe("broken", function()
          it("compares", function()
            assert.equals(1, 2)
          end)
          it("passes", function() end)
        end)
        """)
        let failing = try runProgram([maestroBinary(), "plugins", "test", "--plugins-dir", directory.path])
        #expect(failing.code == 1)
        #expect(failing.output.contains("FAIL  plugins/prometheus/spec/broken_spec.lua:2  broken compares") ||
                failing.output.contains("broken_spec.lua:2  broken compares"), "\(failing.output)")
        #expect(failing.output.contains("broken_spec.lua:3: expected 1, got 2"), "\(failing.output)")
        #expect(failing.output.contains("ok    ") && failing.output.contains("broken passes"))
    }

    @Test("lint and test take plugin names; test prints the case count, shows output on failure or with --verbose, and fails when no case ran")
    func namedPluginsAndCounts() throws {
        let directory = try TemporaryDirectory()
        for name in ["prometheus", "otlphttp", "_lib"] {
            try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/" + name, toPath: directory.path + "/" + name)
        }
        try directory.write("broken/schema.lua", "return { name = 'broken', binds = { sink_backend = 'broken' }, sink = { fields = { x = { type = 'word', requried = true } } } }")
        try directory.write("broken/handler.lua", "return { on_sink_create = function() return {} end }")
        try directory.write("bare/schema.lua", "return { name = 'bare', binds = { sink_backend = 'bare' } }")
        try directory.write("bare/handler.lua", "return { on_sink_create = function() print('building') return {} end }")

        let all = try maestro(["plugins", "lint", "--plugins-dir", directory.path])
        #expect(all.code == 1 && all.output.contains("broken/schema.lua:1: sink.fields.x.requried is not a rule option"), "\(all.output)")
        let one = try maestro(["plugins", "lint", "--plugins-dir", directory.path, "prometheus"])
        #expect(one.code == 0 && one.output.contains("ok    prometheus") && !one.output.contains("otlphttp") && !one.output.contains("broken"), "\(one.output)")
        let unknown = try maestro(["plugins", "test", "--plugins-dir", directory.path, "nosuch"])
        #expect(unknown.code == 2 && unknown.output.contains("no plugin named nosuch"), "\(unknown.output)")

        let prometheus = try maestro(["plugins", "test", "--plugins-dir", directory.path, "prometheus"])
        #expect(prometheus.code == 0, "\(prometheus.output)")
        #expect(prometheus.output.contains("6 cases ran: 6 passed, 0 failed") && !prometheus.output.contains("otlphttp"), "\(prometheus.output)")

        let none = try maestro(["plugins", "test", "--plugins-dir", directory.path, "bare"])
        #expect(none.code == 1 && none.output.contains("0 cases ran") && none.output.contains("no spec case ran"), "\(none.output)")
        let mixed = try maestro(["plugins", "test", "--plugins-dir", directory.path, "bare", "prometheus"])
        #expect(mixed.code == 0 && mixed.output.contains("note  bare: no spec case"), "\(mixed.output)")

        try directory.write("bare/spec/bare_spec.lua", """
        local handler = require "bare.handler"
        it("builds quietly", function() handler.on_sink_create({}) end)
        it("fails loudly", function() print("before the failure") assert(false, "boom") end)
        """)
        let quiet = try maestro(["plugins", "test", "--plugins-dir", directory.path, "bare"])
        #expect(quiet.code == 1 && quiet.output.contains("2 cases ran: 1 passed, 1 failed"), "\(quiet.output)")
        #expect(quiet.output.contains("      | info: before the failure") && !quiet.output.contains("| info: building"), "\(quiet.output)")
        let verbose = try maestro(["plugins", "test", "--plugins-dir", directory.path, "--verbose", "bare"])
        #expect(verbose.output.contains("      | info: building"), "\(verbose.output)")
    }
}
