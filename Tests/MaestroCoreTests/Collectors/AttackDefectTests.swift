import Foundation
import Logging
import MaestroRedis
import MaestroValue
import Synchronization
import MaestroTestSupport
import Testing

@testable import MaestroCore

// Attacks that FAIL on the code under test: each is a defect of DESIGN "One reconcile, many triggers"
// (see the attack report). They share the helpers of AttackTests.swift.

@Suite("Attack: random interleavings with idle events", .testThreads, .timeLimit(.minutes(3)))
struct RandomWithIdleDefectTests {
    @Test("random interleavings of every trigger, idle included, from three replicas end as the last event says (fails now and then: the forget defect)",
          arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func randomInMemoryWithIdle(seed: UInt64) throws {
        try randomInterleaving(store: .memory(InMemoryCollectorStorage()), seed: seed, steps: 300, idle: true)
    }
}

@Suite("Attack: crash and template reload", .testThreads, .timeLimit(.minutes(3)))
struct ReconcileDefectTests {
    @Test("an idle sink removed by a replica that dies before its reconcile: the restarted replica's resync removes the record")
    func idleThenRemovedAcrossACrash() throws {
        let storage = InMemoryCollectorStorage()
        let first = try Replicas(store: .memory(storage), count: 1, renderer: { TaggedRenderer(tag: "t1") })
        first.start()
        try first.store.setSink("s1", config: config("s1", version: 1), removed: false, entry: 1)
        _ = try first.managers[0].createAndGet(sinkID: "s1", ownerID: "o1")
        try first.managers[0].idle(sinkID: "s1")
        #expect(eventually { (try? storage.collectorRecord(of: "s1"))?["status"]?.stringValue == "idle" })
        #expect(first.settled())
        first.stop()

        // The sink is removed; this replica records the stop intent and is killed before its reconcile.
        let crashed = try Replicas(store: .memory(storage), count: 1, renderer: { TaggedRenderer(tag: "t1") })
        try crashed.store.setSink("s1", config: nil, removed: true, entry: 2)
        try crashed.managers[0].remove(sinkID: "s1")
        #expect(storage.contents.withLock { $0.collectors["s1"]?["intent"] } == "stop")

        // After the restart the resync must finish the removal.
        let restarted = try Replicas(store: .memory(storage), count: 1, renderer: { TaggedRenderer(tag: "t1") })
        restarted.start()
        defer { restarted.stop() }
        try restarted.reconcilers[0].resync()
        #expect(restarted.settled())
        #expect(eventually(timeout: 3) { storage.contents.withLock { $0.collectors["s1"] == nil } },
                "a removed sink keeps its collector record: \(String(describing: storage.contents.withLock { $0.collectors["s1"] }))")
    }

    @Test("a template reload while a create's pass renders with the old template: the collector ends on the new template")
    func templateReloadDuringCreate() throws {
        let storage = InMemoryCollectorStorage()
        let old = TaggedRenderer(tag: "old-template")
        let replicas = try Replicas(store: .memory(storage), count: 1, renderer: { old })
        replicas.start()
        defer { replicas.stop() }
        try replicas.store.setSink("s1", config: config("s1", version: 1), removed: false, entry: 1)
        let rendering = Gate(), release = Gate()
        old.hold.withLock { $0 = { rendering.open(); _ = release.wait() } }
        try replicas.managers[0].create(sinkID: "s1", ownerID: "o1")
        #expect(rendering.wait())
        // The reload lands while the pass renders with the old template (no desired state stored yet).
        let queued = replicas.managers[0].replaceTemplates { TaggedRenderer(tag: "new-template") }
        release.open()
        #expect(replicas.settled())
        #expect(eventually(timeout: 3) { replicas.manifest("s1")?.contains("new-template") == true },
                "the last event was the reload (queued \(queued) collectors), yet the collector runs: \(replicas.manifest("s1") ?? "nil")")
    }
}


@Suite("Attack: stale passes outside the lock", .testThreads, .timeLimit(.minutes(3)))
struct StalePassDefectTests {
    @Test("a replica paused in its apply beyond the lock's expiry: the removal that ran meanwhile is not undone (Redis)")
    func pausedApplyOutlivesTheLock() throws {
        let url = try RedisURL(parsing: try RedisTestServer.url)
        let names = RedisNames().prefixed(RedisTestServer.uniquePrefix("paused"))
        let store = SharedStore.redis(url: url, names: names)
        let folder = try TemporaryDirectory()
        let options = ReconcilerOptions(resyncInterval: 3_600, workers: 1, maximumBackoff: 0.5, lockTimeout: 0.5)
        let paused = HeldBackend(root: folder.path)
        // Followers: no resync of their own to add passes.
        let replicaA = Reconciler(storage: store.storageForReplica(), backend: paused, options: options, logger: Logger(label: "a"), isLeader: { false })
        let replicaB = Reconciler(storage: store.storageForReplica(), backend: DirectoryBackend(root: folder.path), options: options,
                                  logger: Logger(label: "b"), isLeader: { false })
        let managerA = CollectorManager(reconciler: replicaA, logger: Logger(label: "a")) { TaggedRenderer(tag: "t1") }
        let managerB = CollectorManager(reconciler: replicaB, logger: Logger(label: "b")) { TaggedRenderer(tag: "t1") }
        replicaA.start()
        replicaB.start()
        defer {
            replicaA.stop()
            replicaB.stop()
        }
        let inspect = store.storageForReplica()
        let manifestPath = paused.inner.path(name: "otel-s1", namespace: "otel")

        try store.setSink("s1", config: config("s1", version: 1), removed: false, entry: 1)
        let applying = Gate(), release = Gate()
        paused.holdApply.withLock { $0 = { applying.open(); _ = release.wait() } }
        try managerA.create(sinkID: "s1", ownerID: "o1")
        #expect(applying.wait(), "replica A stored the desired state and is applying it")

        // Replica A is paused (GC, a stopped VM) longer than the lock lasts; the sink is removed meanwhile.
        try store.setSink("s1", config: nil, removed: true, entry: 2)
        try managerB.remove(sinkID: "s1")
        #expect(eventually { (try? inspect.collectorRecord(of: "s1")) == nil && (try? inspect.desiredState(of: "s1")) == nil },
                "replica B's pass (after the lock expired) removed the collector")

        release.open()
        #expect(eventually { replicaA.backlog == 0 && replicaB.backlog == 0 && replicaA.counters.applied == 1 })
        #expect(!FileManager.default.fileExists(atPath: manifestPath),
                "the removed sink's collector (its credentials) runs again: the paused pass applied its stale decision")
        #expect((try? inspect.collectorRecord(of: "s1")) == nil,
                "the removed sink has a collector record again: \(String(describing: try? inspect.collectorRecord(of: "s1")))")
    }

    @Test("the leader's status poll that read a collector before its removal does not bring its record back nor publish for it")
    func statusPollAfterRemoval() throws {
        let storage = InMemoryCollectorStorage()
        let folder = try TemporaryDirectory()
        // A backend that can see pods (not "directory"): provisioning collectors are polled.
        let backend = HeldBackend(root: folder.path, name: "polled")
        let reconciler = Reconciler(storage: storage, backend: backend,
                                    options: ReconcilerOptions(resyncInterval: 3_600, workers: 1, maximumBackoff: 0.5), logger: Logger(label: "test"))
        let manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test")) { TaggedRenderer(tag: "t1") }
        reconciler.start()
        defer { reconciler.stop() }
        try SharedStore.memory(storage).setSink("s1", config: config("s1", version: 1), removed: false, entry: 1)
        _ = try manager.createAndGet(sinkID: "s1", ownerID: "o1")
        #expect(eventually { reconciler.backlog == 0 })

        let observing = Gate(), release = Gate()
        backend.holdObserve.withLock { $0 = { observing.open(); _ = release.wait() } }
        #expect(observing.wait(timeout: 20), "the poll of the provisioning collector started")
        try SharedStore.memory(storage).setSink("s1", config: nil, removed: true, entry: 2)
        try manager.remove(sinkID: "s1")
        // The poll is a reconcile under the sink's lock: the removal's pass runs after it, not beside it.
        release.open()
        #expect(eventually { storage.contents.withLock { $0.collectors["s1"] == nil && $0.desiredStates["s1"] == nil } },
                "\(storage.contents.withLock { ($0.collectors, $0.desiredStates.keys, $0.reconcileLocks) }) backlog \(reconciler.backlog)")
        let statuses = { storage.contents.withLock { $0.statusEvents.filter { $0.sinkID == "s1" }.map(\.status) } }
        _ = eventually(timeout: 5) { statuses().count > 1 }
        #expect(statuses() == ["provisioning"], "a status event for a removed sink's collector")
        #expect(storage.contents.withLock { $0.collectors["s1"] } == nil,
                "the removed sink has a collector record again: \(String(describing: storage.contents.withLock { $0.collectors["s1"] }))")
    }
}


@Suite("Attack: a rolling upgrade, old and new replicas side by side", .testThreads, .timeLimit(.minutes(3)))
struct RollingUpgradeDefectTests {
    /// The previous maestro's writes merge into the record (its scripts keep fields they do not know,
    /// `intent` too) and stamp schema_version 1 (RecordSchema.version before intents).
    static func oldReplicaWrites(_ storage: InMemoryCollectorStorage, _ sinkID: String, status: String, desiredState: String?) {
        storage.contents.withLock { contents in
            var record = contents.collectors[sinkID] ?? [:]
            record["status"] = .string(status)
            record["schema_version"] = 1
            contents.collectors[sinkID] = record
            contents.desiredStates[sinkID] = desiredState
        }
    }

    @Test("the old replica idles a collector a new replica created: the new replica's resync does not start it again")
    func oldIdleAfterNewCreate() throws {
        let fixture = try CollectorServiceFixture()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        fixture.sink("s1", config: "receivers: {}\n")
        _ = try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1")
        #expect(fixture.settled())
        #expect(fixture.manifest("s1") != nil)
        // The previous maestro's idle (ActivityEventProcessor before intents): status idle, desired state
        // removed (.always); its reconciler deletes the objects.
        Self.oldReplicaWrites(fixture.storage, "s1", status: "idle", desiredState: nil)
        try fixture.backend.delete(sinkID: "s1", name: "otel-s1", namespace: "otel")
        try fixture.reconciler.resync()
        #expect(fixture.settled())
        #expect(fixture.manifest("s1") == nil, "the old replica's idle (the last event) was undone: the collector runs again")
        #expect(fixture.contents.collectors["s1"]?["status"] == "idle")
    }

    @Test("the old replica creates a collector a new replica idled: the new replica's resync does not tear it down")
    func oldCreateAfterNewIdle() throws {
        let fixture = try CollectorServiceFixture()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        fixture.sink("s1", config: "receivers: {}\n")
        _ = try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1")
        #expect(fixture.settled())
        try fixture.manager.idle(sinkID: "s1")
        #expect(eventually { fixture.contents.collectors["s1"]?["status"] == "idle" })
        #expect(fixture.settled())
        // The previous maestro's create (activity): the rendered objects stored as the desired state
        // (DesiredStateStore.store, unchanged), applied by its reconciler, status provisioning.
        let desired = try fixture.manager.render(sinkID: "s1", ownerID: "o1")
        Self.oldReplicaWrites(fixture.storage, "s1", status: "provisioning", desiredState: desired.yaml)
        try fixture.backend.apply(try DesiredCollector(sinkID: "s1", desiredStateYAML: desired.yaml))
        try fixture.reconciler.resync()
        #expect(fixture.settled())
        #expect(fixture.manifest("s1") != nil, "the old replica's create (the last event) was undone: the collector was torn down")
        #expect(fixture.contents.desiredStates["s1"] != nil)
    }
}

@Suite("Attack: the eager invariant check", .testThreads, .timeLimit(.minutes(3)))
struct InvariantCheckDefectTests {
    @Test("a sink whose template fails has no desired state by design: the resync does not count it as a lost effect")
    func templateFailureIsNoBreach() throws {
        let renderer = StubRenderer()
        renderer.failure.withLock { $0 = "attempt to index a nil value" }
        let fixture = try CollectorServiceFixture(renderer: renderer,
                                                  options: ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 0.5,
                                                                             checksEagerInvariant: true, invariantGrace: 0))
        // The create decides on its own thread; the reconciler (and its first resync) starts after it, so
        // no resync sees the sink in the moment between its config and its create.
        fixture.sink("s1", config: "receivers: {}\n")
        #expect(throws: CollectorServiceError.self) { try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1") }
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        #expect(fixture.settled())
        try fixture.reconciler.resync()
        #expect(fixture.settled())
        try fixture.reconciler.resync()
        #expect(fixture.settled())
        #expect(fixture.reconciler.counters.invariantRepairs == 0,
                "every resync logs a template failure as a lost effect (\(fixture.reconciler.counters.invariantRepairs) repairs)")
        #expect(fixture.statuses("s1") == ["provisioning_error"])
    }
}

@Suite("Attack: a removal's pass against newer intents", .testThreads, .timeLimit(.minutes(3)))
struct ForgetDefectTests {
    @Test("remove, then create and idle while the removal's pass deletes the objects: the idle sink keeps its record (in memory and Redis)",
          arguments: [false, true])
    func idleAfterRecreateDuringRemoval(onRedis: Bool) throws {
        let store: SharedStore
        if onRedis {
            store = .redis(url: try RedisURL(parsing: try RedisTestServer.url), names: RedisNames().prefixed(RedisTestServer.uniquePrefix("forget")))
        } else {
            store = .memory(InMemoryCollectorStorage())
        }
        let folder = try TemporaryDirectory()
        let backend = HeldBackend(root: folder.path)
        let storage = store.storageForReplica()
        let reconciler = Reconciler(storage: storage, backend: backend,
                                    options: ReconcilerOptions(resyncInterval: 3_600, workers: 2, maximumBackoff: 0.5), logger: Logger(label: "test"))
        let manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test")) { TaggedRenderer(tag: "t1") }
        reconciler.start()
        defer { reconciler.stop() }
        try store.setSink("s1", config: config("s1", version: 1), removed: false, entry: 1)
        _ = try manager.createAndGet(sinkID: "s1", ownerID: "o1")
        #expect(eventually { reconciler.backlog == 0 })

        let deleting = Gate(), release = Gate()
        backend.holdDelete.withLock { $0 = { deleting.open(); _ = release.wait() } }
        try store.setSink("s1", config: nil, removed: true, entry: 2)
        try manager.remove(sinkID: "s1")
        #expect(deleting.wait(), "the removal's pass decided on the tombstone and deletes the objects")
        // Newer events while that pass runs: the sink is created again, then Orb reports it idle.
        try store.setSink("s1", config: config("s1", version: 2), removed: false, entry: 3)
        try manager.create(sinkID: "s1", ownerID: "o1")
        try manager.idle(sinkID: "s1")
        release.open()
        #expect(eventually { reconciler.backlog == 0 })
        let record = try storage.collectorRecord(of: "s1")
        #expect(record?["status"]?.stringValue == "idle",
                "the last event (idle of the live sink) keeps the record with status idle; the stale removal forgot it: \(String(describing: record))")
        #expect(try storage.desiredState(of: "s1") == nil)
        #expect(!FileManager.default.fileExists(atPath: backend.inner.path(name: "otel-s1", namespace: "otel")))
    }
}

/// A storage that runs a test's step before a chosen status publish (a replica paused there).
final class HookedStorage: CollectorStorage {
    let inner: any CollectorStorage
    let beforePublish = Mutex<(@Sendable (CollectorStatusChange) -> Bool)?>(nil)
    init(_ inner: any CollectorStorage) { self.inner = inner }

    func config(of sinkID: String) throws(RedisError) -> (yaml: String, ownerID: String)? { try inner.config(of: sinkID) }
    func installationKey() throws(RedisError) -> String { try inner.installationKey() }
    func rolloutHistory(of sinkID: String) throws(RedisError) -> RolloutHistory { try inner.rolloutHistory(of: sinkID) }
    func requestReconcile(sinkID: String) throws(RedisError) { try inner.requestReconcile(sinkID: sinkID) }
    func forgetRolloutHistory(sinkID: String) throws(RedisError) { try inner.forgetRolloutHistory(sinkID: sinkID) }
    func takeReconcileRequests(limit: Int) throws(RedisError) -> [String] { try inner.takeReconcileRequests(limit: limit) }
    func fleetRollout() throws(RedisError) -> String? { try inner.fleetRollout() }
    func storeFleetRollout(_ json: String) throws(RedisError) { try inner.storeFleetRollout(json) }
    func requestFleetRollout(_ request: String) throws(RedisError) { try inner.requestFleetRollout(request) }
    func takeFleetRolloutRequests(limit: Int) throws(RedisError) -> [String] { try inner.takeFleetRolloutRequests(limit: limit) }
    func storeRolloutHistory(_ history: RolloutHistory, of sinkID: String, desiredState: String?) throws(RedisError) -> Bool {
        try inner.storeRolloutHistory(history, of: sinkID, desiredState: desiredState)
    }
    func desiredState(of sinkID: String) throws(RedisError) -> String? { try inner.desiredState(of: sinkID) }
    func sinkIDsWithDesiredState() throws(RedisError) -> [String] { try inner.sinkIDsWithDesiredState() }
    func snapshot(of sinkID: String) throws(RedisError) -> CollectorSnapshot { try inner.snapshot(of: sinkID) }
    func want(sinkID: String, ownerID: String) throws(RedisError) -> DesiredStateStore.IntentResult { try inner.want(sinkID: sinkID, ownerID: ownerID) }
    func stopWanting(sinkID: String, intent: DesiredStateStore.Intent,
                     guard removalGuard: DesiredStateStore.RemovalGuard) throws(RedisError) -> DesiredStateStore.RemovalResult {
        try inner.stopWanting(sinkID: sinkID, intent: intent, guard: removalGuard)
    }
    func storeDesiredState(sinkID: String, configDigest: String, yaml: String, ownerID: String,
                           extra: [String: Value], releasing token: String?) throws(RedisError) -> DesiredStateStore.StoreResult {
        try inner.storeDesiredState(sinkID: sinkID, configDigest: configDigest, yaml: yaml, ownerID: ownerID, extra: extra, releasing: token)
    }
    func wantAndLock(sinkID: String, ownerID: String, token: String,
                     milliseconds: Int) throws(RedisError) -> (intent: DesiredStateStore.IntentResult, snapshot: CollectorSnapshot?) {
        try inner.wantAndLock(sinkID: sinkID, ownerID: ownerID, token: token, milliseconds: milliseconds)
    }
    func extendReconcileLock(sinkID: String, token: String, milliseconds: Int) throws(RedisError) -> Bool {
        try inner.extendReconcileLock(sinkID: sinkID, token: token, milliseconds: milliseconds)
    }
    func removeDesiredState(sinkID: String, guard removalGuard: DesiredStateStore.RemovalGuard) throws(RedisError) -> DesiredStateStore.RemovalResult {
        try inner.removeDesiredState(sinkID: sinkID, guard: removalGuard)
    }
    func forgetCollector(sinkID: String) throws(RedisError) -> Bool { try inner.forgetCollector(sinkID: sinkID) }
    func publish(sinkID: String, _ change: CollectorStatusChange) throws(RedisError) -> Int {
        if let step = beforePublish.withLock({ $0 }), step(change) { beforePublish.withLock { $0 = nil } }
        return try inner.publish(sinkID: sinkID, change)
    }
    func collectorRecord(of sinkID: String) throws(RedisError) -> Value? { try inner.collectorRecord(of: sinkID) }
    func collectorRecords() throws(RedisError) -> [String: Value] { try inner.collectorRecords() }
    func sinkRecords() throws(RedisError) -> [String: SinkRecord] { try inner.sinkRecords() }
    func acquireReconcileLock(sinkID: String, token: String, milliseconds: Int) throws(RedisError) -> CollectorSnapshot? {
        try inner.acquireReconcileLock(sinkID: sinkID, token: token, milliseconds: milliseconds)
    }
    func releaseReconcileLock(sinkID: String, token: String) throws(RedisError) { try inner.releaseReconcileLock(sinkID: sinkID, token: token) }
}

/// A backend whose next apply is rejected (HTTP 422, an invalid object).
final class RejectingBackend: ClusterBackend {
    let inner: DirectoryBackend
    let rejectNext = Mutex(false)
    init(root: String) { inner = DirectoryBackend(root: root) }
    var name: String { inner.name }
    func apply(_ collector: DesiredCollector, previous: AppliedState?) throws(ClusterError) -> ApplyResult {
        if rejectNext.withLock({ current in defer { current = false }; return current }) { throw ClusterError(.rejected, "422 invalid object") }
        return try inner.apply(collector, previous: previous)
    }
    func delete(sinkID: String, name: String, namespace: String) throws(ClusterError) { try inner.delete(sinkID: sinkID, name: name, namespace: namespace) }
    func observe(_ collector: DesiredCollector) throws(ClusterError) -> (status: SinkStatus, message: String) { try inner.observe(collector) }
    func managedCollectors() throws(ClusterError) -> [ManagedCollector] { try inner.managedCollectors() }
    func live(_ collector: DesiredCollector) throws(ClusterError) -> [Value] { try inner.live(collector) }
}

@Suite("Attack: the rejected apply's status, published after the lock", .testThreads, .timeLimit(.minutes(3)))
struct RejectedStatusDefectTests {
    @Test("replica A's apply of v1 is rejected; replica B applies v2 before A publishes: the status is not A's stale provisioning_error")
    func staleRejection() throws {
        let storage = InMemoryCollectorStorage()
        let folder = try TemporaryDirectory()
        let hooked = HookedStorage(storage)
        let rejecting = RejectingBackend(root: folder.path)
        let options = ReconcilerOptions(resyncInterval: 3_600, workers: 1, maximumBackoff: 0.5)
        // Followers: no resync of their own to add passes.
        let replicaA = Reconciler(storage: hooked, backend: rejecting, options: options, logger: Logger(label: "a"), isLeader: { false })
        let replicaB = Reconciler(storage: storage, backend: DirectoryBackend(root: folder.path), options: options, logger: Logger(label: "b"),
                                  isLeader: { false })
        let managerA = CollectorManager(reconciler: replicaA, logger: Logger(label: "a")) { TaggedRenderer(tag: "t1") }
        let managerB = CollectorManager(reconciler: replicaB, logger: Logger(label: "b")) { TaggedRenderer(tag: "t1") }
        replicaA.start()
        replicaB.start()
        defer {
            replicaA.stop()
            replicaB.stop()
        }
        try SharedStore.memory(storage).setSink("s1", config: config("s1", version: 1), removed: false, entry: 1)
        let publishing = Gate(), release = Gate()
        rejecting.rejectNext.withLock { $0 = true }
        hooked.beforePublish.withLock {
            $0 = { change in
                guard change.status == .provisioningError else { return false }
                publishing.open()
                _ = release.wait()
                return true
            }
        }
        try managerA.create(sinkID: "s1", ownerID: "o1")
        #expect(publishing.wait(), "replica A's apply was rejected; it publishes the rejection")
        // A fixed config arrives while A publishes; replica B reconciles it. The rejection is published
        // under A's lock, so B's pass comes after it, whatever the timing.
        try SharedStore.memory(storage).setSink("s1", config: config("s1", version: 2), removed: false, entry: 2)
        try managerB.update(sinkID: "s1", ownerID: "o1")
        #expect(storage.contents.withLock { $0.reconcileLocks["s1"] } != nil, "A still holds the sink while it publishes")
        release.open()
        #expect(eventually { replicaB.backlog == 0 && replicaB.counters.applied == 1 })
        #expect(eventually { replicaA.backlog == 0 && replicaA.counters.rejected == 1 })
        let manifestPath = rejecting.inner.path(name: "otel-s1", namespace: "otel")
        #expect((try? String(contentsOfFile: manifestPath, encoding: .utf8))?.contains("version: 2}") == true, "replica B applied v2")
        #expect(storage.contents.withLock { $0.collectors["s1"]?["status"] } == "provisioning",
                "v2 runs, yet the status is A's stale rejection of v1: \(String(describing: storage.contents.withLock { $0.collectors["s1"] }))")
    }
}

/// A backend that can see pods: provisioning until the test says the collector is up.
final class PolledBackend: ClusterBackend {
    let inner: DirectoryBackend
    let available = Mutex(false)
    let observed = Mutex(0)
    init(root: String) { inner = DirectoryBackend(root: root) }
    var name: String { "polled" }
    func apply(_ collector: DesiredCollector, previous: AppliedState?) throws(ClusterError) -> ApplyResult { try inner.apply(collector, previous: previous) }
    func delete(sinkID: String, name: String, namespace: String) throws(ClusterError) { try inner.delete(sinkID: sinkID, name: name, namespace: namespace) }
    func observe(_ collector: DesiredCollector) throws(ClusterError) -> (status: SinkStatus, message: String) {
        observed.withLock { $0 += 1 }
        return available.withLock { $0 } ? (.active, "") : (.provisioning, "")
    }
    func managedCollectors() throws(ClusterError) -> [ManagedCollector] { try inner.managedCollectors() }
    func live(_ collector: DesiredCollector) throws(ClusterError) -> [Value] { try inner.live(collector) }
}

@Suite("Attack: status polling of a follower's apply", .testThreads, .timeLimit(.minutes(3)))
struct FollowerPollingDefectTests {
    @Test("a collector applied by a follower replica becomes active within the polling backoff, not at the next resync")
    func followerApplyIsPolled() throws {
        let storage = InMemoryCollectorStorage()
        let folder = try TemporaryDirectory()
        let backend = PolledBackend(root: folder.path)
        let options = ReconcilerOptions(resyncInterval: 3_600, workers: 1, maximumBackoff: 0.5)
        let leader = Reconciler(storage: storage, backend: backend, options: options, logger: Logger(label: "leader"), isLeader: { true })
        let follower = Reconciler(storage: storage, backend: backend, options: options, logger: Logger(label: "follower"), isLeader: { false })
        _ = CollectorManager(reconciler: leader, logger: Logger(label: "leader")) { TaggedRenderer(tag: "t1") }
        let followerManager = CollectorManager(reconciler: follower, logger: Logger(label: "follower")) { TaggedRenderer(tag: "t1") }
        leader.start()
        follower.start()
        defer {
            leader.stop()
            follower.stop()
        }
        #expect(eventually { leader.counters.resyncs == 1 }, "the leader's first resync, at its start, is over")
        try SharedStore.memory(storage).setSink("s1", config: config("s1", version: 1), removed: false, entry: 1)
        // The gRPC call (or the sinker's hand-off) reached the follower.
        _ = try followerManager.createAndGet(sinkID: "s1", ownerID: "o1")
        #expect(eventually { follower.backlog == 0 && storage.contents.withLock { $0.collectors["s1"]?["status"] } == "provisioning" })
        backend.available.withLock { $0 = true }
        // The first poll comes 2 s after the apply, the next 4 s later.
        #expect(eventually(timeout: 10) { storage.contents.withLock { $0.collectors["s1"]?["status"] } == "active" },
                "nobody polls the follower's collector: it stays provisioning until the next resync (\(backend.observed.withLock { $0 }) observations)")
    }
}
