import Foundation
import MaestroCore
import MaestroTestSupport
import Testing

@testable import MaestroRedis

func connect() throws -> RedisConnection {
    try RedisConnection(url: RedisURL(parsing: RedisTestServer.url))
}

@Suite("Redis URL", .testThreads, .timeLimit(.minutes(2)))
struct RedisURLTests {
    @Test("parses every documented form")
    func forms() throws {
        #expect(try RedisURL(parsing: "redis://127.0.0.1:6379/0") == RedisURL())
        #expect(try RedisURL(parsing: "redis://u%40x:p%3Ass@host:7000/3") == RedisURL(host: "host", port: 7000, username: "u@x", password: "p:ss", database: 3))
        #expect(try RedisURL(parsing: "redis://:secret@redis") == RedisURL(host: "redis", password: "secret"))
        #expect(try RedisURL(parsing: "localhost:6380") == RedisURL(host: "localhost", port: 6380))
        #expect(try RedisURL(parsing: "redis://[::1]:6379/2") == RedisURL(host: "::1", database: 2))
    }

    @Test("rejects bad URLs with a reason", arguments: ["redis://host:0", "redis://host:99999", "redis://host/x", "rediss://host", "redis://", "redis://[::1"])
    func rejects(_ text: String) {
        #expect(throws: RedisURL.ParseError.self) { try RedisURL(parsing: text) }
    }

    @Test("the description never shows the password")
    func redaction() throws {
        let url = try RedisURL(parsing: "redis://user:hunter2@host:1/0")
        #expect(!url.description.contains("hunter2"))
        #expect(url.description == "redis://user:***@host:1/0")
    }

    @Test("redis+sentinel://: the sentinels, the master's name, the database, both sets of credentials")
    func sentinelForms() throws {
        let url = try RedisURL(parsing: "redis+sentinel://app:data%40pw@s1:26380,s2,[::1]:26381/my%20master/3?sentinel-username=watch&sentinel-password=s%3Apw")
        #expect(url.username == "app")
        #expect(url.password == "data@pw")
        #expect(url.database == 3)
        #expect(url.sentinel == RedisURL.Sentinel(nodes: [RedisURL.Address(host: "s1", port: 26380), RedisURL.Address(host: "s2", port: 26379),
                                                         RedisURL.Address(host: "::1", port: 26381)],
                                                 masterName: "my master", username: "watch", password: "s:pw"))
        let plain = try RedisURL(parsing: "redis+sentinel://h:1/m")
        #expect(plain.sentinel?.masterName == "m")
        #expect(plain.database == 0)
        #expect(plain.password == nil && plain.sentinel?.password == nil)
    }

    @Test("a sentinel URL's description masks both passwords", arguments: [
        "redis+sentinel://app:hunter2@s1:26380,s2/m/1?sentinel-password=hunter3",
        "redis+sentinel://:hunter2@s1/m?sentinel-username=u&sentinel-password=hunter3",
    ])
    func sentinelRedaction(_ text: String) throws {
        let described = try RedisURL(parsing: text).description
        #expect(!described.contains("hunter2") && !described.contains("hunter3"), "\(described)")
        #expect(described.contains("sentinel-password=***"))
        #expect(try RedisURL(parsing: described).sentinel?.nodes == RedisURL(parsing: text).sentinel?.nodes, "the description parses back")
    }

    @Test("rejects bad sentinel URLs with a reason", arguments: [
        "redis+sentinel://h:26379", "redis+sentinel://h:26379/", "redis+sentinel://h:26379,/m", "redis+sentinel://h:0/m",
        "redis+sentinel://h/m/x", "redis+sentinel://h/m/0/extra", "redis+sentinel://h/m?sentinel-pasword=x", "redis+sentinel:///m",
    ])
    func rejectsSentinel(_ text: String) {
        #expect(throws: RedisURL.ParseError.self) { try RedisURL(parsing: text) }
    }
}

@Suite("Redis commands against a real server", .testThreads, .timeLimit(.minutes(2)))
struct RedisCommandTests {
    @Test("strings, expiry and keys")
    func strings() throws {
        let redis = try connect()
        let key = RedisTestServer.uniquePrefix() + "s"
        #expect(try redis.ping() == "PONG")
        #expect(try redis.get(key) == nil)
        #expect(try redis.set(key, "v\0binary\nvalue"))
        #expect(try redis.get(key) == "v\0binary\nvalue")
        #expect(try redis.set(key, "other", onlyIfAbsent: true) == false)
        #expect(try redis.set(key + "px", "x", onlyIfAbsent: true, expireMilliseconds: 60_000))
        #expect(try redis.command(["PTTL", key + "px"]).integer! > 0)
        #expect(try redis.expire(key, seconds: 100))
        #expect(try redis.del([key, key + "px", key + "none"]) == 2)
    }

    @Test("hashes: HSET, HGET, HDEL, HGETALL, HLEN, HSCAN")
    func hashes() throws {
        let redis = try connect()
        let key = RedisTestServer.uniquePrefix() + "h"
        #expect(try redis.hset(key, [("a", "1"), ("b", "2")]) == 2)
        #expect(try redis.hset(key, field: "c", value: "3") == 1)
        #expect(try redis.hget(key, field: "a") == "1")
        #expect(try redis.hget(key, field: "zz") == nil)
        #expect(try redis.hlen(key) == 3)
        #expect(try redis.hgetall(key) == ["a": "1", "b": "2", "c": "3"])
        for index in 0..<300 { try redis.hset(key, field: "f\(index)", value: "\(index)") }
        var cursor = "0"
        var seen = Set<String>()
        repeat {
            let page = try redis.hscan(key, cursor: cursor, count: 50)
            cursor = page.cursor
            for (field, _) in page.fields { seen.insert(field) }
        } while cursor != "0"
        #expect(seen.count == 303)
        #expect(try redis.hdel(key, fields: ["a", "b", "nope"]) == 2)
        let wrongType = try #require(throws: RedisError.self) { try redis.get(key) }
        #expect(wrongType.kind == .wrongType)
        try redis.del([key])
    }

    @Test("streams: groups, reads, pending, claims, info, trim")
    func streams() throws {
        let redis = try connect()
        let stream = RedisTestServer.uniquePrefix() + "stream"
        #expect(try redis.xgroupCreate(stream, group: "g", startID: "0"))
        #expect(try redis.xgroupCreate(stream, group: "g", startID: "0") == false, "BUSYGROUP is reported as false")
        var ids: [String] = []
        for index in 0..<10 {
            ids.append(try redis.xadd(stream, fields: [("n", "\(index)"), ("n", "dup")], trim: .approximateMaxLength(1000)))
        }
        #expect(try redis.xlen(stream) == 10)
        let first = try redis.xreadgroup(group: "g", consumer: "c1", stream: stream, id: ">", count: 4)
        #expect(first.map(\.id) == Array(ids[0..<4]))
        #expect(first[0]["n"] == "0")
        #expect(first[0].fields.count == 2)
        let pendingOwn = try redis.xreadgroup(group: "g", consumer: "c1", stream: stream, id: "0", count: 100)
        #expect(pendingOwn.count == 4)
        let summary = try redis.xpendingSummary(stream, group: "g")
        #expect(summary.count == 4)
        #expect(summary.consumers == ["c1": 4])
        let detail = try redis.xpending(stream, group: "g", count: 10, consumer: "c1")
        #expect(detail.map(\.id) == Array(ids[0..<4]))
        #expect(detail.allSatisfy { $0.deliveries == 2 })
        #expect(try redis.xack(stream, group: "g", ids: [ids[0], ids[1]]) == 2)
        // Claimable once idle for 10 ms: wait until Redis says so.
        #expect(eventually(timeout: 5) { ((try? redis.xpending(stream, group: "g", count: 10)) ?? []).allSatisfy { $0.idleMilliseconds >= 10 } })
        let claimed = try redis.xclaim(stream, group: "g", consumer: "c2", minIdleMilliseconds: 10, ids: [ids[2], ids[3]])
        #expect(claimed.map(\.id) == [ids[2], ids[3]])
        let reclaimed = try redis.xclaim(stream, group: "g", consumer: "c3", minIdleMilliseconds: 0, ids: [ids[2]])
        #expect(reclaimed.map(\.id) == [ids[2]])
        let groups = try redis.xinfoGroups(stream)
        #expect(groups.first?["name"]?.string == "g")
        #expect(groups.first?["pending"]?.integer == 2)
        let consumers = try redis.xinfoConsumers(stream, group: "g")
        #expect(Set(consumers.compactMap { $0["name"]?.string }) == ["c1", "c2", "c3"])
        #expect(try redis.xinfoStream(stream)["length"]?.integer == 10)
        #expect(try redis.xrange(stream, start: ids[5], end: "+", count: 2).map(\.id) == [ids[5], ids[6]])
        #expect(try redis.xgroupDelConsumer(stream, group: "g", consumer: "c1") == 0)
        let empty = try redis.xreadgroup(group: "g", consumer: "c1", stream: stream, id: ">", count: 100, blockMilliseconds: 50)
        #expect(empty.count == 6)
        let timedOut = try redis.xreadgroup(group: "g", consumer: "c1", stream: stream, id: ">", count: 100, blockMilliseconds: 50)
        #expect(timedOut.isEmpty)
        #expect(try redis.command(["XTRIM", stream, "MAXLEN", "0"]).integer == 10)
        // A pending entry that was trimmed comes back marked as deleted.
        let trimmed = try redis.xreadgroup(group: "g", consumer: "c2", stream: stream, id: "0", count: 100)
        #expect(trimmed.allSatisfy { $0.isDeleted })
        #expect(try redis.command(["XGROUP", "DESTROY", stream, "g"]).integer == 1)
        let noGroup = try #require(throws: RedisError.self) {
            try redis.xreadgroup(group: "g", consumer: "c1", stream: stream, id: ">")
        }
        #expect(noGroup.kind == .noGroup)
        try redis.del([stream])
    }

    @Test("pipelining 10,000 commands in one round trip")
    func pipelining() throws {
        let redis = try connect()
        let key = RedisTestServer.uniquePrefix() + "pipe"
        let commands = (0..<10_000).map { ["HSET", key, "f\($0)", "\($0)"] } + [["HLEN", key], ["GET", key]]
        let replies = try redis.pipeline(commands)
        #expect(replies.count == 10_002)
        #expect(replies[0] == .integer(1))
        #expect(replies[10_000] == .integer(10_000))
        guard case .error(let text) = replies[10_001] else {
            Issue.record("GET on a hash must be an error reply in place")
            return
        }
        #expect(text.hasPrefix("WRONGTYPE"))
        #expect(try redis.ping() == "PONG")
        try redis.del([key])
    }

    @Test("a WATCHed key changed by another client aborts EXEC")
    func watchConflict() throws {
        let redis = try connect()
        let other = try connect()
        let key = RedisTestServer.uniquePrefix() + "w"
        try redis.set(key, "1")
        try redis.command(["WATCH", key])
        try other.set(key, "2")
        #expect(try redis.transaction([["SET", key, "3"]]) == nil)
        #expect(try redis.get(key) == "2")
        try redis.command(["WATCH", key])
        let results = try #require(try redis.transaction([["SET", key, "4"], ["GET", key]]))
        #expect(results == [.status("OK"), .bulk(Array("4".utf8))])
        let aborted = try #require(throws: RedisError.self) { try redis.transaction([["SET", key], ["GET", key]]) }
        #expect(aborted.kind == .server)
        try redis.del([key])
    }

    @Test("scripts run by digest and reload after SCRIPT FLUSH")
    func scripts() throws {
        // SCRIPT FLUSH drops every client's scripts: only on a private server, never the shared one.
        let server = try LocalRedisServer.start()
        defer { server.stop() }
        let redis = try RedisConnection(url: RedisURL(parsing: server.url))
        let key = RedisTestServer.uniquePrefix() + "cas"
        let script = RedisScript("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0")
        try redis.set(key, "a")
        #expect(try redis.eval(script, keys: [key], arguments: ["a", "b"]) == .integer(1))
        #expect(try redis.eval(script, keys: [key], arguments: ["a", "c"]) == .integer(0))
        try redis.command(["SCRIPT", "FLUSH"])
        #expect(try redis.eval(script, keys: [key], arguments: ["b", "d"]) == .integer(1))
        let missing = try #require(throws: RedisError.self) { try redis.evalsha(String(repeating: "0", count: 40), keys: [], arguments: []) }
        #expect(missing.kind == .noScript)
        try redis.del([key])
    }

    @Test("a pipeline of scripts and a script alone recover after another client's SCRIPT FLUSH")
    func scriptsAfterAnotherClientsFlush() throws {
        // SCRIPT FLUSH drops every client's scripts: only on a private server, never the shared one.
        let server = try LocalRedisServer.start()
        defer { server.stop() }
        let redis = try RedisConnection(url: RedisURL(parsing: server.url))
        let other = try RedisConnection(url: RedisURL(parsing: server.url))
        let increment = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        let append = RedisScript("return redis.call('APPEND', KEYS[1], ARGV[1])")
        // The digest computed here is the one Redis computes.
        #expect(try other.scriptLoad(increment.source) == increment.sha)
        let commands = [increment.command(keys: ["count"], arguments: ["2"]), ["SET", "plain", "x"],
                        append.command(keys: ["text"], arguments: ["ab"])]
        // Unknown to the server again: the pipeline gets NOSCRIPT, loads both scripts and runs again.
        try other.command(["SCRIPT", "FLUSH"])
        #expect(try redis.pipeline(commands, loading: [increment, append]) == [.integer(2), .status("OK"), .integer(2)])
        try other.command(["SCRIPT", "FLUSH"])
        #expect(try redis.pipeline(commands, loading: [increment, append]) == [.integer(4), .status("OK"), .integer(4)])
        try other.command(["SCRIPT", "FLUSH"])
        #expect(try redis.eval(increment, keys: ["count"], arguments: ["3"]) == .integer(7))
        #expect(try redis.command(["SCRIPT", "EXISTS", increment.sha, append.sha]) == .array([.integer(1), .integer(0)]))
        // A script's own error is thrown, not mistaken for a missing script.
        try redis.set("text", "not a number")
        let failure = try #require(throws: RedisError.self) { try redis.eval(increment, keys: ["text"], arguments: ["1"]) }
        #expect(failure.kind != .noScript)
    }

    @Test("a connection dropped mid-command is a typed error; the next command reconnects")
    func droppedConnection() throws {
        let redis = try connect()
        let killer = try connect()
        let stream = RedisTestServer.uniquePrefix() + "drop"
        try redis.xgroupCreate(stream, group: "g")
        let clientID = try #require(try redis.command(["CLIENT", "ID"]).integer)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: RedisError?
        let thread = Thread {
            do {
                _ = try redis.xreadgroup(group: "g", consumer: "c", stream: stream, id: ">", blockMilliseconds: 5_000)
            } catch {
                failure = error as? RedisError
            }
            done.signal()
        }
        thread.start()
        // Kill it once Redis shows the client blocked in its read.
        #expect(eventually(timeout: 5) {
            let line = (try? killer.command(["CLIENT", "LIST", "ID", String(clientID)]).string) ?? ""
            return line.contains("cmd=xreadgroup") && line.contains("flags=b")
        })
        try killer.command(["CLIENT", "KILL", "ID", String(clientID)])
        done.wait()
        #expect(failure?.kind == .connection)
        #expect(redis.isBroken)
        #expect(try redis.ping() == "PONG")
        try redis.del([stream])
    }

    @Test("a command timeout is typed and drops the connection")
    func timeout() throws {
        let server = try LocalRedisServer.start()
        defer { server.stop() }
        let redis = try RedisConnection(url: RedisURL(parsing: server.url), commandTimeoutMilliseconds: 100)
        try RedisConnection(url: RedisURL(parsing: server.url)).command(["CLIENT", "PAUSE", "400", "ALL"])
        let error = try #require(throws: RedisError.self) { try redis.command(["PING"]) }
        #expect(error.kind == .timeout)
        // Once the pause is over, the next command reconnects and succeeds.
        #expect(eventually(timeout: 5) { (try? redis.ping()) == "PONG" })
    }

    @Test("connection refused is a typed error")
    func refused() throws {
        let port = try freeLoopbackPort()
        let error = try #require(throws: RedisError.self) { try RedisConnection(url: RedisURL(host: "127.0.0.1", port: port)) }
        #expect(error.kind == .connection)
    }

    @Test("AUTH and SELECT from the URL")
    func authentication() throws {
        let server = try LocalRedisServer.start(extraArguments: ["--requirepass", "s3cret"])
        defer { server.stop() }
        let denied = try #require(throws: RedisError.self) { try RedisConnection(url: RedisURL(host: "127.0.0.1", port: server.port, password: "wrong")) }
        #expect(denied.kind == .authentication)
        #expect(!denied.message.contains("wrong"))
        let redis = try RedisConnection(url: RedisURL(host: "127.0.0.1", port: server.port, password: "s3cret", database: 5))
        let key = RedisTestServer.uniquePrefix() + "k"
        try redis.set(key, "v")
        #expect(try redis.command(["CLIENT", "INFO"]).string?.contains("db=5") == true)
        #expect(try RedisConnection(url: RedisURL(host: "127.0.0.1", port: server.port, password: "s3cret", database: 0)).get(key) == nil,
                "the key went to database 5")
    }
}
