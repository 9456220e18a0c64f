import Foundation
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroCore

/// Records as the previous maestro (without a schema version) wrote them, byte for byte.
enum PreviousFormat {
    static let liveSink = #"{"last_entry_id":"7-0","owner":"o1","removed":false,"updated_at":1700000000000,"backend":"prometheus"}"#
    static let tombstone = #"{"last_entry_id":"9-0","owner":"o1","removed":true,"updated_at":1700000000000,"backend":"prometheus"}"#
    static let collector = #"{"owner_id":"o1","status":"active","error":"","collector_name":"otel-s1","namespace":"otelcollectors","config_hash":"abc","deployed_at":"2026-01-01T00:00:00Z","status_changed_at":"2026-01-01T00:00:00Z"}"#
}

/// Two maestro versions side by side during a rolling upgrade: each reads what the other wrote.
@Suite("Record schema versions", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct RecordSchemaTests {
    let names = RedisNames().prefixed(RedisTestServer.uniquePrefix("schema"))

    func connect() throws -> RedisConnection {
        let redis = try RedisConnection(url: RedisURL(parsing: try RedisTestServer.url))
        try redis.load(RedisSinkerStorage.scripts)
        return redis
    }

    @Test("sink records carry the schema version and still read without one")
    func sinkRecords() throws {
        let record = SinkRecord(ownerID: "o1", backend: "prometheus", lastEntryID: "7-0", removed: false, updatedAtMilliseconds: 1)
        #expect(try JSON.decode(record.json)["schema_version"] == .int(2))
        let previous = try #require(SinkRecord(json: PreviousFormat.liveSink))
        #expect(previous == SinkRecord(ownerID: "o1", backend: "prometheus", lastEntryID: "7-0", removed: false,
                                       updatedAtMilliseconds: 1_700_000_000_000))
    }

    @Test("the order guard and the tombstone hold over records of the previous format")
    func storeOverPreviousFormat() throws {
        let redis = try connect()
        defer { redis.close() }
        try redis.hset(names.sinksHash, field: "s1", value: PreviousFormat.liveSink)
        try redis.hset(names.sinksHash, field: "s2", value: PreviousFormat.tombstone)
        try redis.hset(names.configHash, field: "s2", value: "receivers: {}\n")
        let storage = RedisSinkerStorage(redis: redis, names: names)
        let older = SinkRecord(ownerID: "o1", backend: "prometheus", lastEntryID: "6-0", removed: false, updatedAtMilliseconds: 2)
        let newer = SinkRecord(ownerID: "o1", backend: "prometheus", lastEntryID: "8-0", removed: false, updatedAtMilliseconds: 2)
        #expect(try storage.store([SinkWrite(sinkID: "s1", orderingID: "6-0", action: .apply, record: older, configYAML: "a: 1\n"),
                                   SinkWrite(sinkID: "s1", orderingID: "8-0", action: .apply, record: newer, configYAML: "a: 2\n")])
            == [.stale, .applied])
        #expect(try redis.hget(names.configHash, field: "s1") == "a: 2\n")
        let stored = try #require(try redis.hget(names.sinksHash, field: "s1"))
        #expect(try JSON.decode(stored)["schema_version"] == .int(2), "a record written again is in the current format")
        // A tombstone of the previous format still keeps the desired state away.
        let result = try DesiredStateStore.store(redis, names: names, sinkID: "s2", configDigest: DesiredStateStore.digest(ofConfig: "receivers: {}\n"),
                                                 yaml: "kind: ConfigMap\n", ownerID: "o1", extra: [:])
        #expect(result == .tombstoned)
    }

    @Test("collector records carry the schema version; one of the previous format keeps its fields when written again")
    func collectorRecords() throws {
        let redis = try connect()
        defer { redis.close() }
        try redis.hset(names.collectorsHash, field: "s1", value: PreviousFormat.collector)
        try StatusPublisher.publish(redis, names: names, sinkID: "s1", ownerID: "", status: .error, message: "CrashLoopBackOff", streamMaxLength: 1_000)
        let upgraded = try #require(try StatusPublisher.record(redis, names: names, sinkID: "s1"))
        #expect(upgraded["schema_version"] == .int(2))
        #expect(upgraded["collector_name"] == .string("otel-s1"))
        #expect(upgraded["config_hash"] == .string("abc"))
        #expect(upgraded["status"] == .string("error"))

        try redis.hset(names.sinksHash, field: "s3", value: PreviousFormat.liveSink)
        try redis.hset(names.configHash, field: "s3", value: "receivers: {}\n")
        let result = try DesiredStateStore.store(redis, names: names, sinkID: "s3", configDigest: DesiredStateStore.digest(ofConfig: "receivers: {}\n"),
                                                 yaml: "kind: ConfigMap\n", ownerID: "o1", extra: ["collector_name": "otel-s3"])
        guard case .stored(let record) = result else {
            Issue.record("expected the desired state to be stored, got \(result)")
            return
        }
        #expect(record["schema_version"] == .int(2))
        #expect(record["collector_name"] == .string("otel-s3"))
    }
}
