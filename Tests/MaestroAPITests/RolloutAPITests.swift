import Foundation
import GRPCCore
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroAPI
@testable import MaestroPluginHost

@Suite("gRPC: rollout history and rollback", .serialized, .testThreads, .timeLimit(.minutes(2)))
struct RolloutAPITests {
    /// The directory backend never reports `active` (DESIGN): the first version is marked good here, as
    /// the watcher marks it when a cluster shows it active.
    static func markActive(_ fixture: APIFixture, _ sinkID: String) throws {
        let redis = try RedisConnection(url: fixture.redisURL)
        let desired = try #require(try redis.hget(fixture.names.deploymentHash, field: sinkID))
        var history = try RolloutHistoryStore.history(redis, names: fixture.names, sinkID: sinkID)
        history.reachedActive(digest: RolloutHistory.digest(ofDesiredState: desired), yaml: desired, configHash: "", now: 1, keep: 3)
        try RolloutHistoryStore.store(redis, names: fixture.names, sinkID: sinkID, history: history, desiredState: nil)
    }

    @Test("GetOtelCollectorHistory lists the versions; RollbackOtelCollector re-applies a good one and holds the current render back; bad requests get their codes")
    func historyAndRollback() async throws {
        let fixture = try APIFixture()
        try await fixture.start()
        defer { Task { await fixture.stop() } }
        let client = try fixture.client()
        try fixture.storeConfig("h1", "exporters:\n  otlphttp:\n    endpoint: https://first.example\n")
        _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "h1" })
        let manifest = fixture.manifests.path + "/otelcollectors/otel-h1.yaml"
        #expect(eventually { (try? String(contentsOfFile: manifest, encoding: .utf8))?.contains("first.example") == true })
        let first = try String(contentsOfFile: manifest, encoding: .utf8)
        try Self.markActive(fixture, "h1")
        try fixture.storeConfig("h1", "exporters:\n  otlphttp:\n    endpoint: https://second.example\n")
        _ = try await client.collectors.updateOtelCollector(.with { $0.sinkID = "h1" })
        #expect(eventually { (try? String(contentsOfFile: manifest, encoding: .utf8))?.contains("second.example") == true })

        let before = try await client.collectors.getOtelCollectorHistory(.with { $0.sinkID = "h1" })
        #expect(before.versions.map(\.version) == [1, 2])
        #expect(before.versions.map(\.outcome) == ["active", "pending"])
        #expect(before.versions.map(\.kept) == [true, false])
        #expect(before.versions.allSatisfy { $0.digest.count == 40 && !$0.storedAt.isEmpty && $0.source == "update" })
        #expect(before.heldBackVersion == 0)

        #expect(await code { _ = try await client.collectors.rollbackOtelCollector(.with { $0.sinkID = "h1"; $0.toVersion = 2 }) } == .failedPrecondition)
        #expect(await code { _ = try await client.collectors.rollbackOtelCollector(.with { $0.sinkID = "h1"; $0.toVersion = 7 }) } == .notFound)
        #expect(await code { _ = try await client.collectors.rollbackOtelCollector(.with { $0.sinkID = "h1"; $0.toVersion = -1 }) } == .invalidArgument)
        #expect(await code { _ = try await client.collectors.rollbackOtelCollector(.with { $0.sinkID = "" }) } == .invalidArgument)
        #expect(await code { _ = try await client.collectors.rollbackOtelCollector(.with { $0.sinkID = "nobody" }) } == .notFound)
        #expect(await code { _ = try await client.collectors.getOtelCollectorHistory(.with { $0.sinkID = "nobody" }) } == .notFound)

        let rolledBack = try await client.collectors.rollbackOtelCollector(.with { $0.sinkID = "h1" })
        #expect(rolledBack.version == 3 && rolledBack.rolledBackTo == 1 && rolledBack.source == "manual_rollback")
        #expect(eventually { (try? String(contentsOfFile: manifest, encoding: .utf8)) == first }, "the first version's objects are written again")
        let after = try await client.collectors.getOtelCollectorHistory(.with { $0.sinkID = "h1" })
        #expect(after.versions.map(\.outcome) == ["active", "failed", "pending"])
        #expect(after.heldBackVersion == 2)
        // An update of the same config re-renders the held-back version: it stays rolled back.
        _ = try await client.collectors.updateOtelCollector(.with { $0.sinkID = "h1" })
        #expect(eventually { fixture.reconciler.backlog == 0 })
        #expect(try String(contentsOfFile: manifest, encoding: .utf8) == first)
        let status = try await client.collectors.getOtelCollector(.with { $0.sinkID = "h1" })
        #expect(status.status == "error" && status.errorMessage.hasPrefix("rolled back by hand to version 1 "), "\(status)")
    }
}
