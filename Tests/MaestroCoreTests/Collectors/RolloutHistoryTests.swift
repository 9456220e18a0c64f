import Foundation
import Logging
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroCore

@Suite("Rollout history, failed marks and the watcher's decisions", .timeLimit(.minutes(2)))
struct RolloutHistoryTests {
    static let a = "kind: List # a\n"
    static let b = "kind: List # b\n"
    static let c = "kind: List # c\n"
    static func digest(_ yaml: String) -> String { RolloutHistory.digest(ofDesiredState: yaml) }

    @Test("versions are numbered per sink; a stored version supersedes one still rolling out; at most --config-history good versions keep their objects")
    func keepsTheNewestGoodVersions() {
        var history = RolloutHistory()
        for (index, yaml) in ["1", "2", "3", "4", "5"].map({ "kind: List # \($0)\n" }).enumerated() {
            history.stored(digest: Self.digest(yaml), configHash: "", now: Double(index), keep: 3)
            history.reachedActive(digest: Self.digest(yaml), yaml: yaml, configHash: "", now: Double(index), keep: 3)
        }
        #expect(history.versions.map(\.version) == [3, 4, 5], "older good versions beyond three go")
        #expect(history.versions.allSatisfy { $0.yaml != nil && $0.outcome == .active })
        history.stored(digest: Self.digest(Self.a), configHash: "", now: 10, keep: 3)
        history.stored(digest: Self.digest(Self.b), configHash: "", now: 11, keep: 3)
        #expect(history.versions.suffix(2).map(\.outcome) == [.superseded, .pending])
        #expect(history.lastGood(otherThan: Self.digest(Self.b))?.version == 5)
        // The same render stored twice is one version.
        history.stored(digest: Self.digest(Self.b), configHash: "", now: 12, keep: 3)
        #expect(history.versions.last?.version == 7 && history.versions.count == 5)
    }

    @Test("a rollback marks the failed render and re-applies the target as a version of its own; a changed render clears the mark")
    func rollbackAndMark() {
        var history = RolloutHistory()
        history.stored(digest: Self.digest(Self.a), configHash: "ha", now: 0, keep: 3)
        history.reachedActive(digest: Self.digest(Self.a), yaml: Self.a, configHash: "ha", now: 1, keep: 3)
        history.stored(digest: Self.digest(Self.b), configHash: "hb", now: 2, keep: 3)
        let target = history.lastGood(otherThan: Self.digest(Self.b))!
        let version = history.rolledBack(failedDigest: Self.digest(Self.b), to: target, why: "crash", source: .rollback, message: "m", now: 3, keep: 3)
        #expect(version.version == 3 && version.rolledBackTo == 1 && version.yaml == Self.a && version.outcome == .pending)
        #expect(history.failed == FailedDesiredState(digest: Self.digest(Self.b), version: 2, rolledBackTo: 1, message: "m"))
        #expect(history.versions.map(\.outcome) == [.active, .failed, .pending])
        // The JSON round trip keeps everything.
        #expect(RolloutHistory(json: history.json) == history)
        history.stored(digest: Self.digest(Self.c), configHash: "hc", now: 4, keep: 3)
        #expect(history.failed == nil)
    }

    @Test("attack: a history that is not JSON, or JSON of another shape, is an empty history, never an error that stops the sink")
    func corruptHistory() {
        for text in ["not json", "[1,2]", "{\"versions\": [{\"version\": \"x\"}], \"failed\": 3}", "{\"versions\": 7}", ""] {
            let history = RolloutHistory(json: text)
            #expect(history.versions.isEmpty && history.failed == nil, "\(text)")
        }
    }

    @Test("which errors are failed rollouts: a crash loop, a progress deadline, failing pods — not an exporter failure of a running collector")
    func failureReasons() {
        #expect(RolloutWatcher.failureReason(ofError: "container otel-collector of pod p: CrashLoopBackOff (last terminated: Error)") == .crashLoop)
        #expect(RolloutWatcher.failureReason(ofError: "container c of pod p was OOMKilled (CrashLoopBackOff): raise its memory limit") == .crashLoop)
        #expect(RolloutWatcher.failureReason(ofError: "the collector's rollout failed (ProgressDeadlineExceeded): x") == .progressDeadline)
        #expect(RolloutWatcher.failureReason(ofError: "container c of pod p: ImagePullBackOff: Back-off pulling image") == .podsFailing)
        #expect(RolloutWatcher.failureReason(ofError: "the collector's exporter failed with HTTP 401") == nil)
    }

    /// The watcher over memory, with a backend that answers what a test says.
    static func watcher(_ storage: InMemoryCollectorStorage, timeout: Double = 300) -> RolloutWatcher {
        RolloutWatcher(storage: storage, backend: DirectoryBackend(root: NSTemporaryDirectory()), keep: 3, timeout: timeout, logger: Logger(label: "test"))
    }

    static let collectorYAML = """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: otel-s1, namespace: otel}
    """

    @Test("attack: a rolled-back version that fails too is not rolled back again (no loop); an exporter error after an update is no rollback")
    func noLoop() throws {
        let storage = InMemoryCollectorStorage()
        let watcher = Self.watcher(storage)
        let good = Self.collectorYAML + "\n# good\n"
        let bad = Self.collectorYAML + "\n# bad\n"
        try watcher.stored(sinkID: "s1", yaml: good, configHash: "g")
        _ = try watcher.observed(sinkID: "s1", desiredYAML: good, configHash: "g", status: .active, message: "")
        try watcher.stored(sinkID: "s1", yaml: bad, configHash: "b")
        guard case .publish(.error, _) = try watcher.observed(sinkID: "s1", desiredYAML: bad, configHash: "b", status: .error,
                                                              message: "the collector's exporter failed with HTTP 401") else {
            Issue.record("an exporter failure rolled back")
            return
        }
        guard case .rollBack(let target, _, let message) = try watcher.observed(sinkID: "s1", desiredYAML: bad, configHash: "b", status: .error,
                                                                                message: "container c of pod p: CrashLoopBackOff") else {
            Issue.record("a crash loop was not rolled back")
            return
        }
        #expect(target.name == "otel-s1" && message.hasPrefix("rolled back to version 1 "))
        #expect(storage.contents.withLock { $0.desiredStates["s1"] } == good)
        // The good version fails now as well (the cluster changed): its error is published, nothing more.
        guard case .publish(.error, let published) = try watcher.observed(sinkID: "s1", desiredYAML: good, configHash: "g", status: .error,
                                                                          message: "container c of pod p: CrashLoopBackOff") else {
            Issue.record("a rollback was rolled back")
            return
        }
        #expect(published == "container c of pod p: CrashLoopBackOff")
        #expect(try watcher.heldBack(rendered: bad, desiredState: good, sinkID: "s1") == good)
        #expect(try watcher.heldBack(rendered: Self.collectorYAML + "\n# fixed\n", desiredState: good, sinkID: "s1") == nil)
    }

    @Test("attack: a sink removed while its rollout fails gets no desired state back from the rollback")
    func removedDuringRollback() throws {
        let storage = InMemoryCollectorStorage()
        let watcher = Self.watcher(storage)
        let good = Self.collectorYAML + "\n# good\n"
        let bad = Self.collectorYAML + "\n# bad\n"
        try watcher.stored(sinkID: "s1", yaml: good, configHash: "g")
        _ = try watcher.observed(sinkID: "s1", desiredYAML: good, configHash: "g", status: .active, message: "")
        try watcher.stored(sinkID: "s1", yaml: bad, configHash: "b")
        storage.contents.withLock { $0.sinks["s1"] = SinkRecord(ownerID: "o", backend: "prometheus", lastEntryID: "2-0", removed: true, updatedAtMilliseconds: 2) }
        guard case .publish(.error, _) = try watcher.observed(sinkID: "s1", desiredYAML: bad, configHash: "b", status: .error,
                                                              message: "container c of pod p: CrashLoopBackOff") else {
            Issue.record("a removed sink was rolled back")
            return
        }
        #expect(storage.contents.withLock { $0.desiredStates["s1"] } == nil)
        // In Redis, the same guard is the script's.
        let url = try RedisURL(parsing: try RedisTestServer.url)
        let names = RedisNames().prefixed(RedisTestServer.uniquePrefix("rollouts"))
        let redis = try RedisConnection(url: url)
        try redis.hset(names.sinksHash, field: "s1", value: #"{"owner_id":"o","removed":true,"last_entry_id":"2-0"}"#)
        #expect(try RolloutHistoryStore.store(redis, names: names, sinkID: "s1", history: RolloutHistory(), desiredState: good) == false)
        #expect(try redis.hget(names.deploymentHash, field: "s1") == nil)
        try redis.hset(names.sinksHash, field: "s1", value: #"{"owner_id":"o","removed":false,"last_entry_id":"3-0"}"#)
        #expect(try RolloutHistoryStore.store(redis, names: names, sinkID: "s1", history: RolloutHistory(), desiredState: good) == true)
        #expect(try redis.hget(names.deploymentHash, field: "s1") == good)
    }

    @Test("a rollout still provisioning is looked at again at its deadline, and rolled back once past it")
    func timeout() throws {
        let storage = InMemoryCollectorStorage()
        let good = Self.collectorYAML + "\n# good\n"
        let slow = Self.collectorYAML + "\n# slow\n"
        let watcher = Self.watcher(storage, timeout: 300)
        try watcher.stored(sinkID: "s1", yaml: good, configHash: "g")
        _ = try watcher.observed(sinkID: "s1", desiredYAML: good, configHash: "g", status: .active, message: "")
        try watcher.stored(sinkID: "s1", yaml: slow, configHash: "s")
        guard case .publishAndLookAgain(.provisioning, _, let after) = try watcher.observed(sinkID: "s1", desiredYAML: slow, configHash: "s",
                                                                                         status: .provisioning, message: "") else {
            Issue.record("no deadline")
            return
        }
        #expect(after > 295 && after <= 301)
        let expired = Self.watcher(storage, timeout: 0)
        guard case .rollBack(_, _, let message) = try expired.observed(sinkID: "s1", desiredYAML: slow, configHash: "s", status: .provisioning, message: "") else {
            Issue.record("not rolled back past the deadline")
            return
        }
        #expect(message.contains("was not active within 0 s"), "\(message)")
    }

    @Test("a removed collector's history goes with it; an idle one keeps its history")
    func historyFollowsTheCollector() throws {
        let fixture = try CollectorServiceFixture()
        fixture.reconciler.templates.replace { StubRenderer() }
        for sinkID in ["gone", "resting"] {
            fixture.sink(sinkID, config: "receivers: {}\n")
            _ = try fixture.manager.create(sinkID: sinkID, ownerID: "o1")
            try fixture.reconciler.reconcile(sinkID)
            #expect(try fixture.storage.rolloutHistory(of: sinkID).versions.count == 1)
        }
        fixture.sink("gone", config: nil, removed: true)
        try fixture.manager.remove(sinkID: "gone")
        try fixture.reconciler.reconcile("gone")
        try fixture.manager.idle(sinkID: "resting")
        try fixture.reconciler.reconcile("resting")
        #expect(fixture.contents.rollouts["gone"] == nil)
        #expect(fixture.contents.rollouts["resting"]?.versions.count == 1)
    }

    @Test("the Event follows events.k8s.io/v1: regarding the Deployment, reason, action, note at most 1 kB, type, eventTime in microseconds")
    func eventShape() throws {
        let deployment: Value = ["metadata": ["name": "otel-s1", "uid": "u-1", "resourceVersion": "42"]]
        let event = KubernetesBackend.eventObject(CollectorEvent(reason: "RolledBack", action: "Rollback", note: String(repeating: "x", count: 5_000),
                                                                 severity: .warning),
                                                  regarding: deployment, namespace: "otel", now: Date(timeIntervalSince1970: 1_700_000_000.25))
        #expect(event["apiVersion"] == "events.k8s.io/v1" && event["kind"] == "Event")
        #expect(event["eventTime"] == "2023-11-14T22:13:20.250000Z")
        #expect(event["type"] == "Warning" && event["reason"] == "RolledBack" && event["action"] == "Rollback")
        #expect(event["reportingController"] == "maestro.orb.community/maestro")
        #expect((event["note"]?.stringValue?.utf8.count ?? 0) <= 1024)
        #expect(event["regarding"] == ["apiVersion": "apps/v1", "kind": "Deployment", "namespace": "otel", "name": "otel-s1", "uid": "u-1",
                                       "resourceVersion": "42"])
        #expect(event["metadata"]?["name"]?.stringValue?.hasPrefix("otel-s1.") == true)
    }
}
