import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import Testing

/// Attacks on issue 19 (sink rebuilds, plugins diff, templates diff) from the command line.
@Suite("Attack 19: sink rebuilds and shadow diffs", .serialized, .testThreads, .timeLimit(.minutes(8)))
struct Attack19Tests {
    let prefix = RedisTestServer.uniquePrefix("atk19")
    let password = "Atk19-s3cret-Passw0rd"

    var common: [String] { get throws { ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix) } }

    func redis() throws -> RedisConnection { try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url)) }

    func create(_ sinkID: String) throws {
        let config = #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"\#(password)"}}"#
        let result = try runProgram([maestroBinary(), "sinks", "create", "--sink-id", sinkID, "--backend", "prometheus", "--sink-config", config] + common)
        #expect(result.code == 0, "\(result.output)")
    }

    func replace(_ path: String, _ old: String, with new: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains(old))
        try text.replacingOccurrences(of: old, with: new).write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// One stored sink with a desired state, rendered by a maestro run that is then stopped.
    func storedFleet(_ directory: TemporaryDirectory, sinkID: String) throws {
        let run = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                    "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests"] + common,
                                   logPath: directory.path + "/run.log")
        let redis = try redis()
        try create(sinkID)
        #expect(eventually(timeout: 90) { ((try? redis.hget(prefix + "deployments", field: sinkID)) ?? nil) != nil })
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 30))
    }

    /// A command run with a deadline: a hung command is killed and reported as such (nil).
    func runBounded(_ arguments: [String], directory: TemporaryDirectory, log: String, timeout: TimeInterval = 120) throws -> (code: Int32?, output: String) {
        let child = try ChildProcess(arguments, logPath: directory.path + "/" + log)
        if !child.wait(timeout: timeout) {
            child.signal(SIGKILL)
            _ = child.wait(timeout: 30)
            return (nil, (try? directory.read(log)) ?? "")
        }
        return (child.exitCode, (try? directory.read(log)) ?? "")
    }

    @Test("attack: a candidate template that copies the collector config into an annotation does not get the credential printed by templates diff")
    func templatesDiffLeaksThroughAnnotation() throws {
        let directory = try TemporaryDirectory()
        try storedFleet(directory, sinkID: "t1")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/templates", toPath: directory.path + "/leaky-templates")
        try replace(directory.path + "/leaky-templates/otel-collector.lua", #"["app.kubernetes.io/name"] = "opentelemetry-collector","#,
                    with: #"["app.kubernetes.io/name"] = "opentelemetry-collector", ["example.com/copied"] = values.config_yaml,"#)
        let diff = try runProgram([maestroBinary(), "templates", "diff", "--templates-dir", directory.path + "/leaky-templates",
                                   "--plugins-dir", repositoryRoot + "/plugins", "--kube-backend", "directory",
                                   "--manifests-dir", directory.path + "/manifests"] + common)
        #expect(diff.code == 1, "\(diff.output)")
        #expect(diff.output.contains("example.com/copied"), "\(diff.output)")
        #expect(!diff.output.contains(password), "\(diff.output)")
    }

    @Test("attack: a candidate plugin that loops forever, or allocates without end, neither hangs plugins diff nor stores anything: a failure (exit 2)",
          arguments: ["while true do end", "local t = {} while true do t[#t + 1] = string.rep(\"x\", 1048576) .. #t end"])
    func pluginsDiffHostileLoop(body: String) throws {
        let directory = try TemporaryDirectory()
        try storedFleet(directory, sinkID: "h1")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/looping-plugins")
        try replace(directory.path + "/looping-plugins/prometheus/handler.lua", "function handler.on_sink_create(sink)",
                    with: "function handler.on_sink_create(sink)\n  " + body)
        let redis = try redis()
        let configBefore = try redis.hgetall(prefix + "config")
        let result = try runBounded([maestroBinary(), "plugins", "diff", "--plugins-dir", directory.path + "/looping-plugins"] + common,
                                    directory: directory, log: "loop.log")
        #expect(result.code == 2, "\(result.output)")
        #expect(result.output.contains("h1"), "\(result.output)")
        #expect(try redis.hgetall(prefix + "config") == configBefore)
    }

    @Test("attack: a candidate plugin that writes Redis through the host API stores nothing and is reported as a failure")
    func pluginsDiffRedisWrite() throws {
        let directory = try TemporaryDirectory()
        try storedFleet(directory, sinkID: "w1")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/writing-plugins")
        try replace(directory.path + "/writing-plugins/prometheus/handler.lua", "function handler.on_sink_create(sink)",
                    with: "function handler.on_sink_create(sink)\n  maestro.redis.set(\"\(prefix)hostile\", \"written\")")
        let result = try runBounded([maestroBinary(), "plugins", "diff", "--plugins-dir", directory.path + "/writing-plugins"] + common,
                                    directory: directory, log: "write.log")
        #expect(result.code == 2, "\(result.output)")
        #expect(try redis().get(prefix + "hostile") == nil)
    }

    @Test("attack: plugins diff with a candidate folder that does not exist, or is empty, is a clear error with a non-zero exit")
    func pluginsDiffMissingCandidate() throws {
        let directory = try TemporaryDirectory()
        let missing = try runProgram([maestroBinary(), "plugins", "diff", "--plugins-dir", directory.path + "/no-such-folder"] + common)
        #expect(missing.code != 0, "\(missing.output)")
        #expect(missing.output.contains("no-such-folder"), "\(missing.output)")
        try FileManager.default.createDirectory(atPath: directory.path + "/empty", withIntermediateDirectories: true)
        let empty = try runProgram([maestroBinary(), "plugins", "diff", "--plugins-dir", directory.path + "/empty"] + common)
        #expect(empty.code != 0, "\(empty.output)")
    }

    @Test("attack: a candidate that drops a plugin folder is a failure naming the sinks it leaves without a builder, not \"no difference\"")
    func pluginsDiffDroppedPlugin() throws {
        let directory = try TemporaryDirectory()
        try storedFleet(directory, sinkID: "d1")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/fewer-plugins")
        try FileManager.default.removeItem(atPath: directory.path + "/fewer-plugins/prometheus")
        let result = try runBounded([maestroBinary(), "plugins", "diff", "--plugins-dir", directory.path + "/fewer-plugins"] + common,
                                    directory: directory, log: "dropped.log")
        #expect(result.code == 2, "\(result.output)")
        #expect(result.output.contains("d1") && result.output.contains("prometheus"), "\(result.output)")
    }

    @Test("attack: sinks rebuild with a backend no plugin serves, or both selectors, is a clear error with a non-zero exit")
    func rebuildBadArguments() throws {
        let local = ["--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                     "--kube-backend", "directory", "--manifests-dir", try TemporaryDirectory().path]
        let both = try runProgram([maestroBinary(), "sinks", "rebuild", "--backend", "prometheus", "--sink-id", "x", "--dry-run"] + local + common)
        #expect(both.code != 0, "\(both.output)")
        #expect(both.output.contains("not both"), "\(both.output)")
        let unknown = try runProgram([maestroBinary(), "sinks", "rebuild", "--backend", "no-such-backend"] + local + common)
        #expect(unknown.code != 0, "\(unknown.output)")
        #expect(unknown.output.contains("no-such-backend"), "\(unknown.output)")
        let noSink = try runProgram([maestroBinary(), "sinks", "rebuild", "--sink-id", "no-such-sink"] + local + common)
        #expect(noSink.code != 0, "\(noSink.output)")
        #expect(noSink.output.contains("no-such-sink"), "\(noSink.output)")
    }

    @Test("attack: a change to _lib/ alone marks the sinks of every plugin using it as plugin_changed; --dry-run stores nothing")
    func sharedLibraryChange() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/plugins")
        let local = ["--plugins-dir", directory.path + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                     "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests"]
        let run = try ChildProcess([maestroBinary(), "run"] + local + common, logPath: directory.path + "/run.log")
        let redis = try redis()
        try create("l1")
        #expect(eventually(timeout: 90) { ((try? redis.hget(prefix + "config", field: "l1")) ?? nil) != nil })
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 30))
        let current = try runProgram([maestroBinary(), "sinks", "rebuild", "--dry-run"] + local + common)
        #expect(current.output.split(separator: "\n").contains { $0.hasPrefix("l1 ") && $0.contains("current") }, "\(current.output)")

        let library = directory.path + "/plugins/_lib/otel.lua"
        try (try String(contentsOfFile: library, encoding: .utf8) + "\n-- changed\n").write(toFile: library, atomically: true, encoding: .utf8)
        let records = try redis.hgetall(prefix + "records")
        let dryRun = try runProgram([maestroBinary(), "sinks", "rebuild", "--dry-run"] + local + common)
        #expect(dryRun.code == 0, "\(dryRun.output)")
        #expect(dryRun.output.split(separator: "\n").contains { $0.hasPrefix("l1 ") && $0.contains("plugin_changed") }, "\(dryRun.output)")
        #expect(try redis.hgetall(prefix + "records") == records)
    }
}
