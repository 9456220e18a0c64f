import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroPluginHost

/// Attack on the rollout deadline across a restart (issue 20): maestro stored a new version but could not
/// apply it (the Kubernetes API refused every write) and was then killed; it restarts after the
/// `--rollout-timeout` has passed since the version was stored. The rollout starts only now: a healthy
/// config must roll out to active, not be rolled back as "not active within" a deadline that ran while
/// nothing was rolling out.
@Suite("Attack: the rollout deadline across a restart (issue 20)", .serialized, .testThreads, .timeLimit(.minutes(4)))
struct Attack20RestartTests {
    static func options() -> ReconcilerOptions { ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 1, rolloutTimeout: 3) }

    @Test("attack: a version stored but never applied before maestro died is not rolled back at restart as timed out: it rolls out to active")
    func deadlineOfAVersionNeverApplied() throws {
        let first = try WatchingFixture(options: Self.options())
        let redis = try first.pipeline.connect()
        try first.double.controller(["surge": true, "pod_start_seconds": 1])
        first.start()
        let before = try Attack20Tests.active(first, redis, "w1", config: Attack20Tests.good)
        #expect(eventually { (try? first.reconciler.storage.rolloutHistory(of: "w1").latest?.outcome) == .active })

        // Every Kubernetes request fails: the new version is stored, never applied.
        try first.double.faults(["error500": 1.0])
        try RolloutTests.update(first, redis, "w1", config: Attack20Tests.fixed)
        #expect(eventually { (try? first.reconciler.storage.rolloutHistory(of: "w1").latest?.outcome) == .pending })
        let pending = try #require(try first.reconciler.storage.rolloutHistory(of: "w1").latest)
        #expect(eventually(timeout: 60) { Date().timeIntervalSince1970 - pending.storedAt > 5 }, "the deadline passes while nothing rolls out")
        first.stop()
        #expect(try RolloutTests.live(first, "otel-w1") == before, "nothing of the new version reached the cluster")
        try first.double.faults(["error500": 0.0])

        let restarted = try WatchingFixture(double: first.double, pipeline: first.pipeline, options: Self.options())
        restarted.start()
        defer { restarted.stop() }
        #expect(try eventually(timeout: 60) { try RolloutTests.live(restarted, "otel-w1").configHash != before.configHash }, "the new version is applied")
        #expect(eventually(timeout: 60) { restarted.status("w1") == "active" || restarted.errorMessage("w1").hasPrefix("rolled back") })
        #expect(restarted.status("w1") == "active", "\(restarted.errorMessage("w1"))")
        #expect(!restarted.errorMessage("w1").hasPrefix("rolled back"), "\(restarted.errorMessage("w1"))")
        let sources = try Attack20Tests.sources(restarted, "w1")
        #expect(!sources.contains { $0.hasSuffix(" rollback") }, "\(sources)")
    }
}
