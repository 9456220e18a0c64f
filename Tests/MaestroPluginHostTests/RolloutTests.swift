import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroPluginHost

/// Safe rollouts against the API double with its asynchronous controller: a config the collector cannot
/// run (its pods crash-loop: the double's `crash_when_config_contains`) or a rollout never observed is
/// rolled back to the last version that reached active, the failed one is not applied again, and the next
/// update rolls out normally.
@Suite("Safe rollouts: history, automatic and manual rollback, Events", .serialized, .testThreads, .timeLimit(.minutes(5)))
struct RolloutTests {
    static let good = "exporters: {otlphttp: {endpoint: https://good.example}}\n"
    static let crashing = "exporters: {otlphttp: {endpoint: https://crash-me.example}}\n"
    static let fixed = "exporters: {otlphttp: {endpoint: https://fixed.example}}\n"

    /// The collector's Secret data and its pod template's config hash, as the cluster has them.
    static func live(_ fixture: WatchingFixture, _ name: String) throws -> (secret: Value?, configHash: String?) {
        let secret = try fixture.double.get("/api/v1/namespaces/otelcollectors/secrets/\(name)").body["data"]
        let hash = try fixture.deployment(name)?["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"]?.stringValue
        return (secret, hash)
    }

    /// maestro's Events about a Deployment.
    static func events(_ fixture: WatchingFixture, about name: String) throws -> [Value] {
        (try fixture.double.get("/apis/events.k8s.io/v1/namespaces/otelcollectors/events").body["items"]?.listValue ?? []).filter {
            $0["regarding"]?["name"]?.stringValue == name && $0["regarding"]?["kind"]?.stringValue == "Deployment"
                && $0["reportingController"]?.stringValue == "maestro.orb.community/maestro"
        }
    }

    static func update(_ fixture: WatchingFixture, _ redis: RedisConnection, _ sinkID: String, config: String) throws {
        try redis.hset(fixture.pipeline.names.configHash, field: sinkID, value: config)
        try fixture.manager.update(sinkID: sinkID, ownerID: "o")
    }

    /// Waits until the reconciler has nothing queued or running (what a pass would do, it has done).
    static func settled(_ fixture: WatchingFixture) -> Bool {
        eventually { fixture.reconciler.backlog == 0 } && eventually { fixture.reconciler.backlog == 0 }
    }

    @Test("a config whose pods crash-loop is rolled back (Secret and pod template as before, error saying so, Events); a resync and a re-render do not apply it again; a later good update becomes active")
    func crashLoopRolledBack() throws {
        let fixture = try WatchingFixture(options: ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 1, rolloutTimeout: 600))
        let redis = try fixture.pipeline.connect()
        try fixture.double.controller(["crash_when_config_contains": "crash-me", "surge": true, "pod_start_seconds": 2])
        fixture.start()
        defer { fixture.stop() }
        try redis.hset(fixture.pipeline.names.configHash, field: "r1", value: Self.good)
        try fixture.manager.create(sinkID: "r1", ownerID: "o")
        #expect(eventually { fixture.status("r1") == "active" })
        let before = try Self.live(fixture, "otel-r1")
        #expect(before.secret != nil && before.configHash != nil)

        try Self.update(fixture, redis, "r1", config: Self.crashing)
        #expect(eventually(timeout: 60) { fixture.errorMessage("r1").hasPrefix("rolled back to version 1 ") }, "\(fixture.errorMessage("r1"))")
        #expect(fixture.status("r1") == "error")
        #expect(fixture.errorMessage("r1").contains("CrashLoopBackOff"), "\(fixture.errorMessage("r1"))")
        // The old objects are back, and the old pods serve again: nothing but the status says error.
        #expect(try eventually { try Self.live(fixture, "otel-r1") == before })
        #expect(try redis.hget(fixture.pipeline.names.configHash, field: "r1") == Self.crashing, "the user's config stays stored")
        let history = try fixture.reconciler.storage.rolloutHistory(of: "r1")
        #expect(history.versions.map(\.outcome.rawValue).prefix(2) == ["active", "failed"], "\(history.versions)")
        #expect(history.versions.last?.source == .rollback && history.versions.last?.rolledBackTo == 1, "\(history.versions)")

        // The Events are recorded after the status is published: waited for, not read at once (under load
        // the status was seen before the Event existed).
        #expect(eventually(timeout: 30) {
            let reasons = ((try? Self.events(fixture, about: "otel-r1")) ?? []).compactMap { $0["reason"]?.stringValue }
            return reasons.contains("RolledBack") && reasons.contains("CollectorError")
        })
        let events = try Self.events(fixture, about: "otel-r1")
        let rolledBack = events.first { $0["reason"]?.stringValue == "RolledBack" }
        #expect(rolledBack?["type"]?.stringValue == "Warning" && rolledBack?["action"]?.stringValue == "Rollback", "\(events)")
        #expect(rolledBack?["note"]?.stringValue?.hasPrefix("rolled back to version 1 ") == true, "\(events)")
        #expect(rolledBack?["eventTime"]?.stringValue?.isEmpty == false && rolledBack?["regarding"]?["uid"]?.stringValue?.isEmpty == false)
        #expect(events.contains { $0["reason"]?.stringValue == "CollectorError" && $0["type"]?.stringValue == "Warning" }, "\(events)")

        // Neither a resync nor a template re-render (the same template) applies the failed render again.
        #expect(Self.settled(fixture))
        let generation = try fixture.deployment("otel-r1")?["metadata"]?["generation"]
        try fixture.reconciler.resync()
        #expect(fixture.manager.replaceTemplates { try TemplateRenderer(root: repositoryRoot + "/templates", settings: .map([:])) } == 1)
        #expect(Self.settled(fixture))
        #expect(try Self.live(fixture, "otel-r1") == before)
        #expect(try fixture.deployment("otel-r1")?["metadata"]?["generation"] == generation)
        #expect(fixture.errorMessage("r1").hasPrefix("rolled back to version 1 "))

        // The next update starts from the user's config and rolls out normally.
        try Self.update(fixture, redis, "r1", config: Self.fixed)
        #expect(eventually(timeout: 60) { fixture.status("r1") == "active" }, "\(fixture.errorMessage("r1"))")
        let after = try Self.live(fixture, "otel-r1")
        #expect(after.configHash != before.configHash && after.secret != before.secret)
        #expect(try fixture.reconciler.storage.rolloutHistory(of: "r1").failed == nil)
    }

    @Test("a rollout that is never observed is rolled back after --rollout-timeout")
    func timeoutRolledBack() throws {
        let fixture = try WatchingFixture(options: ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 1, rolloutTimeout: 3))
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        try redis.hset(fixture.pipeline.names.configHash, field: "t1", value: Self.good)
        try fixture.manager.create(sinkID: "t1", ownerID: "o")
        #expect(eventually { fixture.status("t1") == "active" })
        let before = try Self.live(fixture, "otel-t1")
        // No controller acts any more: the new generation is never observed.
        try fixture.double.controller(["paused": true])
        try Self.update(fixture, redis, "t1", config: Self.fixed)
        #expect(try eventually { try Self.live(fixture, "otel-t1").configHash != before.configHash }, "the new version is applied first")
        #expect(eventually(timeout: 60) { fixture.errorMessage("t1").hasPrefix("rolled back to version 1 ") }, "\(fixture.errorMessage("t1"))")
        #expect(fixture.errorMessage("t1").contains("was not active within 3 s"), "\(fixture.errorMessage("t1"))")
        #expect(try Self.live(fixture, "otel-t1") == before)
        #expect(try fixture.reconciler.storage.rolloutHistory(of: "t1").versions.map(\.outcome.rawValue).prefix(2) == ["active", "failed"])
    }

    @Test("a manual rollback re-applies an earlier good version, is a version of its own, and holds back the current render")
    func manualRollback() throws {
        let fixture = try WatchingFixture(options: ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 1))
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        try redis.hset(fixture.pipeline.names.configHash, field: "m1", value: Self.good)
        try fixture.manager.create(sinkID: "m1", ownerID: "o")
        #expect(eventually { fixture.status("m1") == "active" })
        let first = try Self.live(fixture, "otel-m1")
        try Self.update(fixture, redis, "m1", config: Self.fixed)
        #expect(try eventually { try Self.live(fixture, "otel-m1").configHash != first.configHash })
        #expect(eventually { fixture.status("m1") == "active" })
        #expect(try eventually { try fixture.reconciler.storage.rolloutHistory(of: "m1").versions.map(\.outcome.rawValue) == ["active", "active"] })

        // Bad requests lose nothing.
        #expect(throws: CollectorServiceError.self) { try fixture.reconciler.rollBack(sinkID: "m1", to: 2) }
        #expect(throws: CollectorServiceError.self) { try fixture.reconciler.rollBack(sinkID: "m1", to: 9) }
        #expect(throws: CollectorServiceError.self) { try fixture.reconciler.rollBack(sinkID: "nobody", to: nil) }
        let version = try fixture.reconciler.rollBack(sinkID: "m1", to: nil)
        #expect(version.version == 3 && version.rolledBackTo == 1 && version.source == .manualRollback)
        #expect(try eventually { try Self.live(fixture, "otel-m1") == first })
        #expect(eventually { fixture.errorMessage("m1").hasPrefix("rolled back by hand to version 1 ") }, "\(fixture.errorMessage("m1"))")
        #expect(Self.settled(fixture))
        try fixture.reconciler.resync()
        #expect(Self.settled(fixture))
        #expect(try Self.live(fixture, "otel-m1") == first, "the resync does not re-apply the render rolled back from")
        let outcomes = try fixture.reconciler.storage.rolloutHistory(of: "m1").versions.map { "\($0.version) \($0.outcome.rawValue) \($0.source.rawValue)" }
        #expect(outcomes == ["1 active update", "2 failed update", "3 active manual_rollback"], "\(outcomes)")
    }
}
