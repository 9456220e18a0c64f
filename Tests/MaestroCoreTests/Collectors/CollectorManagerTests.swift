import Foundation
import Logging
import MaestroRedis
import MaestroValue
import Synchronization
import MaestroTestSupport
import Testing

@testable import MaestroCore

/// The template stood in for: one ConfigMap named after the collector, holding the config; a test may
/// run a step in the middle of a render (another event changing the config meanwhile), or make it fail.
final class StubRenderer: CollectorRenderer, Sendable {
    let duringRender: Mutex<(@Sendable () -> Void)?>
    let failure = Mutex<String?>(nil)

    init(duringRender: (@Sendable () -> Void)? = nil) {
        self.duringRender = Mutex(duringRender)
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    func render(_ inputs: CollectorInputs) throws -> RenderedCollector {
        if let step = duringRender.withLock({ current in defer { current = nil }; return current }) { step() }
        if let message = failure.withLock({ $0 }) { throw Failure(description: message) }
        let object: Value = ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": .string(inputs.collectorName), "namespace": "otel"],
                             "data": ["config.yaml": .string(inputs.configYAML)]]
        return RenderedCollector(name: inputs.collectorName, ownerID: inputs.ownerID, namespace: "otel", objects: [object],
                                 yaml: try JSON.encode(object))
    }
}

/// The maestro role's rules on the in-memory storage, with a running reconciler writing to a folder.
final class CollectorServiceFixture: Sendable {
    let storage = InMemoryCollectorStorage()
    let folder: TemporaryDirectory
    let backend: DirectoryBackend
    let reconciler: Reconciler
    let manager: CollectorManager

    init(renderer: StubRenderer = StubRenderer(), deleteGuard: DesiredStateStore.RemovalGuard = .unlessLive, decisionTimeout: Double = 20,
         options: ReconcilerOptions = ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 0.5)) throws {
        folder = try TemporaryDirectory()
        backend = DirectoryBackend(root: folder.path)
        reconciler = Reconciler(storage: storage, backend: backend, options: options, logger: Logger(label: "test"))
        manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test"), deleteGuard: deleteGuard,
                                   decisionTimeout: decisionTimeout) { renderer }
    }

    func sink(_ sinkID: String, config: String?, removed: Bool = false, owner: String = "o1") {
        storage.contents.withLock { contents in
            contents.sinks[sinkID] = SinkRecord(ownerID: owner, backend: "prometheus", lastEntryID: "1-0", removed: removed, updatedAtMilliseconds: 1)
            contents.configs[sinkID] = config
        }
    }

    var contents: InMemoryCollectorStorage.Contents { storage.contents.withLock { $0 } }

    func manifest(_ sinkID: String) -> String? {
        FileManager.default.contents(atPath: backend.path(name: CollectorNaming.name(forSinkID: sinkID), namespace: "otel"))
            .map { String(decoding: $0, as: UTF8.self) }
    }

    func statuses(_ sinkID: String) -> [String] {
        contents.statusEvents.filter { $0.sinkID == sinkID }.map(\.status)
    }

    /// Nothing queued or running.
    func settled() -> Bool {
        eventually { reconciler.backlog == 0 }
    }
}

@Suite("The one reconcile per sink (in memory)", .testThreads, .timeLimit(.minutes(3)))
struct CollectorManagerTests {
    @Test("a create through the API waits for its reconcile: the desired state stored, the record answered, then applied and provisioning")
    func create() throws {
        let fixture = try CollectorServiceFixture()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        fixture.sink("s1", config: "receivers: {}\n")
        let info = try fixture.manager.createAndGet(sinkID: "s1", ownerID: "")
        #expect(info.collectorName == "otel-s1")
        #expect(info.namespace == "otel")
        #expect(info.ownerID == "o1", "the owner comes from the sink's record when the caller names none")
        #expect(fixture.contents.desiredStates["s1"]?.contains("receivers: {}") == true)
        #expect(fixture.settled())
        #expect(fixture.manifest("s1")?.contains("receivers: {}") == true)
        #expect(fixture.statuses("s1") == ["provisioning"], "a folder cannot see pods: provisioning, once")
        #expect(try fixture.manager.list().map(\.sinkID) == ["s1"])
    }

    @Test("a create of a removed sink is NOT_FOUND and records nothing; the reconcile deletes what it had")
    func tombstoned() throws {
        let fixture = try CollectorServiceFixture()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        fixture.sink("s1", config: "receivers: {}\n", removed: true)
        fixture.storage.contents.withLock { $0.desiredStates["s1"] = "left over" }
        let error = try #require(throws: CollectorServiceError.self) { try fixture.manager.create(sinkID: "s1", ownerID: "o1") }
        #expect(error.kind == .notFound)
        #expect(fixture.settled())
        #expect(fixture.contents.desiredStates["s1"] == nil)
        #expect(fixture.contents.collectors["s1"] == nil)
    }

    @Test("a config changed while it was rendered is rendered again from the new one")
    func configChangedMeanwhile() throws {
        let storage = Mutex<InMemoryCollectorStorage?>(nil)
        let renderer = StubRenderer { storage.withLock { $0 }?.contents.withLock { $0.configs["s1"] = "receivers: {new: {}}\n" } }
        let fixture = try CollectorServiceFixture(renderer: renderer)
        storage.withLock { $0 = fixture.storage }
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        fixture.sink("s1", config: "receivers: {}\n")
        _ = try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1")
        #expect(fixture.contents.desiredStates["s1"]?.contains("receivers: {new: {}}") == true)
    }

    @Test("the sinker's removal of a live sink is refused; under the always guard a delete removes the objects and the record")
    func removalGuards() throws {
        let fixture = try CollectorServiceFixture()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        fixture.sink("s1", config: "receivers: {}\n")
        _ = try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1")
        let refused = try #require(throws: CollectorServiceError.self) { try fixture.manager.remove(sinkID: "s1") }
        #expect(refused.kind == .failedPrecondition)
        #expect(fixture.settled())
        #expect(fixture.contents.desiredStates["s1"] != nil)

        let external = try CollectorServiceFixture(deleteGuard: .always)
        external.reconciler.start()
        defer { external.reconciler.stop() }
        external.sink("s1", config: "receivers: {}\n")
        _ = try external.manager.createAndGet(sinkID: "s1", ownerID: "o1")
        #expect(external.settled())
        #expect(external.manifest("s1") != nil)
        try external.manager.delete(sinkID: "s1")
        #expect(eventually { external.contents.collectors["s1"] == nil })
        #expect(external.contents.desiredStates["s1"] == nil)
        #expect(external.manifest("s1") == nil)
    }

    @Test("a template that fails is FAILED_PRECONDITION to the caller and the sink's provisioning_error; nothing is stored")
    func templateFailure() throws {
        let renderer = StubRenderer()
        renderer.failure.withLock { $0 = "attempt to index a nil value" }
        let fixture = try CollectorServiceFixture(renderer: renderer)
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        fixture.sink("s1", config: "receivers: {}\n")
        let error = try #require(throws: CollectorServiceError.self) { try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1") }
        #expect(error.kind == .failedPrecondition)
        #expect(error.message.contains("attempt to index a nil value"))
        #expect(fixture.contents.desiredStates["s1"] == nil)
        #expect(fixture.statuses("s1") == ["provisioning_error"])
        #expect(fixture.contents.collectors["s1"]?["error"]?.stringValue?.contains("attempt to index a nil value") == true)
    }

    @Test("idle removes the objects and keeps the record as idle; activity brings the collector back, provisioning first")
    func idleAndBack() throws {
        let fixture = try CollectorServiceFixture()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        fixture.sink("s1", config: "receivers: {}\n")
        _ = try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1")
        #expect(fixture.settled())
        try fixture.manager.idle(sinkID: "s1")
        #expect(eventually { fixture.manifest("s1") == nil && fixture.statuses("s1").last == "idle" })
        #expect(fixture.settled())
        #expect(fixture.contents.desiredStates["s1"] == nil)
        #expect(fixture.contents.collectors["s1"]?["status"] == "idle", "an idle sink keeps its record")
        #expect(fixture.contents.configs["s1"] != nil, "and its config")
        try fixture.manager.create(sinkID: "s1", ownerID: "o1")
        #expect(eventually { fixture.manifest("s1") != nil })
        #expect(fixture.settled())
        #expect(fixture.statuses("s1") == ["provisioning", "idle", "provisioning"])
    }

    @Test("records written before intents (schema 1) keep their meaning: a desired state runs, a record without one is finished")
    func recordsBeforeIntents() throws {
        let fixture = try CollectorServiceFixture()
        fixture.sink("old", config: "receivers: {old: {}}\n")
        fixture.sink("gone", config: "receivers: {}\n")
        fixture.storage.contents.withLock { contents in
            // As the previous maestro wrote them: no intent field.
            contents.desiredStates["old"] = "stale objects"
            contents.collectors["old"] = ["status": "active", "owner_id": "o1", "schema_version": 1]
            contents.collectors["gone"] = ["status": "active", "owner_id": "o1", "collector_name": "otel-gone", "namespace": "otel",
                                           "schema_version": 1]
            contents.collectors["resting"] = ["status": "idle", "owner_id": "o1", "schema_version": 1]
        }
        fixture.sink("resting", config: "receivers: {}\n")
        try fixture.reconciler.reconcile("resting")
        #expect(fixture.contents.collectors["resting"]?["status"] == "idle", "an idle collector keeps its record")
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        try fixture.reconciler.resync()
        #expect(eventually { fixture.manifest("old")?.contains("receivers: {old: {}}") == true }, "re-rendered from its config and applied")
        #expect(eventually { fixture.contents.collectors["gone"] == nil }, "no desired state: a removal the old maestro did not finish")
        #expect(fixture.contents.desiredStates["old"]?.contains("receivers: {old: {}}") == true)
    }

    @Test("a create recorded while a removal's reconcile runs is not lost: the record is kept and the collector runs")
    func createDuringRemoval() throws {
        let fixture = try CollectorServiceFixture(deleteGuard: .always)
        fixture.sink("s1", config: "receivers: {}\n")
        // The removal's pass read `stop`; a create records `run` before the pass forgets the record.
        fixture.storage.contents.withLock { $0.collectors["s1"] = ["status": "active", "intent": "run"] }
        #expect(try fixture.storage.forgetCollector(sinkID: "s1") == false)
        #expect(fixture.contents.collectors["s1"] != nil)
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        try fixture.manager.delete(sinkID: "s1")
        try fixture.manager.create(sinkID: "s1", ownerID: "o1")
        #expect(eventually { fixture.manifest("s1") != nil })
        #expect(fixture.settled())
        #expect(fixture.manifest("s1") != nil, "the newer create wins")
    }

    @Test("drift is an unchanged desired state the cluster differs from; a change is not drift; a restart knows the last apply")
    func driftAcrossRestarts() throws {
        let fixture = try CollectorServiceFixture()
        fixture.sink("s1", config: "receivers: {}\n")
        _ = try fixture.manager.create(sinkID: "s1", ownerID: "o1")
        try fixture.reconciler.reconcile("s1")
        let appliedAt = fixture.contents.collectors["s1"]?["applied_at"]
        #expect(appliedAt != nil)

        // A restart: a new reconciler over the same storage and folder.
        let restarted = Reconciler(storage: fixture.storage, backend: fixture.backend, logger: Logger(label: "test"))
        restarted.templates.replace { StubRenderer() }
        try restarted.reconcile("s1")
        #expect(restarted.counters.driftCorrected == 0)
        #expect(fixture.contents.collectors["s1"]?["applied_at"] == appliedAt, "nothing was written, so the last write's time stays")

        let path = fixture.backend.path(name: "otel-s1", namespace: "otel")
        try "edited by hand\n".write(toFile: path, atomically: true, encoding: .utf8)
        try restarted.reconcile("s1")
        #expect(restarted.counters.driftCorrected == 1)
        #expect(fixture.manifest("s1")?.contains("receivers: {}") == true, "healed")

        fixture.storage.contents.withLock { $0.configs["s1"] = "receivers: {otlp: {}}\n" }
        try restarted.reconcile("s1")
        #expect(fixture.manifest("s1")?.contains("otlp") == true)
        #expect(restarted.counters.driftCorrected == 1, "a new desired state is a change, not drift")
    }

    @Test("a create through the API decides on its own thread: answered with no worker free, applied once one is")
    func decidesWithoutAWorker() throws {
        let fixture = try CollectorServiceFixture()
        fixture.sink("s1", config: "receivers: {}\n")
        let info = try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1")
        #expect(info.collectorName == "otel-s1")
        #expect(fixture.contents.desiredStates["s1"] != nil)
        #expect(fixture.contents.reconcileLocks.isEmpty, "the lock is released with the store")
        #expect(fixture.manifest("s1") == nil, "the apply is a worker's")
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        #expect(eventually { fixture.manifest("s1") != nil })
    }

    @Test("a create whose sink another pass holds waits for the next pass; with none coming, UNAVAILABLE after its wait, not a hang")
    func decisionTimeout() throws {
        let fixture = try CollectorServiceFixture(decisionTimeout: 0.3)
        fixture.sink("s1", config: "receivers: {}\n")
        fixture.storage.contents.withLock { $0.reconcileLocks["s1"] = "another replica" }
        let error = try #require(throws: CollectorServiceError.self) { try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1") }
        #expect(error.kind == .unavailable)
        #expect(fixture.contents.collectors["s1"]?["intent"] == "run", "the intent is recorded: the next pass acts on it")
    }

    @Test("no stored config is NOT_FOUND; a bad sink id is INVALID_ARGUMENT; a storage failure is UNAVAILABLE")
    func errors() throws {
        let fixture = try CollectorServiceFixture()
        #expect(throws: CollectorServiceError(.notFound, "sink none has no stored config")) { try fixture.manager.create(sinkID: "none", ownerID: "") }
        #expect(throws: CollectorServiceError(.invalidArgument, "sink_id must not be empty")) { try fixture.manager.create(sinkID: "", ownerID: "") }
        fixture.storage.contents.withLock { $0.failure = RedisError(kind: .connection, message: "gone") }
        let unavailable = try #require(throws: CollectorServiceError.self) { try fixture.manager.get(sinkID: "s1") }
        #expect(unavailable.kind == .unavailable)
    }
}

@Suite("The reconcile queue is rate-limited", .testThreads, .timeLimit(.minutes(1)))
struct ReconcileRateLimitTests {
    @Test("every pass takes a token: at 1 pass a second after a burst of 2, each pass past the burst waits a second of the limiter's clock")
    func passesTakeTokens() throws {
        // The clock moves only by the limiter's waits; one worker, so the waits follow one another.
        let clock = ManualClock()
        let fixture = try CollectorServiceFixture(options: ReconcilerOptions(resyncInterval: 3_600, workers: 1, maximumBackoff: 0.5,
                                                                             passesPerSecond: 1, passBurst: 2, passClock: clock))
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        let sinkIDs = (1...5).map { "s\($0)" }
        for sinkID in sinkIDs {
            fixture.sink(sinkID, config: "receivers: {}\n")
            try fixture.manager.create(sinkID: sinkID, ownerID: "o1")
        }
        #expect(eventually { sinkIDs.allSatisfy { fixture.manifest($0) != nil } })
        #expect(fixture.settled())
        let passes = clock.reads.withLock { $0 } - 1  // the limiter read the clock once when it was made
        #expect(passes >= sinkIDs.count)
        #expect(clock.now() - 1_000 == Double(passes - 2), "only the burst went without waiting: \(passes) passes")
    }
}
