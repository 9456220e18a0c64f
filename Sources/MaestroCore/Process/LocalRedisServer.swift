public import Foundation
internal import MaestroRedis
internal import Synchronization

/// A `redis-server` child process on a free loopback port, in its own temporary folder.
public final class LocalRedisServer: @unchecked Sendable {
    public let port: Int
    public let directory: String
    public let process: ChildProcess
    public var url: String { "redis://127.0.0.1:\(port)/0" }

    /// The servers still running, killed when the process exits; tests start and stop servers from
    /// many threads at once.
    static let running = Mutex<[pid_t]>([])
    static let registerExitHandler: Void = {
        atexit {
            for pid in LocalRedisServer.running.withLock({ $0 }) { kill(pid, SIGKILL) }
        }
    }()

    private init(port: Int, directory: String, process: ChildProcess) {
        self.port = port
        self.directory = directory
        self.process = process
    }

    /// Starts a server; `extraArguments` are passed to redis-server (e.g. `--appendonly yes`).
    /// Without a `port`, a free one is picked; redis-server cannot report a port it chose itself, so
    /// when another process takes the port first the start is tried again on a new one.
    public static func start(extraArguments: [String] = [], port requestedPort: Int? = nil, directory requestedDirectory: String? = nil) throws -> LocalRedisServer {
        _ = registerExitHandler
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try startOnce(extraArguments: extraArguments, port: try requestedPort ?? freeLoopbackPort(), directory: requestedDirectory)
            } catch let error as ProcessError where requestedPort == nil && attempt < 5 && error.exitedAtStart {
                continue
            }
        }
    }

    private static func startOnce(extraArguments: [String], port: Int, directory requestedDirectory: String?) throws -> LocalRedisServer {
        let directory = requestedDirectory ?? NSTemporaryDirectory() + "maestro-redis-\(port)-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = try ChildProcess([try executable("redis-server"), "--port", String(port), "--bind", "127.0.0.1",
                                        "--save", "", "--dir", directory, "--daemonize", "no", "--loglevel", "warning"] + extraArguments,
                                       logPath: directory + "/redis.log")
        running.withLock { $0.append(process.pid) }
        let server = LocalRedisServer(port: port, directory: directory, process: process)
        do {
            try server.waitUntilReady()
        } catch {
            server.stop(hard: true)
            throw error
        }
        return server
    }

    /// Stops the server (SIGTERM, or SIGKILL when `hard`) and waits for it.
    public func stop(hard: Bool = false) {
        if process.isRunning {
            process.signal(hard ? SIGKILL : SIGTERM)
            process.wait()
        }
        LocalRedisServer.running.withLock { $0.removeAll { $0 == process.pid } }
    }

    public func waitUntilReady(timeout: TimeInterval = 10) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            // Accepting connections is not enough: while it loads an AOF, Redis answers LOADING.
            // Still running after it answered: the answer came from this server, not another on the port.
            if Self.canConnect(port: port), Self.answers(port: port), process.isRunning { return }
            guard process.isRunning else { throw ProcessError("redis-server exited at start (is the port \(port) free?)", exitedAtStart: true) }
            usleep(20_000)
        }
        throw ProcessError("redis-server did not accept connections on port \(port) within \(timeout) s")
    }

    /// True once Redis answers commands (NOAUTH counts: it is up, it wants a password).
    static func answers(port: Int) -> Bool {
        do {
            let redis = try RedisConnection(url: RedisURL(host: "127.0.0.1", port: port))
            return try redis.ping() == "PONG"
        } catch {
            return error.kind == .authentication || (error.kind == .server && !error.message.hasPrefix("LOADING"))
        }
    }

    static func canConnect(port: Int) -> Bool {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return result == 0
    }
}

public struct ProcessError: Error, CustomStringConvertible {
    public let description: String
    /// A server exited before it was ready (its port may have been taken meanwhile).
    public let exitedAtStart: Bool
    public init(_ description: String, exitedAtStart: Bool = false) {
        self.description = description
        self.exitedAtStart = exitedAtStart
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
public func freeLoopbackPort() throws -> Int {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw ProcessError("socket() failed") }
    defer { close(descriptor) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw ProcessError("bind() failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
    }
    guard named == 0 else { throw ProcessError("getsockname() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// The full path of a program on PATH (or in /usr/sbin, /usr/bin).
public func executable(_ name: String) throws -> String {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/usr/bin:/usr/local/bin"
    for directory in path.split(separator: ":") {
        let candidate = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw ProcessError("\(name) is not installed (the Makefile installs it: make demo or make test)")
}
