import Logging
import MaestroRedis
import MaestroValue
import Synchronization
import MaestroTestSupport
import Testing

@testable import MaestroCore

/// The backend plugins stood in for: every sink gets a config unless the test scripted another outcome.
final class ScriptedConfigSource: CollectorConfigSource {
    var outcomes: [String: CollectorConfigOutcome] = [:]
    var requests: [CollectorConfigRequest] = []

    func beginBatch(redis: RedisConnection) {}

    func collectorConfig(for request: CollectorConfigRequest) -> CollectorConfigOutcome {
        requests.append(request)
        return outcomes[request.sinkID] ?? .config(yaml: "exporters: {sink: \(request.sinkID)}\n")
    }
}

/// The maestro role stood in for: records each hand-off, and answers with the failure it is given.
final class RecordingCollectors: CollectorService {
    let calls = Mutex<[String]>([])
    let failure = Mutex<CollectorServiceError?>(nil)

    func create(sinkID: String, ownerID: String) throws(CollectorServiceError) { try record("create \(sinkID) \(ownerID)") }
    func update(sinkID: String, ownerID: String) throws(CollectorServiceError) { try record("update \(sinkID) \(ownerID)") }
    func remove(sinkID: String) throws(CollectorServiceError) { try record("remove \(sinkID)") }

    private func record(_ call: String) throws(CollectorServiceError) {
        calls.withLock { $0.append(call) }
        if let failure = failure.withLock({ $0 }) { throw failure }
    }
}

/// The sinker's rules on the in-memory storage: everything but the plugins and Redis is the real code.
struct SinkerRulesFixture {
    let storage = InMemorySinkerStorage()
    let source = ScriptedConfigSource()
    let collectors = RecordingCollectors()
    let processor: SinkEventProcessor

    init(policy: CreatePolicy = .eager) {
        processor = SinkEventProcessor(settings: SinkerSettings(names: RedisNames(), policy: policy, collectors: collectors,
                                                                logger: Logger(label: "test")),
                                       configSource: source)
    }

    func process(_ entries: StreamEntry...) throws -> [EntryOutcome] {
        try processor.process(entries.map { DeliveredEntry(entry: $0, deliveries: 1, redelivered: false) }, storage: storage)
    }
}

func sinkCreate(_ sinkID: String, id: String, owner: String = "o1") -> StreamEntry {
    entry([("sink_id", sinkID), ("owner", owner), ("backend", "prometheus"), ("config", "{}"), ("operation", "sinks.create")], id: id)
}

func sinkUpdate(_ sinkID: String, id: String, backend: String = "prometheus") -> StreamEntry {
    entry([("sink_id", sinkID), ("owner", "o1"), ("backend", backend), ("config", "{}"), ("operation", "sinks.update")], id: id)
}

func sinkRemove(_ sinkID: String, id: String) -> StreamEntry {
    entry([("sink_id", sinkID), ("owner", "o1"), ("operation", "sinks.remove")], id: id)
}

@Suite("The sinker's rules (in memory)", .testThreads, .timeLimit(.minutes(3)))
struct SinkEventProcessorTests {
    @Test("a create stores the config and the record, then hands the sink to the collectors")
    func create() throws {
        let fixture = SinkerRulesFixture()
        #expect(try fixture.process(sinkCreate("s1", id: "5-0")) == [.acknowledged])
        #expect(fixture.storage.configs["s1"] == "exporters: {sink: s1}\n")
        #expect(fixture.storage.sinks["s1"]?.lastEntryID == "5-0")
        #expect(fixture.storage.sinks["s1"]?.removed == false)
        #expect(fixture.storage.sinks["s1"]?.ownerID == "o1")
        #expect(fixture.collectors.calls.withLock { $0 } == ["create s1 o1"])
        #expect(fixture.storage.statusEvents.isEmpty, "a good config of a new sink publishes no status")
    }

    @Test("an entry older than the last one applied to its sink is skipped, in the same batch or later")
    func orderGuard() throws {
        let fixture = SinkerRulesFixture()
        #expect(try fixture.process(sinkCreate("s1", id: "9-0"), sinkRemove("s1", id: "7-0")) == [.acknowledged, .skippedStale])
        #expect(try fixture.process(sinkRemove("s1", id: "8-5")) == [.skippedStale])
        #expect(fixture.storage.configs["s1"] != nil)
        #expect(fixture.storage.sinks["s1"]?.lastEntryID == "9-0")
        #expect(fixture.collectors.calls.withLock { $0 } == ["create s1 o1"])
    }

    @Test("a removal leaves a tombstone: the config goes, the removal is handed off, an older create stays out")
    func tombstone() throws {
        let fixture = SinkerRulesFixture()
        _ = try fixture.process(sinkCreate("s1", id: "1-0"))
        #expect(try fixture.process(sinkRemove("s1", id: "3-0")) == [.acknowledged])
        #expect(fixture.storage.configs["s1"] == nil)
        #expect(fixture.storage.sinks["s1"]?.removed == true)
        #expect(fixture.storage.sinks["s1"]?.backend == "prometheus", "the tombstone keeps the backend")
        #expect(try fixture.process(sinkCreate("s1", id: "2-0")) == [.skippedStale])
        #expect(fixture.storage.configs["s1"] == nil)
        #expect(fixture.collectors.calls.withLock { $0 } == ["create s1 o1", "remove s1"])
    }

    @Test("an update of a removed sink acts as a create")
    func updateAfterRemovalCreates() throws {
        let fixture = SinkerRulesFixture()
        _ = try fixture.process(sinkCreate("s1", id: "1-0"), sinkRemove("s1", id: "2-0"))
        #expect(try fixture.process(sinkUpdate("s1", id: "3-0")) == [.acknowledged])
        #expect(fixture.source.requests.last?.operation == .create)
        #expect(fixture.collectors.calls.withLock { $0 }.last == "create s1 o1")
    }

    @Test("an update without backend of an unknown sink waits while older entries are pending, else is retried")
    func deferral() throws {
        let fixture = SinkerRulesFixture()
        fixture.storage.oldestPending = StreamID("4-0")
        let noBackend = entry([("sink_id", "s9"), ("owner", "o1"), ("backend", ""), ("config", "{}"), ("operation", "sinks.update")], id: "6-0")
        guard case .deferred? = try fixture.process(noBackend).first else {
            Issue.record("expected the update to be deferred")
            return
        }
        fixture.storage.oldestPending = StreamID("6-0")
        guard case .retry? = try fixture.process(noBackend).first else {
            Issue.record("expected the update to be retried")
            return
        }
        #expect(fixture.storage.sinks["s9"] == nil)
        #expect(fixture.collectors.calls.withLock { $0 }.isEmpty)
    }

    @Test("the status of a write the order guard refuses as stale is not published (another replica applied a newer entry meanwhile)")
    func staleWriteStatus() throws {
        let fixture = SinkerRulesFixture()
        _ = try fixture.process(sinkCreate("s1", id: "5-0"))
        let stale = SinkRecord(ownerID: "o1", backend: "prometheus", lastEntryID: "3-0", removed: false, updatedAtMilliseconds: 1)
        #expect(try fixture.storage.store([SinkWrite(sinkID: "s1", orderingID: "3-0", action: .invalid, record: stale,
                                                     status: SinkerStatusChange(.provisioningError, message: "bad"))]) == [.stale])
        #expect(fixture.storage.statusEvents.isEmpty, "\(fixture.storage.statusEvents)")
        #expect(fixture.storage.statuses["s1"]?.status != .provisioningError)
    }

    @Test("an invalid config keeps the last good one and sets provisioning_error; a good one clears it")
    func invalidConfig() throws {
        let fixture = SinkerRulesFixture()
        _ = try fixture.process(sinkCreate("s1", id: "1-0"))
        fixture.source.outcomes["s1"] = .invalid("exporter.remote_host: required")
        #expect(try fixture.process(sinkUpdate("s1", id: "2-0")) == [.acknowledged])
        #expect(fixture.storage.configs["s1"] == "exporters: {sink: s1}\n")
        #expect(fixture.storage.sinks["s1"]?.lastEntryID == "2-0")
        fixture.source.outcomes["s1"] = nil
        _ = try fixture.process(sinkUpdate("s1", id: "3-0"))
        #expect(fixture.storage.statusEvents.map { $0.status } == [.provisioningError, .unknown])
        #expect(fixture.storage.statusEvents.first?.message == "exporter.remote_host: required")
        #expect(fixture.collectors.calls.withLock { $0 } == ["create s1 o1", "update s1 o1"])
    }

    @Test("a sink whose create was invalid stays not created: an invalid update keeps it so, the next good one creates it")
    func invalidCreateStaysUncreated() throws {
        let fixture = SinkerRulesFixture()
        fixture.source.outcomes["s1"] = .invalid("tenant: required")
        _ = try fixture.process(sinkCreate("s1", id: "1-0"))
        _ = try fixture.process(sinkUpdate("s1", id: "2-0"))
        #expect(fixture.storage.sinks["s1"]?.created == false)
        #expect(fixture.storage.sinks["s1"]?.removed == false)
        fixture.source.outcomes["s1"] = nil
        _ = try fixture.process(sinkUpdate("s1", id: "3-0"))
        #expect(fixture.source.requests.map(\.operation) == [.create, .create, .create])
        #expect(fixture.storage.sinks["s1"]?.created == true)
        #expect(fixture.collectors.calls.withLock { $0 } == ["create s1 o1"])
        _ = try fixture.process(sinkUpdate("s1", id: "4-0"))
        #expect(fixture.source.requests.last?.operation == .update)
    }

    @Test("a plugin failure is retried, a terminal one dead-lettered; nothing is stored")
    func pluginFailures() throws {
        let fixture = SinkerRulesFixture()
        fixture.source.outcomes["s1"] = .failed(reason: "timeout", plugin: "prometheus", terminal: false)
        fixture.source.outcomes["s2"] = .failed(reason: "bad table", plugin: "prometheus", terminal: true)
        #expect(try fixture.process(sinkCreate("s1", id: "1-0"), sinkCreate("s2", id: "1-1"))
            == [.retry(reason: "timeout"), .deadLetter(reason: "bad table", plugin: "prometheus")])
        #expect(fixture.storage.sinks.isEmpty)
        #expect(fixture.collectors.calls.withLock { $0 }.isEmpty)
    }

    @Test("a hand-off refused because a newer event changed the sink is done; one that failed is retried")
    func handOffFailures() throws {
        let fixture = SinkerRulesFixture()
        fixture.collectors.failure.withLock { $0 = CollectorServiceError(.notFound, "sink s1 was removed") }
        #expect(try fixture.process(sinkCreate("s1", id: "1-0")) == [.acknowledged])
        fixture.collectors.failure.withLock { $0 = CollectorServiceError(.failedPrecondition, "sink s1 is live") }
        #expect(try fixture.process(sinkRemove("s1", id: "2-0")) == [.acknowledged])
        fixture.collectors.failure.withLock { $0 = CollectorServiceError(.unavailable, "Redis is unavailable") }
        #expect(try fixture.process(sinkCreate("s1", id: "3-0")) == [.retry(reason: "collector hand-off failed: Redis is unavailable")])
        #expect(fixture.storage.sinks["s1"]?.lastEntryID == "3-0", "the effect is stored before the hand-off")
    }

    @Test("under on-activity only removals are handed off")
    func onActivityPolicy() throws {
        let fixture = SinkerRulesFixture(policy: .onActivity)
        _ = try fixture.process(sinkCreate("s1", id: "1-0"), sinkUpdate("s1", id: "2-0"), sinkRemove("s1", id: "3-0"))
        #expect(fixture.storage.configs["s1"] == nil)
        #expect(fixture.collectors.calls.withLock { $0 } == ["remove s1"])
    }

    @Test("a malformed entry is dead-lettered at once; a storage failure fails the whole batch")
    func malformedAndStorageFailure() throws {
        let fixture = SinkerRulesFixture()
        guard case .deadLetter(_, let plugin)? = try fixture.process(entry([("owner", "o1"), ("operation", "sinks.create")], id: "1-0")).first,
              plugin == nil else {
            Issue.record("expected a dead letter")
            return
        }
        fixture.storage.failure = RedisError(kind: .connection, message: "gone")
        #expect(throws: RedisError.self) { try fixture.process(sinkCreate("s1", id: "2-0")) }
        #expect(fixture.storage.sinks.isEmpty)
        #expect(fixture.collectors.calls.withLock { $0 }.isEmpty)
    }
}
