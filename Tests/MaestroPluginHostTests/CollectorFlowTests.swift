import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

@testable import MaestroPluginHost

/// The maestro role on a fixture: manager, reconciler and a directory backend in a temporary folder.
struct CollectorFixture {
    let pipeline: PipelineFixture
    let manifests: TemporaryDirectory
    let backend: DirectoryBackend
    let reconciler: Reconciler
    let manager: CollectorManager

    init(options: ReconcilerOptions = ReconcilerOptions(resyncInterval: 3_600)) throws {
        pipeline = try PipelineFixture()
        manifests = try TemporaryDirectory()
        backend = DirectoryBackend(root: manifests.path)
        let url = try RedisURL(parsing: pipeline.redisURL)
        reconciler = Reconciler(redisURL: url, names: pipeline.names, backend: backend, options: options, logger: Logger(label: "test"))
        manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test")) {
            try TemplateRenderer(root: repositoryRoot + "/templates")
        }
    }

    func waitUntilIdle(timeout: TimeInterval = 20) -> Bool {
        eventually(timeout: timeout) { reconciler.backlog == 0 }
    }
}

@Suite("Collectors with the directory backend", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct CollectorFlowTests {
    @Test("event in orb.sinks → config → desired state → file on disk (0600) → status; update rolls the hash; remove deletes")
    func endToEnd() throws {
        let fixture = try CollectorFixture()
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        let consumer = try fixture.pipeline.consumer(collectors: fixture.manager)
        consumer.start()
        defer { consumer.stop() }

        try fixture.pipeline.add(redis, create("My Sink/1", sinkConfig("https://one.example/w", user: "1234123", password: "a\"b: c")))
        #expect(try fixture.pipeline.waitUntilDrained(redis))
        #expect(fixture.waitUntilIdle())
        let name = CollectorNaming.name(forSinkID: "My Sink/1")
        let path = fixture.backend.path(name: name, namespace: "otelcollectors")
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let objects = try YAML.parseAll(try String(contentsOfFile: path, encoding: .utf8))
        #expect(objects.map { $0["kind"]?.stringValue ?? "" } == ["Secret", "Deployment", "Service"])
        #expect(objects.allSatisfy { $0["metadata"]?["name"] == .string(name) })
        #expect(objects[0]["metadata"]?["annotations"]?["maestro.orb.community/sink-id"] == .string("My Sink/1"))
        let storedConfig = try #require(try redis.hget(fixture.pipeline.names.configHash, field: "My Sink/1"))
        #expect(objects[0]["stringData"]?["config.yaml"] == .string(storedConfig))
        #expect(try redis.hget(fixture.pipeline.names.deploymentHash, field: "My Sink/1") != nil)
        let firstHash = objects[1]["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"]
        let info = try fixture.manager.get(sinkID: "My Sink/1")
        #expect(info.status == "provisioning")
        #expect(info.collectorName == name)
        #expect(info.namespace == "otelcollectors")
        #expect(info.ownerID == "owner-1")
        #expect(.string(info.configHash) == firstHash)

        try fixture.pipeline.add(redis, update("My Sink/1", sinkConfig("https://two.example/w")))
        #expect(try fixture.pipeline.waitUntilDrained(redis))
        #expect(fixture.waitUntilIdle())
        let updated = try YAML.parseAll(try String(contentsOfFile: path, encoding: .utf8))
        let secondHash = updated[1]["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"]
        #expect(secondHash != firstHash, "a changed config rolls the pods")
        let statuses = try redis.xrange(fixture.pipeline.names.statusStream).filter { $0["sink_id"] == "My Sink/1" }
        #expect(statuses.map { $0["status"] ?? "" } == ["provisioning"], "each status is published once")

        try fixture.pipeline.add(redis, remove("My Sink/1"))
        #expect(try fixture.pipeline.waitUntilDrained(redis))
        #expect(fixture.waitUntilIdle())
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try redis.hget(fixture.pipeline.names.deploymentHash, field: "My Sink/1") == nil)
        #expect(try redis.hget(fixture.pipeline.names.collectorsHash, field: "My Sink/1") == nil)
    }

    /// DESIGN "One reconcile, many triggers" and the status rules: with the directory backend a create
    /// has one status transition (to `provisioning`: "the directory backend never claims more"), so one
    /// status event; its record is written when the desired state is stored (the collector's name,
    /// namespace and config hash) and once by the reconcile that owns the transition — never again by a
    /// second writer of the same status.
    @Test("one create: one status event, the collector record written once per step that owns it")
    func statusWrittenOncePerTransition() throws {
        let fixture = try CollectorFixture()
        let redis = try fixture.pipeline.connect()
        let url = try RedisURL(parsing: fixture.pipeline.redisURL)
        let log = try TemporaryDirectory()
        let logPath = log.path + "/monitor.txt"
        var arguments = ["/usr/bin/env", "redis-cli", "-h", url.host, "-p", String(url.port), "-n", String(url.database)]
        if let password = url.password { arguments += ["--no-auth-warning", "-a", password] }
        let monitor = try ChildProcess(arguments + ["monitor"], logPath: logPath)
        defer {
            monitor.signal(SIGTERM)
            _ = monitor.wait()
        }
        // MONITOR answers OK once it is registered.
        #expect(eventually { (try? String(contentsOfFile: logPath, encoding: .utf8))?.hasPrefix("OK") == true })
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        let consumer = try fixture.pipeline.consumer(collectors: fixture.manager)
        consumer.start()
        defer { consumer.stop() }

        try fixture.pipeline.add(redis, create("once-1", sinkConfig("https://one.example/w")))
        #expect(try fixture.pipeline.waitUntilDrained(redis))
        #expect(fixture.waitUntilIdle())
        let recordWrite = "\"HSET\" \"\(fixture.pipeline.names.collectorsHash)\" \"once-1\""
        func recordWrites() -> [Substring] {
            ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.contains(recordWrite) }
        }
        // The reconcile's write (the one that records `applied_at`) is the create's last.
        #expect(eventually { recordWrites().contains { $0.contains("applied_at") } })
        #expect(recordWrites().count == 3, "the hand-off's intent, the reconcile's desired state, its status: \(recordWrites())")
        let statuses = try redis.xrange(fixture.pipeline.names.statusStream).filter { $0["sink_id"] == "once-1" }
        #expect(statuses.map { $0["status"] ?? "" } == ["provisioning"])
        #expect(try fixture.manager.get(sinkID: "once-1").status == "provisioning")
    }

    @Test("create twice is one collector; remove of an unknown sink succeeds; no config is NOT_FOUND; bad ids are refused")
    func serviceContract() throws {
        let fixture = try CollectorFixture()
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        try redis.hset(fixture.pipeline.names.configHash, field: "c1", value: "receivers: {}\n")
        try fixture.manager.create(sinkID: "c1", ownerID: "o")
        try fixture.manager.create(sinkID: "c1", ownerID: "o")
        #expect(fixture.waitUntilIdle())
        #expect(try fixture.backend.managedCollectors().map(\.sinkID) == ["c1"])
        try fixture.manager.remove(sinkID: "never-existed")
        let missing = try #require(throws: CollectorServiceError.self) { try fixture.manager.create(sinkID: "no-config", ownerID: "o") }
        #expect(missing.kind == .notFound)
        for bad in ["", String(repeating: "x", count: 254), "a\u{1}b"] {
            let error = try #require(throws: CollectorServiceError.self) { try fixture.manager.create(sinkID: bad, ownerID: "o") }
            #expect(error.kind == .invalidArgument)
        }
        #expect(try fixture.manager.list().map(\.sinkID) == ["c1"])
    }

    @Test("a file deleted behind maestro's back comes back on resync")
    func drift() throws {
        let fixture = try CollectorFixture()
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        try redis.hset(fixture.pipeline.names.configHash, field: "d1", value: "receivers: {}\n")
        try fixture.manager.create(sinkID: "d1", ownerID: "o")
        #expect(fixture.waitUntilIdle())
        try fixture.reconciler.resync()
        #expect(fixture.waitUntilIdle())
        #expect(fixture.reconciler.counters.driftCorrected == 0, "a resync of an unchanged collector is no drift")
        let path = fixture.backend.path(name: "otel-d1", namespace: "otelcollectors")
        try FileManager.default.removeItem(atPath: path)
        try fixture.reconciler.resync()
        #expect(fixture.waitUntilIdle())
        #expect(FileManager.default.fileExists(atPath: path))
        #expect(fixture.reconciler.counters.driftCorrected == 1)
    }

    @Test("a removal whose delete never finished (the process died between retries) is finished by the resync")
    func unfinishedRemoval() throws {
        let fixture = try CollectorFixture()
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        try redis.hset(fixture.pipeline.names.configHash, field: "u1", value: "receivers: {}\n")
        try fixture.manager.create(sinkID: "u1", ownerID: "o")
        #expect(fixture.waitUntilIdle())
        let path = fixture.backend.path(name: "otel-u1", namespace: "otelcollectors")
        #expect(FileManager.default.fileExists(atPath: path))
        // What a crash leaves: the removal recorded (intent `stop`), its reconcile never run; the desired
        // state, the objects and the status record still there.
        #expect(try DesiredStateStore.stop(redis, names: fixture.pipeline.names, sinkID: "u1", intent: .stop, guard: .always) == .removed)
        try fixture.reconciler.resync()
        #expect(fixture.waitUntilIdle())
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try redis.hget(fixture.pipeline.names.collectorsHash, field: "u1") == nil)
        #expect(try redis.hget(fixture.pipeline.names.deploymentHash, field: "u1") == nil)
    }

    @Test("the orphan sweep's guard holds when Redis is emptied: grace period, then at most the share per pass")
    func orphanGuard() throws {
        let strict = try CollectorFixture(options: ReconcilerOptions(resyncInterval: 3_600, orphanGrace: 3_600, orphanMaxShare: 0.1))
        let redis = try strict.pipeline.connect()
        strict.reconciler.start()
        defer { strict.reconciler.stop() }
        for index in 0..<20 {
            try redis.hset(strict.pipeline.names.configHash, field: "o\(index)", value: "receivers: {}\n")
            try strict.manager.create(sinkID: "o\(index)", ownerID: "o")
        }
        #expect(strict.waitUntilIdle())
        #expect(try strict.backend.managedCollectors().count == 20)
        // Redis emptied: no desired state at all.
        try redis.del(strict.pipeline.names.keys)
        try strict.reconciler.resync()
        #expect(try strict.backend.managedCollectors().count == 20, "young orphans wait for the grace period")

        let eager = Reconciler(redisURL: try RedisURL(parsing: strict.pipeline.redisURL), names: strict.pipeline.names, backend: strict.backend,
                               options: ReconcilerOptions(resyncInterval: 3_600, orphanGrace: 0, orphanMaxShare: 0.1), logger: Logger(label: "test"))
        try eager.resync()
        #expect(try strict.backend.managedCollectors().count == 18, "one sweep deletes at most 10% of the managed collectors")
        #expect(eager.counters.orphansDeleted == 2)
    }

    @Test("two replicas, one lease: the holder leads, the other takes over when it stops")
    func lease() throws {
        let url = try RedisURL(parsing: RedisTestServer.url)
        let key = RedisTestServer.uniquePrefix("lease") + "leader"
        let first = RedisLease(key: key, holder: "a", ttlMilliseconds: 3_000, redisURL: url, logger: Logger(label: "test"))
        let second = RedisLease(key: key, holder: "b", ttlMilliseconds: 3_000, redisURL: url, logger: Logger(label: "test"))
        let redis = try RedisConnection(url: url)
        #expect(try first.renew(redis))
        #expect(try second.renew(redis) == false)
        #expect(first.isLeader && !second.isLeader)
        first.start()
        second.start()
        // The holder's own loop renews the lease (its time to live jumps back up); the other replica
        // does not take it meanwhile.
        var lastTTL = try #require(try redis.command(["PTTL", key]).integer)
        #expect(eventually(timeout: 10) {
            guard let ttl = try? redis.command(["PTTL", key]).integer else { return false }
            defer { lastTTL = ttl }
            return ttl > lastTTL
        }, "the holder renews")
        #expect(first.isLeader && !second.isLeader)
        first.stop()
        #expect(eventually(timeout: 10) { second.isLeader })
        second.stop()
    }
}

@Suite("On-activity policy", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct ActivityTests {
    @Test("activity creates the collector if not running; idle removes the objects, keeps the config, status idle")
    func activityAndIdle() throws {
        let fixture = try CollectorFixture()
        let redis = try fixture.pipeline.connect()
        let names = fixture.pipeline.names
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        let sinker = try fixture.pipeline.consumer(collectors: fixture.manager, policy: .onActivity)
        sinker.start()
        defer { sinker.stop() }
        func activityConsumer(_ stream: String, _ kind: ActivityEventProcessor.Kind) throws -> StreamConsumer {
            let options = StreamConsumerOptions(stream: stream, group: names.maestroGroup, consumerName: "t", workers: 1, blockMilliseconds: 50,
                                                deadLetterStream: names.deadLetterStream)
            let manager = fixture.manager
            return StreamConsumer(options: options, redisURL: try RedisURL(parsing: fixture.pipeline.redisURL), logger: Logger(label: "test"),
                                  routingKey: { $0["sink_id"] ?? "" },
                                  makeProcessor: { _ in ActivityEventProcessor(kind: kind, manager: manager, logger: Logger(label: "test")) })
        }
        let activity = try activityConsumer(names.activityStream, .activity)
        let idle = try activityConsumer(names.idleStream, .idle)
        activity.start()
        idle.start()
        defer {
            activity.stop()
            idle.stop()
        }
        try fixture.pipeline.add(redis, create("a1", sinkConfig("https://a.example/w")))
        #expect(try fixture.pipeline.waitUntilDrained(redis))
        #expect(try redis.hget(names.deploymentHash, field: "a1") == nil, "on-activity: the config alone deploys nothing")

        try redis.xadd(names.activityStream, fields: [("owner_id", "owner-1"), ("sink_id", "a1"), ("state", "active"), ("size", "123"),
                                                      ("timestamp", "2026-11-29T10:00:00Z")])
        let path = fixture.backend.path(name: "otel-a1", namespace: "otelcollectors")
        #expect(eventually(timeout: 10) { FileManager.default.fileExists(atPath: path) })

        try redis.xadd(names.idleStream, fields: [("owner_id", "owner-1"), ("sink_id", "a1"), ("state", "idle"), ("size", "0"),
                                                  ("timestamp", "0001-01-01T00:00:00Z")])
        #expect(eventually(timeout: 10) { !FileManager.default.fileExists(atPath: path) })
        #expect(fixture.waitUntilIdle())
        #expect(try redis.hget(names.configHash, field: "a1") != nil, "idle keeps the config")
        #expect(try fixture.manager.get(sinkID: "a1").status == "idle")
        #expect(try redis.xrange(names.statusStream).last?["status"] == "idle")
        // Orb repeats idle events: the status is published once.
        try redis.xadd(names.idleStream, fields: [("owner_id", "owner-1"), ("sink_id", "a1"), ("state", "idle"), ("size", "0"),
                                                  ("timestamp", "0001-01-01T00:00:00Z")])
        #expect(eventually(timeout: 10) { idle.counters.acknowledged >= 2 })
        #expect(fixture.waitUntilIdle())
        #expect(try redis.xrange(names.statusStream).filter { $0["sink_id"] == "a1" && $0["status"] == "idle" }.count == 1, "idle is published once")

        // New activity deploys again.
        try redis.xadd(names.activityStream, fields: [("owner_id", "owner-1"), ("sink_id", "a1"), ("state", "active"), ("size", "1"),
                                                      ("timestamp", "2026-11-29T10:05:00Z")])
        #expect(eventually(timeout: 10) { FileManager.default.fileExists(atPath: path) })
        try redis.xadd(names.activityStream, fields: [("state", "active")])
        #expect(eventually(timeout: 10) { ((try? redis.xrange(names.deadLetterStream)) ?? []).contains { $0["reason"] == "missing field sink_id" } })
    }
}
