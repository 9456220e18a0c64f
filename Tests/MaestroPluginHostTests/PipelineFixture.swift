import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroPluginHost

/// Names unique to one test on the shared Redis, and helpers to run the pipeline against them.
struct PipelineFixture {
    let names: RedisNames
    let redisURL: String
    let plugins: String

    init(plugins: String = repositoryRoot + "/plugins", redisURL: String? = nil, prefix: String = RedisTestServer.uniquePrefix("pipe")) throws {
        names = RedisNames().prefixed(prefix)
        self.redisURL = try redisURL ?? RedisTestServer.url
        self.plugins = plugins
    }

    func connect() throws -> RedisConnection {
        try RedisConnection(url: RedisURL(parsing: redisURL))
    }

    /// The flags that point `maestro run` at these names.
    var flags: [String] {
        ["--redis-url", redisURL, "--plugins-dir", plugins, "--kafka-url", "kafka:9092", "--sinks-stream", names.sinksStream, "--group", names.sinkerGroup,
         "--config-hash", names.configHash, "--sinks-hash", names.sinksHash, "--deployment-hash", names.deploymentHash,
         "--collectors-hash", names.collectorsHash, "--status-stream", names.statusStream,
         "--deadletter-stream", names.deadLetterStream]
    }

    func consumer(workers: Int = 2, name: String = "test-consumer", minIdleMilliseconds: Int = 60_000, maxDeliveries: Int = 3,
                  collectors: (any CollectorService)? = nil, policy: CreatePolicy = .eager, group: String? = nil,
                  blockMilliseconds: Int = 100) throws -> StreamConsumer {
        let catalog = PluginCatalog.load(root: plugins, limits: PluginCatalog.LuaLimits(instructionBudget: 5_000_000, memoryLimitBytes: 16 << 20))
        let context = SinkerContext(catalog: catalog, names: names, cipher: OrbSecretCipher(secret: "orb"), kafkaURL: "kafka:9092",
                                    policy: policy, collectors: collectors, logger: Logger(label: "test"))
        let options = StreamConsumerOptions(stream: names.sinksStream, group: group ?? names.sinkerGroup, consumerName: name, workers: workers,
                                            batchSize: 50, blockMilliseconds: blockMilliseconds, minIdleMilliseconds: minIdleMilliseconds,
                                            maxDeliveries: maxDeliveries, deadLetterStream: names.deadLetterStream)
        return StreamConsumer(options: options, redisURL: try RedisURL(parsing: redisURL), logger: Logger(label: "test"),
                              routingKey: { $0["sink_id"] ?? "" }, makeProcessor: { _ in SinkEventProcessor(context: context) })
    }

    @discardableResult
    func add(_ redis: RedisConnection, _ fields: [(String, String)]) throws -> String {
        try redis.xadd(names.sinksStream, fields: fields)
    }

    /// Waits until the group has read every entry and nothing is pending.
    func waitUntilDrained(_ redis: RedisConnection, group: String? = nil, timeout: TimeInterval = 60) throws -> Bool {
        let group = group ?? names.sinkerGroup
        return eventually(timeout: timeout) {
            guard let info = try? redis.xinfoGroups(names.sinksStream).first(where: { $0["name"]?.string == group }) else { return false }
            return info["pending"]?.integer == 0 && info["lag"]?.integer == 0
        }
    }

    func configs(_ redis: RedisConnection) throws -> [String: String] {
        try redis.hgetall(names.configHash)
    }

    func deadLetters(_ redis: RedisConnection) throws -> [StreamEntry] {
        try redis.xrange(names.deadLetterStream)
    }
}

func sinkConfig(_ host: String, user: String = "user", password: String = "secret-password") -> String {
    try! JSON.encode(["exporter": ["remote_host": .string(host)],
                      "authentication": ["type": "basicauth", "username": .string(user), "password": .string(password)]])
}

func create(_ id: String, _ config: String, backend: String = "prometheus", owner: String = "owner-1") -> [(String, String)] {
    [("sink_id", id), ("owner", owner), ("backend", backend), ("config", config), ("timestamp", "-62135596800"), ("operation", "sinks.create")]
}

func update(_ id: String, _ config: String, owner: String = "owner-1") -> [(String, String)] {
    [("sink_id", id), ("owner", owner), ("backend", ""), ("config", config), ("timestamp", "-62135596800"), ("operation", "sinks.update")]
}

func remove(_ id: String, owner: String = "owner-1") -> [(String, String)] {
    [("sink_id", id), ("owner", owner), ("operation", "sinks.remove")]
}
