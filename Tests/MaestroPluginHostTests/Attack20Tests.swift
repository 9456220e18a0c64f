import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroPluginHost

/// Attacks on safe rollouts (issue 20) from the outside: the API double's asynchronous controller with
/// crash-looping pods, updates racing a rollout or a rollback, a restart mid-rollout, objects deleted by
/// hand, and credentials looked for where the history is kept.
@Suite("Attack: safe rollouts (issue 20)", .serialized, .testThreads, .timeLimit(.minutes(6)))
struct Attack20Tests {
    static let good = "exporters: {otlphttp: {endpoint: https://good.example}}\n"
    static let crashing = "exporters: {otlphttp: {endpoint: https://crash-me.example}}\n"
    static let crashingToo = "exporters: {otlphttp: {endpoint: https://crash-me-too.example}}\n"
    static let fixed = "exporters: {otlphttp: {endpoint: https://fixed.example}}\n"

    static func crashingFixture(double: KubeAPIDouble? = nil, pipeline: PipelineFixture? = nil) throws -> WatchingFixture {
        let fixture = try WatchingFixture(double: double, pipeline: pipeline,
                                          options: ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 1, rolloutTimeout: 600))
        try fixture.double.controller(["crash_when_config_contains": "crash-me", "surge": true, "pod_start_seconds": 2])
        return fixture
    }

    static func active(_ fixture: WatchingFixture, _ redis: RedisConnection, _ sinkID: String, config: String) throws -> (secret: Value?, configHash: String?) {
        try redis.hset(fixture.pipeline.names.configHash, field: sinkID, value: config)
        try fixture.manager.create(sinkID: sinkID, ownerID: "o")
        #expect(eventually { fixture.status(sinkID) == "active" }, "\(fixture.errorMessage(sinkID))")
        let live = try RolloutTests.live(fixture, "otel-\(sinkID)")
        #expect(live.secret != nil && live.configHash != nil)
        return live
    }

    static func sources(_ fixture: WatchingFixture, _ sinkID: String) throws -> [String] {
        try fixture.reconciler.storage.rolloutHistory(of: sinkID).versions.map { "\($0.version) \($0.outcome.rawValue) \($0.source.rawValue)" }
    }

    @Test("attack: a bad update followed by a good one while the bad one still rolls out: the good one becomes active, nothing is rolled back")
    func badThenGoodWhileRolling() throws {
        let fixture = try Self.crashingFixture()
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        let before = try Self.active(fixture, redis, "q1", config: Self.good)
        try RolloutTests.update(fixture, redis, "q1", config: Self.crashing)
        #expect(try eventually { try RolloutTests.live(fixture, "otel-q1").configHash != before.configHash }, "the bad version is applied")
        try RolloutTests.update(fixture, redis, "q1", config: Self.fixed)
        #expect(eventually(timeout: 60) {
            fixture.status("q1") == "active" && (try? RolloutTests.live(fixture, "otel-q1").secret) != before.secret
                && (try? fixture.reconciler.storage.rolloutHistory(of: "q1").latest?.outcome) == .active
        }, "\(fixture.errorMessage("q1")) \((try? Self.sources(fixture, "q1")) ?? [])")
        #expect(RolloutTests.settled(fixture))
        let history = try Self.sources(fixture, "q1")
        #expect(!history.contains { $0.hasSuffix(" rollback") }, "\(history)")
        #expect(history.last?.hasSuffix(" active update") == true, "\(history)")
        #expect(fixture.status("q1") == "active")
        #expect(try RolloutTests.events(fixture, about: "otel-q1").allSatisfy { $0["reason"]?.stringValue != "RolledBack" })
    }

    @Test("attack: another bad update while a rollback is in progress is rolled back to the last good version too; a good one then rolls out")
    func badUpdateDuringRollback() throws {
        let fixture = try Self.crashingFixture()
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        let before = try Self.active(fixture, redis, "q2", config: Self.good)
        try RolloutTests.update(fixture, redis, "q2", config: Self.crashing)
        #expect(eventually(timeout: 60) { fixture.errorMessage("q2").hasPrefix("rolled back to version 1 ") }, "\(fixture.errorMessage("q2"))")
        // The good objects by their digest: once the first rollback reached active it is a good version of
        // its own (the same objects), so the second rollback may name it rather than version 1.
        let good = try #require(try fixture.reconciler.storage.rolloutHistory(of: "q2").version(1)?.digest)
        let rolledBackToGood = { fixture.errorMessage("q2").hasPrefix("rolled back to version ") && fixture.errorMessage("q2").contains("(\(good.prefix(12))): ") }
        // At once, while Kubernetes rolls the old pods back.
        try RolloutTests.update(fixture, redis, "q2", config: Self.crashingToo)
        #expect(eventually(timeout: 60) {
            (try? fixture.reconciler.storage.rolloutHistory(of: "q2").versions.filter { $0.source == .rollback }.count) == 2
        }, "\((try? Self.sources(fixture, "q2")) ?? [])")
        #expect(eventually(timeout: 60) { rolledBackToGood() }, "\(fixture.errorMessage("q2"))")
        #expect(try eventually { try RolloutTests.live(fixture, "otel-q2") == before }, "the good objects are back")
        #expect(try fixture.reconciler.storage.rolloutHistory(of: "q2").versions.filter { $0.source == .rollback }.allSatisfy { $0.digest == good })
        #expect(RolloutTests.settled(fixture))
        try fixture.reconciler.resync()
        #expect(RolloutTests.settled(fixture))
        #expect(try RolloutTests.live(fixture, "otel-q2") == before, "no loop: the resync applies neither bad version")

        try RolloutTests.update(fixture, redis, "q2", config: Self.fixed)
        #expect(eventually(timeout: 60) { fixture.status("q2") == "active" }, "\(fixture.errorMessage("q2"))")
        #expect(try RolloutTests.live(fixture, "otel-q2").configHash != before.configHash)
    }

    @Test("attack: maestro stopped right after applying a bad version, before its failure is seen: the restarted maestro rolls it back, not silently left")
    func restartMidRollout() throws {
        let first = try Self.crashingFixture()
        let redis = try first.pipeline.connect()
        first.start()
        let before = try Self.active(first, redis, "k1", config: Self.good)
        try RolloutTests.update(first, redis, "k1", config: Self.crashing)
        #expect(try eventually { try RolloutTests.live(first, "otel-k1").configHash != before.configHash })
        first.stop()

        let restarted = try Self.crashingFixture(double: first.double, pipeline: first.pipeline)
        restarted.start()
        defer { restarted.stop() }
        #expect(eventually(timeout: 60) { restarted.errorMessage("k1").hasPrefix("rolled back to version 1 ") }, "\(restarted.errorMessage("k1"))")
        #expect(restarted.status("k1") == "error")
        #expect(try eventually { try RolloutTests.live(restarted, "otel-k1") == before })
        #expect(try redis.hget(restarted.pipeline.names.configHash, field: "k1") == Self.crashing, "the user's config stays stored")
    }

    @Test("attack: the rolled-back-to objects deleted by hand come back as the good version, never as the failed one")
    func rolledBackObjectsDeletedByHand() throws {
        let fixture = try Self.crashingFixture()
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        let before = try Self.active(fixture, redis, "d1", config: Self.good)
        try RolloutTests.update(fixture, redis, "d1", config: Self.crashing)
        #expect(eventually(timeout: 60) { fixture.errorMessage("d1").hasPrefix("rolled back to version 1 ") }, "\(fixture.errorMessage("d1"))")
        #expect(try eventually { try RolloutTests.live(fixture, "otel-d1") == before })
        #expect(RolloutTests.settled(fixture))
        let oldUID = try fixture.deployment("otel-d1")?["metadata"]?["uid"]
        #expect(try fixture.client.request("DELETE", "/apis/apps/v1/namespaces/otelcollectors/deployments/otel-d1").status == 200)
        #expect(eventually(timeout: 60) {
            guard let deployment = try? fixture.deployment("otel-d1") else { return false }
            return deployment["metadata"]?["uid"] != oldUID
        }, "the Deployment is made again")
        #expect(try eventually(timeout: 60) { try RolloutTests.live(fixture, "otel-d1") == before }, "\((try? RolloutTests.live(fixture, "otel-d1")).debugDescription)")
        #expect(RolloutTests.settled(fixture))
        #expect(try RolloutTests.live(fixture, "otel-d1") == before)
        #expect(fixture.errorMessage("d1").hasPrefix("rolled back to version 1 "), "\(fixture.errorMessage("d1"))")
    }

    @Test("attack: manual rollbacks after an automatic one, and of a sink with one version, are refused with failed precondition and change nothing")
    func manualRollbackRefusals() throws {
        let fixture = try Self.crashingFixture()
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        let before = try Self.active(fixture, redis, "n1", config: Self.good)
        #expect(eventually { (try? fixture.reconciler.storage.rolloutHistory(of: "n1").versions.count) == 1 })
        #expect(Self.kind { try fixture.reconciler.rollBack(sinkID: "n1", to: nil) } == .failedPrecondition, "one version: nothing to roll back to")
        #expect(Self.kind { try fixture.reconciler.rollBack(sinkID: "n1", to: 1) } == .failedPrecondition, "the deployed version")

        try RolloutTests.update(fixture, redis, "n1", config: Self.crashing)
        #expect(eventually(timeout: 60) { fixture.errorMessage("n1").hasPrefix("rolled back to version 1 ") }, "\(fixture.errorMessage("n1"))")
        #expect(RolloutTests.settled(fixture))
        let history = try fixture.reconciler.storage.rolloutHistory(of: "n1")
        #expect(Self.kind { try fixture.reconciler.rollBack(sinkID: "n1", to: 2) } == .failedPrecondition, "the failed version")
        #expect(Self.kind { try fixture.reconciler.rollBack(sinkID: "n1", to: nil) } == .failedPrecondition, "the good version is deployed already")
        #expect(Self.kind { try fixture.reconciler.rollBack(sinkID: "n1", to: 0) } == .notFound)
        #expect(Self.kind { try fixture.reconciler.rollBack(sinkID: "n1", to: -3) } != nil)
        #expect(try fixture.reconciler.storage.rolloutHistory(of: "n1") == history, "refusals change nothing")
        #expect(RolloutTests.settled(fixture))
        #expect(try RolloutTests.live(fixture, "otel-n1") == before)
    }

    static func kind(_ body: () throws -> RolloutVersion) -> CollectorServiceError.Kind? {
        do {
            _ = try body()
            return nil
        } catch let error as CollectorServiceError {
            return error.kind
        } catch {
            Issue.record("not a CollectorServiceError: \(error)")
            return nil
        }
    }

    /// DESIGN "Secrets": the seed's hashes hold the rendered objects, credentials included, and a rollback
    /// needs the last good Secret as it was; so the history's kept objects are as sensitive as the
    /// desired-state hash (and nothing else in it may carry a credential: it is what `maestro history`
    /// and the gRPC history list).
    @Test("attack: a sink's credentials stay inside the history's kept objects, as in the desired-state hash, and out of everything it lists")
    func noCredentialsInHistory() throws {
        let fixture = try Self.crashingFixture()
        let redis = try fixture.pipeline.connect()
        fixture.start()
        defer { fixture.stop() }
        let credential = "sekrit-token-2020"
        let config = "exporters: {otlphttp: {endpoint: https://good.example, headers: {authorization: Bearer \(credential)}}}\n"
        _ = try Self.active(fixture, redis, "c1", config: config)
        #expect(eventually { (try? fixture.reconciler.storage.rolloutHistory(of: "c1").latest?.outcome) == .active })
        let stored = try #require(try redis.hget(fixture.pipeline.names.rolloutsHash, field: "c1"))
        guard case .map(var listed) = try JSON.decode(stored) else { Issue.record("the history is not a JSON object"); return }
        let versions = (listed["versions"]?.listValue ?? []).map { version -> Value in
            guard case .map(var fields) = version else { return version }
            #expect(fields["yaml"]?.stringValue == (try? redis.hget(fixture.pipeline.names.deploymentHash, field: "c1")) ?? nil,
                    "a kept version holds other objects than the desired state it was")
            fields["yaml"] = nil
            return .map(fields)
        }
        listed["versions"] = .list(versions)
        #expect(!(try JSON.encode(.map(listed))).contains(credential), "the history of c1 lists the credential: \(stored.prefix(300))…")
    }
}
