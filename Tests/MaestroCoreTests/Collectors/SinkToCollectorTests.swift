import Foundation
import Logging
import MaestroRedis
import MaestroValue
import MaestroTestSupport
import Testing

@testable import MaestroCore

/// The sinker's storage and the maestro role's over one set of hashes, as in Redis: what the sinker
/// stores, the reconcile reads.
final class LinkedSinkerStorage: SinkerStorage {
    let sinker = InMemorySinkerStorage()
    let collectors: InMemoryCollectorStorage

    init(collectors: InMemoryCollectorStorage) { self.collectors = collectors }

    func records(of sinkIDs: [String]) throws(RedisError) -> [String: SinkRecord] { try sinker.records(of: sinkIDs) }
    func oldestPendingEntry() throws(RedisError) -> StreamID? { try sinker.oldestPendingEntry() }

    func store(_ writes: [SinkWrite]) throws(RedisError) -> [SinkStoreResult] {
        let results = try sinker.store(writes)
        let (sinks, configs) = (sinker.sinks, sinker.configs)
        collectors.contents.withLock { contents in
            contents.sinks = sinks
            contents.configs = configs
        }
        return results
    }
}

@Suite("A sink event to its collector, end to end (in memory)", .testThreads, .timeLimit(.minutes(3)))
struct SinkToCollectorTests {
    @Test("create → the collector runs its config; update → the new config; remove → objects and record gone; an older create stays out")
    func lifecycle() throws {
        let fixture = try CollectorServiceFixture()
        fixture.reconciler.start()
        defer { fixture.reconciler.stop() }
        let storage = LinkedSinkerStorage(collectors: fixture.storage)
        let source = ScriptedConfigSource()
        let sinker = SinkEventProcessor(settings: SinkerSettings(names: RedisNames(), policy: .eager, collectors: fixture.manager,
                                                                 logger: Logger(label: "test")),
                                        configSource: source)
        func process(_ entry: StreamEntry) throws -> [EntryOutcome] {
            try sinker.process([DeliveredEntry(entry: entry, deliveries: 1, redelivered: false)], storage: storage)
        }

        #expect(try process(sinkCreate("s1", id: "1-0")) == [.acknowledged])
        #expect(eventually { fixture.manifest("s1")?.contains("exporters: {sink: s1}") == true })

        source.outcomes["s1"] = .config(yaml: "exporters: {sink: s1, version: 2}\n")
        #expect(try process(sinkUpdate("s1", id: "2-0")) == [.acknowledged])
        #expect(eventually { fixture.manifest("s1")?.contains("version: 2") == true })

        #expect(try process(sinkRemove("s1", id: "3-0")) == [.acknowledged])
        #expect(eventually { fixture.manifest("s1") == nil && fixture.contents.collectors["s1"] == nil })
        #expect(fixture.contents.desiredStates["s1"] == nil)

        #expect(try process(sinkCreate("s1", id: "2-5")) == [.skippedStale])
        #expect(fixture.settled())
        #expect(fixture.manifest("s1") == nil)
        #expect(fixture.statuses("s1") == ["provisioning"])
    }
}
