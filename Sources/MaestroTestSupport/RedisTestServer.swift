internal import Foundation
internal import MaestroCore

/// The Redis server tests talk to: the one the test command started (`MAESTRO_TEST_REDIS_URL`), or
/// else a private `redis-server` on a free loopback port, stopped when the test process exits.
public enum RedisTestServer {
    public static var url: String {
        get throws { try shared.get().url }
    }

    /// Key prefix unique to one test, so tests running in parallel never see each other's keys.
    public static func uniquePrefix(_ name: String = "t") -> String {
        "test:\(name):\(UUID().uuidString.prefix(8)):"
    }

    private static let shared: Result<(url: String, server: LocalRedisServer?), any Error> = Result {
        if let configured = ProcessInfo.processInfo.environment["MAESTRO_TEST_REDIS_URL"], !configured.isEmpty {
            return (configured, nil)
        }
        // Kept for the life of the process; the exit handler stops it.
        let server = try LocalRedisServer.start()
        return (server.url, server)
    }
}

