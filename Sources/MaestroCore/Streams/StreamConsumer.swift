public import Foundation
public import Logging
public import MaestroRedis
internal import MaestroValue
internal import Synchronization
internal import CoreMetrics

/// An entry handed to a processor, with how many times the group has delivered it.
public struct DeliveredEntry: Sendable {
    public var entry: StreamEntry
    public var deliveries: Int
    /// True when this consumer re-read it from its pending list or reclaimed it from another consumer.
    public var redelivered: Bool
    /// When it was first deferred (waiting on older pending entries).
    var deferredSince: Date?
}

/// What became of an entry.
public enum EntryOutcome: Sendable, Equatable {
    /// Handled and its effects stored: acknowledge it.
    case acknowledged
    /// Handled, but a newer entry of the same sink was applied already: acknowledge, count as stale.
    case skippedStale
    /// A handler failure (a plugin's `error()`): retry after a capped backoff, counting a delivery.
    case retry(reason: String)
    /// May depend on an older entry still pending in the group: retry later without counting a delivery.
    case deferred(reason: String)
    /// Malformed or terminally failed: dead-letter now.
    case deadLetter(reason: String, plugin: String?)
}

/// The work done for a batch of entries, on one worker's thread with that worker's own connection.
/// Outcomes come back in the batch's order. A thrown `RedisError` means "nothing of this batch is
/// known to be stored": the batch is tried again after reconnecting.
public protocol StreamBatchProcessor: AnyObject {
    func process(_ batch: [DeliveredEntry], redis: RedisConnection) throws(RedisError) -> [EntryOutcome]
}

public struct StreamConsumerOptions: Sendable {
    public var stream: String
    public var group: String
    /// Where a new group starts: `0` (everything in the stream) or `$` (only new entries).
    public var groupStart: String
    public var consumerName: String
    public var workers: Int
    public var batchSize: Int
    public var blockMilliseconds: Int
    /// Entries idle this long in another consumer's pending list are reclaimed.
    public var minIdleMilliseconds: Int
    public var maxDeliveries: Int
    public var deadLetterStream: String
    /// `MAXLEN ~` for the streams maestro writes.
    public var streamMaxLength: Int
    /// Consumers idle this long with nothing pending are removed from the group.
    public var consumerRemovalMilliseconds: Int

    public init(stream: String, group: String, groupStart: String = "0", consumerName: String, workers: Int = 1,
                batchSize: Int = 200, blockMilliseconds: Int = 1_000, minIdleMilliseconds: Int = 60_000, maxDeliveries: Int = 5,
                deadLetterStream: String = "orb.maestro.deadletter", streamMaxLength: Int = 100_000,
                consumerRemovalMilliseconds: Int? = nil) {
        self.stream = stream
        self.group = group
        self.groupStart = groupStart
        self.consumerName = consumerName
        self.workers = max(1, workers)
        self.batchSize = max(1, batchSize)
        self.blockMilliseconds = blockMilliseconds
        self.minIdleMilliseconds = minIdleMilliseconds
        self.maxDeliveries = max(1, maxDeliveries)
        self.deadLetterStream = deadLetterStream
        self.streamMaxLength = streamMaxLength
        self.consumerRemovalMilliseconds = consumerRemovalMilliseconds ?? max(10 * minIdleMilliseconds, 3_600_000)
    }

    /// Retries of handler failures back off from 100 ms, doubling, capped well below the min-idle time
    /// so that a live consumer's entry is never reclaimed while it waits.
    var retryCapMilliseconds: Int { max(100, min(5_000, minIdleMilliseconds / 4)) }
}

/// Counters of what the consumer did; read by metrics and tests.
public struct StreamConsumerCounters: Sendable, Equatable {
    public var acknowledged = 0
    public var skippedStale = 0
    public var retried = 0
    public var deferred = 0
    public var deadLettered = 0
    public var reclaimed = 0
    public var reconnects = 0
    /// Entries trimmed from the stream before this group read them (XINFO GROUPS lag).
    public var trimmedBeforeRead = 0

    public init() {}
}

/// Consumes one stream in a consumer group and loses nothing (DESIGN "Redis: names and rules"): own
/// pending entries first, then new ones; entries of dead consumers reclaimed after the min-idle time;
/// acknowledgement only after the processor stored the effects; dead letters written and acknowledged
/// in one MULTI/EXEC; NOGROUP re-creates the group; a lost connection reconnects with backoff.
///
/// One reader thread reads in batches and routes each entry by a hash of its routing key (the sink
/// id), so one sink's entries are handled in order by one worker; each worker thread owns its
/// processor and its Redis connection.
public final class StreamConsumer: Sendable {
    public let options: StreamConsumerOptions
    private let redisURL: RedisURL
    private let logger: Logger
    private let routingKey: @Sendable (StreamEntry) -> String
    private let makeProcessor: @Sendable (Int) throws -> any StreamBatchProcessor
    private let state = Mutex(State())
    private let queues: [WorkQueue]
    private let finished = DispatchGroup()
    private let readerFinished = DispatchGroup()

    struct State {
        var stopping = false
        var started = false
        var inFlight: Set<String> = []
        var counters = StreamConsumerCounters()
        var lastTrimWarning = ""
    }

    public init(options: StreamConsumerOptions, redisURL: RedisURL, logger: Logger,
                routingKey: @escaping @Sendable (StreamEntry) -> String,
                makeProcessor: @escaping @Sendable (_ worker: Int) throws -> any StreamBatchProcessor) {
        self.options = options
        self.redisURL = redisURL
        self.logger = logger
        self.routingKey = routingKey
        self.makeProcessor = makeProcessor
        queues = (0..<options.workers).map { _ in WorkQueue(capacity: options.batchSize * 2) }
    }

    public var counters: StreamConsumerCounters { state.withLock { $0.counters } }

    /// Starts the reader and the workers on threads of their own.
    public func start() {
        let alreadyStarted = state.withLock { state -> Bool in
            defer { state.started = true }
            return state.started
        }
        guard !alreadyStarted else { return }
        for index in 0..<options.workers {
            finished.enter()
            startThread(name: "maestro-worker-\(index)") { [self] in
                defer { finished.leave() }
                runWorker(index)
            }
        }
        finished.enter()
        readerFinished.enter()
        startThread(name: "maestro-reader") { [self] in
            defer {
                readerFinished.leave()
                finished.leave()
            }
            runReader()
        }
    }

    /// Stops reading; entries delivered to this consumer (being handled or queued) finish and are
    /// acknowledged; those waiting for a retry stay pending for the next start. Returns when every
    /// thread has ended (or the timeout passed: false).
    @discardableResult
    public func stop(timeout: TimeInterval = 30) -> Bool {
        let deadline = DispatchTime.now() + timeout
        state.withLock { $0.stopping = true }
        // The queues close only once the reader is done: a read that was blocked when the stop came
        // may still return entries, which are then delivered to this consumer and must be handled.
        _ = readerFinished.wait(timeout: deadline)
        for queue in queues { queue.close() }
        return finished.wait(timeout: deadline) == .success
    }

    /// Whether `stop` was called.
    public var isStopRequested: Bool { state.withLock { $0.stopping } }

    /// Entries delivered to this consumer and not yet acknowledged (or waiting for a retry).
    public var inFlightCount: Int { state.withLock { $0.inFlight.count } }

    private var isStopping: Bool { state.withLock { $0.stopping } }

    private func startThread(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread(block: body)
        thread.name = name
        // Lua and YAML recursion run on these threads; give them a main-thread-sized stack.
        thread.stackSize = 16 << 20
        thread.start()
    }

    // MARK: reader

    private func runReader() {
        var redis: RedisConnection?
        // Own pending entries are read first, page by page from this id; nil once they are all read.
        var historyCursor: String? = "0"
        var lastMaintenance = Date.distantPast
        var scan = ReclaimScan()
        var failures = 0
        while !isStopping {
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
                    try maintain(connection)
                }
                // A reclaim scan starts every half min-idle and goes one page per turn, between reads, so a
                // large backlog flows to the workers as it is claimed.
                if scan.cursor == nil, Date().timeIntervalSince(scan.started) * 1000 >= Double(options.minIdleMilliseconds / 2) {
                    scan = ReclaimScan(cursor: "-", started: Date())
                }
                if let cursor = scan.cursor { scan.cursor = try reclaimPage(connection, from: cursor) }
                let entries = try connection.xreadgroup(
                    group: options.group, consumer: options.consumerName, stream: options.stream,
                    id: historyCursor ?? ">", count: options.batchSize,
                    blockMilliseconds: historyCursor == nil && scan.cursor == nil ? options.blockMilliseconds : nil)
                failures = 0
                if historyCursor != nil {
                    historyCursor = entries.last?.id
                    try dispatch(entries, redis: connection, redelivered: true)
                } else {
                    try dispatch(entries, redis: connection, redelivered: false)
                }
            } catch {
                if error.kind == .noGroup, let connection = redis {
                    logger.warning("consumer group missing, creating it again", metadata: ["stream": "\(options.stream)", "group": "\(options.group)"])
                    try? ensureGroup(connection)
                    continue
                }
                failures += 1
                redis?.close()
                state.withLock { $0.counters.reconnects += 1 }
                let delay = min(5.0, 0.05 * pow(2.0, Double(min(failures, 10))))
                logger.warning("Redis unavailable, retrying", metadata: ["error": "\(error.message)", "retry.seconds": "\(delay)"])
                Thread.sleep(forTimeInterval: delay)
            }
        }
        redis?.close()
    }

    private func ensureGroup(_ redis: RedisConnection) throws(RedisError) {
        if try redis.xgroupCreate(options.stream, group: options.group, startID: options.groupStart, makeStream: true) {
            logger.info("consumer group created", metadata: ["stream": "\(options.stream)", "group": "\(options.group)", "start": "\(options.groupStart)"])
        }
    }

    /// Hands entries to their workers; re-read and reclaimed ones carry their delivery counts. Returns
    /// how many were not in flight here already.
    @discardableResult
    private func dispatch(_ entries: [StreamEntry], redis: RedisConnection, redelivered: Bool,
                          knownDeliveries: [String: Int]? = nil) throws(RedisError) -> Int {
        guard !entries.isEmpty else { return 0 }
        var counts: [String: Int] = knownDeliveries ?? [:]
        if redelivered, knownDeliveries == nil, let first = entries.first?.id, let last = entries.last?.id {
            for pending in try redis.xpending(options.stream, group: options.group, start: first, end: last, count: entries.count + 10) {
                counts[pending.id] = Int(pending.deliveries)
            }
        }
        let fresh = state.withLock { state -> [StreamEntry] in
            let fresh = entries.filter { !state.inFlight.contains($0.id) }
            for entry in fresh { state.inFlight.insert(entry.id) }
            return fresh
        }
        for entry in fresh {
            let delivered = DeliveredEntry(entry: entry, deliveries: counts[entry.id] ?? 1, redelivered: redelivered)
            let worker = entry.isDeleted ? 0 : Int(stableHash(routingKey(entry)) % UInt64(options.workers))
            if !queues[worker].push(delivered) {
                // Closed because the shutdown timeout passed: the entry stays pending for the next start.
                state.withLock { _ = $0.inFlight.remove(entry.id) }
            }
        }
        return fresh.count
    }

    /// Pending entries one reclaim page looks at.
    static let reclaimPageSize = 1_000

    /// The reclaim scan over the group's pending entries: `cursor` is where the next page starts, nil
    /// between scans.
    private struct ReclaimScan {
        var cursor: String?
        var started = Date.distantPast
    }

    /// One page of the reclaim scan: other consumers' entries idle past min-idle are claimed and handed
    /// to the workers at once. This consumer's own entries are never claimed (that would count a
    /// delivery each time); those still in flight have their idle time reset once past a quarter of
    /// min-idle (XCLAIM JUSTID, which counts none; scans run every half min-idle), so no other
    /// replica takes them. Returns where the next page starts, nil at the end.
    private func reclaimPage(_ redis: RedisConnection, from cursor: String) throws(RedisError) -> String? {
        let refreshAfter = options.minIdleMilliseconds / 4
        let page = try redis.xpending(options.stream, group: options.group, start: cursor, end: "+", count: Self.reclaimPageSize,
                                      minIdleMilliseconds: refreshAfter)
        guard let last = page.last else { return nil }
        let inFlight = state.withLock { $0.inFlight }
        let own = page.filter { $0.consumer == options.consumerName && inFlight.contains($0.id) }.map(\.id)
        if !own.isEmpty {
            _ = try redis.command(["XCLAIM", options.stream, options.group, options.consumerName, String(refreshAfter)] + own + ["JUSTID"])
        }
        let others = page.filter { $0.consumer != options.consumerName && $0.idleMilliseconds >= Int64(options.minIdleMilliseconds) }
        if !others.isEmpty {
            let claimed = try redis.xclaim(options.stream, group: options.group, consumer: options.consumerName,
                                           minIdleMilliseconds: options.minIdleMilliseconds, ids: others.map(\.id))
            let claimedIDs = Set(claimed.map(\.id))
            let missing = others.map(\.id).filter { !claimedIDs.contains($0) }
            if !missing.isEmpty {
                // Not claimed: taken by another replica meanwhile, or deleted from the stream (trimmed);
                // a deleted entry has nothing left to handle and leaves the pending list.
                let replies = try redis.pipeline(missing.map { ["XRANGE", options.stream, $0, $0] })
                let deleted = zip(missing, replies).filter { $0.1.array?.isEmpty == true }.map(\.0)
                if !deleted.isEmpty {
                    _ = try redis.command(["XACK", options.stream, options.group] + deleted)
                    state.withLock { $0.counters.trimmedBeforeRead += deleted.count }
                    Counter(label: "maestro_stream_trimmed_total", dimensions: [("stream", options.stream)]).increment(by: deleted.count)
                    logger.warning("pending entries were trimmed from the stream before they were handled",
                                   metadata: ["stream": "\(options.stream)", "count": "\(deleted.count)"])
                }
            }
            let deliveries = Dictionary(others.map { ($0.id, Int($0.deliveries) + 1) }, uniquingKeysWith: { first, _ in first })
            let dispatched = try dispatch(claimed, redis: redis, redelivered: true, knownDeliveries: deliveries)
            if dispatched > 0 {
                state.withLock { $0.counters.reclaimed += dispatched }
                logger.info("reclaimed entries of a consumer idle longer than the min-idle time",
                            metadata: ["stream": "\(options.stream)", "count": "\(dispatched)"])
            }
        }
        return page.count < Self.reclaimPageSize ? nil : "(" + last.id
    }

    /// Removes idle consumers and reports trimmed entries.
    private func maintain(_ redis: RedisConnection) throws(RedisError) {
        for consumer in try redis.xinfoConsumers(options.stream, group: options.group) {
            guard let name = consumer["name"]?.string, name != options.consumerName,
                  consumer["pending"]?.integer == 0, let idle = consumer["idle"]?.integer,
                  idle > Int64(options.consumerRemovalMilliseconds) else { continue }
            try redis.xgroupDelConsumer(options.stream, group: options.group, consumer: name)
            logger.info("removed an idle consumer with nothing pending", metadata: ["consumer": "\(name)"])
        }

        try reportTrimmedBeforeRead(redis)
    }

    /// Entries trimmed (MAXLEN) before this group read them. Trimming removes from the head, so such a
    /// gap exists only while the group's last-delivered id is older than the stream's first entry; its
    /// size is what was added, less what the group read, less what is still in the stream. (Redis 7.0
    /// does not move `max-deleted-entry-id` on trims, so that field cannot tell.)
    private func reportTrimmedBeforeRead(_ redis: RedisConnection) throws(RedisError) {
        let info = try redis.xinfoStream(options.stream)
        guard let length = info["length"]?.integer, let added = info["entries-added"]?.integer,
              let first = (info["recorded-first-entry-id"]?.string ?? info["first-entry"]?.array?.first?.string).flatMap(StreamID.init),
              let group = try redis.xinfoGroups(options.stream).first(where: { $0["name"]?.string == options.group }),
              let lastDelivered = group["last-delivered-id"]?.string.flatMap(StreamID.init),
              lastDelivered < first else { return }
        let trimmed = added - (group["entries-read"]?.integer ?? 0) - length
        guard trimmed > 0 else { return }
        let gap = "\(lastDelivered)..\(first)"
        let isNew = state.withLock { state -> Bool in
            defer { state.lastTrimWarning = gap }
            return state.lastTrimWarning != gap
        }
        guard isNew else { return }
        state.withLock { $0.counters.trimmedBeforeRead += Int(trimmed) }
        Counter(label: "maestro_stream_trimmed_total", dimensions: [("stream", options.stream)]).increment(by: Int(trimmed))
        logger.warning("entries were trimmed from the stream before this group read them; raise the producer's MAXLEN",
                       metadata: ["stream": "\(options.stream)", "entries": "\(trimmed)",
                                  "gap.after": "\(lastDelivered)", "gap.before": "\(first)"])
    }

    // MARK: workers

    private struct Waiting {
        var delivered: DeliveredEntry
        var due: Date
    }

    private func runWorker(_ index: Int) {
        let processor: any StreamBatchProcessor
        do {
            processor = try makeProcessor(index)
        } catch {
            logger.critical("worker cannot start", metadata: ["worker": "\(index)", "error": "\(error)"])
            return
        }
        var redis: RedisConnection?
        var waiting: [Waiting] = []
        let queue = queues[index]
        while true {
            let now = Date()
            var batch = waiting.filter { $0.due <= now }.map(\.delivered)
            waiting.removeAll { $0.due <= now }
            let nextDue = waiting.map(\.due).min()
            let timeout = batch.isEmpty ? (nextDue.map { max(0.001, $0.timeIntervalSinceNow) } ?? 0.5) : 0
            let room = max(1, options.batchSize - batch.count)
            let (taken, closed) = queue.take(max: room, timeout: timeout)
            batch += taken
            if closed {
                // Stopping: the reader reads nothing more; what was delivered to this consumer is finished
                // and acknowledged (a new pod has another consumer name, so entries left pending would wait
                // for --min-idle). Entries waiting for a retry stay pending for the next start.
                var remaining = batch + queue.drain()
                while !remaining.isEmpty {
                    let chunk = Array(remaining.prefix(options.batchSize))
                    remaining.removeFirst(chunk.count)
                    var ignoredRetries: [Waiting] = []
                    handle(chunk, processor: processor, redis: &redis, waiting: &ignoredRetries)
                    releaseInFlight(ignoredRetries.map(\.delivered.entry.id))
                }
                releaseInFlight(waiting.map(\.delivered.entry.id))
                break
            }
            if batch.isEmpty { continue }
            handle(batch, processor: processor, redis: &redis, waiting: &waiting)
        }
        redis?.close()
    }

    private func releaseInFlight(_ ids: [String]) {
        state.withLock { state in
            for id in ids { state.inFlight.remove(id) }
        }
    }

    /// Processes a batch until its outcomes are stored; Redis failures retry the whole batch.
    private func handle(_ batch: [DeliveredEntry], processor: any StreamBatchProcessor, redis: inout RedisConnection?,
                        waiting: inout [Waiting]) {
        var failures = 0
        while true {
            do {
                if redis == nil || redis!.isBroken { redis = try RedisConnection(url: redisURL) }
                let connection = redis!
                // An entry delivered too often (a crash loop) is dead-lettered without running again.
                var outcomes = [EntryOutcome?](repeating: nil, count: batch.count)
                var runnable: [DeliveredEntry] = []
                var runnableIndexes: [Int] = []
                for (position, delivered) in batch.enumerated() {
                    if delivered.entry.isDeleted {
                        outcomes[position] = .acknowledged
                    } else if delivered.deliveries > options.maxDeliveries {
                        outcomes[position] = .deadLetter(reason: "delivered \(delivered.deliveries) times without being handled", plugin: nil)
                    } else {
                        runnable.append(delivered)
                        runnableIndexes.append(position)
                    }
                }
                if !runnable.isEmpty {
                    let results = try processor.process(runnable, redis: connection)
                    for (offset, outcome) in results.enumerated() where offset < runnableIndexes.count {
                        outcomes[runnableIndexes[offset]] = outcome
                    }
                }
                try settle(batch, outcomes: outcomes.map { $0 ?? .retry(reason: "no outcome") }, redis: connection, waiting: &waiting)
                return
            } catch {
                failures += 1
                redis?.close()
                if isStopping && failures > 3 {
                    // Leave the entries pending; the next start re-reads them.
                    releaseInFlight(batch.map(\.entry.id))
                    return
                }
                let delay = min(5.0, 0.05 * pow(2.0, Double(min(failures, 10))))
                logger.warning("Redis failure while handling a batch, retrying", metadata: ["error": "\(error)", "retry.seconds": "\(delay)"])
                Thread.sleep(forTimeInterval: delay)
            }
        }
    }

    /// Acknowledges, dead-letters (with the ack, in one MULTI/EXEC), or schedules retries.
    private func settle(_ batch: [DeliveredEntry], outcomes: [EntryOutcome], redis: RedisConnection, waiting: inout [Waiting]) throws {
        var acknowledge: [String] = []
        var deadLetters: [[String]] = []
        var finishedIDs: [String] = []
        var counters = StreamConsumerCounters()
        for (delivered, outcome) in zip(batch, outcomes) {
            let id = delivered.entry.id
            switch outcome {
            case .acknowledged, .skippedStale:
                acknowledge.append(id)
                finishedIDs.append(id)
                if outcome == .skippedStale { counters.skippedStale += 1 } else { counters.acknowledged += 1 }
            case .deadLetter(let reason, let plugin):
                deadLetters.append(deadLetterCommand(delivered, reason: reason, plugin: plugin))
                acknowledge.append(id)
                finishedIDs.append(id)
                counters.deadLettered += 1
                logger.warning("entry dead-lettered", metadata: ["stream": "\(options.stream)", "event.id": "\(id)",
                                                                 "reason": "\(reason)", "plugin.name": "\(plugin ?? "")"])
            case .retry(let reason):
                var next = delivered
                next.deliveries += 1
                if next.deliveries > options.maxDeliveries {
                    deadLetters.append(deadLetterCommand(delivered, reason: "failed \(delivered.deliveries) times: \(reason)", plugin: nil))
                    acknowledge.append(id)
                    finishedIDs.append(id)
                    counters.deadLettered += 1
                    logger.warning("entry dead-lettered after its last retry", metadata: ["event.id": "\(id)", "reason": "\(reason)"])
                } else {
                    let delay = min(Double(options.retryCapMilliseconds), 100 * pow(2.0, Double(delivered.deliveries - 1))) / 1000
                    next.deferredSince = nil
                    waiting.append(Waiting(delivered: next, due: Date().addingTimeInterval(delay)))
                    counters.retried += 1
                    logger.info("entry will be retried", metadata: ["event.id": "\(id)", "reason": "\(reason)", "retry.seconds": "\(delay)"])
                }
            case .deferred(let reason):
                var next = delivered
                let firstDeferred = delivered.deferredSince ?? Date()
                next.deferredSince = firstDeferred
                // Waiting on older entries is bounded: past twice the min-idle time they had their chance
                // to be reclaimed, and waiting starts to count as deliveries.
                if Date().timeIntervalSince(firstDeferred) * 1000 > Double(2 * options.minIdleMilliseconds) {
                    next.deliveries += 1
                }
                if next.deliveries > options.maxDeliveries {
                    deadLetters.append(deadLetterCommand(delivered, reason: reason, plugin: nil))
                    acknowledge.append(id)
                    finishedIDs.append(id)
                    counters.deadLettered += 1
                } else {
                    waiting.append(Waiting(delivered: next, due: Date().addingTimeInterval(Double(options.retryCapMilliseconds) / 1000)))
                    counters.deferred += 1
                }
            }
        }
        if !deadLetters.isEmpty {
            guard try redis.transaction(deadLetters + [RedisConnection.xackArguments(options.stream, group: options.group, ids: acknowledge)]) != nil else {
                throw RedisError(kind: .server, message: "dead-letter transaction aborted")
            }
        } else if !acknowledge.isEmpty {
            try redis.xack(options.stream, group: options.group, ids: acknowledge)
        }
        releaseInFlight(finishedIDs)
        for (outcome, count) in [("acked", counters.acknowledged), ("skipped_stale", counters.skippedStale), ("retried", counters.retried),
                                 ("deferred", counters.deferred), ("deadlettered", counters.deadLettered)] where count > 0 {
            Counter(label: "maestro_events_total", dimensions: [("stream", options.stream), ("outcome", outcome)]).increment(by: count)
        }
        state.withLock { state in
            state.counters.acknowledged += counters.acknowledged
            state.counters.skippedStale += counters.skippedStale
            state.counters.retried += counters.retried
            state.counters.deferred += counters.deferred
            state.counters.deadLettered += counters.deadLettered
        }
    }

    private func deadLetterCommand(_ delivered: DeliveredEntry, reason: String, plugin: String?) -> [String] {
        var fields: [String: Value] = [:]
        for field in delivered.entry.fields where fields[field.name] == nil { fields[field.name] = .string(field.value) }
        return RedisConnection.xaddArguments(options.deadLetterStream, fields: [
            ("stream", options.stream), ("id", delivered.entry.id), ("reason", reason), ("plugin", plugin ?? ""),
            ("deliveries", String(delivered.deliveries)), ("failed_at", StatusPublisher.rfc3339(Date())),
            ("fields", (try? JSON.encode(.map(fields))) ?? "{}"), (RecordSchema.field, String(RecordSchema.version)),
        ], trim: .approximateMaxLength(options.streamMaxLength))
    }
}

/// FNV-1a: the same sink goes to the same worker in every process and every run.
func stableHash(_ text: String) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in text.utf8 {
        hash ^= UInt64(byte)
        hash = hash &* 0x0100_0000_01b3
    }
    return hash
}

/// A bounded queue between the reader and one worker.
final class WorkQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [DeliveredEntry] = []
    private var closed = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Blocks while full; false when the queue was closed.
    func push(_ item: DeliveredEntry) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while items.count >= capacity && !closed { condition.wait() }
        guard !closed else { return false }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// Up to `max` items, waiting at most `timeout` seconds for the first.
    func take(max: Int, timeout: TimeInterval) -> (items: [DeliveredEntry], closed: Bool) {
        condition.lock()
        defer { condition.unlock() }
        if items.isEmpty && !closed && timeout > 0 {
            _ = condition.wait(until: Date().addingTimeInterval(timeout))
        }
        let count = min(max, items.count)
        let taken = Array(items.prefix(count))
        items.removeFirst(count)
        if count > 0 { condition.broadcast() }
        return (taken, closed)
    }

    /// Everything still queued (after `close`).
    func drain() -> [DeliveredEntry] {
        condition.lock()
        defer { condition.unlock() }
        let remaining = items
        items.removeAll()
        condition.broadcast()
        return remaining
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}
