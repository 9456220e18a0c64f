internal import Foundation
public import MaestroRedis

/// An entry handed to a processor, with how many times the group has delivered it.
public struct DeliveredEntry: Sendable, Equatable {
    public var entry: StreamEntry
    public var deliveries: Int
    /// True when this consumer re-read it from its pending list or reclaimed it from another consumer.
    public var redelivered: Bool
    /// When it was first deferred (waiting on older pending entries).
    var deferredSince: Date?

    public init(entry: StreamEntry, deliveries: Int, redelivered: Bool) {
        self.entry = entry
        self.deliveries = deliveries
        self.redelivered = redelivered
    }
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
    /// Replicas that must have a batch's stored outcomes (Redis WAIT) before the batch is acknowledged.
    public var waitReplicas: Int
    /// How long one WAIT may take; fewer replicas by then fails the batch, which is tried again.
    public var waitReplicasTimeoutMilliseconds: Int

    public init(stream: String, group: String, groupStart: String = "0", consumerName: String, workers: Int = 1,
                batchSize: Int = 200, blockMilliseconds: Int = 1_000, minIdleMilliseconds: Int = 60_000, maxDeliveries: Int = 5,
                deadLetterStream: String = "orb.maestro.deadletter", streamMaxLength: Int = 100_000,
                consumerRemovalMilliseconds: Int? = nil, waitReplicas: Int = 0, waitReplicasTimeoutMilliseconds: Int = 2_000) {
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
        self.waitReplicas = max(0, waitReplicas)
        self.waitReplicasTimeoutMilliseconds = max(1, waitReplicasTimeoutMilliseconds)
    }
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
