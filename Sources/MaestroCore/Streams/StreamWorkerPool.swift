internal import CoreMetrics
internal import Foundation
internal import Logging
internal import MaestroRedis

/// The workers of a consumer: one thread each, with its own processor, Redis connection and queue.
/// An entry goes to the worker its routing key hashes to, so one sink's entries are handled in order by
/// one worker; deleted entries (no fields, so no key) go to the first.
final class StreamWorkerPool: Sendable {
    private let options: StreamConsumerOptions
    private let policy: StreamRetryPolicy
    private let redisURL: RedisURL
    private let logger: Logger
    private let ledger: StreamConsumerLedger
    private let routingKey: @Sendable (StreamEntry) -> String
    private let makeProcessor: @Sendable (Int) throws -> any StreamBatchProcessor
    private let queues: [WorkQueue]
    private let threads = BackgroundThreads()

    init(options: StreamConsumerOptions, redisURL: RedisURL, logger: Logger, ledger: StreamConsumerLedger,
         routingKey: @escaping @Sendable (StreamEntry) -> String,
         makeProcessor: @escaping @Sendable (Int) throws -> any StreamBatchProcessor) {
        self.options = options
        policy = StreamRetryPolicy(options)
        self.redisURL = redisURL
        self.logger = logger
        self.ledger = ledger
        self.routingKey = routingKey
        self.makeProcessor = makeProcessor
        queues = (0..<options.workers).map { _ in WorkQueue(capacity: options.batchSize * 2) }
    }

    func start() {
        for index in 0..<options.workers {
            threads.spawn("maestro-worker-\(index)") { [self] in run(index) }
        }
    }

    /// Closes the queues: the workers finish what was delivered, acknowledge it and end. False when a
    /// worker still runs at the deadline.
    func stop(deadline: DispatchTime) -> Bool {
        for queue in queues { queue.close() }
        return threads.waitUntilEnded(deadline: deadline)
    }

    /// Hands entries to their workers, with the delivery counts known for them (1 when unknown); those
    /// already in flight here are skipped. Blocks while a worker's queue is full. Returns how many were
    /// handed over.
    @discardableResult
    func dispatch(_ entries: [StreamEntry], deliveries: [String: Int], redelivered: Bool) -> Int {
        guard !entries.isEmpty else { return 0 }
        let fresh = ledger.admit(entries)
        for entry in fresh {
            let delivered = DeliveredEntry(entry: entry, deliveries: deliveries[entry.id] ?? 1, redelivered: redelivered)
            let worker = entry.isDeleted ? 0 : Int(stableHash(routingKey(entry)) % UInt64(options.workers))
            if !queues[worker].push(delivered) {
                // Closed because the shutdown timeout passed: the entry stays pending for the next start.
                ledger.release([entry.id])
            }
        }
        return fresh.count
    }

    /// An entry waiting on the worker for its retry.
    private struct Waiting {
        var delivered: DeliveredEntry
        var due: Date
    }

    private func run(_ index: Int) {
        let processor: any StreamBatchProcessor
        do {
            processor = try makeProcessor(index)
        } catch {
            logger.critical("worker cannot start", metadata: ["stream.worker": "\(index)", "error": "\(error)"])
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
                    ledger.release(ignoredRetries.map(\.delivered.entry.id))
                }
                ledger.release(waiting.map(\.delivered.entry.id))
                break
            }
            if batch.isEmpty { continue }
            handle(batch, processor: processor, redis: &redis, waiting: &waiting)
        }
        redis?.close()
    }

    /// Processes a batch until its outcomes are stored; Redis failures retry the whole batch.
    private func handle(_ batch: [DeliveredEntry], processor: any StreamBatchProcessor, redis: inout RedisConnection?,
                        waiting: inout [Waiting]) {
        var failures = 0
        while true {
            do {
                if redis == nil || redis!.isBroken { redis = try RedisConnection(url: redisURL) }
                let connection = redis!
                var outcomes = batch.map { StreamSettlement.outcomeWithoutProcessing($0, policy: policy) }
                let runnableIndexes = outcomes.indices.filter { outcomes[$0] == nil }
                if !runnableIndexes.isEmpty {
                    let results = try processor.process(runnableIndexes.map { batch[$0] }, redis: connection)
                    for (offset, outcome) in results.enumerated() where offset < runnableIndexes.count {
                        outcomes[runnableIndexes[offset]] = outcome
                    }
                }
                let now = Date()
                let actions = zip(batch, outcomes).map { delivered, outcome in
                    StreamSettlement.action(for: delivered, outcome: outcome ?? .retry(reason: "no outcome"), policy: policy, now: now)
                }
                try carryOut(actions, at: now, redis: connection, waiting: &waiting)
                return
            } catch {
                failures += 1
                redis?.close()
                if ledger.isStopping && failures > 3 {
                    // Leave the entries pending; the next start re-reads them.
                    ledger.release(batch.map(\.entry.id))
                    return
                }
                let delay = Backoff.streamReconnect.delay(attempt: failures)
                logger.warning("Redis failure while handling a batch, retrying", metadata: ["error": "\(error)", "retry.seconds": "\(delay)"])
                Thread.sleep(forTimeInterval: delay)
            }
        }
    }

    /// Acknowledges, dead-letters (with the ack, in one MULTI/EXEC), and keeps retries on this worker.
    private func carryOut(_ actions: [StreamSettlement.Action], at now: Date, redis: RedisConnection,
                          waiting: inout [Waiting]) throws(RedisError) {
        var deadLetters: [[String]] = []
        for action in actions {
            let id = action.delivered.entry.id
            switch action {
            case .acknowledge:
                break
            case .deadLetter(let delivered, let reason, let plugin):
                deadLetters.append(RedisConnection.xaddArguments(
                    options.deadLetterStream,
                    fields: DeadLetter.fields(of: delivered, stream: options.stream, reason: reason, plugin: plugin, failedAt: now),
                    trim: .approximateMaxLength(options.streamMaxLength)))
                logger.warning("entry dead-lettered", metadata: ["stream.name": "\(options.stream)", "event.id": "\(id)",
                                                                 "reason": "\(reason)", "plugin.name": "\(plugin ?? "")"])
            case .retry(let next, let due, let reason):
                waiting.append(Waiting(delivered: next, due: due))
                logger.info("entry will be retried", metadata: ["event.id": "\(id)", "reason": "\(reason)",
                                                                "retry.seconds": "\(due.timeIntervalSince(now))"])
            case .wait(let next, let due):
                waiting.append(Waiting(delivered: next, due: due))
            }
        }
        let finished = actions.filter(\.isFinal).map(\.delivered.entry.id)
        if options.waitReplicas > 0 && !finished.isEmpty {
            // The outcomes are stored on the master; acknowledging before a replica has them would let a
            // failover to that replica lose an outcome whose event is gone from the pending list.
            let confirmed = try redis.command(["WAIT", String(options.waitReplicas), String(options.waitReplicasTimeoutMilliseconds)]).integer ?? 0
            guard confirmed >= Int64(options.waitReplicas) else {
                throw RedisError(kind: .timeout, message: "\(confirmed) of \(options.waitReplicas) replicas confirmed the outcomes within \(options.waitReplicasTimeoutMilliseconds) ms; not acknowledged")
            }
        }
        if !deadLetters.isEmpty {
            guard try redis.transaction(deadLetters + [RedisConnection.xackArguments(options.stream, group: options.group, ids: finished)]) != nil else {
                throw RedisError(kind: .server, message: "dead-letter transaction aborted")
            }
        } else if !finished.isEmpty {
            try redis.xack(options.stream, group: options.group, ids: finished)
        }
        ledger.release(finished)
        let tally = StreamSettlement.tally(actions)
        for (outcome, count) in [("acked", tally.acknowledged), ("skipped_stale", tally.skippedStale), ("retried", tally.retried),
                                 ("deferred", tally.deferred), ("deadlettered", tally.deadLettered)] where count > 0 {
            Counter(label: "maestro_events_total", dimensions: [("stream", options.stream), ("outcome", outcome)]).increment(by: count)
        }
        ledger.count { counters in
            counters.acknowledged += tally.acknowledged
            counters.skippedStale += tally.skippedStale
            counters.retried += tally.retried
            counters.deferred += tally.deferred
            counters.deadLettered += tally.deadLettered
        }
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
