import Foundation
import Logging
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroCore
@testable import MaestroPluginHost

/// A collector service that holds one kind of call at its door until released: the pause (a crash
/// and restart, a Redis outage, a SIGSTOP) that lets another replica's newer event overtake it.
final class HeldCollectorService: CollectorService {
    enum Door: Sendable { case create, update, remove }

    let inner: any CollectorService
    let door: Door
    let reached = DispatchSemaphore(value: 0)
    let release = DispatchSemaphore(value: 0)

    init(_ inner: any CollectorService, holding door: Door) {
        self.inner = inner
        self.door = door
    }

    private func wait(at door: Door) {
        guard door == self.door else { return }
        reached.signal()
        release.wait()
    }

    func create(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        wait(at: .create)
        try inner.create(sinkID: sinkID, ownerID: ownerID)
    }

    func update(sinkID: String, ownerID: String) throws(CollectorServiceError) {
        wait(at: .update)
        try inner.update(sinkID: sinkID, ownerID: ownerID)
    }

    func remove(sinkID: String) throws(CollectorServiceError) {
        wait(at: .remove)
        try inner.remove(sinkID: sinkID)
    }
}

/// Two replicas' sinkers on one Redis, driven entry by entry: replica A stores an entry's outcome and
/// is held before its hand-off; replica B handles a newer entry of the same sink completely; then A
/// goes on. Whatever A's late hand-off does, the end state must be the newest event's.
@Suite("Hand-offs overtaken by a newer event of the same sink", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct HandOffRaceTests {
    func processor(_ fixture: PipelineFixture, collectors: any CollectorService) -> SinkEventProcessor {
        let catalog = PluginCatalog.load(root: fixture.plugins, limits: PluginCatalog.LuaLimits(instructionBudget: 5_000_000, memoryLimitBytes: 16 << 20))
        return SinkEventProcessor(context: SinkerContext(catalog: catalog, names: fixture.names, cipher: OrbSecretCipher(secret: "orb"),
                                                         kafkaURL: "kafka:9092", policy: .eager, collectors: collectors, logger: Logger(label: "test")))
    }

    func entry(_ redis: RedisConnection, _ fixture: PipelineFixture, _ fields: [(String, String)]) throws -> DeliveredEntry {
        let id = try fixture.add(redis, fields)
        return DeliveredEntry(entry: StreamEntry(id: id, fields: fields.map { StreamEntry.Field($0.0, $0.1) }, isDeleted: false),
                              deliveries: 1, redelivered: false)
    }

    /// Runs A's batch on a thread until A is held at its door; returns a wait for A's outcomes.
    func startHeld(_ replica: SinkEventProcessor, _ held: HeldCollectorService, _ batch: [DeliveredEntry],
                   _ fixture: PipelineFixture) throws -> () -> [EntryOutcome] {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var outcomes: [EntryOutcome] = []
        let connection = try fixture.connect()
        nonisolated(unsafe) let unsafeReplica = replica
        Thread {
            outcomes = (try? unsafeReplica.process(batch, redis: connection)) ?? []
            done.signal()
        }.start()
        #expect(held.reached.wait(timeout: .now() + 30) == .success, "replica A reached its hand-off")
        return {
            held.release.signal()
            #expect(done.wait(timeout: .now() + 30) == .success)
            return outcomes
        }
    }

    /// Replica B hands off directly; replica A's hand-offs of one kind are held at the door.
    func replicas(_ fixture: CollectorFixture, holding door: HeldCollectorService.Door)
        -> (a: SinkEventProcessor, held: HeldCollectorService, b: SinkEventProcessor) {
        let held = HeldCollectorService(fixture.manager, holding: door)
        return (processor(fixture.pipeline, collectors: held), held, processor(fixture.pipeline, collectors: fixture.manager))
    }

    @Test("create, remove (A held before its hand-off), create (B): the sink keeps its desired state and its record")
    func removalOvertakenByCreate() throws {
        let fixture = try CollectorFixture()
        let redis = try fixture.pipeline.connect()
        let names = fixture.pipeline.names
        let (replicaA, held, replicaB) = replicas(fixture, holding: .remove)

        _ = try replicaB.process([try entry(redis, fixture.pipeline, create("s1", sinkConfig("https://one.example/w")))], redis: redis)
        try fixture.reconciler.reconcile("s1")
        #expect(try redis.hget(names.deploymentHash, field: "s1") != nil)

        let finishA = try startHeld(replicaA, held, [try entry(redis, fixture.pipeline, remove("s1"))], fixture.pipeline)
        let recreated = try replicaB.process([try entry(redis, fixture.pipeline, create("s1", sinkConfig("https://two.example/w")))], redis: redis)
        #expect(recreated == [.acknowledged])
        let outcomesA = finishA()
        #expect(outcomesA == [.acknowledged], "the overtaken removal is done: a newer event owns the sink")

        let record = try #require(try SinkStore.record(redis, names: names, sinkID: "s1"))
        #expect(!record.removed)
        let config = try #require(try redis.hget(names.configHash, field: "s1"))
        #expect(config.contains("https://two.example/w"))
        try fixture.reconciler.reconcile("s1")
        let desired = try #require(try redis.hget(names.deploymentHash, field: "s1"), "the live sink lost its desired state")
        #expect(desired.contains("https://two.example/w"))
        #expect(try redis.hget(names.collectorsHash, field: "s1") != nil)
    }

    @Test("create (A held before its hand-off), remove (B): no desired state comes back for the removed sink")
    func createOvertakenByRemoval() throws {
        let fixture = try CollectorFixture()
        let redis = try fixture.pipeline.connect()
        let names = fixture.pipeline.names
        let (replicaA, held, replicaB) = replicas(fixture, holding: .create)

        let finishA = try startHeld(replicaA, held, [try entry(redis, fixture.pipeline, create("s2", sinkConfig("https://one.example/w")))],
                                    fixture.pipeline)
        #expect(try replicaB.process([try entry(redis, fixture.pipeline, remove("s2"))], redis: redis) == [.acknowledged])
        #expect(finishA() == [.acknowledged], "the overtaken create is done: the sink was removed since")

        #expect(try SinkStore.record(redis, names: names, sinkID: "s2")?.removed == true)
        #expect(try redis.hget(names.configHash, field: "s2") == nil)
        try fixture.reconciler.reconcile("s2")
        #expect(try redis.hget(names.deploymentHash, field: "s2") == nil, "a removed sink got a desired state")
        #expect(try redis.hget(names.collectorsHash, field: "s2") == nil)
    }

    @Test("the guarded writes decide on what is stored now: a stale render, a tombstone, a live sink")
    func guardedWrites() throws {
        let fixture = try PipelineFixture()
        let redis = try fixture.connect()
        let names = fixture.names
        try redis.hset(names.configHash, field: "g", value: "receivers: {v2: {}}\n")
        let stale = try DesiredStateStore.store(redis, names: names, sinkID: "g", configDigest: DesiredStateStore.digest(ofConfig: "receivers: {v1: {}}\n"),
                                                yaml: "kind: Secret\n", ownerID: "o", extra: [:])
        #expect(stale == .configChanged)
        #expect(try redis.hget(names.deploymentHash, field: "g") == nil)
        let stored = try DesiredStateStore.store(redis, names: names, sinkID: "g", configDigest: DesiredStateStore.digest(ofConfig: "receivers: {v2: {}}\n"),
                                                 yaml: "kind: Secret\n", ownerID: "o", extra: ["collector_name": "otel-g"])
        guard case .stored(let record) = stored else {
            Issue.record("not stored: \(stored)")
            return
        }
        #expect(record["collector_name"] == .string("otel-g"))
        #expect(record["owner_id"] == .string("o"))
        #expect(try redis.hget(names.deploymentHash, field: "g") == "kind: Secret\n")

        let live = SinkRecord(ownerID: "o", backend: "prometheus", lastEntryID: "5-0", removed: false, updatedAtMilliseconds: 0)
        try redis.hset(names.sinksHash, field: "g", value: live.json)
        #expect(try DesiredStateStore.remove(redis, names: names, sinkID: "g", guard: .unlessLive) == .refusedLive)
        #expect(try redis.hget(names.deploymentHash, field: "g") != nil)
        #expect(!(try DesiredStateStore.forgetCollector(redis, names: names, sinkID: "g")), "a collector with a desired state keeps its record")

        var tombstone = live
        tombstone.removed = true
        try redis.hset(names.sinksHash, field: "g", value: tombstone.json)
        let onTombstone = try DesiredStateStore.store(redis, names: names, sinkID: "g",
                                                      configDigest: DesiredStateStore.digest(ofConfig: "receivers: {v2: {}}\n"),
                                                      yaml: "kind: Secret\n", ownerID: "o", extra: [:])
        #expect(onTombstone == .tombstoned)
        #expect(try redis.hget(names.deploymentHash, field: "g") == nil, "a tombstoned sink's desired state is removed")
        #expect(try DesiredStateStore.remove(redis, names: names, sinkID: "g", guard: .unlessLive) == .absent)
        #expect(try DesiredStateStore.forgetCollector(redis, names: names, sinkID: "g"))
        // A create's (or an idle event's) intent, recorded for a sink live again while a removal's
        // reconcile ran, keeps the record the removal would forget; a removed sink's record goes whatever it says.
        try redis.hset(names.collectorsHash, field: "g", value: #"{"status":"active","intent":"run"}"#)
        #expect(try DesiredStateStore.forgetCollector(redis, names: names, sinkID: "g") == true, "the sink is still removed")
        try redis.hset(names.sinksHash, field: "g", value: live.json)
        try redis.hset(names.collectorsHash, field: "g", value: #"{"status":"active","intent":"run"}"#)
        #expect(try DesiredStateStore.forgetCollector(redis, names: names, sinkID: "g") == false)
        try redis.hset(names.collectorsHash, field: "g", value: #"{"status":"idle","intent":"idle"}"#)
        #expect(try DesiredStateStore.forgetCollector(redis, names: names, sinkID: "g") == false)
        try redis.hset(names.collectorsHash, field: "g", value: #"{"status":"active","intent":"stop"}"#)
        #expect(try DesiredStateStore.forgetCollector(redis, names: names, sinkID: "g") == true)
    }

    @Test("the resync repairs a breach of the invariant both ways and counts it; a sound state needs no repair")
    func invariantRepairs() throws {
        let fixture = try CollectorFixture(options: ReconcilerOptions(resyncInterval: 3_600, checksEagerInvariant: true, invariantGrace: 0))
        let redis = try fixture.pipeline.connect()
        let names = fixture.pipeline.names
        let replica = processor(fixture.pipeline, collectors: fixture.manager)
        for sinkID in ["sound", "lost", "ghost"] {
            _ = try replica.process([try entry(redis, fixture.pipeline, create(sinkID, sinkConfig("https://\(sinkID).example/w")))], redis: redis)
        }
        _ = try replica.process([try entry(redis, fixture.pipeline, remove("gone"))], redis: redis)
        // The reconciles the hand-offs queued (the reconciler's threads are not running).
        for sinkID in ["sound", "lost", "ghost", "gone"] { try fixture.reconciler.reconcile(sinkID) }
        try fixture.reconciler.resync()
        #expect(fixture.reconciler.counters.invariantRepairs == 0)

        // Two lost effects: a live sink's desired state deleted, a removed sink's desired state left behind.
        try redis.hdel(names.deploymentHash, fields: ["lost"])
        let ghostDesired = try #require(try redis.hget(names.deploymentHash, field: "ghost"))
        _ = try replica.process([try entry(redis, fixture.pipeline, remove("ghost"))], redis: redis)
        try redis.hset(names.deploymentHash, field: "ghost", value: ghostDesired)

        try fixture.reconciler.resync()
        #expect(fixture.reconciler.counters.invariantRepairs == 2)
        for sinkID in ["lost", "ghost"] { try fixture.reconciler.reconcile(sinkID) }
        #expect(try redis.hget(names.deploymentHash, field: "lost")?.contains("https://lost.example/w") == true)
        #expect(try redis.hget(names.deploymentHash, field: "ghost") == nil)
        #expect(try redis.hget(names.deploymentHash, field: "sound") != nil)
        try fixture.reconciler.resync()
        #expect(fixture.reconciler.counters.invariantRepairs == 2, "a repaired state needs no second repair")
    }
}
