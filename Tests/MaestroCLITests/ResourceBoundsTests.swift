import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import Testing

/// Short versions of scripts/bounds.py: hostile sizes are handled (processed, or dead-lettered with a
/// reason) within bounded memory, and the next ordinary event is still handled.
@Suite("resource bounds", .serialized)
struct ResourceBoundsTests {
    @Test("a 10 MiB config, 100,000 headers, a 1 MiB sink id and a 10,000-field entry")
    func hostileSizes() throws {
        let directory = try TemporaryDirectory()
        let prefix = RedisTestServer.uniquePrefix("bounds")
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        let run = try ChildProcess([maestroBinary(), "run", "--redis-url", try RedisTestServer.url, "--plugins-dir", repositoryRoot + "/plugins",
                                    "--templates-dir", repositoryRoot + "/templates", "--kube-backend", "directory",
                                    "--manifests-dir", directory.path + "/manifests", "--max-deliveries", "2"] + MaestroProcess.names(prefix),
                                   logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let auth = #""authentication":{"type":"basicauth","username":"u","password":"p"}"#
        let bigConfig = #"{"exporter":{"remote_host":"https://p.example/w","padding":""# + String(repeating: "x", count: 10 << 20) + #""},"# + auth + "}"
        var headers = (0..<100_000).map { #""X-H-\#($0)":"v""# }.joined(separator: ",")
        headers = #"{"exporter":{"remote_host":"https://p.example/w","headers":{"# + headers + "}}," + auth + "}"
        let stream = prefix + "sinks"
        func create(_ sinkID: String, _ config: String, extra: [(String, String)] = []) throws {
            _ = try redis.xadd(stream, fields: [("operation", "sinks.create"), ("sink_id", sinkID), ("owner_id", "o"), ("backend", "prometheus"),
                                                ("config", config), ("timestamp", "1700000000")] + extra)
        }
        let normal = #"{"exporter":{"remote_host":"https://p.example/w"},"# + auth + "}"
        try create("big-config", bigConfig)
        try create("many-headers", headers)
        try create(String(repeating: "s", count: 1 << 20), normal)
        try create("many-fields", normal, extra: (0..<10_000).map { ("extra_\($0)", "v") })
        try create("ordinary", normal)

        #expect(eventually(timeout: 120) { ((try? redis.hget(prefix + "config", field: "ordinary")) ?? nil) != nil })
        #expect(eventually(timeout: 120) {
            guard let summary = try? redis.xpendingSummary(stream, group: prefix + "group"), summary.count == 0,
                  let groups = try? redis.xinfoGroups(stream) else { return false }
            return groups.first?["lag"]?.integer == 0
        }, "every hostile entry was handled: acknowledged or dead-lettered")
        let letters = try redis.xrange(prefix + "dl")
        for letter in letters {
            #expect(letter["reason"]?.isEmpty == false)
            #expect((letter["reason"]?.utf8.count ?? 0) < 4_096, "a reason stays short: \(letter["reason"]?.prefix(200) ?? "")")
        }
        let peak = try peakRSSMiB(run.pid)
        #expect(peak < 768, "peak RSS \(peak) MiB")
        #expect(run.isRunning)
    }
}

func peakRSSMiB(_ pid: pid_t) throws -> Double {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return Double(line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0) / 1024
    }
    return 0
}
