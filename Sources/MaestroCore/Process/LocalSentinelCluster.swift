public import Foundation
public import MaestroRedis

/// A Redis master, one replica and three sentinels (`redis-server --sentinel`) on free loopback ports,
/// for tests and benchmarks of failover. Every process is killed by its pid on `stop()` and, as with
/// `LocalRedisServer`, when the test process exits.
public final class LocalSentinelCluster: @unchecked Sendable {
    public static let masterName = "maestro-master"
    /// The data nodes' password (requirepass and masterauth), when given.
    public let dataPassword: String?
    /// The sentinels' own password (their requirepass), when given.
    public let sentinelPassword: String?
    /// Data nodes: [0] starts as the master, [1] as its replica. A node restarted by the test replaces its entry.
    public private(set) var nodes: [LocalRedisServer]
    public let sentinelPorts: [Int]
    private let sentinels: [ChildProcess]
    private let directory: String

    /// `redis+sentinel://` URL of the cluster, with the given credentials (the cluster's by default).
    public func url(database: Int = 0, dataPassword: String? = nil, sentinelPassword: String? = nil) -> String {
        var text = "redis+sentinel://"
        if let password = dataPassword ?? self.dataPassword { text += ":" + Self.escape(password) + "@" }
        text += sentinelPorts.map { "127.0.0.1:\($0)" }.joined(separator: ",") + "/\(Self.masterName)/\(database)"
        if let password = sentinelPassword ?? self.sentinelPassword { text += "?sentinel-password=" + Self.escape(password) }
        return text
    }

    public var url: String { url() }

    private static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }

    private init(dataPassword: String?, sentinelPassword: String?, nodes: [LocalRedisServer], sentinelPorts: [Int],
                 sentinels: [ChildProcess], directory: String) {
        self.dataPassword = dataPassword
        self.sentinelPassword = sentinelPassword
        self.nodes = nodes
        self.sentinelPorts = sentinelPorts
        self.sentinels = sentinels
        self.directory = directory
    }

    /// Starts the five processes and waits until the sentinels know the master, its replica and each
    /// other (a failover needs all three). `downAfterMilliseconds`: how long a silent master takes to be
    /// judged down.
    public static func start(dataPassword: String? = nil, sentinelPassword: String? = nil, downAfterMilliseconds: Int = 1_000,
                             timeout: TimeInterval = 60) throws -> LocalSentinelCluster {
        _ = LocalRedisServer.registerExitHandler
        let directory = NSTemporaryDirectory() + "maestro-sentinel-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let auth = dataPassword.map { ["--requirepass", $0, "--masterauth", $0] } ?? []
        let master = try LocalRedisServer.start(extraArguments: auth)
        var nodes = [master]
        var sentinels: [ChildProcess] = []
        var cluster: LocalSentinelCluster?
        do {
            nodes.append(try LocalRedisServer.start(extraArguments: auth + ["--replicaof", "127.0.0.1", String(master.port)]))
            var ports: [Int] = []
            for index in 0..<3 {
                let port = try freeLoopbackPort()
                var lines = ["port \(port)", "bind 127.0.0.1", "daemonize no", "dir \(directory)", "loglevel warning",
                             "sentinel monitor \(masterName) 127.0.0.1 \(master.port) 2",
                             "sentinel down-after-milliseconds \(masterName) \(downAfterMilliseconds)",
                             "sentinel failover-timeout \(masterName) 10000",
                             "sentinel parallel-syncs \(masterName) 1"]
                if let dataPassword { lines.append("sentinel auth-pass \(masterName) \(dataPassword)") }
                if let sentinelPassword { lines += ["requirepass \(sentinelPassword)", "sentinel sentinel-pass \(sentinelPassword)"] }
                let configPath = directory + "/sentinel-\(index).conf"
                try (lines.joined(separator: "\n") + "\n").write(toFile: configPath, atomically: true, encoding: .utf8)
                let process = try ChildProcess([try executable("redis-server"), configPath, "--sentinel"], logPath: directory + "/sentinel-\(index).log")
                LocalRedisServer.running.withLock { $0.append(process.pid) }
                sentinels.append(process)
                ports.append(port)
            }
            let started = LocalSentinelCluster(dataPassword: dataPassword, sentinelPassword: sentinelPassword, nodes: nodes,
                                               sentinelPorts: ports, sentinels: sentinels, directory: directory)
            cluster = started
            try started.waitUntilMonitored(timeout: timeout)
            return started
        } catch {
            if let cluster { cluster.stop() } else {
                nodes.forEach { $0.stop(hard: true) }
                sentinels.forEach { $0.signal(SIGKILL); $0.wait() }
            }
            throw error
        }
    }

    /// A connection to one sentinel, with the sentinels' password.
    public func sentinel(_ index: Int) throws -> RedisConnection {
        try RedisConnection(url: RedisURL(host: "127.0.0.1", port: sentinelPorts[index], password: sentinelPassword),
                            connectTimeoutMilliseconds: 1_000, commandTimeoutMilliseconds: 2_000)
    }

    /// A direct connection to a data node (not through the sentinels).
    public func node(_ index: Int) throws -> RedisConnection {
        try RedisConnection(url: RedisURL(host: "127.0.0.1", port: nodes[index].port, password: dataPassword))
    }

    /// The master's port as sentinel `index` names it.
    public func masterPort(askingSentinel index: Int = 0) throws -> Int? {
        let reply = try sentinel(index).command(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", Self.masterName])
        return reply.array.flatMap { $0.count == 2 ? $0[1].integer.map(Int.init) : nil }
    }

    /// The index in `nodes` of the node listening on `port`.
    public func nodeIndex(port: Int) -> Int? { nodes.firstIndex { $0.port == port } }

    /// The ROLE a data node reports ("master", "slave"), nil when it does not answer.
    public func role(of index: Int) -> String? {
        (try? node(index).command(["ROLE"]))?.array?.first?.string
    }

    private func waitUntilMonitored(timeout: TimeInterval) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? isMonitoredByAll()) == true { return }
            for (index, process) in sentinels.enumerated() where !process.isRunning {
                throw ProcessError("sentinel \(index) exited at start: \((try? String(contentsOfFile: directory + "/sentinel-\(index).log", encoding: .utf8)) ?? "")")
            }
            usleep(100_000)
        }
        throw ProcessError("the sentinels did not see the master, its replica and each other within \(timeout) s")
    }

    private func isMonitoredByAll() throws -> Bool {
        for index in sentinelPorts.indices {
            let connection = try sentinel(index)
            let replicas = try connection.command(["SENTINEL", "REPLICAS", Self.masterName]).array ?? []
            let others = try connection.command(["SENTINEL", "SENTINELS", Self.masterName]).array ?? []
            // A replica counts once the sentinel sees it linked to the master (no s_down, link up).
            let linked = replicas.filter { replica in
                guard let fields = replica.pairs else { return false }
                return fields["flags"]?.string == "slave" && fields["master-link-status"]?.string == "ok"
            }
            guard linked.count == 1, others.count == sentinelPorts.count - 1 else { return false }
        }
        return true
    }

    /// Forces a failover (`SENTINEL FAILOVER`) and returns once every sentinel names a new master that
    /// answers ROLE master and the old master has been turned into its replica (until then the old one
    /// still takes writes, which the failover loses); returns the new master's index in `nodes`.
    @discardableResult
    public func failover(timeout: TimeInterval = 60) throws -> Int {
        let before = try masterPort()
        try sentinel(0).command(["SENTINEL", "FAILOVER", Self.masterName])
        let promoted = try waitForNewMaster(replacing: before, timeout: timeout)
        if let old = before.flatMap(nodeIndex(port:)) {
            let deadline = Date().addingTimeInterval(timeout)
            while role(of: old) != "slave" {
                guard Date() < deadline else { throw ProcessError("the old master was not demoted within \(timeout) s") }
                usleep(100_000)
            }
        }
        return promoted
    }

    /// Waits until every reachable sentinel names a master other than `port` and that master says so.
    public func waitForNewMaster(replacing port: Int?, timeout: TimeInterval = 60) throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let named = sentinelPorts.indices.map { try? masterPort(askingSentinel: $0) }
            if let first = named.first ?? nil, first != port, named.allSatisfy({ $0 == first }),
               let index = nodeIndex(port: first), role(of: index) == "master" {
                return index
            }
            usleep(100_000)
        }
        throw ProcessError("no new master within \(timeout) s")
    }

    /// Starts a data node again on the port of `nodes[index]` (after a SIGKILL), as a replica of the
    /// node `masterIndex`, and waits until its link to the master is up.
    public func restartAsReplica(_ index: Int, of masterIndex: Int, timeout: TimeInterval = 60) throws {
        let auth = dataPassword.map { ["--requirepass", $0, "--masterauth", $0] } ?? []
        nodes[index].stop(hard: true)
        nodes[index] = try LocalRedisServer.start(extraArguments: auth + ["--replicaof", "127.0.0.1", String(nodes[masterIndex].port)],
                                                  port: nodes[index].port)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let info = try? node(index).command(["INFO", "replication"]).string, info.contains("master_link_status:up") { return }
            usleep(100_000)
        }
        throw ProcessError("the restarted node did not link to its master within \(timeout) s")
    }

    /// Kills every process (SIGKILL, by pid) and waits for them.
    public func stop() {
        for node in nodes { node.stop(hard: true) }
        for process in sentinels {
            process.signal(SIGKILL)
            process.wait()
            LocalRedisServer.running.withLock { $0.removeAll { $0 == process.pid } }
        }
    }
}
