import Foundation
import Logging
import MaestroCore
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

func shippedCatalog() -> PluginCatalog {
    PluginCatalog.load(root: repositoryRoot + "/plugins")
}

func builder(catalog: PluginCatalog = shippedCatalog(), kafka: String = "kafka:9092", secret: String = "orb") -> CollectorConfigBuilder {
    let logger = Logger(label: "test")
    let context = SinkerContext(catalog: catalog, names: RedisNames(), cipher: OrbSecretCipher(secret: secret), kafkaURL: kafka,
                                policy: .eager, collectors: nil, logger: logger)
    return CollectorConfigBuilder(context: context, runtime: PluginRuntime(catalog: catalog, names: RedisNames(), logger: logger))
}

@Suite("Backend plugins", .testThreads, .timeLimit(.minutes(2)))
struct BackendPluginTests {
    @Test("the shipped plugins load")
    func catalog() {
        let catalog = shippedCatalog()
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        #expect(catalog.plugin(forBackend: "prometheus")?.name == "prometheus")
        #expect(catalog.plugin(forBackend: "otlphttp")?.name == "otlphttp")
        #expect(catalog.plugin(forBackend: "prometheus")?.sinkSchema.secretPaths == ["authentication.password", "authentication.token"])
    }

    static let goldenCases = ["prometheus/spec/golden/basic", "prometheus/spec/golden/headers", "otlphttp/spec/golden/basic",
                              "otlphttp/spec/golden/bearer"]

    @Test("Orb's expected collector configs (reference §4), parsed equal", arguments: goldenCases)
    func golden(_ path: String) throws {
        let input = try JSON.decode(try String(contentsOfFile: repositoryRoot + "/plugins/\(path).json", encoding: .utf8))
        let expected = try YAML.parse(try String(contentsOfFile: repositoryRoot + "/plugins/\(path).yaml", encoding: .utf8))
        let backend = String(path.split(separator: "/")[0])
        let result = builder(kafka: input["kafka_url"]!.stringValue!).build(
            operation: .create, sinkID: input["sink_id"]!.stringValue!, ownerID: "owner", backend: backend, config: input["config"]!)
        guard case .config(let config, let yaml) = result else {
            Issue.record("expected a config, got \(result)")
            return
        }
        #expect(config == expected)
        #expect(try YAML.parse(yaml) == expected)
    }

    @Test("values keep their type through the YAML: a numeric user name and a quoted password")
    func trickyValues() throws {
        let config: Value = ["exporter": ["remote_host": "https://p.example/w"],
                             "authentication": ["type": "basicauth", "username": "1234123", "password": "a\"b: c"]]
        guard case .config(_, let yaml) = builder().build(operation: .create, sinkID: "s", ownerID: "o", backend: "prometheus", config: config) else {
            Issue.record("expected a config")
            return
        }
        let viaPyYAML = try JSON.decode(try runPythonYAML(yaml))
        let auth = viaPyYAML["extensions"]?["basicauth/exporter"]?["client_auth"]
        #expect(auth?["username"] == .string("1234123"))
        #expect(auth?["password"] == .string("a\"b: c"))
    }

    // Reference §3.3: every rejected and accepted case.
    static let validation: [(String, String, Value, String?)] = [
        ("unknown backend", "elastic", ["exporter": ["remote_host": "https://a/b"]], "no plugin serves backend"),
        ("exporter missing", "prometheus", ["authentication": ["type": "basicauth", "username": "u", "password": "p"]], "exporter is required"),
        ("remote_host missing", "prometheus", ["exporter": .map([:]), "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "exporter.remote_host is required"),
        ("remote_host without scheme", "prometheus", ["exporter": ["remote_host": "acme.com/prom/push"], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "exporter.remote_host must be an absolute URL"),
        ("remote_host with scheme", "prometheus", ["exporter": ["remote_host": "https://acme.com/prom/push"], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], nil),
        ("endpoint missing", "otlphttp", ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "exporter.endpoint is required"),
        ("endpoint without scheme", "otlphttp", ["exporter": ["endpoint": "acme.com/otlp"], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "exporter.endpoint must be an absolute URL"),
        ("headers not an object", "prometheus", ["exporter": ["remote_host": "https://a/b", "headers": "X: y"], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "exporter.headers must be an object of strings"),
        ("header value not a string", "prometheus", ["exporter": ["remote_host": "https://a/b", "headers": ["X-N": 1]], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "exporter.headers.X-N must be a string"),
        ("Content-Encoding header", "prometheus", ["exporter": ["remote_host": "https://a/b", "headers": ["Content-Encoding": "gzip"]], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "must not set Content-Encoding"),
        ("Content-Type header", "otlphttp", ["exporter": ["endpoint": "https://a/b", "headers": ["content-type": "x"]], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "must not set content-type"),
        ("User-Agent header", "prometheus", ["exporter": ["remote_host": "https://a/b", "headers": ["User-Agent": "x"]], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "must not set User-Agent"),
        ("Authorization header", "otlphttp", ["exporter": ["endpoint": "https://a/b", "headers": ["Authorization": "x"]], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "must not set Authorization"),
        ("remote-write version header (prometheus)", "prometheus", ["exporter": ["remote_host": "https://a/b", "headers": ["X-Prometheus-Remote-Write-Version": "1"]], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], "must not set X-Prometheus-Remote-Write-Version"),
        ("remote-write version header (otlphttp allowed)", "otlphttp", ["exporter": ["endpoint": "https://a/b", "headers": ["X-Prometheus-Remote-Write-Version": "1"]], "authentication": ["type": "basicauth", "username": "u", "password": "p"]], nil),
        ("authentication missing", "prometheus", ["exporter": ["remote_host": "https://a/b"]], "authentication is required"),
        ("authentication type missing", "prometheus", ["exporter": ["remote_host": "https://a/b"], "authentication": ["username": "u", "password": "p"]], "authentication.type is required"),
        ("authentication type unknown", "prometheus", ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "oauth", "username": "u"]], "authentication.type must be one of basicauth, bearertokenauth"),
        ("username missing", "prometheus", ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "basicauth", "password": "p"]], "authentication.username is required"),
        ("password missing", "prometheus", ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "basicauth", "username": "u"]], "authentication.password is required"),
        ("empty password", "prometheus", ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "basicauth", "username": "u", "password": ""]], "authentication.password must not be blank"),
        ("blank password", "prometheus", ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "basicauth", "username": "u", "password": " "]], "authentication.password must not be blank"),
        ("numeric password", "prometheus", ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "basicauth", "username": "u", "password": 1234]], "authentication.password must be a string"),
        ("numeric username", "prometheus", ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "basicauth", "username": 1234, "password": "p"]], "authentication.username must be a string"),
        ("blank username", "prometheus", ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "basicauth", "username": "", "password": "p"]], "authentication.username must not be blank"),
        ("scheme with a space", "otlphttp", ["exporter": ["endpoint": "https://a/b"], "authentication": ["type": "bearertokenauth", "scheme": "fake schema", "token": "abcdefg"]], "authentication.scheme must be a single word"),
        ("token with spaces", "otlphttp", ["exporter": ["endpoint": "https://a/b"], "authentication": ["type": "bearertokenauth", "scheme": "Bearer", "token": "invalid api key"]], "authentication.token must be a single word"),
        ("empty token", "otlphttp", ["exporter": ["endpoint": "https://a/b"], "authentication": ["type": "bearertokenauth", "scheme": "Bearer", "token": ""]], "authentication.token must be a single word"),
        ("numeric token", "otlphttp", ["exporter": ["endpoint": "https://a/b"], "authentication": ["type": "bearertokenauth", "scheme": "Bearer", "token": 1234]], "authentication.token must be a string"),
        ("scheme missing", "otlphttp", ["exporter": ["endpoint": "https://a/b"], "authentication": ["type": "bearertokenauth", "token": "abcdefg"]], "authentication.scheme is required"),
        ("Bearer abcdefg accepted", "otlphttp", ["exporter": ["endpoint": "https://a/b"], "authentication": ["type": "bearertokenauth", "scheme": "Bearer", "token": "abcdefg"]], nil),
        ("unknown fields are ignored", "prometheus", ["exporter": ["remote_host": "https://a/b", "future": true], "authentication": ["type": "basicauth", "username": "u", "password": "p"], "extra": 1], nil),
    ]

    @Test("Orb's validation rules (reference §3.3)", arguments: validation.indices)
    func validationRule(_ index: Int) {
        let (name, backend, config, expected) = Self.validation[index]
        let result = builder().build(operation: .create, sinkID: "s", ownerID: "o", backend: backend, config: config)
        switch (result, expected) {
        case (.config, nil):
            break
        case (.invalid(let message), let expected?):
            #expect(message.contains(expected), "\(name): \(message)")
            #expect(!message.contains("dbpass") && !message.contains("abcdefg"))
        default:
            Issue.record("\(name): expected \(expected ?? "acceptance"), got \(result)")
        }
    }

    @Test("a broken plugin fails alone, with file and line")
    func brokenPlugin() throws {
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/prometheus", toPath: directory.path + "/prometheus")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins/_lib", toPath: directory.path + "/_lib")
        try directory.write("broken/schema.lua", "return { name = 'broken', binds = { sink_backend = 'broken' } }")
        try directory.write("broken/handler.lua", "local handler = {}\nfunction handler.on_sink_create(sink\nreturn handler\n")
        try directory.write("misnamed/schema.lua", "return { name = 'other' }")
        try directory.write("misnamed/handler.lua", "return {}")
        try directory.write("badschema/schema.lua", "return { name = 'badschema', sink = { fields = { x = { type = 'uuid' } } } }")
        try directory.write("badschema/handler.lua", "return {}")
        let catalog = PluginCatalog.load(root: directory.path, settings: ["nosuchplugin": ["a": 1]])
        #expect(catalog.plugins.map(\.name) == ["prometheus"])
        let messages = catalog.failures.map(\.message).joined(separator: "\n")
        #expect(messages.contains("broken/handler.lua:3:"))
        #expect(messages.contains("must match the folder name"))
        #expect(messages.contains("type must be one of"))
        #expect(messages.contains("nosuchplugin"))
    }

    @Test("plugin settings from the config file are validated and defaulted")
    func settings() throws {
        let catalog = PluginCatalog.load(root: repositoryRoot + "/plugins", settings: ["prometheus": ["topic_prefix": "metrics.", "kafka_brokers": ["k1:1", "k2:2"]]])
        #expect(catalog.failures.isEmpty)
        let config: Value = ["exporter": ["remote_host": "https://a/b"], "authentication": ["type": "basicauth", "username": "u", "password": "p"]]
        guard case .config(let built, _) = builder(catalog: catalog).build(operation: .create, sinkID: "s1", ownerID: "o", backend: "prometheus", config: config) else {
            Issue.record("expected a config")
            return
        }
        #expect(built["receivers"]?["kafka"]?["topic"] == .string("metrics.s1"))
        #expect(built["receivers"]?["kafka"]?["brokers"] == ["k1:1", "k2:2"])
        #expect(built["receivers"]?["kafka"]?["protocol_version"] == .string("2.0.0"))
        let bad = PluginCatalog.load(root: repositoryRoot + "/plugins", settings: ["prometheus": ["topic_prefix": 5]])
        #expect(bad.failures.first?.message.contains("plugins.prometheus.topic_prefix must be a string") == true)
    }
}

func runPythonYAML(_ yaml: String) throws -> String {
    let directory = try TemporaryDirectory()
    let input = try directory.write("in.yaml", yaml)
    let result = try runProgram([try executable("python3"), "-c", "import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))", input])
    guard result.code == 0 else { throw ProcessError(result.output) }
    return result.output
}
