import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import Testing

/// `maestro run` as a child process with private names on the shared Redis.
struct MaestroProcess {
    let directory: TemporaryDirectory
    let common: [String]
    let process: ChildProcess

    static func names(_ prefix: String) -> [String] {
        ["--sinks-stream", prefix + "sinks", "--config-hash", prefix + "config", "--sinks-hash", prefix + "records",
         "--deployment-hash", prefix + "deployments", "--collectors-hash", prefix + "collectors", "--status-stream", prefix + "status",
         "--deadletter-stream", prefix + "dl", "--group", prefix + "group",
         "--fleet-rollout-key", prefix + "fleet-rollout", "--fleet-rollout-requests", prefix + "fleet-requests"]
    }

    init(prefix: String, extra: [String], directory: TemporaryDirectory, log: String = "run.log") throws {
        self.directory = directory
        common = ["--redis-url", try RedisTestServer.url] + Self.names(prefix)
        process = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates"]
                                   + common + extra, logPath: directory.path + "/" + log)
    }

    func stop() -> Int32? {
        process.signal(SIGTERM)
        _ = process.wait(timeout: 30)
        return process.exitCode
    }
}

func waitForFile(_ path: String, timeout: TimeInterval = 20) -> Bool {
    eventually(timeout: timeout) { FileManager.default.fileExists(atPath: path) }
}

@Suite("gRPC interoperability and roles apart", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct InteropTests {
    @Test("a Python grpcio client drives the API over TCP and over the Unix socket")
    func pythonClient() throws {
        let directory = try TemporaryDirectory()
        let socket = directory.path + "/maestro.sock"
        let prefix = RedisTestServer.uniquePrefix("py")
        let maestro = try MaestroProcess(prefix: prefix, extra: [
            "--create-policy", "external", "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests",
            "--grpc-listen", "127.0.0.1:0", "--grpc-socket", socket,
        ], directory: directory)
        defer { _ = maestro.stop() }
        let port = try loggedPort("grpc.port", in: directory.path + "/run.log", of: maestro.process)
        #expect(waitForFile(socket))
        for sink in ["py-tcp", "py-unix"] {
            let emitted = try runProgram([maestroBinary(), "sinks", "create", "--sink-id", sink, "--owner", "python", "--backend", "prometheus",
                                          "--sink-config", #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#]
                                         + maestro.common)
            #expect(emitted.code == 0)
        }
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        #expect(eventually { ["py-tcp", "py-unix"].allSatisfy { ((try? redis.hget(prefix + "config", field: $0)) ?? nil) != nil } },
                "the sinker stored both configs")
        for (target, sink) in [("127.0.0.1:\(port)", "py-tcp"), ("unix:" + socket, "py-unix")] {
            let result = try runProgram([try executable("python3"), repositoryRoot + "/Tests/Support/grpc_interop.py", target, sink, repositoryRoot])
            #expect(result.code == 0, "\(target): \(result.output)")
            #expect(result.output.contains("ALL OK"), "\(result.output)")
        }
        #expect(maestro.stop() == 0, "\((try? directory.read("run.log")) ?? "")")
    }

    @Test("roles apart: a sinker process hands off to a maestro process over the API, as with one")
    func rolesApart() throws {
        let directory = try TemporaryDirectory()
        let prefix = RedisTestServer.uniquePrefix("roles")
        let socket = directory.path + "/maestro.sock"
        let collectors = try MaestroProcess(prefix: prefix, extra: [
            "--role", "maestro", "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests", "--grpc-socket", socket,
        ], directory: directory, log: "maestro.log")
        defer { _ = collectors.stop() }
        #expect(waitForFile(socket))
        let sinker = try MaestroProcess(prefix: prefix, extra: ["--role", "sinker", "--maestro-target", "unix:" + socket], directory: directory,
                                        log: "sinker.log")
        defer { _ = sinker.stop() }
        let config = #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#
        #expect(try runProgram([maestroBinary(), "sinks", "create", "--sink-id", "apart-1", "--backend", "prometheus", "--sink-config", config]
                               + collectors.common).code == 0)
        let file = directory.path + "/manifests/otelcollectors/otel-apart-1.yaml"
        #expect(waitForFile(file), "\((try? directory.read("sinker.log")) ?? "")")
        #expect(try runProgram([maestroBinary(), "sinks", "remove", "--sink-id", "apart-1"] + collectors.common).code == 0)
        #expect(eventually { !FileManager.default.fileExists(atPath: file) }, "the removal reached the maestro role")
        #expect(sinker.stop() == 0)
        #expect(collectors.stop() == 0)
    }

    @Test("maestro collectors create|get|list|render|update|delete talk to a running maestro")
    func collectorsCommands() throws {
        let directory = try TemporaryDirectory()
        let socket = directory.path + "/maestro.sock"
        let prefix = RedisTestServer.uniquePrefix("cli-api")
        let maestro = try MaestroProcess(prefix: prefix, extra: [
            "--create-policy", "external", "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests", "--grpc-socket", socket,
        ], directory: directory)
        defer { _ = maestro.stop() }
        #expect(waitForFile(socket))
        let config = #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"hunter2"}}"#
        #expect(try runProgram([maestroBinary(), "sinks", "create", "--sink-id", "cli-c1", "--owner", "o1", "--backend", "prometheus",
                                "--sink-config", config] + maestro.common).code == 0)
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        #expect(eventually { ((try? redis.hget(prefix + "config", field: "cli-c1")) ?? nil) != nil }, "the sinker stored the config")
        let target = ["--target", "unix:" + socket]
        let created = try runProgram([maestroBinary(), "collectors", "create", "--sink-id", "cli-c1"] + target)
        #expect(created.code == 0, "\(created.output)")
        #expect(created.output.contains("otel-cli-c1"))
        let listed = try runProgram([maestroBinary(), "collectors", "list"] + target)
        #expect(listed.output.contains("cli-c1") && listed.output.contains("o1"), "\(listed.output)")
        let rendered = try runProgram([maestroBinary(), "collectors", "render", "--sink-id", "cli-c1", "--reveal-secrets"] + target)
        #expect(rendered.output.contains("kind: Deployment"))
        #expect(rendered.output.contains("credentials redacted") && !rendered.output.contains("hunter2"))
        #expect(try runProgram([maestroBinary(), "collectors", "update", "--sink-id", "cli-c1"] + target).code == 0)
        let missing = try runProgram([maestroBinary(), "collectors", "get", "--sink-id", "nope"] + target)
        #expect(missing.code == 1 && missing.output.contains("nope"))
        let invalid = try runProgram([maestroBinary(), "collectors", "create", "--sink-id", ""] + target)
        #expect(invalid.code == 2)
        let deleted = try runProgram([maestroBinary(), "collectors", "delete", "--sink-id", "cli-c1"] + target)
        #expect(deleted.output.contains("deleted the collector of cli-c1"))
        #expect(maestro.stop() == 0)
    }

    @Test("--role sinker without a target is a clear error")
    func sinkerNeedsTarget() throws {
        let result = try runProgram([maestroBinary(), "run", "--role", "sinker", "--redis-url", try RedisTestServer.url])
        #expect(result.code == 2)
        #expect(result.output.contains("--maestro-target"))
    }
}

@Suite("Metrics and health endpoints", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct OperationsEndpointTests {
    @Test("/healthz, /readyz (Redis down → 503), /metrics with DESIGN's names and no credentials")
    func endpoints() throws {
        let directory = try TemporaryDirectory()
        let redis = try LocalRedisServer.start()
        defer { redis.stop(hard: true) }
        let process = try ChildProcess([maestroBinary(), "run", "--redis-url", redis.url, "--plugins-dir", repositoryRoot + "/plugins",
                                        "--templates-dir", repositoryRoot + "/templates", "--kube-backend", "directory",
                                        "--manifests-dir", directory.path + "/manifests", "--http-listen", "127.0.0.1:0"],
                                       logPath: directory.path + "/run.log")
        defer {
            process.signal(SIGTERM)
            _ = process.wait(timeout: 30)
        }
        let port = try loggedPort("http.port", in: directory.path + "/run.log", of: process)
        func get(_ path: String) throws -> (Int32, String) {
            let result = try runProgram(["/usr/bin/curl", "-s", "-o", "/dev/stdout", "-w", "\n%{http_code}", "--max-time", "5", "http://127.0.0.1:\(port)\(path)"])
            let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int32(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }
        #expect(eventually { (try? get("/healthz"))?.0 == 200 })
        #expect(try get("/readyz").0 == 200)
        let config = #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"metric-user","password":"metric-s3cret"}}"#
        #expect(try runProgram([maestroBinary(), "sinks", "create", "--redis-url", redis.url, "--sink-id", "met-1", "--backend", "prometheus",
                                "--sink-config", config]).code == 0)
        var metrics = ""
        #expect(eventually {
            metrics = (try? get("/metrics").1) ?? ""
            return metrics.contains(#"maestro_collectors{status="provisioning"} 1"#)
        })
        for name in [#"maestro_events_total{stream="orb.sinks",outcome="acked"} 1"#, "maestro_plugin_duration_seconds", "maestro_reconcile_total",
                     #"maestro_collectors{status="provisioning"} 1"#, "maestro_stream_lag", "maestro_stream_pending"] {
            #expect(metrics.contains(name), "\(name) missing from /metrics")
        }
        #expect(!metrics.contains("metric-s3cret") && !metrics.contains("metric-user"))
        #expect(try get("/nope").0 == 404)
        redis.stop(hard: true)
        #expect(try get("/readyz").0 == 503, "Redis unreachable: not ready")
        #expect(try get("/healthz").0 == 200, "but alive")
    }
}
