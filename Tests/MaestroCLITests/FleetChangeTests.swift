import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import Testing

/// Changes that reach the whole fleet: a plugin change rebuilds its sinks (by hand and after a reload),
/// and candidate plugins and templates are compared with what is stored before they are released.
@Suite("Fleet changes: sink rebuilds and shadow diffs", .serialized, .testThreads, .timeLimit(.minutes(6)))
struct FleetChangeTests {
    let prefix = RedisTestServer.uniquePrefix("fleet")
    let password = "s3cret-Passw0rd"

    func redis() throws -> RedisConnection { try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url)) }

    var common: [String] { get throws { ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix) } }

    func create(_ sinkID: String, backend: String = "prometheus") throws {
        let config = backend == "prometheus"
            ? #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"\#(password)"}}"#
            : #"{"exporter":{"endpoint":"https://o.example"},"authentication":{"type":"basicauth","username":"u","password":"\#(password)"}}"#
        let result = try runProgram([maestroBinary(), "sinks", "create", "--sink-id", sinkID, "--backend", backend, "--sink-config", config] + common)
        #expect(result.code == 0, "\(result.output)")
    }

    /// Everything maestro keeps in Redis under this test's names, to show that a command stored nothing.
    /// `withStatuses: false` leaves out the collector records and the status stream, which a running
    /// maestro's reconciler keeps writing (status polls) whatever a command does.
    func stored(_ redis: RedisConnection, withStatuses: Bool = true) throws -> [String: String] {
        var state: [String: String] = [:]
        for hash in ["config", "records", "deployments"] + (withStatuses ? ["collectors"] : []) {
            for (field, value) in try redis.hgetall(prefix + hash) { state[hash + "/" + field] = value }
        }
        for stream in ["sinks"] + (withStatuses ? ["status"] : []) {
            state["xlen/" + stream] = "\(try redis.command(["XLEN", prefix + stream]).integer ?? -1)"
        }
        return state
    }

    func replace(_ path: String, _ old: String, with new: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains(old))
        try text.replacingOccurrences(of: old, with: new).write(toFile: path, atomically: true, encoding: .utf8)
    }

    @Test("a plugin change rebuilds its sinks' configs and their collectors roll (by hand, then after a reload); --dry-run changes nothing")
    func pluginChangeRebuilds() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/plugins")
        let manifests = directory.path + "/manifests"
        let local = ["--plugins-dir", directory.path + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                     "--kube-backend", "directory", "--manifests-dir", manifests]
        // Reloads only on SIGHUP: the test says when the running maestro sees the change.
        let run = try ChildProcess([maestroBinary(), "run", "--reload-interval", "0s", "--http-listen", "127.0.0.1:0"] + local + common,
                                   logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let port = try loggedPort("http.port", in: directory.path + "/run.log", of: run)
        func metrics() -> String { (try? runProgram([try executable("curl"), "-s", "http://127.0.0.1:\(port)/metrics"]).output) ?? "" }
        let redis = try redis()
        func config(_ sinkID: String) -> String { (try? redis.hget(prefix + "config", field: sinkID)) ?? nil ?? "" }
        func manifest(_ sinkID: String) -> String { (try? String(contentsOfFile: "\(manifests)/otelcollectors/otel-\(sinkID).yaml", encoding: .utf8)) ?? "" }

        for sinkID in ["f1", "f2"] { try create(sinkID) }
        try create("f3", backend: "otlphttp")
        for sinkID in ["f1", "f2", "f3"] {
            #expect(eventually(timeout: 60) { manifest(sinkID).contains("exporters") }, "\(sinkID)")
        }
        #expect(manifest("f1").contains("prometheusremotewrite"))
        // A sink stored by a maestro that did not keep inputs yet.
        try redis.hset(prefix + "records", field: "old1",
                       value: #"{"last_entry_id":"1-0","owner":"o1","removed":false,"updated_at":1700000000000,"backend":"prometheus"}"#)
        try redis.hset(prefix + "config", field: "old1", value: "exporters: {}\n")

        try replace(directory.path + "/plugins/prometheus/handler.lua", "\"prometheusremotewrite\"", with: "\"prometheusremotewrite/rebuilt\"")

        // --dry-run lists, changes nothing.
        let before = try stored(redis, withStatuses: false)
        let manifestBefore = manifest("f1")
        let dryRun = try runProgram([maestroBinary(), "sinks", "rebuild", "--dry-run"] + local + common)
        #expect(dryRun.code == 0, "\(dryRun.output)")
        let lines = dryRun.output.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("f1 ") && $0.contains("plugin_changed") }, "\(dryRun.output)")
        #expect(lines.contains { $0.hasPrefix("f2 ") && $0.contains("plugin_changed") }, "\(dryRun.output)")
        #expect(lines.contains { $0.hasPrefix("f3 ") && $0.contains("current") }, "\(dryRun.output)")
        #expect(lines.contains { $0.hasPrefix("old1 ") && $0.contains("no_input") && $0.contains("next event") }, "\(dryRun.output)")
        let afterDryRun = try stored(redis, withStatuses: false)
        #expect(afterDryRun == before, "\(Set(afterDryRun.keys).union(before.keys).filter { afterDryRun[$0] != before[$0] }.sorted())")
        #expect(manifest("f1") == manifestBefore)

        // By hand, one sink: its config is rebuilt and its collector rolls; the others stay.
        let byHand = try runProgram([maestroBinary(), "sinks", "rebuild", "--sink-id", "f1"] + local + common)
        #expect(byHand.code == 0, "\(byHand.output)")
        #expect(byHand.output.contains("f1  prometheus  rebuilt"), "\(byHand.output)")
        #expect(config("f1").contains("prometheusremotewrite/rebuilt"))
        #expect(eventually { manifest("f1").contains("prometheusremotewrite/rebuilt") })
        #expect(!config("f2").contains("prometheusremotewrite/rebuilt"))
        #expect(!byHand.output.contains(password))

        // The running maestro, told of the change, rebuilds the rest of the backend's sinks (f1 is current).
        run.signal(SIGHUP)
        #expect(eventually(timeout: 60) { manifest("f2").contains("prometheusremotewrite/rebuilt") }, "\(manifest("f2"))")
        #expect(config("f2").contains("prometheusremotewrite/rebuilt"))
        #expect(eventually { metrics().contains(#"maestro_sink_rebuilds_total{backend="prometheus",outcome="rebuilt"} 1"#) }, "\(metrics())")
        #expect(!config("f3").contains("rebuilt"))
        #expect(config("old1") == "exporters: {}\n")
        // Never written to the sinks stream: Orb's services read it.
        #expect(try stored(redis)["xlen/sinks"] == before["xlen/sinks"])
        #expect(!(try directory.read("run.log")).contains(password))
    }

    @Test("attack: maestro killed, the plugin changed while it was down: the restarted sinker rebuilds the sink without an event")
    func changedWhileDown() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/plugins")
        let manifests = directory.path + "/manifests"
        let arguments = [maestroBinary(), "run", "--reload-interval", "0s", "--plugins-dir", directory.path + "/plugins",
                         "--templates-dir", repositoryRoot + "/templates", "--kube-backend", "directory", "--manifests-dir", manifests] + (try common)
        let first = try ChildProcess(arguments, logPath: directory.path + "/first.log")
        let redis = try redis()
        func manifest() -> String { (try? String(contentsOfFile: "\(manifests)/otelcollectors/otel-k1.yaml", encoding: .utf8)) ?? "" }
        try create("k1")
        #expect(eventually(timeout: 60) { manifest().contains("prometheusremotewrite") })
        first.signal(SIGKILL)
        #expect(first.wait(timeout: 30))
        let streamLength = try redis.command(["XLEN", prefix + "sinks"]).integer

        try replace(directory.path + "/plugins/prometheus/handler.lua", "\"prometheusremotewrite\"", with: "\"prometheusremotewrite/while-down\"")
        let second = try ChildProcess(arguments, logPath: directory.path + "/second.log")
        defer {
            second.signal(SIGTERM)
            _ = second.wait(timeout: 30)
        }
        #expect(eventually(timeout: 60) { manifest().contains("prometheusremotewrite/while-down") }, "\((try? directory.read("second.log")) ?? "")")
        #expect(try redis.command(["XLEN", prefix + "sinks"]).integer == streamLength)
    }

    @Test("plugins diff and templates diff on a changed candidate show the difference, secrets masked, exit 1; nothing stored; 0 unchanged, 2 failing")
    func shadowDiffs() throws {
        let directory = try TemporaryDirectory()
        let manifests = directory.path + "/manifests"
        let run = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                    "--kube-backend", "directory", "--manifests-dir", manifests] + common,
                                   logPath: directory.path + "/run.log")
        let redis = try redis()
        try create("d1")
        try create("d2", backend: "otlphttp")
        for sinkID in ["d1", "d2"] {
            #expect(eventually(timeout: 60) { ((try? redis.hget(prefix + "deployments", field: sinkID)) ?? nil) != nil }, "\(sinkID)")
        }
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 30))
        let before = try stored(redis)

        // Candidates: a changed prometheus plugin, one that fails, a changed template, one that fails.
        for name in ["changed", "failing"] {
            try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: "\(directory.path)/\(name)-plugins")
            try FileManager.default.copyItem(atPath: repositoryRoot + "/templates", toPath: "\(directory.path)/\(name)-templates")
        }
        try replace("\(directory.path)/changed-plugins/prometheus/handler.lua", "\"prometheusremotewrite\"", with: "\"prometheusremotewrite/candidate\"")
        try replace("\(directory.path)/failing-plugins/prometheus/handler.lua", "function handler.on_sink_create(sink)",
                    with: "function handler.on_sink_create(sink)\n  error(\"candidate broke for \" .. sink.config.authentication.password)")
        try replace("\(directory.path)/changed-templates/otel-collector.lua", #"["app.kubernetes.io/name"] = "opentelemetry-collector","#,
                    with: #"["app.kubernetes.io/name"] = "opentelemetry-collector", ["example.com/candidate"] = "yes","#)
        try replace("\(directory.path)/failing-templates/otel-collector.lua", "function template.render(values)", with: "function template.render(values)\n  error(\"candidate template broke\")")

        func diff(_ arguments: [String]) throws -> (code: Int32, output: String) {
            try runProgram([maestroBinary()] + arguments + common + ["--kube-backend", "directory", "--manifests-dir", manifests])
        }
        let changed = try diff(["plugins", "diff", "--plugins-dir", directory.path + "/changed-plugins"])
        #expect(changed.code == 1, "\(changed.output)")
        #expect(changed.output.contains("--- d1 (stored)"), "\(changed.output)")
        #expect(changed.output.split(separator: "\n").contains { $0.hasPrefix("-") && $0.contains("prometheusremotewrite") && !$0.contains("candidate") })
        #expect(changed.output.split(separator: "\n").contains { $0.hasPrefix("+") && $0.contains("prometheusremotewrite/candidate") })
        #expect(!changed.output.contains("d2 (stored)"), "\(changed.output)")
        #expect(changed.output.contains("2 sinks: changed 1, same 1"), "\(changed.output)")
        #expect(!changed.output.contains(password))

        let onlyOther = try diff(["plugins", "diff", "--plugins-dir", directory.path + "/changed-plugins", "--backend", "otlphttp"])
        #expect(onlyOther.code == 0, "\(onlyOther.output)")
        #expect(onlyOther.output.contains("1 sinks: same 1"), "\(onlyOther.output)")
        let same = try diff(["plugins", "diff", "--plugins-dir", repositoryRoot + "/plugins"])
        #expect(same.code == 0, "\(same.output)")
        let failing = try diff(["plugins", "diff", "--plugins-dir", directory.path + "/failing-plugins"])
        #expect(failing.code == 2, "\(failing.output)")
        #expect(failing.output.contains("FAILED  d1: "), "\(failing.output)")
        #expect(failing.output.contains("candidate broke for"), "\(failing.output)")
        #expect(!failing.output.contains(password), "\(failing.output)")

        let changedTemplate = try diff(["templates", "diff", "--templates-dir", directory.path + "/changed-templates", "--plugins-dir", repositoryRoot + "/plugins"])
        #expect(changedTemplate.code == 1, "\(changedTemplate.output)")
        #expect(changedTemplate.output.split(separator: "\n").contains { $0.hasPrefix("+") && $0.contains("example.com/candidate") }, "\(changedTemplate.output)")
        #expect(changedTemplate.output.contains("2 sinks: changed 2"), "\(changedTemplate.output)")
        #expect(!changedTemplate.output.contains(password))
        let sameTemplate = try diff(["templates", "diff", "--templates-dir", repositoryRoot + "/templates", "--plugins-dir", repositoryRoot + "/plugins"])
        #expect(sameTemplate.code == 0, "\(sameTemplate.output)")
        let failingTemplate = try diff(["templates", "diff", "--templates-dir", directory.path + "/failing-templates", "--plugins-dir", repositoryRoot + "/plugins"])
        #expect(failingTemplate.code == 2, "\(failingTemplate.output)")

        let after = try stored(redis)
        #expect(after == before, "\(Set(after.keys).union(before.keys).filter { after[$0] != before[$0] }.sorted())")
    }
}
