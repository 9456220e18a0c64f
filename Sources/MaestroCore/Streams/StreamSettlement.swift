internal import Foundation

/// The retry rules of a consumer.
struct StreamRetryPolicy: Sendable, Equatable {
    var maxDeliveries: Int
    var minIdleMilliseconds: Int

    init(maxDeliveries: Int, minIdleMilliseconds: Int) {
        self.maxDeliveries = maxDeliveries
        self.minIdleMilliseconds = minIdleMilliseconds
    }

    init(_ options: StreamConsumerOptions) {
        self.init(maxDeliveries: options.maxDeliveries, minIdleMilliseconds: options.minIdleMilliseconds)
    }

    /// Retries of handler failures back off from 100 ms, doubling, capped well below the min-idle time
    /// so that a live consumer's entry is never reclaimed while it waits.
    var retryBackoff: Backoff {
        Backoff(first: 0.1, maximum: Double(max(100, min(5_000, minIdleMilliseconds / 4))) / 1000)
    }

    /// How long a deferred entry waits before it is handed to the processor again.
    var deferralPause: TimeInterval { retryBackoff.maximum }

    /// Waiting on older entries is bounded: past twice the min-idle time they had their chance to be
    /// reclaimed, and waiting starts to count as deliveries.
    var deferralGrace: TimeInterval { Double(2 * minIdleMilliseconds) / 1000 }
}

/// What a worker does with each entry of a batch, decided from the entry and its outcome alone: no
/// Redis, no clock but the `now` it is given. The worker pool carries the actions out (one XACK, or
/// the dead letters and the XACK in one MULTI/EXEC; retries kept on the worker).
enum StreamSettlement {
    enum Action: Equatable {
        /// Handled: acknowledge. `stale` when a newer entry of its sink was applied first.
        case acknowledge(DeliveredEntry, stale: Bool)
        /// Write a dead letter with this reason and acknowledge, in one transaction.
        case deadLetter(DeliveredEntry, reason: String, plugin: String?)
        /// A handler failure: stays pending here and is handed to the processor again at `due`, its
        /// delivery counted.
        case retry(DeliveredEntry, due: Date, reason: String)
        /// Waits for older entries: stays pending here and is handed to the processor again at `due`.
        case wait(DeliveredEntry, due: Date)

        var delivered: DeliveredEntry {
            switch self {
            case .acknowledge(let delivered, _), .deadLetter(let delivered, _, _), .retry(let delivered, _, _), .wait(let delivered, _):
                return delivered
            }
        }

        /// Whether the entry leaves this consumer's hands (acknowledged), or stays for another try.
        var isFinal: Bool {
            switch self {
            case .acknowledge, .deadLetter: return true
            case .retry, .wait: return false
            }
        }
    }

    /// The outcome an entry gets without going to the processor: a deleted entry (its id still pending,
    /// its fields gone) has nothing to handle; one delivered too often (a crash loop) must not run again.
    /// Nil: the entry goes to the processor.
    static func outcomeWithoutProcessing(_ delivered: DeliveredEntry, policy: StreamRetryPolicy) -> EntryOutcome? {
        if delivered.entry.isDeleted { return .acknowledged }
        if delivered.deliveries > policy.maxDeliveries {
            return .deadLetter(reason: "delivered \(delivered.deliveries) times without being handled", plugin: nil)
        }
        return nil
    }

    static func action(for delivered: DeliveredEntry, outcome: EntryOutcome, policy: StreamRetryPolicy, now: Date) -> Action {
        switch outcome {
        case .acknowledged:
            return .acknowledge(delivered, stale: false)
        case .skippedStale:
            return .acknowledge(delivered, stale: true)
        case .deadLetter(let reason, let plugin):
            return .deadLetter(delivered, reason: reason, plugin: plugin)
        case .retry(let reason):
            var next = delivered
            next.deliveries += 1
            next.deferredSince = nil
            guard next.deliveries <= policy.maxDeliveries else {
                return .deadLetter(delivered, reason: "failed \(delivered.deliveries) times: \(reason)", plugin: nil)
            }
            return .retry(next, due: now.addingTimeInterval(policy.retryBackoff.delay(attempt: delivered.deliveries)), reason: reason)
        case .deferred(let reason):
            var next = delivered
            let firstDeferred = delivered.deferredSince ?? now
            next.deferredSince = firstDeferred
            if now.timeIntervalSince(firstDeferred) > policy.deferralGrace { next.deliveries += 1 }
            guard next.deliveries <= policy.maxDeliveries else {
                return .deadLetter(delivered, reason: reason, plugin: nil)
            }
            return .wait(next, due: now.addingTimeInterval(policy.deferralPause))
        }
    }

    /// What the actions add to the consumer's counters.
    static func tally(_ actions: [Action]) -> StreamConsumerCounters {
        var counters = StreamConsumerCounters()
        for action in actions {
            switch action {
            case .acknowledge(_, stale: false): counters.acknowledged += 1
            case .acknowledge(_, stale: true): counters.skippedStale += 1
            case .deadLetter: counters.deadLettered += 1
            case .retry: counters.retried += 1
            case .wait: counters.deferred += 1
            }
        }
        return counters
    }
}
