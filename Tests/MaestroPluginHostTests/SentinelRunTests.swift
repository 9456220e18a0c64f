import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import Testing

/// `maestro run` through a `redis+sentinel://` URL, against a master, a replica and three sentinels.
@Suite("maestro run through Redis Sentinel", .serialized, .testThreads, .timeLimit(.minutes(8)))
struct SentinelRunTests {
    /// Adds a sink's create event and waits until a replica has it (WAIT 1): an event Orb wrote that a
    /// failover lost was never maestro's to handle. A write that fails or is not confirmed is written
    /// again (a duplicate create is harmless).
    func addReplicated(_ fixture: PipelineFixture, url: String, _ index: Int) {
        let added = eventually(timeout: 90) {
            guard let redis = try? RedisConnection(url: RedisURL(parsing: url), connectTimeoutMilliseconds: 5_000) else { return false }
            defer { redis.close() }
            guard (try? fixture.add(redis, create("sentinel-\(index)", sinkConfig("https://s.example/\(index)")))) != nil else { return false }
            return (try? redis.command(["WAIT", "1", "2000"]).integer) == 1
        }
        #expect(added, "event \(index) written and replicated")
    }

    /// The sinks 0..<count whose config is missing on the master the sentinels name now.
    func missingConfigs(_ fixture: PipelineFixture, url: String, among indexes: [Int]) throws -> [Int] {
        let redis = try RedisConnection(url: RedisURL(parsing: url), connectTimeoutMilliseconds: 10_000)
        let configs = try fixture.configs(redis)
        return indexes.filter { configs["sentinel-\($0)"] == nil }
    }

    @Test("SENTINEL FAILOVER mid-run, with both sets of credentials: maestro follows the new master and handles every event")
    func failoverMidRun() throws {
        let cluster = try LocalSentinelCluster.start(dataPassword: "data-pw-9", sentinelPassword: "sentinel-pw-8")
        defer { cluster.stop() }
        let fixture = try PipelineFixture(redisURL: cluster.url)
        let logs = try TemporaryDirectory()
        let process = try startMaestro(fixture, consumer: "sentinel-run", extra: ["--workers", "2"], log: logs.path + "/m.log")
        defer {
            process.signal(SIGTERM)
            _ = process.wait(timeout: 30)
        }
        for index in 0..<20 { addReplicated(fixture, url: cluster.url, index) }
        // Mid-run: these are still being handled when the failover starts.
        for index in 20..<40 { addReplicated(fixture, url: cluster.url, index) }
        let promoted = try cluster.failover()
        #expect(promoted == 1)
        for index in 40..<60 { addReplicated(fixture, url: cluster.url, index) }

        let redis = try RedisConnection(url: RedisURL(parsing: cluster.url), connectTimeoutMilliseconds: 10_000)
        #expect(redis.address?.port == cluster.nodes[1].port)
        #expect(try fixture.waitUntilDrained(redis, timeout: 90), "\((try? logs.read("m.log")) ?? "")")
        #expect(try missingConfigs(fixture, url: cluster.url, among: Array(0..<60)) == [])
        let deadLetters = try fixture.deadLetters(redis)
        #expect(deadLetters.isEmpty, "\(deadLetters.map { $0.fields })")
        #expect(process.isRunning)
        let log = (try? logs.read("m.log")) ?? ""
        #expect(!log.contains("data-pw-9") && !log.contains("sentinel-pw-8"), "no password in the log")
        process.signal(SIGTERM)
        #expect(process.wait(timeout: 30))
        #expect(process.exitCode == 0, "\(log)")
    }

    @Test("master SIGKILLed with --redis-wait-replicas 1 while its replica lags: nothing maestro acknowledged is lost")
    func masterKilledWithWait() throws {
        // Sentinel will not promote a replica whose link has been down for more than ten times
        // down-after: a longer down-after keeps the replica eligible however slow the machine is.
        let cluster = try LocalSentinelCluster.start(downAfterMilliseconds: 5_000)
        defer { cluster.stop() }
        let fixture = try PipelineFixture(redisURL: cluster.url)
        let logs = try TemporaryDirectory()
        let process = try startMaestro(fixture, consumer: "wait-run", extra: ["--workers", "2", "--redis-wait-replicas", "1"],
                                       log: logs.path + "/m.log")
        defer {
            process.signal(SIGTERM)
            _ = process.wait(timeout: 30)
        }
        for index in 0..<20 { addReplicated(fixture, url: cluster.url, index) }
        let master = try cluster.node(0)
        #expect(try fixture.waitUntilDrained(master, timeout: 90))

        // The replica freezes and its link is cut: what the master stores from now on is on the master
        // alone (not even in the replica's socket buffer, which it would read after resuming).
        cluster.nodes[1].process.signal(SIGSTOP)
        var resumed = false
        defer { if !resumed { cluster.nodes[1].process.signal(SIGCONT) } }
        try master.command(["CLIENT", "KILL", "TYPE", "replica"])
        for index in 20..<40 { try fixture.add(master, create("sentinel-\(index)", sinkConfig("https://s.example/\(index)"))) }
        // maestro has read every entry, and either acknowledged them all or met a WAIT short of replicas.
        #expect(eventually(timeout: 90) {
            guard let group = try? master.xinfoGroups(fixture.names.sinksStream).first(where: { $0["name"]?.string == fixture.names.sinkerGroup }),
                  group["lag"]?.integer == 0 else { return false }
            return group["pending"]?.integer == 0 || ((try? logs.read("m.log")) ?? "").contains("replicas confirmed the outcomes")
        })
        let pending = Set(try master.xpending(fixture.names.sinksStream, group: fixture.names.sinkerGroup, count: 1_000).map(\.id))
        let acknowledged = try master.xrange(fixture.names.sinksStream).filter { !pending.contains($0.id) }.compactMap { entry in
            entry["sink_id"].flatMap { Int($0.dropFirst("sentinel-".count)) }
        }

        // A hard failover: the master dies with what it alone had; the replica resumes and is promoted.
        let oldMasterPort = cluster.nodes[0].port
        cluster.nodes[0].stop(hard: true)
        cluster.nodes[1].process.signal(SIGCONT)
        resumed = true
        #expect(try cluster.waitForNewMaster(replacing: oldMasterPort, timeout: 90) == 1)
        #expect(try missingConfigs(fixture, url: cluster.url, among: acknowledged) == [],
                "every event acknowledged on the old master has its outcome on the new one")
        #expect(Set(acknowledged) == Set(0..<20), "nothing was acknowledged while no replica had the outcomes")

        // The old master comes back as a replica: WAIT is satisfied again and new events flow.
        try cluster.restartAsReplica(0, of: 1)
        for index in 40..<50 { addReplicated(fixture, url: cluster.url, index) }
        let redis = try RedisConnection(url: RedisURL(parsing: cluster.url), connectTimeoutMilliseconds: 10_000)
        #expect(try fixture.waitUntilDrained(redis, timeout: 90), "\((try? logs.read("m.log")) ?? "")")
        #expect(try missingConfigs(fixture, url: cluster.url, among: Array(0..<20) + Array(40..<50)) == [])
        #expect(process.isRunning)
    }
}
