import MaestroCore
import MaestroRedis
import MaestroTestSupport
import Testing

/// A sinker batch pipelines the sink-record script and the status script; after a Redis restart the
/// server knows neither, and a NOSCRIPT re-runs the whole pipeline. That is safe only if the two are
/// never known one without the other: a status command that ran in the first pass would run again.
@Suite("the sinker's scripts after a Redis restart", .testThreads, .timeLimit(.minutes(2)))
struct SinkerScriptsTests {
    @Test("the reconciler publishing first (an empty script cache) does not make the sinker's next batch publish twice")
    func statusPublishedOnceAfterPartialLoad() throws {
        let server = try LocalRedisServer.start()
        defer { server.stop(hard: true) }
        let redis = try RedisConnection(url: RedisURL(parsing: server.url))
        let names = RedisNames()
        // A restarted server's empty script cache; the reconciler publishes a status first.
        try StatusPublisher.publish(redis, names: names, sinkID: "other", ownerID: "o", status: .active, streamMaxLength: 1_000)
        let storage = RedisSinkerStorage(redis: redis, names: names)
        // An invalid config, then a fixed one, in one batch: the error is set, then cleared.
        let invalid = SinkRecord(ownerID: "o", backend: "prometheus", lastEntryID: "5-0", removed: false, updatedAtMilliseconds: 1)
        let fixed = SinkRecord(ownerID: "o", backend: "prometheus", lastEntryID: "6-0", removed: false, updatedAtMilliseconds: 2)
        let results = try storage.store([
            SinkWrite(sinkID: "s1", orderingID: "5-0", action: .apply, record: invalid, status: SinkerStatusChange(.provisioningError, message: "bad")),
            SinkWrite(sinkID: "s1", orderingID: "6-0", action: .apply, record: fixed, configYAML: "receivers: {}\n",
                      status: SinkerStatusChange(.unknown, mode: .clearError)),
        ])
        #expect(results == [.applied, .applied])
        let events = try redis.command(["XRANGE", names.statusStream, "-", "+"]).array ?? []
        let statuses = events.compactMap { event -> String? in
            let fields = (event.array?.last?.array ?? []).compactMap(\.string)
            guard let sink = fields.firstIndex(of: "sink_id"), fields[sink + 1] == "s1", let status = fields.firstIndex(of: "status") else { return nil }
            return fields[status + 1]
        }
        #expect(statuses == ["provisioning_error", "unknown"], "each status change of the batch published once")
    }

    @Test("the status of an entry the order guard refused as stale is not written (the script checks the sink's last entry)")
    func staleEntryPublishesNothing() throws {
        let redis = try RedisConnection(url: RedisURL(parsing: try RedisTestServer.url))
        let names = RedisNames().prefixed(RedisTestServer.uniquePrefix("stale-status"))
        let storage = RedisSinkerStorage(redis: redis, names: names)
        let current = SinkRecord(ownerID: "o", backend: "prometheus", lastEntryID: "6-0", removed: false, updatedAtMilliseconds: 2)
        let stale = SinkRecord(ownerID: "o", backend: "prometheus", lastEntryID: "5-0", removed: false, updatedAtMilliseconds: 1)
        #expect(try storage.store([SinkWrite(sinkID: "s1", orderingID: "6-0", action: .apply, record: current, configYAML: "receivers: {}\n",
                                             status: SinkerStatusChange(.unknown, mode: .clearError))]) == [.applied])
        #expect(try storage.store([SinkWrite(sinkID: "s1", orderingID: "5-0", action: .invalid, record: stale,
                                             status: SinkerStatusChange(.provisioningError, message: "bad"))]) == [.stale])
        #expect(try redis.command(["XLEN", names.statusStream]).integer == 0)
        #expect(try redis.hget(names.collectorsHash, field: "s1") == nil, "no collector record for the stale entry's status")
    }
}
