internal import Foundation
public import Logging
public import MaestroRedis
internal import Synchronization

/// Leader election for the loops that must run once (resync, status polling, orphan sweep) when the
/// collectors are not on Kubernetes: a Redis key with an expiry, held and renewed by one replica.
public final class RedisLease: Sendable {
    public let key: String
    public let holder: String
    public let ttlMilliseconds: Int
    private let redisURL: RedisURL
    private let logger: Logger
    private let state = Mutex((leader: false, renewedAt: Date.distantPast))
    private let renewer = BackgroundThreads()

    static let renewScript = RedisScript("""
    if redis.call('GET', KEYS[1]) == ARGV[1] then
      redis.call('PEXPIRE', KEYS[1], ARGV[2])
      return 1
    end
    if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
    return 0
    """)

    static let releaseScript = RedisScript("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")

    public init(key: String, holder: String, ttlMilliseconds: Int = 15_000, redisURL: RedisURL, logger: Logger) {
        self.key = key
        self.holder = holder
        self.ttlMilliseconds = ttlMilliseconds
        self.redisURL = redisURL
        self.logger = logger
    }

    /// True while this replica holds the lease (and renewed it within the expiry).
    public var isLeader: Bool {
        state.withLock { $0.leader && Date().timeIntervalSince($0.renewedAt) * 1000 < Double(ttlMilliseconds) }
    }

    /// Tries once to take or renew the lease.
    @discardableResult
    public func renew(_ redis: RedisConnection) throws(RedisError) -> Bool {
        let held = try redis.eval(Self.renewScript, keys: [key], arguments: [holder, String(ttlMilliseconds)]) == .integer(1)
        let changed = state.withLock { current -> Bool in
            defer {
                current.leader = held
                if held { current.renewedAt = Date() }
            }
            return current.leader != held
        }
        if changed { logger.info(held ? "became the leader" : "lost the leadership", metadata: ["lease.name": "\(key)", "lease.holder": "\(holder)"]) }
        return held
    }

    public func start() {
        renewer.spawn("maestro-lease") { [self] in
            var redis: RedisConnection?
            while !renewer.isStopping {
                do {
                    if redis == nil || redis!.isBroken { redis = try RedisConnection(url: redisURL) }
                    try renew(redis!)
                } catch {
                    state.withLock { $0.leader = false }
                    redis?.close()
                }
                renewer.pause(Double(ttlMilliseconds) / 3000)
            }
            // Hand the lease over at once rather than letting it expire.
            if let redis, isLeader { _ = try? redis.eval(Self.releaseScript, keys: [key], arguments: [holder]) }
            state.withLock { $0.leader = false }
            redis?.close()
        }
    }

    public func stop() {
        renewer.stop(timeout: leaseReleaseTimeout)
    }
}
