import Foundation
import MaestroCore
import MaestroTestSupport
import Testing

/// `make install PREFIX=…` and the folders maestro finds without flags.
@Suite("installed layout", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct InstallTests {
    static let config = #"{"exporter":{"remote_host":"https://prom.example/api/v1/write"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#

    /// The environment of a user's shell: no MAESTRO_* settings from the test run.
    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        var base = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAESTRO_") && !$0.key.hasPrefix("ORB_") }
        base.merge(extra) { _, new in new }
        return base
    }

    @Test("make install PREFIX puts bin/maestro and share/maestro/{plugins,templates}; render and run work from another directory")
    func installAndRunElsewhere() throws {
        let prefix = try TemporaryDirectory()
        let elsewhere = try TemporaryDirectory()
        let install = try runProgram([try executable("make"), "-C", repositoryRoot, "install", "PREFIX=\(prefix.path)", "MAESTRO_BINARY=\(maestroBinary())"],
                                     environment: environment())
        #expect(install.code == 0, "\(install.output)")
        let installed = prefix.path + "/bin/maestro"
        for path in ["/share/maestro/plugins/prometheus/schema.lua", "/share/maestro/plugins/_lib/otel.lua", "/share/maestro/templates/otel-collector.lua"] {
            #expect(FileManager.default.fileExists(atPath: prefix.path + path), "\(path) was not installed")
        }

        let rendered = try runProgram([installed, "render", "--backend", "prometheus", "--sink-id", "inst-1", "--sink-config", Self.config],
                                      environment: environment(), in: elsewhere.path)
        #expect(rendered.code == 0 && rendered.output.contains("prometheusremotewrite:"), "\(rendered.output)")
        let objects = try runProgram([installed, "render", "--objects", "--backend", "prometheus", "--sink-id", "inst-1", "--sink-config", Self.config],
                                     environment: environment(), in: elsewhere.path)
        #expect(objects.code == 0 && objects.output.contains("kind: Deployment"), "\(objects.output)")

        let prefixName = RedisTestServer.uniquePrefix("install")
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefixName)
        let run = try ChildProcess([try executable("env"), "-C", elsewhere.path] + environment().map { "\($0.key)=\($0.value)" }.sorted()
                                   + [installed, "run", "--kube-backend", "directory", "--manifests-dir", "manifests", "--consumer-name", "install"] + common,
                                   logPath: elsewhere.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        #expect(try maestro(["sinks", "create", "--sink-id", "inst-1", "--backend", "prometheus", "--sink-config", Self.config] + common).code == 0)
        #expect(eventually { FileManager.default.fileExists(atPath: elsewhere.path + "/manifests/otelcollectors/otel-inst-1.yaml") },
                "\((try? String(contentsOfFile: elsewhere.path + "/run.log", encoding: .utf8)) ?? "")")
    }

    @Test("MAESTRO_HOME comes first; with no folder anywhere the error names the places tried and the flag")
    func searchOrderAndError() throws {
        let bare = try TemporaryDirectory()
        let binary = bare.path + "/bin/maestro"
        try FileManager.default.createDirectory(atPath: bare.path + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: maestroBinary(), toPath: binary)
        let empty = try TemporaryDirectory()

        let missing = try runProgram([binary, "render", "--backend", "prometheus", "--sink-id", "s", "--sink-config", Self.config],
                                     environment: environment(), in: empty.path)
        #expect(missing.code == 2, "\(missing.output)")
        #expect(missing.output.contains("no plugins folder found; looked in \(bare.path)/share/maestro/plugins, \(empty.path)/plugins: set --plugins-dir"),
                "\(missing.output)")
        #expect(!missing.output.contains("NSCocoaErrorDomain"))
        let run = try runProgram([binary, "run", "--redis-url", "redis://127.0.0.1:1/0"], environment: environment(), in: empty.path)
        #expect(run.code == 2 && run.output.contains("no plugins folder found") && run.output.contains("--plugins-dir"), "\(run.output)")

        let home = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: home.path + "/plugins")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/examples/02-custom-backend/otlpgrpc", toPath: home.path + "/plugins/otlpgrpc")
        let listed = try runProgram([binary, "plugins", "list"], environment: environment(["MAESTRO_HOME": home.path]), in: empty.path)
        #expect(listed.code == 0 && listed.output.contains("otlpgrpc"), "\(listed.output)")
        let noTemplates = try runProgram([binary, "render", "--objects", "--backend", "prometheus", "--sink-id", "s", "--sink-config", Self.config],
                                         environment: environment(["MAESTRO_HOME": home.path]), in: empty.path)
        #expect(noTemplates.code == 2 && noTemplates.output.contains("no templates folder found; looked in \(home.path)/templates"), "\(noTemplates.output)")
        let given = try runProgram([binary, "plugins", "list", "--plugins-dir", empty.path + "/nowhere"], environment: environment(), in: empty.path)
        #expect(given.code == 2 && given.output.contains("the plugins folder \(empty.path)/nowhere (--plugins-dir) does not exist"), "\(given.output)")
    }
}
