public import Foundation
public import Logging
public import MaestroRedis
internal import Synchronization

/// Consumes one stream in a consumer group and loses nothing (DESIGN "Redis: names and rules"): own
/// pending entries first, then new ones; entries of dead consumers reclaimed after the min-idle time;
/// acknowledgement only after the processor stored the effects; dead letters written and acknowledged
/// in one MULTI/EXEC; NOGROUP re-creates the group; a lost connection reconnects with backoff.
///
/// Its parts: a `StreamReader` thread reads in batches, and between reads runs the `StreamReclaimer`'s
/// pages and the `StreamGroupMaintenance`; it routes each entry by a hash of its routing key (the sink
/// id) to the `StreamWorkerPool`, so one sink's entries are handled in order by one worker; each worker
/// thread owns its processor and its Redis connection and settles outcomes by the rules of
/// `StreamSettlement`. What they share is the `StreamConsumerLedger`.
public final class StreamConsumer: Sendable {
    public let options: StreamConsumerOptions
    private let ledger = StreamConsumerLedger()
    private let workers: StreamWorkerPool
    private let reader: StreamReader
    private let started = Mutex(false)

    public init(options: StreamConsumerOptions, redisURL: RedisURL, logger: Logger,
                routingKey: @escaping @Sendable (StreamEntry) -> String,
                makeProcessor: @escaping @Sendable (_ worker: Int) throws -> any StreamBatchProcessor) {
        self.options = options
        workers = StreamWorkerPool(options: options, redisURL: redisURL, logger: logger, ledger: ledger,
                                   routingKey: routingKey, makeProcessor: makeProcessor)
        reader = StreamReader(options: options, redisURL: redisURL, logger: logger, ledger: ledger, workers: workers)
    }

    public var counters: StreamConsumerCounters { ledger.counters }

    /// Starts the reader and the workers on threads of their own.
    public func start() {
        let alreadyStarted = started.withLock { started -> Bool in
            defer { started = true }
            return started
        }
        guard !alreadyStarted else { return }
        workers.start()
        reader.start()
    }

    /// Stops reading; entries delivered to this consumer (being handled or queued) finish and are
    /// acknowledged; those waiting for a retry stay pending for the next start. Returns when every
    /// thread has ended (or the timeout passed: false).
    @discardableResult
    public func stop(timeout: TimeInterval = 30) -> Bool {
        let deadline = DispatchTime.now() + timeout
        // Workers that cannot store a batch now give up sooner: its entries stay pending for the next start.
        ledger.requestStop()
        // The queues close only once the reader is done: a read that was blocked when the stop came
        // may still return entries, which are then delivered to this consumer and must be handled.
        let readerEnded = reader.stop(deadline: deadline)
        return workers.stop(deadline: deadline) && readerEnded
    }

    /// Whether `stop` was called.
    public var isStopRequested: Bool { ledger.isStopping }

    /// Entries delivered to this consumer and not yet acknowledged (or waiting for a retry).
    public var inFlightCount: Int { ledger.inFlightCount }
}
