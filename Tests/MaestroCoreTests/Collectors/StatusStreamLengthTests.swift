import Foundation
import Logging
import MaestroRedis
import MaestroValue
import MaestroTestSupport
import Testing

@testable import MaestroCore

@Suite("The status stream's bound", .serialized, .testThreads, .timeLimit(.minutes(2)))
struct StatusStreamLengthTests {
    @Test("the reconcile's status events respect --stream-maxlen, as the sinker's do")
    func reconcilerTrimsTheStatusStream() throws {
        // One entry per stream node: `MAXLEN ~` can then trim to the bound itself, not a node's worth above it.
        let server = try LocalRedisServer.start(extraArguments: ["--stream-node-max-entries", "1"])
        defer { server.stop(hard: true) }
        let url = try RedisURL(parsing: server.url)
        let redis = try RedisConnection(url: url)
        defer { redis.close() }
        let names = RedisNames()
        let folder = try TemporaryDirectory()
        let reconciler = Reconciler(redisURL: url, names: names, backend: DirectoryBackend(root: folder.path),
                                    options: ReconcilerOptions(resyncInterval: 3_600, statusStreamMaxLength: 3), logger: Logger(label: "test"))
        let manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test")) { StubRenderer() }
        reconciler.start()
        defer { reconciler.stop() }
        for index in 0..<12 {
            try redis.hset(names.configHash, field: "s\(index)", value: "receivers: {}\n")
            _ = try manager.createAndGet(sinkID: "s\(index)", ownerID: "o")
        }
        #expect(eventually { reconciler.backlog == 0 })
        #expect(try manager.list().filter { $0.status == "provisioning" }.count == 12, "every collector's status was published")
        #expect(try redis.xlen(names.statusStream) <= 4, "12 status events, trimmed to about 3")
    }
}
