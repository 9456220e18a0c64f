import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import Testing

@Suite("Redis killed with SIGKILL", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct RedisCrashTests {
    @Test("appendfsync always: a SIGKILL in the middle of a stream of events loses nothing Redis acknowledged; maestro resumes")
    func sigkillRestart() throws {
        let directory = try TemporaryDirectory()
        let persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        let server = try LocalRedisServer.start(extraArguments: persistence, directory: directory.path)
        defer { server.stop(hard: true) }
        let fixture = try PipelineFixture(redisURL: server.url)
        var redis = try fixture.connect()
        let logs = try TemporaryDirectory()
        let process = try startMaestro(fixture, consumer: "survivor", extra: ["--workers", "2"], log: logs.path + "/m.log")
        defer {
            process.signal(SIGTERM)
            _ = process.wait(timeout: 30)
        }
        for index in 0..<40 { try fixture.add(redis, create("kill-\(index)", sinkConfig("https://k.example/\(index)"))) }
        #expect(try fixture.waitUntilDrained(redis, timeout: 60))
        for index in 40..<60 { try fixture.add(redis, create("kill-\(index)", sinkConfig("https://k.example/\(index)"))) }
        let entries = try redis.xlen(fixture.names.sinksStream)
        let configs = try fixture.configs(redis)

        // No shutdown, no save: the process is gone at once.
        server.stop(hard: true)
        let restarted = try LocalRedisServer.start(extraArguments: persistence, port: server.port, directory: directory.path)
        defer { restarted.stop(hard: true) }
        redis = try fixture.connect()
        #expect(try redis.xlen(fixture.names.sinksStream) == entries, "every acknowledged XADD survived")
        let survived = try fixture.configs(redis)
        #expect(configs.allSatisfy { survived[$0.key] == $0.value }, "every config stored before the kill survived")

        for index in 60..<80 { try fixture.add(redis, create("kill-\(index)", sinkConfig("https://k.example/\(index)"))) }
        #expect(try fixture.waitUntilDrained(redis, timeout: 60))
        #expect(try redis.hlen(fixture.names.configHash) == 80)
        #expect(try fixture.deadLetters(redis).isEmpty)
        process.signal(SIGTERM)
        #expect(process.wait(timeout: 30))
        #expect(process.exitCode == 0, "\((try? logs.read("m.log")) ?? "")")
    }
}
