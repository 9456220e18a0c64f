import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

/// The whole flow with recognisable credentials, then a search of every place DESIGN "Secrets" says they
/// never are: logs at debug level, metrics, status messages and the status stream, dead-letter reasons,
/// gRPC errors, `maestro status` and `maestro deadletter list` output, annotations.
@Suite("secrets never leak", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct SecretsFlowTests {
    static let redisPassword = "redisPw-Q7x2"
    static let orbKey = "orbKey-Z9k4"
    static let grpcToken = "grpcTok-V5m8"
    static let sinkPassword = "sinkPass-3Xr1"
    static let sinkToken = "sinkTok-4Wq6"
    static let invalidSinkPassword = "badPass-8Rn3"
    static let pluginQuotedPassword = "quotedPass-2Lp9"
    static let retriedPassword = "retryPass-6Hd5"
    static let wrongGRPCToken = "wrongTok-1Jc7"
    static let all = [redisPassword, orbKey, grpcToken, sinkPassword, sinkToken, invalidSinkPassword, pluginQuotedPassword,
                      retriedPassword, wrongGRPCToken]

    @Test("the whole flow: no credential in logs, metrics, statuses, dead-letter reasons, gRPC errors or command output")
    func wholeFlow() throws {
        let server = try LocalRedisServer.start(extraArguments: ["--requirepass", Self.redisPassword])
        defer { server.stop() }
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/plugins")
        // A careless plugin that quotes the credentials it was given in its failures.
        try directory.write("plugins/leaky/schema.lua", """
        local otel = require "_lib.otel"
        return { name = "leaky", version = "1.0.0", binds = { sink_backend = "leaky" },
                 sink = { fields = { authentication = otel.authentication_field } } }
        """)
        try directory.write("plugins/leaky/handler.lua", """
        local handler = {}
        function handler.on_sink_create(sink)
          local auth = sink.config.authentication
          maestro.log.debug("handling", { sink = sink.id })
          if sink.id == "leaky-retry" then error("backend refused password " .. auth.password) end
          maestro.fail("cannot use password " .. auth.password .. " for " .. auth.username)
        end
        return handler
        """)
        let environment = [
            "MAESTRO_REDIS_URL_FILE": try directory.write("redis-url", "redis://:\(Self.redisPassword)@127.0.0.1:\(server.port)/0"),
            "MAESTRO_SECRET_KEY_FILE": try directory.write("secret-key", Self.orbKey),
            "MAESTRO_GRPC_TOKEN_FILE": try directory.write("grpc-token", Self.grpcToken),
        ]
        var runEnvironment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAESTRO_") && !$0.key.hasPrefix("ORB_") }
        runEnvironment.merge(environment) { _, new in new }
        let run = try ChildProcess([maestroBinary(), "run", "--plugins-dir", directory.path + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                    "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests", "--log-level", "debug",
                                    "--log-format", "json", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                    "--max-deliveries", "2"],
                                   environment: runEnvironment, logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let grpcPort = try loggedPort("grpc.port", in: directory.path + "/run.log", of: run)
        let httpPort = try loggedPort("http.port", in: directory.path + "/run.log", of: run)
        let redis = try RedisConnection(url: try RedisURL(parsing: "redis://:\(Self.redisPassword)@127.0.0.1:\(server.port)/0"))
        var outputs: [String: String] = [:]
        func command(_ label: String, _ arguments: [String]) throws {
            let result = try maestro(arguments, environment: environment)
            outputs[label] = result.output
        }
        let encrypted = OrbSecretCipher(secret: Self.orbKey).encrypt(Self.sinkPassword)
        try command("create prometheus", ["sinks", "create", "--sink-id", "s-prom", "--owner", "o1", "--backend", "prometheus", "--sink-config",
                                          #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"\#(encrypted)"}}"#])
        try command("create otlphttp", ["sinks", "create", "--sink-id", "s-otlp", "--owner", "o1", "--backend", "otlphttp", "--sink-config",
                                        #"{"exporter":{"endpoint":"https://o.example"},"authentication":{"type":"bearertokenauth","scheme":"Bearer","token":"\#(Self.sinkToken)"}}"#])
        try command("create invalid", ["sinks", "create", "--sink-id", "s-invalid", "--owner", "o1", "--backend", "prometheus", "--sink-config",
                                       #"{"exporter":{"remote_host":"no url \#(Self.invalidSinkPassword)"},"authentication":{"type":"basicauth","username":"u","password":"\#(Self.invalidSinkPassword)"}}"#])
        try command("create leaky", ["sinks", "create", "--sink-id", "leaky-fail", "--owner", "o1", "--backend", "leaky", "--sink-config",
                                     #"{"authentication":{"type":"basicauth","username":"u","password":"\#(Self.pluginQuotedPassword)"}}"#])
        try command("create retried", ["sinks", "create", "--sink-id", "leaky-retry", "--owner", "o1", "--backend", "leaky", "--sink-config",
                                       #"{"authentication":{"type":"basicauth","username":"u","password":"\#(Self.retriedPassword)"}}"#])

        let manifests = directory.path + "/manifests/otelcollectors"
        #expect(waitForFile(manifests + "/otel-s-prom.yaml") && waitForFile(manifests + "/otel-s-otlp.yaml"))
        #expect(eventually(timeout: 30) { ((try? redis.xlen(RedisNames().deadLetterStream)) ?? 0) >= 2 })
        #expect(eventually { ((try? redis.hget(RedisNames().collectorsHash, field: "s-invalid")) ?? nil ?? "").contains("provisioning_error") })
        // The credentials did reach where they belong: the stored config and the Secret object (file mode 0600).
        #expect(try redis.hget(RedisNames().configHash, field: "s-prom")?.contains(Self.sinkPassword) == true, "decrypted with the Orb key")
        let promObjects = try String(contentsOfFile: manifests + "/otel-s-prom.yaml", encoding: .utf8)
        #expect(promObjects.contains(Self.sinkPassword))

        try command("collectors list", ["collectors", "list", "--target", "127.0.0.1:\(grpcPort)"])
        #expect(outputs["collectors list"]?.contains("s-prom") == true, "\(outputs["collectors list"] ?? "")")
        var wrongToken = environment
        wrongToken["MAESTRO_GRPC_TOKEN_FILE"] = try directory.write("wrong-token", Self.wrongGRPCToken)
        let rejected = try maestro(["collectors", "get", "--target", "127.0.0.1:\(grpcPort)", "--sink-id", "s-prom"], environment: wrongToken)
        #expect(rejected.code != 0)
        outputs["rejected call"] = rejected.output
        try command("collectors get unknown", ["collectors", "get", "--target", "127.0.0.1:\(grpcPort)", "--sink-id", "missing-sink"])
        try command("status", ["status"])
        try command("deadletter list", ["deadletter", "list"])
        try command("config", ["config"])
        #expect(outputs["deadletter list"]?.contains("leaky") == true, "\(outputs["deadletter list"] ?? "")")
        outputs["metrics"] = try runProgram([try executable("curl"), "-s", "http://127.0.0.1:\(httpPort)/metrics"]).output
        #expect(outputs["metrics"]?.contains("maestro_events_total") == true)
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 30))
        outputs["log (debug, json)"] = try directory.read("run.log")
        #expect(outputs["log (debug, json)"]?.contains(#""level":"debug""#) == true, "the log is at debug level")

        // Status stream and hash, dead-letter reasons, annotations.
        for entry in try redis.xrange(RedisNames().statusStream) {
            outputs["status stream \(entry.id)"] = entry.fields.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
        }
        for (sinkID, json) in try redis.hgetall(RedisNames().collectorsHash) { outputs["collectors hash \(sinkID)"] = json }
        for entry in try redis.xrange(RedisNames().deadLetterStream) {
            outputs["dead-letter reason \(entry.id)"] = entry["reason"] ?? ""
            // The reason still says what went wrong, with the credential masked.
            #expect(entry["reason"]?.contains("password") == true, "\(entry["reason"] ?? "")")
        }
        for file in try FileManager.default.contentsOfDirectory(atPath: manifests) {
            for object in try YAML.parseAll(try String(contentsOfFile: manifests + "/" + file, encoding: .utf8)) {
                outputs["annotations \(file) \(object["kind"]?.stringValue ?? "")"] = "\(object["metadata"]?["annotations"] ?? .null)"
                outputs["labels \(file)"] = "\(object["metadata"]?["labels"] ?? .null)"
                #expect(object["kind"] != "ConfigMap", "credentials never go to a ConfigMap")
            }
        }
        for (place, text) in outputs {
            for secret in Self.all {
                #expect(!text.contains(secret), "\(secret) appears in \(place)")
            }
        }
    }
}
