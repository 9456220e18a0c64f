import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Synchronization
import Testing

@testable import MaestroPluginHost

/// The fingerprint kept in each sink's record decides which sinks a plugin change rebuilds: it must move
/// with what builds configs, and with nothing else.
@Suite("Plugin fingerprints", .testThreads, .timeLimit(.minutes(2)))
struct PluginFingerprintTests {
    func fingerprints(_ root: String, settings: [String: Value] = [:]) -> [String: String] {
        let catalog = PluginCatalog.load(root: root, settings: settings)
        #expect(catalog.failures.isEmpty, "\(catalog.failures)")
        return Dictionary(uniqueKeysWithValues: catalog.plugins.map { ($0.name, $0.fingerprint) })
    }

    func copy() throws -> (TemporaryDirectory, String) {
        let directory = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: directory.path + "/plugins")
        return (directory, directory.path + "/plugins")
    }

    func append(_ text: String, to path: String) throws {
        try (try String(contentsOfFile: path, encoding: .utf8) + text).write(toFile: path, atomically: true, encoding: .utf8)
    }

    @Test("equal contents, equal fingerprints wherever they are (each reload loads a fresh copy); docs and specs do not count")
    func stableAcrossCopies() throws {
        let original = fingerprints(repositoryRoot + "/plugins")
        #expect(Set(original.keys) == ["prometheus", "otlphttp", "webhook-notify"])
        #expect(Set(original.values).count == 3)
        let (directory, root) = try copy()
        _ = directory
        #expect(fingerprints(root) == original)
        try append("\nMore words.\n", to: root + "/prometheus/README.md")
        try append("\n-- a comment in a spec\n", to: root + "/prometheus/spec/handler_spec.lua")
        #expect(fingerprints(root) == original)
    }

    @Test("a handler edit changes its plugin only; a _lib edit changes every plugin that uses _lib; settings count")
    func whatMovesIt() throws {
        let original = fingerprints(repositoryRoot + "/plugins")
        let (directory, root) = try copy()
        _ = directory
        try append("\n-- changed\n", to: root + "/prometheus/handler.lua")
        var changed = fingerprints(root)
        #expect(changed["prometheus"] != original["prometheus"])
        #expect(changed["otlphttp"] == original["otlphttp"])
        #expect(changed["webhook-notify"] == original["webhook-notify"])

        try append("\n-- changed\n", to: root + "/_lib/otel.lua")
        let afterLib = fingerprints(root)
        #expect(afterLib["prometheus"] != changed["prometheus"])
        #expect(afterLib["otlphttp"] != original["otlphttp"])
        // webhook-notify requires nothing from _lib: a library change does not rebuild its sinks.
        #expect(afterLib["webhook-notify"] == original["webhook-notify"])

        changed = fingerprints(root, settings: ["otlphttp": .map(["topic_prefix": .string("other-")])])
        #expect(changed["otlphttp"] != afterLib["otlphttp"])
        #expect(changed["prometheus"] == afterLib["prometheus"])
    }

    @Test("a sinker worker moving to a newer plugin generation asks for one more rebuild sweep, once: the batch it built on the older one is stored by then")
    func workerMovingOnAsksForASweep() throws {
        let generations = PluginGenerations(PluginCatalog.load(root: repositoryRoot + "/plugins"))
        let moves = Mutex(0)
        generations.workerMovedOn.set { moves.withLock { $0 += 1 } }
        var context = SinkerContext(catalog: generations.catalog, names: RedisNames(), cipher: OrbSecretCipher(secret: "orb"), kafkaURL: "k:1",
                                    policy: .eager, collectors: nil, logger: Logger(label: "test"))
        context.generations = generations
        let source = PluginConfigSource(context: context)
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        defer { redis.close() }
        source.beginBatch(redis: redis)
        #expect(moves.withLock { $0 } == 0, "a worker starting on the generation in use is not a move")
        generations.replace(with: PluginCatalog.load(root: repositoryRoot + "/plugins"))
        source.beginBatch(redis: redis)
        #expect(moves.withLock { $0 } == 1)
        source.beginBatch(redis: redis)
        #expect(moves.withLock { $0 } == 1, "only a move asks for a sweep")
    }
}
