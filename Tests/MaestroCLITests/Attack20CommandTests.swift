import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

/// Attacks on `maestro history` and `maestro rollback` (issue 20) with rollout histories corrupted in Redis.
@Suite("Attack: history and rollback over corrupted records (issue 20)", .testThreads, .timeLimit(.minutes(2)))
struct Attack20CommandTests {
    /// A corrupted record must not crash the program: it lists (or refuses with a clear error), never traps.
    static func survived(_ result: (code: Int32, output: String)) -> Bool {
        [0, 1, 2].contains(result.code) && !result.output.contains("Fatal error")
    }

    @Test("attack: a history record whose version number is the largest integer is listed or refused, never a crash")
    func hugeVersionNumber() throws {
        let prefix = RedisTestServer.uniquePrefix("att20cli")
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
            + ["--rollouts-hash", prefix + "rollouts", "--rollback-requests", prefix + "requests"]
        let first = "kind: List # first\n"
        let second = "kind: List # second\n"
        let firstDigest = RolloutHistory.digest(ofDesiredState: first)
        let corrupted = """
        {"versions":[{"version":9223372036854775807,"digest":"\(firstDigest)","config_hash":"aaaa","stored_at":1700000000,\
        "outcome":"active","source":"update","yaml":"kind: List # first\\n"}],"next_version":1}
        """
        try redis.hset(prefix + "rollouts", field: "s1", value: corrupted)
        try redis.hset(prefix + "deployments", field: "s1", value: second)
        let listed = try maestro(["history", "--sink-id", "s1"] + common)
        #expect(Self.survived(listed), "exit \(listed.code): \(listed.output.suffix(400))")
    }

    @Test("attack: a history record whose next version number is the largest integer: a rollback is refused or done, never a crash")
    func hugeNextVersion() throws {
        let prefix = RedisTestServer.uniquePrefix("att20cli")
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
            + ["--rollouts-hash", prefix + "rollouts", "--rollback-requests", prefix + "requests"]
        let first = "kind: List # first\n"
        let second = "kind: List # second\n"
        let corrupted = """
        {"versions":[{"version":1,"digest":"\(RolloutHistory.digest(ofDesiredState: first))","config_hash":"aaaa","stored_at":1700000000,\
        "outcome":"active","source":"update","yaml":"kind: List # first\\n"}],"next_version":9223372036854775807}
        """
        try redis.hset(prefix + "rollouts", field: "s2", value: corrupted)
        try redis.hset(prefix + "deployments", field: "s2", value: second)
        let listed = try maestro(["history", "--sink-id", "s2"] + common)
        #expect(Self.survived(listed), "exit \(listed.code): \(listed.output.suffix(400))")
        let rolledBack = try maestro(["rollback", "--sink-id", "s2", "--to", "1"] + common)
        #expect(Self.survived(rolledBack), "exit \(rolledBack.code): \(rolledBack.output.suffix(400))")
    }

    @Test("attack: --config-history 0, negative, too large or not a number is refused with a clear error and a non-zero exit", arguments: ["0", "-1", "101", "99999999999999999999", "three"])
    func configHistoryBounds(value: String) throws {
        let refused = try maestro(["history", "--sink-id", "s1", "--redis-url", try RedisTestServer.url, "--config-history=\(value)"])
        #expect(refused.code != 0, "\(refused.output)")
        #expect(refused.output.contains("config-history") && refused.output.contains(value), "\(refused.output)")
        #expect(!refused.output.contains("Fatal error"), "\(refused.output)")
    }
}
