import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@Suite("maestro history and rollback", .testThreads, .timeLimit(.minutes(2)))
struct RolloutCommandTests {
    @Test("history lists versions with time, hash and outcome; rollback --to re-applies a good version, asks the maestro role to reconcile, and refuses what it cannot do (exit 2)")
    func historyAndRollback() throws {
        let prefix = RedisTestServer.uniquePrefix("rollcli")
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
            + ["--rollouts-hash", prefix + "rollouts", "--rollback-requests", prefix + "requests"]
        let first = "kind: List # first\n"
        let second = "kind: List # second\n"
        var history = RolloutHistory()
        history.stored(digest: RolloutHistory.digest(ofDesiredState: first), configHash: "aaaa", now: 1_700_000_000, keep: 3)
        history.reachedActive(digest: RolloutHistory.digest(ofDesiredState: first), yaml: first, configHash: "aaaa", now: 1_700_000_001, keep: 3)
        history.stored(digest: RolloutHistory.digest(ofDesiredState: second), configHash: "bbbb", now: 1_700_000_100, keep: 3)
        try redis.hset(prefix + "rollouts", field: "s1", value: history.json)
        try redis.hset(prefix + "deployments", field: "s1", value: second)

        let listed = try maestro(["history", "--sink-id", "s1"] + common)
        #expect(listed.code == 0, "\(listed.output)")
        let rows = listed.output.split(separator: "\n").map(String.init)
        #expect(rows.first?.hasPrefix("VERSION") == true, "\(listed.output)")
        #expect(rows.contains { $0.hasPrefix("1 ") && $0.contains("2023-11-14T22:13:20Z") && $0.contains(String(RolloutHistory.digest(ofDesiredState: first).prefix(12))) && $0.contains("active") }, "\(listed.output)")
        #expect(rows.contains { $0.hasPrefix("2 ") && $0.contains("pending") }, "\(listed.output)")

        #expect(try maestro(["rollback", "--sink-id", "s1", "--to", "2"] + common).code == 2, "the deployed version")
        #expect(try maestro(["rollback", "--sink-id", "s1", "--to", "5"] + common).code == 2, "no such version")
        #expect(try maestro(["rollback", "--sink-id", "nobody"] + common).code == 2, "no collector")
        #expect(try maestro(["history", "--sink-id", "nobody"] + common).code == 2)
        #expect(try redis.hget(prefix + "deployments", field: "s1") == second, "refusals change nothing")

        let rolledBack = try maestro(["rollback", "--sink-id", "s1", "--to", "1"] + common)
        #expect(rolledBack.code == 0, "\(rolledBack.output)")
        #expect(rolledBack.output.contains("version 3 re-applies version 1"), "\(rolledBack.output)")
        #expect(try redis.hget(prefix + "deployments", field: "s1") == first)
        #expect(try redis.command(["LRANGE", prefix + "requests", "0", "-1"]).array?.compactMap(\.string) == ["s1"])
        let after = try maestro(["history", "--sink-id", "s1"] + common)
        #expect(after.output.contains("manual_rollback to 1"), "\(after.output)")
        #expect(after.output.contains("held back: version 2"), "\(after.output)")
    }
}
