public import MaestroRedis

/// A status the sinker sets with a sink's write (DESIGN: the sinker owns `provisioning_error` for an
/// invalid config, and clearing it when a good config comes).
public struct SinkerStatusChange: Sendable, Equatable {
    public var status: SinkStatus
    public var message: String
    public var mode: StatusPublisher.Mode

    public init(_ status: SinkStatus, message: String = "", mode: StatusPublisher.Mode = .set) {
        self.status = status
        self.message = message
        self.mode = mode
    }
}

/// One effect of a sink event, ordered by its entry id: stored only when the entry is newer than the
/// last one applied to the sink, together with its status change.
public struct SinkWrite: Sendable, Equatable {
    public var sinkID: String
    public var orderingID: String
    public var action: SinkStore.Action
    public var record: SinkRecord
    /// The collector config to store (`apply` only).
    public var configYAML: String
    public var status: SinkerStatusChange?

    public init(sinkID: String, orderingID: String, action: SinkStore.Action, record: SinkRecord, configYAML: String = "",
                status: SinkerStatusChange? = nil) {
        self.sinkID = sinkID
        self.orderingID = orderingID
        self.action = action
        self.record = record
        self.configYAML = configYAML
        self.status = status
    }
}

/// Where the sinker's rules keep sinks, configs and statuses: Redis (`RedisSinkerStorage`, the real
/// thing), or memory (`InMemorySinkerStorage`, for tests of the rules). A thrown error means nothing
/// of the call is known to be stored.
public protocol SinkerStorage: AnyObject {
    /// The records of these sinks; a sink without one is left out.
    func records(of sinkIDs: [String]) throws(RedisError) -> [String: SinkRecord]
    /// The oldest entry of the sinks stream that the sinker's group has read and not acknowledged.
    func oldestPendingEntry() throws(RedisError) -> StreamID?
    /// Stores the writes in order, each with its order guard; one result per write.
    func store(_ writes: [SinkWrite]) throws(RedisError) -> [SinkStoreResult]
}

/// The sinker's storage in Redis: the sinks and config hashes written by `SinkStore`'s script, the
/// status by `StatusPublisher`'s, all of a batch in one pipeline.
public final class RedisSinkerStorage: SinkerStorage {
    /// The scripts of the pipeline that stores a batch's effects.
    public static let scripts = SinkStore.batchScripts
    let redis: RedisConnection
    let names: RedisNames
    let streamMaxLength: Int

    public init(redis: RedisConnection, names: RedisNames, streamMaxLength: Int = 100_000) {
        self.redis = redis
        self.names = names
        self.streamMaxLength = streamMaxLength
    }

    public func records(of sinkIDs: [String]) throws(RedisError) -> [String: SinkRecord] {
        guard !sinkIDs.isEmpty else { return [:] }
        var records: [String: SinkRecord] = [:]
        let replies = try redis.pipeline(sinkIDs.map { ["HGET", names.sinksHash, $0] })
        for (sinkID, reply) in zip(sinkIDs, replies) {
            if let json = reply.string, let record = SinkRecord(json: json) { records[sinkID] = record }
        }
        return records
    }

    public func oldestPendingEntry() throws(RedisError) -> StreamID? {
        try redis.xpendingSummary(names.sinksStream, group: names.sinkerGroup).smallestID.flatMap(StreamID.init)
    }

    public func store(_ writes: [SinkWrite]) throws(RedisError) -> [SinkStoreResult] {
        var commands: [[String]] = []
        var isStatus: [Bool] = []
        for write in writes {
            commands.append(SinkStore.command(names: names, sinkID: write.sinkID, orderingID: write.orderingID, action: write.action,
                                              record: write.record, configYAML: write.configYAML))
            isStatus.append(false)
            if let change = write.status {
                commands.append(StatusPublisher.command(names: names, sinkID: write.sinkID, ownerID: write.record.ownerID, status: change.status,
                                                        message: change.message, mode: change.mode, streamMaxLength: streamMaxLength,
                                                        ifCurrentEntry: write.orderingID))
                isStatus.append(true)
            }
        }
        guard !commands.isEmpty else { return [] }
        // After NOSCRIPT (Redis restarted and lost its scripts) the lot runs again: every effect is idempotent.
        let replies = try redis.pipeline(commands, loading: Self.scripts)
        var results: [SinkStoreResult] = []
        for (statusReply, reply) in zip(isStatus, replies) {
            if statusReply {
                if case .error(let text) = reply { throw RedisError.fromReply(text) }
                continue
            }
            results.append(try SinkStore.result(of: reply))
        }
        return results
    }
}
