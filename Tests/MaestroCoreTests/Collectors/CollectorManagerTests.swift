import Logging
import MaestroRedis
import MaestroValue
import Synchronization
import MaestroTestSupport
import Testing

@testable import MaestroCore

/// The template stood in for: one ConfigMap named after the collector, holding the config; a test may
/// run a step in the middle of a render (another event changing the config meanwhile).
final class StubRenderer: CollectorRenderer, Sendable {
    let duringRender: Mutex<(@Sendable () -> Void)?>

    init(duringRender: (@Sendable () -> Void)? = nil) {
        self.duringRender = Mutex(duringRender)
    }

    func render(_ inputs: CollectorInputs) throws -> RenderedCollector {
        if let step = duringRender.withLock({ current in defer { current = nil }; return current }) { step() }
        let object: Value = ["kind": "ConfigMap", "metadata": ["name": .string(inputs.collectorName), "namespace": "otel"],
                             "data": ["config.yaml": .string(inputs.configYAML)]]
        return RenderedCollector(name: inputs.collectorName, ownerID: inputs.ownerID, namespace: "otel", objects: [object],
                                 yaml: "config: \(inputs.configYAML)")
    }
}

/// The collector service's rules on the in-memory storage; the reconciler is never started (its queue shows the hand-offs).
struct CollectorServiceFixture {
    let storage = InMemoryCollectorStorage()
    let reconciler: Reconciler
    let manager: CollectorManager

    init(renderer: StubRenderer = StubRenderer(), deleteGuard: DesiredStateStore.RemovalGuard = .unlessLive) throws {
        reconciler = Reconciler(redisURL: try RedisURL(parsing: "redis://127.0.0.1:1"), names: RedisNames(),
                                backend: DirectoryBackend(root: "/nonexistent"), logger: Logger(label: "test"))
        manager = CollectorManager(storage: storage, reconciler: reconciler, logger: Logger(label: "test"), deleteGuard: deleteGuard) { renderer }
    }

    func sink(_ sinkID: String, config: String?, removed: Bool = false, owner: String = "o1") {
        storage.contents.withLock { contents in
            contents.sinks[sinkID] = SinkRecord(ownerID: owner, backend: "prometheus", lastEntryID: "1-0", removed: removed, updatedAtMilliseconds: 1)
            contents.configs[sinkID] = config
        }
    }
}

@Suite("The collector service's rules (in memory)", .testThreads, .timeLimit(.minutes(3)))
struct CollectorManagerTests {
    @Test("a create renders the stored config, stores the desired state with the collector's record, and queues a reconcile")
    func create() throws {
        let fixture = try CollectorServiceFixture()
        fixture.sink("s1", config: "receivers: {}\n")
        let info = try fixture.manager.createAndGet(sinkID: "s1", ownerID: "")
        #expect(fixture.storage.contents.withLock { $0.desiredStates["s1"] } == "config: receivers: {}\n")
        #expect(info.collectorName == "otel-s1")
        #expect(info.namespace == "otel")
        #expect(info.ownerID == "o1", "the owner comes from the sink's record when the caller names none")
        #expect(info.status == "unknown")
        #expect(fixture.reconciler.backlog == 1)
        #expect(try fixture.manager.list().map(\.sinkID) == ["s1"])
    }

    @Test("a removed sink gets no desired state (NOT_FOUND), and one it had is deleted")
    func tombstoned() throws {
        let fixture = try CollectorServiceFixture()
        fixture.sink("s1", config: "receivers: {}\n", removed: true)
        fixture.storage.contents.withLock { $0.desiredStates["s1"] = "left over" }
        let error = try #require(throws: CollectorServiceError.self) { try fixture.manager.create(sinkID: "s1", ownerID: "o1") }
        #expect(error.kind == .notFound)
        #expect(fixture.storage.contents.withLock { $0.desiredStates["s1"] } == nil)
        #expect(fixture.reconciler.backlog == 1, "the reconcile deletes the objects")
    }

    @Test("a config changed while it was rendered is rendered again from the new one")
    func configChangedMeanwhile() throws {
        let storage = Mutex<InMemoryCollectorStorage?>(nil)
        let renderer = StubRenderer { storage.withLock { $0 }?.contents.withLock { $0.configs["s1"] = "receivers: {new: {}}\n" } }
        let fixture = try CollectorServiceFixture(renderer: renderer)
        storage.withLock { $0 = fixture.storage }
        fixture.sink("s1", config: "receivers: {}\n")
        try fixture.manager.create(sinkID: "s1", ownerID: "o1")
        #expect(fixture.storage.contents.withLock { $0.desiredStates["s1"] } == "config: receivers: {new: {}}\n")
    }

    @Test("the sinker's removal of a live sink is refused; under the always guard a delete goes ahead")
    func removalGuards() throws {
        let fixture = try CollectorServiceFixture()
        fixture.sink("s1", config: "receivers: {}\n")
        try fixture.manager.create(sinkID: "s1", ownerID: "o1")
        let refused = try #require(throws: CollectorServiceError.self) { try fixture.manager.remove(sinkID: "s1") }
        #expect(refused.kind == .failedPrecondition)
        #expect(fixture.storage.contents.withLock { $0.desiredStates["s1"] } != nil)

        let external = try CollectorServiceFixture(deleteGuard: .always)
        external.sink("s1", config: "receivers: {}\n")
        try external.manager.create(sinkID: "s1", ownerID: "o1")
        try external.manager.delete(sinkID: "s1")
        #expect(external.storage.contents.withLock { $0.desiredStates["s1"] } == nil)
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
