import Foundation
import MaestroCore
import MaestroTestSupport
import Testing

@testable import MaestroRedis

/// A master, a replica and three sentinels on loopback (`LocalSentinelCluster`), one cluster per test.
@Suite("Redis Sentinel: discovery, confirmation, failover", .serialized, .testThreads, .timeLimit(.minutes(5)))
struct SentinelTests {
    @Test("both sets of credentials: the right ones connect to the master; a wrong one is an authentication error that shows no password")
    func credentials() throws {
        let cluster = try LocalSentinelCluster.start(dataPassword: "data-pw-1", sentinelPassword: "sentinel-pw-2")
        defer { cluster.stop() }
        let redis = try RedisConnection(url: RedisURL(parsing: cluster.url))
        try redis.command(["SET", "k", "v"])
        #expect(redis.address?.port == cluster.nodes[0].port, "the master, found through a sentinel")
        #expect(try cluster.node(0).command(["GET", "k"]).string == "v")

        for (url, secret) in [(cluster.url(sentinelPassword: "wrong-sentinel-pw"), "wrong-sentinel-pw"),
                              (cluster.url(dataPassword: "wrong-data-pw"), "wrong-data-pw")] {
            let error = try #require(throws: RedisError.self) { try RedisConnection(url: RedisURL(parsing: url)) }
            #expect(error.kind == .authentication, "\(error)")
            for password in [secret, "data-pw-1", "sentinel-pw-2"] { #expect(!error.description.contains(password), "\(error)") }
        }
        let unknown = cluster.url().replacingOccurrences(of: "/\(LocalSentinelCluster.masterName)/", with: "/no-such-master/")
        let error = try #require(throws: RedisError.self) {
            try RedisConnection(url: RedisURL(parsing: unknown), connectTimeoutMilliseconds: 300)
        }
        #expect(error.kind == .connection)
        #expect(error.message.contains("no-such-master"), "\(error)")
    }

    @Test("a master demoted under an open connection: READONLY drops the connection, and the next command finds the new master")
    func demotedMaster() throws {
        let cluster = try LocalSentinelCluster.start()
        defer { cluster.stop() }
        let redis = try RedisConnection(url: RedisURL(parsing: cluster.url), connectTimeoutMilliseconds: 20_000)
        try redis.command(["SET", "before", "1"])
        #expect(redis.address?.port == cluster.nodes[0].port)

        // Demote the master by hand, behind the sentinels' back: the connection stays open, writes answer READONLY.
        try cluster.node(0).command(["REPLICAOF", "127.0.0.1", String(cluster.nodes[1].port)])
        let refused = try #require(throws: RedisError.self) { try redis.command(["SET", "during", "1"]) }
        #expect(refused.kind == .connection, "\(refused)")
        #expect(refused.message.contains("READONLY"), "\(refused)")
        #expect(redis.isBroken, "dropped, so the next command discovers the master again")

        // Promote the replica; the sentinels notice and name it; the next command reaches it.
        try cluster.node(1).command(["REPLICAOF", "NO", "ONE"])
        #expect(eventually(timeout: 60) { (try? redis.command(["SET", "after", "1"])) != nil })
        #expect(redis.address?.port == cluster.nodes[1].port, "the write reached the promoted node")
        #expect(try cluster.node(1).command(["GET", "after"]).string == "1")
    }

    @Test("SENTINEL FAILOVER: a connection follows the new master, and a pipeline of scripts reloads them there")
    func followsFailover() throws {
        let cluster = try LocalSentinelCluster.start()
        defer { cluster.stop() }
        let redis = try RedisConnection(url: RedisURL(parsing: cluster.url), connectTimeoutMilliseconds: 20_000)
        let script = RedisScript("return redis.call('INCR', KEYS[1])")
        #expect(try redis.eval(script, keys: ["counter"], arguments: []).integer == 1)
        #expect(try redis.command(["WAIT", "1", "10000"]).integer == 1, "the replica has the counter")
        let promoted = try cluster.failover()
        #expect(promoted == 1)
        // The first command may meet the old connection closed by the failover: one retry, as every caller does.
        var reply: RedisReply?
        #expect(eventually(timeout: 30) {
            reply = try? redis.eval(script, keys: ["counter"], arguments: [])
            return reply != nil
        })
        #expect(reply?.integer == 2, "the counter replicated before the failover, and the script ran on the new master")
        #expect(redis.address?.port == cluster.nodes[1].port)
    }
}
