internal import Foundation
internal import Logging
internal import MaestroRedis

/// The reader thread of a consumer: creates the group, re-reads this consumer's own pending entries
/// (after every reconnect), then reads new ones; between reads it runs the group maintenance and the
/// reclaim pages. What it reads goes to the worker pool. Redis failures reconnect with backoff; NOGROUP
/// re-creates the group.
final class StreamReader: Sendable {
    private let options: StreamConsumerOptions
    private let redisURL: RedisURL
    private let logger: Logger
    private let ledger: StreamConsumerLedger
    private let workers: StreamWorkerPool
    private let reclaimer: StreamReclaimer
    private let maintenance: StreamGroupMaintenance
    private let thread = BackgroundThreads()

    init(options: StreamConsumerOptions, redisURL: RedisURL, logger: Logger, ledger: StreamConsumerLedger, workers: StreamWorkerPool) {
        self.options = options
        self.redisURL = redisURL
        self.logger = logger
        self.ledger = ledger
        self.workers = workers
        reclaimer = StreamReclaimer(options: options, logger: logger, ledger: ledger, workers: workers)
        maintenance = StreamGroupMaintenance(options: options, logger: logger, ledger: ledger)
    }

    func start() {
        thread.spawn("maestro-reader") { [self] in run() }
    }

    /// Reads nothing more once the read in progress returned; false when it still runs at the deadline.
    func stop(deadline: DispatchTime) -> Bool {
        thread.requestStop()
        return thread.waitUntilEnded(deadline: deadline)
    }

    private func run() {
        var redis: RedisConnection?
        // Own pending entries are read first, page by page from this id; nil once they are all read.
        var historyCursor: String? = "0"
        var lastMaintenance = Date.distantPast
        var scan = StreamReclaimer.Scan()
        var failures = 0
        while !thread.isStopping {
            do {
                if redis == nil || redis!.isBroken {
                    redis = try RedisConnection(url: redisURL)
                    try ensureGroup(redis!)
                    // After a reconnect, own pending entries are read again (those in flight are skipped).
                    historyCursor = "0"
                }
                let connection = redis!
                if Date().timeIntervalSince(lastMaintenance) * 1000 >= Double(min(options.minIdleMilliseconds / 2, 5_000)) {
                    lastMaintenance = Date()
                    try maintenance.run(connection)
                }
                // A reclaim scan starts every half min-idle and goes one page per turn, between reads, so a
                // large backlog flows to the workers as it is claimed.
                if scan.cursor == nil, Date().timeIntervalSince(scan.started) * 1000 >= Double(options.minIdleMilliseconds / 2) {
                    scan = StreamReclaimer.Scan(cursor: "-", started: Date())
                }
                if let cursor = scan.cursor { scan.cursor = try reclaimer.page(connection, from: cursor) }
                let entries = try connection.xreadgroup(
                    group: options.group, consumer: options.consumerName, stream: options.stream,
                    id: historyCursor ?? ">", count: options.batchSize,
                    blockMilliseconds: historyCursor == nil && scan.cursor == nil ? options.blockMilliseconds : nil)
                failures = 0
                if historyCursor != nil {
                    historyCursor = entries.last?.id
                    try dispatchOwnPending(entries, redis: connection)
                } else {
                    workers.dispatch(entries, deliveries: [:], redelivered: false)
                }
            } catch {
                if error.kind == .noGroup, let connection = redis {
                    logger.warning("consumer group missing, creating it again", metadata: ["stream.name": "\(options.stream)", "stream.group": "\(options.group)"])
                    try? ensureGroup(connection)
                    continue
                }
                failures += 1
                redis?.close()
                ledger.count { $0.reconnects += 1 }
                let delay = Backoff.streamReconnect.delay(attempt: failures)
                logger.warning("Redis unavailable, retrying", metadata: ["error": "\(error.message)", "retry.seconds": "\(delay)"])
                thread.pause(delay)
            }
        }
        redis?.close()
    }

    private func ensureGroup(_ redis: RedisConnection) throws(RedisError) {
        if try redis.xgroupCreate(options.stream, group: options.group, startID: options.groupStart, makeStream: true) {
            logger.info("consumer group created", metadata: ["stream.name": "\(options.stream)", "stream.group": "\(options.group)", "stream.start": "\(options.groupStart)"])
        }
    }

    /// Re-read own pending entries go to the workers with the delivery counts the group keeps for them.
    private func dispatchOwnPending(_ entries: [StreamEntry], redis: RedisConnection) throws(RedisError) {
        guard let first = entries.first?.id, let last = entries.last?.id else { return }
        var deliveries: [String: Int] = [:]
        for pending in try redis.xpending(options.stream, group: options.group, start: first, end: last, count: entries.count + 10) {
            deliveries[pending.id] = Int(pending.deliveries)
        }
        workers.dispatch(entries, deliveries: deliveries, redelivered: true)
    }
}

extension Backoff {
    /// Reconnecting to Redis after a failure, in a consumer's reader and workers.
    static let streamReconnect = Backoff(first: 0.1, maximum: 5)
}
