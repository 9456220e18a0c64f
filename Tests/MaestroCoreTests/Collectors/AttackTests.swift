import Foundation
import Logging
import MaestroRedis
import MaestroValue
import Synchronization
import MaestroTestSupport
import Testing

@testable import MaestroCore

// Adversarial tests of DESIGN "One reconcile, many triggers": several replicas (a Reconciler and a
// CollectorManager each, with their own workers) on one storage and one cluster folder, events in a
// seeded random order, renders that pause, and the end state checked against what the events say.

/// A small seeded generator (SplitMix64): the same seed, the same sequence of events.
struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A renderer whose output names its template (`tag`); it may jitter (a few hundred microseconds, seeded)
/// to widen the windows between a pass's read and its write, and a test may hold one render.
final class TaggedRenderer: CollectorRenderer, Sendable {
    let tag: String
    let jitter: Mutex<SeededGenerator?>
    /// Run once, in the middle of the next render (the render waits for it).
    let hold = Mutex<(@Sendable () -> Void)?>(nil)

    init(tag: String, jitterSeed: UInt64? = nil) {
        self.tag = tag
        jitter = Mutex(jitterSeed.map(SeededGenerator.init(seed:)))
    }

    func render(_ inputs: CollectorInputs) throws -> RenderedCollector {
        if let step = hold.withLock({ current in defer { current = nil }; return current }) { step() }
        if let pause = jitter.withLock({ generator -> UInt32? in
            guard var current = generator else { return nil }
            defer { generator = current }
            return UInt32.random(in: 0..<40, using: &current)
        }) {
            // Gives the processor away a random number of times: other replicas' passes run in between,
            // which widens the window between a pass's read and its write, without waiting for time.
            for _ in 0..<pause { sched_yield() }
        }
        let object: Value = ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": .string(inputs.collectorName), "namespace": "otel"],
                             "data": ["config.yaml": .string(inputs.configYAML), "template": .string(tag)]]
        return RenderedCollector(name: inputs.collectorName, ownerID: inputs.ownerID, namespace: "otel", objects: [object],
                                 yaml: try JSON.encode(object))
    }
}

/// A one-shot gate: `open` lets every `wait` through.
final class Gate: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func open() { semaphore.signal() }
    func wait(timeout: Double = 30) -> Bool { semaphore.wait(timeout: .now() + timeout) == .success }
}

/// Where the replicas keep their state: the in-memory storage, or one Redis (each replica its own pool).
enum SharedStore {
    case memory(InMemoryCollectorStorage)
    case redis(url: RedisURL, names: RedisNames)

    func storageForReplica() -> any CollectorStorage {
        switch self {
        case .memory(let storage): return storage
        case .redis(let url, let names): return RedisCollectorStorage(redisURL: url, names: names)
        }
    }

    /// As the sinker leaves a sink: its record (live or a tombstone) and its config (deleted on removal).
    func setSink(_ sinkID: String, config: String?, removed: Bool, entry: Int) throws {
        let record = SinkRecord(ownerID: "o1", backend: "prometheus", lastEntryID: "\(entry)-0", removed: removed, updatedAtMilliseconds: Int64(entry))
        switch self {
        case .memory(let storage):
            storage.contents.withLock { contents in
                contents.sinks[sinkID] = record
                contents.configs[sinkID] = config
            }
        case .redis(let url, let names):
            let redis = try RedisConnection(url: url)
            defer { redis.close() }
            _ = try redis.hset(names.sinksHash, field: sinkID, value: record.json)
            if let config {
                _ = try redis.hset(names.configHash, field: sinkID, value: config)
            } else {
                _ = try redis.hdel(names.configHash, fields: [sinkID])
            }
        }
    }

    /// The status events of a sink, in order.
    func statuses(_ sinkID: String) throws -> [String] {
        switch self {
        case .memory(let storage):
            return storage.contents.withLock { $0.statusEvents.filter { $0.sinkID == sinkID }.map(\.status) }
        case .redis(let url, let names):
            let redis = try RedisConnection(url: url)
            defer { redis.close() }
            return try redis.xrange(names.statusStream).filter { $0["sink_id"] == sinkID }.compactMap { $0["status"] }
        }
    }
}

/// Several maestro replicas on one store and one folder.
final class Replicas: Sendable {
    let store: SharedStore
    let folder: TemporaryDirectory
    let reconcilers: [Reconciler]
    let managers: [CollectorManager]
    let inspect: any CollectorStorage

    init(store: SharedStore, count: Int, renderer: @escaping @Sendable () -> any CollectorRenderer,
         options: ReconcilerOptions = ReconcilerOptions(resyncInterval: 3_600, workers: 2, maximumBackoff: 0.5),
         decisionTimeout: Double = 20) throws {
        self.store = store
        folder = try TemporaryDirectory()
        var reconcilers: [Reconciler] = []
        var managers: [CollectorManager] = []
        for index in 0..<count {
            let reconciler = Reconciler(storage: store.storageForReplica(), backend: DirectoryBackend(root: folder.path), options: options,
                                        logger: Logger(label: "replica-\(index)"))
            reconcilers.append(reconciler)
            managers.append(CollectorManager(reconciler: reconciler, logger: Logger(label: "replica-\(index)"), decisionTimeout: decisionTimeout) {
                renderer()
            })
        }
        self.reconcilers = reconcilers
        self.managers = managers
        inspect = store.storageForReplica()
    }

    func start() { for reconciler in reconcilers { reconciler.start() } }
    func stop() { for reconciler in reconcilers { reconciler.stop() } }

    func manifest(_ sinkID: String) -> String? {
        let path = DirectoryBackend(root: folder.path).path(name: CollectorNaming.name(forSinkID: sinkID), namespace: "otel")
        return FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Nothing queued or running on any replica.
    func settled(timeout: Double = 60) -> Bool {
        eventually(timeout: timeout) { reconcilers.allSatisfy { $0.backlog == 0 } }
    }
}

/// What the events say a sink's collector should be, computed from the events alone.
struct ExpectedSink {
    enum Wish { case none, run, idle }
    var removed = false
    var config: String?
    var wish = Wish.none
    var everRemoved = false
}

func config(_ sinkID: String, version: Int) -> String { "receivers: {sink: \(sinkID), version: \(version)}\n" }

/// A trigger as its real callers make it: a stream entry is retried, and a gRPC client retries, when
/// the answer is UNAVAILABLE (Redis slow to answer on a loaded machine). Anything else is the answer.
func retryingUnavailable<T>(_ body: () throws(CollectorServiceError) -> T) throws(CollectorServiceError) -> T {
    var attempt = 0
    while true {
        do {
            return try body()
        } catch where error.kind == .unavailable && attempt < 5 {
            attempt += 1
        }
    }
}

/// The random interleaving: events for a few sinks, each from a random replica, while every replica's
/// workers reconcile; then the end state is compared with the model.
func randomInterleaving(store: SharedStore, seed: UInt64, steps: Int, idle: Bool = true) throws {
    let replicas = try Replicas(store: store, count: 3, renderer: { TaggedRenderer(tag: "t1", jitterSeed: seed) })
    replicas.start()
    defer { replicas.stop() }
    var generator = SeededGenerator(seed: seed)
    let sinkIDs = ["a", "b", "c", "d"]
    var model: [String: ExpectedSink] = Dictionary(uniqueKeysWithValues: sinkIDs.map { ($0, ExpectedSink()) })
    var version = 0
    var entry = 1
    var log: [String] = []

    for _ in 0..<steps {
        let sinkID = sinkIDs.randomElement(using: &generator)!
        let manager = replicas.managers.randomElement(using: &generator)!
        let roll = Int.random(in: 0..<100, using: &generator)
        var sink = model[sinkID]!
        entry += 1
        switch roll {
        case 0..<30:  // the sinker's create/update: the sink is live with a new config; the hand-off
            version += 1
            let yaml = config(sinkID, version: version)
            try store.setSink(sinkID, config: yaml, removed: false, entry: entry)
            try retryingUnavailable { () throws(CollectorServiceError) in try manager.update(sinkID: sinkID, ownerID: "o1") }
            sink.removed = false
            sink.config = yaml
            sink.wish = .run
            log.append("\(sinkID): sinker create v\(version)")
        case 30..<45:  // the sinker's removal: a tombstone, the config gone; the hand-off
            try store.setSink(sinkID, config: nil, removed: true, entry: entry)
            try retryingUnavailable { () throws(CollectorServiceError) in try manager.remove(sinkID: sinkID) }
            sink.removed = true
            sink.everRemoved = true
            sink.config = nil
            sink.wish = .none
            log.append("\(sinkID): sinker remove")
        case 45..<62 where !idle:
            log.append("\(sinkID): (no idle)")
        case 45..<62:  // Orb's idle event
            try retryingUnavailable { () throws(CollectorServiceError) in try manager.idle(sinkID: sinkID) }
            if !sink.removed && sink.wish != .none { sink.wish = .idle }
            log.append("\(sinkID): idle")
        case 62..<80:  // Orb's activity event
            do {
                try retryingUnavailable { () throws(CollectorServiceError) in try manager.create(sinkID: sinkID, ownerID: "o1") }
                #expect(!sink.removed && sink.config != nil, "activity accepted for a sink without config or removed: \(log)")
                sink.wish = .run
            } catch {
                #expect(error.kind == .notFound)
                #expect(sink.removed || sink.config == nil, "activity refused for a live sink: \(error) \(log)")
            }
            log.append("\(sinkID): activity")
        case 80..<90:  // a gRPC create: it waits for the reconcile to decide
            do {
                let info = try retryingUnavailable { () throws(CollectorServiceError) in try manager.createAndGet(sinkID: sinkID, ownerID: "o1") }
                #expect(!sink.removed && sink.config != nil, "gRPC create answered for a sink without config or removed: \(log)")
                #expect(info.collectorName == CollectorNaming.name(forSinkID: sinkID))
                let desired = try? replicas.inspect.desiredState(of: sinkID)
                #expect(desired?.contains(sink.config.map(marker) ?? "<none>") == true,
                        "the answered create stores the current config: \(desired ?? "nil") \(log)")
                sink.wish = .run
            } catch {
                #expect(error.kind == .notFound, "gRPC create: \(error) \(log)")
                #expect(sink.removed || sink.config == nil, "gRPC create refused for a live sink: \(error) \(log)")
            }
            log.append("\(sinkID): grpc create")
        case 90..<95:  // a gRPC delete under eager: only a removed sink's
            do {
                try retryingUnavailable { () throws(CollectorServiceError) in try manager.delete(sinkID: sinkID) }
                #expect(sink.removed || sink.wish == .none, "gRPC delete of a live sink accepted: \(log)")
            } catch {
                #expect(error.kind == .failedPrecondition)
            }
            log.append("\(sinkID): grpc delete")
        default:  // the resync, on a random replica
            try replicas.reconcilers.randomElement(using: &generator)!.resync()
            log.append("resync")
        }
        model[sinkID] = sink
    }

    #expect(replicas.settled(), "the replicas never settled")
    for sinkID in sinkIDs {
        let sink = model[sinkID]!
        let events = log.filter { $0.hasPrefix("\(sinkID):") }
        let matches = eventually(timeout: 5) {
            let desired = try? replicas.inspect.desiredState(of: sinkID)
            let record = try? replicas.inspect.collectorRecord(of: sinkID)
            let manifest = replicas.manifest(sinkID)
            switch (sink.removed, sink.wish) {
            case (true, _), (false, .none):
                return desired == nil && record == nil && manifest == nil
            case (false, .run):
                let expected = marker(sink.config!)
                return desired?.contains(expected) == true && manifest?.contains(expected) == true
                    && record?["status"]?.stringValue == "provisioning"
            case (false, .idle):
                return desired == nil && manifest == nil && record?["status"]?.stringValue == "idle"
            }
        }
        #expect(matches, """
            sink \(sinkID): expected \(sink) after \(events); \
            desired=\(String(describing: try? replicas.inspect.desiredState(of: sinkID))) \
            record=\(String(describing: try? replicas.inspect.collectorRecord(of: sinkID))) manifest=\(replicas.manifest(sinkID) ?? "nil")
            """)
        if !sink.everRemoved {
            let statuses = try store.statuses(sinkID)
            let repeated = zip(statuses, statuses.dropFirst()).contains { $0 == $1 }
            #expect(!repeated, "sink \(sinkID): one status change published twice: \(statuses) after \(events)")
        }
    }
}

/// What identifies a config version in the desired state (JSON) and in the manifest (YAML).
func marker(_ config: String) -> String {
    String(config.drop(while: { $0 != "{" }).prefix(while: { $0 != "\n" }))
}

@Suite("Attacks on the one reconcile per sink", .testThreads, .timeLimit(.minutes(3)))
struct ReconcileAttackTests {
    @Test("random interleavings of every trigger from three replicas (in memory) end as the last event per sink says",
          arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func randomInMemory(seed: UInt64) throws {
        try randomInterleaving(store: .memory(InMemoryCollectorStorage()), seed: seed, steps: 300, idle: false)
    }

    @Test("random interleavings of every trigger from three replicas on one Redis end as the last event per sink says",
          arguments: [UInt64(11), 12, 13, 14])
    func randomOnRedis(seed: UInt64) throws {
        let url = try RedisURL(parsing: try RedisTestServer.url)
        let names = RedisNames().prefixed(RedisTestServer.uniquePrefix("attack\(seed)"))
        try randomInterleaving(store: .redis(url: url, names: names), seed: seed, steps: 200, idle: false)
    }

    @Test("a gRPC create on one replica while another holds the sink's pass (SinkBusy) is answered, with the newer config")
    func createWhileAnotherReplicaReconciles() throws {
        let storage = InMemoryCollectorStorage()
        let renderer = TaggedRenderer(tag: "t1")
        let replicas = try Replicas(store: .memory(storage), count: 2, renderer: { renderer })
        replicas.start()
        defer { replicas.stop() }
        try replicas.store.setSink("s1", config: config("s1", version: 1), removed: false, entry: 1)
        let holding = Gate(), release = Gate()
        renderer.hold.withLock { $0 = { holding.open(); _ = release.wait() } }
        try replicas.managers[0].create(sinkID: "s1", ownerID: "o1")
        #expect(holding.wait())
        // Replica 0 holds the lock mid-render of version 1; version 2 lands and replica 1 is asked through the API.
        try replicas.store.setSink("s1", config: config("s1", version: 2), removed: false, entry: 2)
        let answered = Mutex<Result<CollectorInfo, CollectorServiceError>?>(nil)
        let done = Gate()
        Thread.detachNewThread {
            let result = Result(catching: { () throws(CollectorServiceError) -> CollectorInfo in try replicas.managers[1].createAndGet(sinkID: "s1", ownerID: "o1") })
            answered.withLock { $0 = result }
            done.open()
        }
        // Let replica 1's pass meet the lock at least once before replica 0 goes on.
        #expect(eventually { replicas.reconcilers[1].counters.applied == 0 && replicas.reconcilers[1].backlog > 0 })
        release.open()
        #expect(done.wait())
        let info = try #require(try answered.withLock { $0 }?.get())
        #expect(info.collectorName == "otel-s1")
        #expect(replicas.settled())
        #expect(replicas.manifest("s1")?.contains("version: 2") == true)
        #expect(try storage.desiredState(of: "s1")?.contains("version: 2") == true)
    }

    @Test("a storage failure inside the pass answers a gRPC create UNAVAILABLE at once; the retry converges")
    func failureInsideThePass() throws {
        let fixture = try CollectorServiceFixture(decisionTimeout: 20)
        fixture.sink("s1", config: "receivers: {}\n")
        // The pass's first storage call (the lock) fails: the want is recorded before.
        try fixture.manager.create(sinkID: "s1", ownerID: "o1")
        fixture.storage.contents.withLock { $0.failure = RedisError(kind: .connection, message: "gone") }
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        #expect(eventually { fixture.manifest("s1") != nil }, "the failed pass is retried")
        #expect(fixture.settled())
        #expect(fixture.statuses("s1") == ["provisioning"])
    }

    @Test("a gRPC create when Redis refuses is UNAVAILABLE, not a hang")
    func createWhenStorageFails() throws {
        let fixture = try CollectorServiceFixture(decisionTimeout: 20)
        fixture.sink("s1", config: "receivers: {}\n")
        // The reconciler is not started: the decision runs on the caller's thread, and a started one's
        // first resync could take the one failure before the create does (seen under load).
        fixture.storage.contents.withLock { $0.failure = RedisError(kind: .connection, message: "gone") }
        let started = Date()
        let error = try #require(throws: CollectorServiceError.self) { try fixture.manager.createAndGet(sinkID: "s1", ownerID: "o1") }
        #expect(error.kind == .unavailable)
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test("idle → activity → remove, quickly, on two replicas: nothing is left of the removed sink")
    func idleActivityRemove() throws {
        let storage = InMemoryCollectorStorage()
        let replicas = try Replicas(store: .memory(storage), count: 2, renderer: { TaggedRenderer(tag: "t1", jitterSeed: 7) })
        replicas.start()
        defer { replicas.stop() }
        for round in 0..<20 {
            let sinkID = "s\(round)"
            try replicas.store.setSink(sinkID, config: config(sinkID, version: 1), removed: false, entry: 1)
            try replicas.managers[round % 2].create(sinkID: sinkID, ownerID: "o1")
            try replicas.managers[(round + 1) % 2].idle(sinkID: sinkID)
            try replicas.managers[round % 2].create(sinkID: sinkID, ownerID: "o1")
            try replicas.store.setSink(sinkID, config: nil, removed: true, entry: 2)
            try replicas.managers[(round + 1) % 2].remove(sinkID: sinkID)
        }
        #expect(replicas.settled())
        for round in 0..<20 {
            let sinkID = "s\(round)"
            #expect(replicas.manifest(sinkID) == nil)
            #expect(storage.contents.withLock { $0.desiredStates[sinkID] == nil && $0.collectors[sinkID] == nil })
        }
    }
}

/// The directory backend with a pause: a test may hold the next apply or the next observe (a replica
/// paused, a slow cluster), and name it otherwise so that the reconciler polls its status.
final class HeldBackend: ClusterBackend {
    let inner: DirectoryBackend
    let name: String
    let holdApply = Mutex<(@Sendable () -> Void)?>(nil)
    let holdObserve = Mutex<(@Sendable () -> Void)?>(nil)
    let holdDelete = Mutex<(@Sendable () -> Void)?>(nil)

    init(root: String, name: String = "directory") {
        inner = DirectoryBackend(root: root)
        self.name = name
    }

    func apply(_ collector: DesiredCollector, previous: AppliedState?) throws(ClusterError) -> ApplyResult {
        if let step = holdApply.withLock({ current in defer { current = nil }; return current }) { step() }
        return try inner.apply(collector, previous: previous)
    }

    func delete(sinkID: String, name: String, namespace: String) throws(ClusterError) {
        if let step = holdDelete.withLock({ current in defer { current = nil }; return current }) { step() }
        try inner.delete(sinkID: sinkID, name: name, namespace: namespace)
    }

    func observe(_ collector: DesiredCollector) throws(ClusterError) -> (status: SinkStatus, message: String) {
        if let step = holdObserve.withLock({ current in defer { current = nil }; return current }) { step() }
        return try inner.observe(collector)
    }

    func managedCollectors() throws(ClusterError) -> [ManagedCollector] { try inner.managedCollectors() }
    func live(_ collector: DesiredCollector) throws(ClusterError) -> [Value] { try inner.live(collector) }
}

@Suite("Attacks: the in-memory storage and the Redis scripts agree", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct StorageParityTests {
    /// The record without what only one of them stamps (times).
    static func comparable(_ record: Value?) -> [String: Value]? {
        guard case .map(let fields)? = record else { return record == nil ? nil : [:] }
        return fields.filter { !["status_changed_at", "deployed_at", "applied_at"].contains($0.key) }
    }

    /// A description that does not depend on a dictionary's order.
    static func describe(_ record: Value?) -> String {
        guard let fields = comparable(record) else { return "nil" }
        return "{" + fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "}"
    }

    @Test("the same random sequence of guarded writes gives the same answers and the same state on both", arguments: [UInt64(21), 22, 23])
    func sameSequenceSameState(seed: UInt64) throws {
        let url = try RedisURL(parsing: try RedisTestServer.url)
        let names = RedisNames().prefixed(RedisTestServer.uniquePrefix("parity\(seed)"))
        let memory = InMemoryCollectorStorage()
        let redisStore = SharedStore.redis(url: url, names: names)
        let redis = RedisCollectorStorage(redisURL: url, names: names)
        let stores: [(SharedStore, any CollectorStorage)] = [(.memory(memory), memory), (redisStore, redis)]
        let connection = try RedisConnection(url: url)
        defer { connection.close() }
        var generator = SeededGenerator(seed: seed)
        let sinkIDs = ["p", "q"]
        var entry = 1
        var trace: [String] = []
        for _ in 0..<300 {
            let sinkID = sinkIDs.randomElement(using: &generator)!
            let roll = Int.random(in: 0..<11, using: &generator)
            let version = Int.random(in: 1...2, using: &generator)
            let flag = Bool.random(using: &generator)
            let status: SinkStatus = [.provisioning, .active, .idle, .provisioningError].randomElement(using: &generator)!
            entry += 1
            var answers: [String] = []
            for (store, storage) in stores {
                let answer: String
                switch roll {
                case 0: try store.setSink(sinkID, config: config(sinkID, version: version), removed: false, entry: entry); answer = "live"
                case 1: try store.setSink(sinkID, config: nil, removed: true, entry: entry); answer = "tombstone"
                case 2:
                    let result = try storage.want(sinkID: sinkID, ownerID: flag ? "o2" : "")
                    if case .recorded(let record) = result { answer = "recorded \(Self.describe(record))" } else { answer = "\(result)" }
                case 3: answer = "\(try storage.stopWanting(sinkID: sinkID, intent: flag ? .idle : .stop, guard: .always))"
                case 4: answer = "\(try storage.stopWanting(sinkID: sinkID, intent: .stop, guard: .unlessLive))"
                case 5, 6:
                    let result = try storage.storeDesiredState(sinkID: sinkID, configDigest: DesiredStateStore.digest(ofConfig: config(sinkID, version: version)),
                                                               yaml: "objects v\(version)", ownerID: flag ? "o3" : "",
                                                               extra: ["collector_name": .string("otel-\(sinkID)"), "namespace": "otel"])
                    if case .stored(let record) = result { answer = "stored \(Self.describe(record))" } else { answer = "\(result)" }
                case 7: answer = "\(try storage.removeDesiredState(sinkID: sinkID, guard: flag ? .always : .unlessLive))"
                case 8: answer = "\(try storage.forgetCollector(sinkID: sinkID))"
                case 9:
                    answer = "\(try storage.publish(sinkID: sinkID, CollectorStatusChange(status, message: flag ? "m" : "", throughProvisioning: flag)))"
                default:
                    let snapshot = try storage.snapshot(of: sinkID)
                    answer = "snapshot sink=\(String(describing: snapshot.sink?.removed)) config=\(snapshot.config != nil) desired=\(snapshot.desiredState ?? "nil") record=\(Self.describe(snapshot.record))"
                }
                answers.append(answer)
            }
            trace.append("\(sinkID) op\(roll) v\(version) \(flag) \(status): \(answers[0])")
            #expect(answers[0] == answers[1], "in memory and Redis answer differently after \(trace.suffix(8)): \(answers[1])")
            for id in sinkIDs {
                let left = (try memory.desiredState(of: id), Self.comparable(try memory.collectorRecord(of: id)))
                let right = (try redis.desiredState(of: id), Self.comparable(try redis.collectorRecord(of: id)))
                #expect(left.0 == right.0 && left.1 == right.1, "sink \(id) differs after \(trace.suffix(8)): memory \(left) Redis \(right)")
                if left.0 != right.0 || left.1 != right.1 { return }
            }
            if answers[0] != answers[1] { return }
        }
        let memoryEvents = memory.contents.withLock { $0.statusEvents.map { "\($0.sinkID) \($0.status) \($0.message)" } }
        let redisEvents = try connection.xrange(names.statusStream).map { "\($0["sink_id"] ?? "") \($0["status"] ?? "") \($0["error_message"] ?? "")" }
        #expect(memoryEvents == redisEvents)
    }
}


@Suite("Attacks: a crash at the worst moment, then the resync", .testThreads, .timeLimit(.minutes(3)))
struct CrashAttackTests {
    /// A replica that records and stores as a pass would, and dies (its reconciler never runs).
    static func crashed(_ storage: InMemoryCollectorStorage) throws -> Replicas {
        try Replicas(store: .memory(storage), count: 1, renderer: { TaggedRenderer(tag: "t1") })
    }

    @Test("killed after the intent, after storing the desired state, in a removal's and in an idle's delete: the restarted replica's resync converges")
    func crashPoints() throws {
        let storage = InMemoryCollectorStorage()
        let store = SharedStore.memory(storage)
        // Running collectors first (one replica that then stops cleanly).
        let before = try Replicas(store: store, count: 1, renderer: { TaggedRenderer(tag: "t1") })
        before.start()
        for sinkID in ["removing", "idling"] {
            try store.setSink(sinkID, config: config(sinkID, version: 1), removed: false, entry: 1)
            _ = try before.managers[0].createAndGet(sinkID: sinkID, ownerID: "o1")
        }
        #expect(before.settled())
        before.stop()
        #expect(before.manifest("removing") != nil && before.manifest("idling") != nil)

        let dead = try Self.crashed(storage)
        // 1. Killed between recording the intent and its reconcile.
        try store.setSink("wanted", config: config("wanted", version: 1), removed: false, entry: 1)
        try dead.managers[0].create(sinkID: "wanted", ownerID: "o1")
        // 2. Killed between storing the desired state and applying it.
        try store.setSink("stored", config: config("stored", version: 1), removed: false, entry: 1)
        try dead.managers[0].create(sinkID: "stored", ownerID: "o1")
        let rendered = try dead.managers[0].render(sinkID: "stored", ownerID: "o1")
        guard case .stored = try storage.storeDesiredState(sinkID: "stored", configDigest: DesiredStateStore.digest(ofConfig: config("stored", version: 1)),
                                                           yaml: rendered.yaml, ownerID: "o1",
                                                           extra: ["collector_name": .string(rendered.name), "namespace": "otel"]) else {
            Issue.record("not stored")
            return
        }
        // 3. A removal killed after deleting the desired state, before deleting the objects.
        try store.setSink("removing", config: nil, removed: true, entry: 2)
        try dead.managers[0].remove(sinkID: "removing")
        _ = try storage.removeDesiredState(sinkID: "removing", guard: .always)
        // 4. An idle killed at the same point.
        try dead.managers[0].idle(sinkID: "idling")
        _ = try storage.removeDesiredState(sinkID: "idling", guard: .always)

        let restarted = try Replicas(store: store, count: 1, renderer: { TaggedRenderer(tag: "t1") })
        restarted.start()
        defer { restarted.stop() }
        try restarted.reconcilers[0].resync()
        #expect(restarted.settled())
        #expect(restarted.manifest("wanted")?.contains("version: 1}") == true)
        #expect(restarted.manifest("stored")?.contains("version: 1}") == true)
        #expect(restarted.manifest("removing") == nil)
        #expect(storage.contents.withLock { $0.collectors["removing"] } == nil)
        #expect(restarted.manifest("idling") == nil)
        #expect(storage.contents.withLock { $0.collectors["idling"]?["status"] } == "idle")
        #expect(try store.statuses("idling") == ["provisioning", "idle"])
        #expect(try store.statuses("stored") == ["provisioning"])
    }
}

@Suite("Attacks: a gRPC create against a Redis that is gone or hangs", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct RedisOutageAttackTests {
    @Test("Redis killed: UNAVAILABLE within the connect timeout; Redis frozen (SIGSTOP): UNAVAILABLE within the command timeout plus the decision timeout")
    func outage() throws {
        let server = try LocalRedisServer.start()
        defer { server.stop(hard: true) }
        let url = try RedisURL(parsing: server.url)
        let names = RedisNames()
        let redis = try RedisConnection(url: url)
        let folder = try TemporaryDirectory()
        let reconciler = Reconciler(redisURL: url, names: names, backend: DirectoryBackend(root: folder.path),
                                    options: ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: 0.5), logger: Logger(label: "test"))
        let manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test"), decisionTimeout: 2) { TaggedRenderer(tag: "t1") }
        reconciler.start()
        defer { reconciler.stop() }
        _ = try redis.hset(names.configHash, field: "s1", value: config("s1", version: 1))
        _ = try manager.createAndGet(sinkID: "s1", ownerID: "o1")
        redis.close()

        // Frozen: every command waits for its timeout (5 s).
        server.process.signal(SIGSTOP)
        var started = Date()
        let frozen = try #require(throws: CollectorServiceError.self) { try manager.createAndGet(sinkID: "s1", ownerID: "o1") }
        server.process.signal(SIGCONT)
        #expect(frozen.kind == .unavailable)
        #expect(Date().timeIntervalSince(started) < 5 + 2 + 2, "bounded by the command timeout and the decision timeout")

        server.stop(hard: true)
        started = Date()
        let gone = try #require(throws: CollectorServiceError.self) { try manager.createAndGet(sinkID: "s1", ownerID: "o1") }
        #expect(gone.kind == .unavailable)
        #expect(Date().timeIntervalSince(started) < 4)
    }
}
