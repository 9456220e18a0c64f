public import Logging
public import MaestroRedis
internal import Foundation
internal import Synchronization

/// The sinker's sweeps after a plugin change: at start and after every plugin reload, each live sink
/// whose record names another plugin fingerprint than its backend's plugin in use is rebuilt
/// (`SinkRebuilder`), at most `ratePerSecond` a second, so that a changed plugin rolls its collectors
/// at a pace the cluster takes rather than all at once. A reload during a sweep is picked up by the
/// next rebuild (each starts on the newest plugins), and another sweep follows.
public final class SinkRebuildLoop: Sendable {
    /// Builds the rebuilder on the loop's own thread (plugin VMs never change threads).
    public typealias Factory = @Sendable () -> SinkRebuilder

    private let redisURL: RedisURL
    private let makeRebuilder: Factory
    private let ratePerSecond: Double
    private let logger: Logger
    private let threads = BackgroundThreads()
    /// A sweep was asked for and has not started yet.
    private let requested = Mutex(true)

    /// `ratePerSecond` 0: no pause between rebuilds.
    public init(redisURL: RedisURL, ratePerSecond: Double, logger: Logger, makeRebuilder: @escaping Factory) {
        self.redisURL = redisURL
        self.ratePerSecond = ratePerSecond
        self.logger = logger
        self.makeRebuilder = makeRebuilder
    }

    /// Starts the loop; its first sweep runs at once.
    public func start() {
        threads.spawn("maestro-rebuild") { [self] in run() }
    }

    /// Another sweep, after the one running (a plugin reload).
    public func requestSweep() {
        requested.withLock { $0 = true }
        threads.wake()
    }

    /// Returns once the loop ended (after the rebuild in progress).
    public func stop() {
        _ = threads.stop(timeout: nil)
    }

    private func run() {
        let rebuilder = makeRebuilder()
        var redis: RedisConnection?
        while !threads.isStopping {
            guard threads.pause(3600, unless: { requested.withLock { $0 } }) else { return }
            guard requested.withLock({ value in
                defer { value = false }
                return value
            }) else { continue }
            do throws(RedisError) {
                let connection: RedisConnection
                if let redis { connection = redis } else { connection = try RedisConnection(url: redisURL) }
                redis = connection
                try sweep(rebuilder, redis: connection)
            } catch {
                redis?.close()
                redis = nil
                logger.warning("sink rebuild sweep failed; trying again", metadata: ["error": "\(error.message)"])
                requested.withLock { $0 = true }
                guard threads.pause(5) else { return }
            }
        }
        redis?.close()
    }

    private func sweep(_ rebuilder: SinkRebuilder, redis: RedisConnection) throws(RedisError) {
        let due = try rebuilder.candidates(redis).filter { $0.state == .pluginChanged }
        guard !due.isEmpty else { return }
        logger.info("rebuilding sinks whose plugin changed", metadata: ["sinks.count": "\(due.count)", "rebuild.rate": "\(ratePerSecond)"])
        var tally: [SinkRebuildResult.Outcome: Int] = [:]
        for (index, candidate) in due.enumerated() {
            if index > 0 && ratePerSecond > 0 {
                guard threads.pause(1 / ratePerSecond) else { return }
            }
            if threads.isStopping { return }
            tally[rebuilder.rebuild(candidate.sinkID, redis: redis, onlyIfChanged: true).outcome, default: 0] += 1
        }
        logger.info("sink rebuild sweep done", metadata: Dictionary(uniqueKeysWithValues: tally.map { ("rebuild.\($0.key.rawValue)", "\($0.value)") }))
    }
}
