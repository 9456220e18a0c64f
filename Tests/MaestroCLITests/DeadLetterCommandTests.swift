import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@Suite("maestro deadletter list and replay", .testThreads, .timeLimit(.minutes(2)))
struct DeadLetterCommandTests {
    @Test("list shows reasons, never fields; replay --id puts one back with replay_of and removes it; --all the rest; unknown ids change nothing")
    func listAndReplay() throws {
        let prefix = RedisTestServer.uniquePrefix("dlcli")
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        // Dead letters as DESIGN.md describes them: stream, id, reason, plugin, deliveries, failed_at and
        // the original fields as JSON.
        func letter(_ originalID: String, sinkID: String, reason: String) throws -> String {
            let fields: Value = ["operation": "sinks.create", "sink_id": .string(sinkID), "backend": "prometheus",
                                 "config": #"{"authentication":{"password":"letter-s3cret"}}"#]
            return try redis.xadd(prefix + "dl", fields: [("stream", prefix + "sinks"), ("id", originalID), ("reason", reason),
                                                          ("plugin", "prometheus"), ("deliveries", "3"), ("failed_at", "2026-12-01T00:00:00Z"),
                                                          ("fields", try JSON.encode(fields))])
        }
        let first = try letter("1700000000000-0", sinkID: "dl-a", reason: "first reason")
        _ = try letter("1700000000001-0", sinkID: "dl-b", reason: "second reason")

        let listed = try maestro(["deadletter", "list"] + common)
        #expect(listed.code == 0, "\(listed.output)")
        #expect(listed.output.contains("first reason") && listed.output.contains("second reason"), "\(listed.output)")
        #expect(listed.output.contains("2 dead letters"), "\(listed.output)")
        #expect(!listed.output.contains("letter-s3cret"), "fields may hold credentials: never listed")

        let neither = try maestro(["deadletter", "replay"] + common)
        #expect(neither.code != 0 && neither.output.contains("--id"), "neither --id nor --all: \(neither.output)")
        let unknown = try maestro(["deadletter", "replay", "--id", "1-1"] + common)
        #expect(unknown.code != 0)
        #expect(try redis.xlen(prefix + "dl") == 2 && redis.xlen(prefix + "sinks") == 0, "an unknown id replays nothing")

        let one = try maestro(["deadletter", "replay", "--id", first] + common)
        #expect(one.code == 0, "\(one.output)")
        let replayed = try redis.xrange(prefix + "sinks")
        #expect(replayed.count == 1)
        #expect(replayed.first?["sink_id"] == "dl-a")
        #expect(replayed.first?["operation"] == "sinks.create")
        #expect(replayed.first?["replay_of"] == "1700000000000-0", "ordered as the event it was")
        #expect(one.output.contains(replayed.first?.id ?? "-"), "the new entry's id is printed")
        #expect(try redis.xrange(prefix + "dl").map { $0["reason"] } == ["second reason"], "the replayed letter left the dead-letter stream")

        let all = try maestro(["deadletter", "replay", "--all"] + common)
        #expect(all.code == 0, "\(all.output)")
        #expect(try redis.xrange(prefix + "sinks").map { $0["sink_id"] } == ["dl-a", "dl-b"])
        #expect(try redis.xrange(prefix + "sinks").last?["replay_of"] == "1700000000001-0")
        #expect(try redis.xlen(prefix + "dl") == 0)
    }
}
