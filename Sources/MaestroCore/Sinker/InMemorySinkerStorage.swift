public import MaestroRedis

/// The sinker's storage in memory, for fast tests of the sinker's rules: the same order guard and
/// status rules as the Redis scripts (`SinkStore`, `StatusPublisher`), without a redis-server.
/// Confined to one thread, as a sinker worker is.
public final class InMemorySinkerStorage: SinkerStorage {
    /// `orb.sinker.sinks`: the sink records.
    public var sinks: [String: SinkRecord] = [:]
    /// `orb.sinker.otelConfigYaml`: the collector configs.
    public var configs: [String: String] = [:]
    /// `orb.maestro.collectors`, the part the sinker writes: status and error message per sink.
    public var statuses: [String: (status: SinkStatus, message: String)] = [:]
    /// `orb.maestro.sink_status`: the status events published, oldest first.
    public var statusEvents: [(sinkID: String, status: SinkStatus, message: String)] = []
    /// The oldest entry the group has pending (set by a test).
    public var oldestPending: StreamID?
    /// When set, the next call throws it (a Redis failure).
    public var failure: RedisError?

    public init() {}

    public func records(of sinkIDs: [String]) throws(RedisError) -> [String: SinkRecord] {
        try failIfAsked()
        return sinks.filter { sinkIDs.contains($0.key) }
    }

    public func oldestPendingEntry() throws(RedisError) -> StreamID? {
        try failIfAsked()
        return oldestPending
    }

    public func store(_ writes: [SinkWrite]) throws(RedisError) -> [SinkStoreResult] {
        try failIfAsked()
        return writes.map { write in
            let result = storeEffect(write)
            // As in the Redis pipeline: the status goes with the write when the sink's record names this
            // entry (applied now, or before), never with an entry the order guard refused as stale.
            if let change = write.status, sinks[write.sinkID]?.lastEntryID == write.orderingID { publish(change, sinkID: write.sinkID) }
            return result
        }
    }

    private func storeEffect(_ write: SinkWrite) -> SinkStoreResult {
        // The script orders ids it cannot parse as 0-0.
        let zero = StreamID(milliseconds: 0, sequence: 0)
        if let current = sinks[write.sinkID] {
            let last = StreamID(current.lastEntryID) ?? zero
            let new = StreamID(write.orderingID) ?? zero
            if last > new { return .stale }
            if last == new { return .alreadyApplied }
        }
        switch write.action {
        case .apply: configs[write.sinkID] = write.configYAML
        case .remove: configs[write.sinkID] = nil
        case .invalid: break
        }
        sinks[write.sinkID] = write.record
        return .applied
    }

    private func publish(_ change: SinkerStatusChange, sinkID: String) {
        let current = statuses[sinkID]
        switch change.mode {
        case .merge:
            if current == nil { statuses[sinkID] = (.unknown, "") }
        case .clearError where current?.status != .provisioningError:
            return
        case .set, .clearError:
            statuses[sinkID] = (change.status, change.message)
            if current?.status != change.status || (current?.message ?? "") != change.message {
                statusEvents.append((sinkID, change.status, change.message))
            }
        }
    }

    private func failIfAsked() throws(RedisError) {
        if let failure {
            self.failure = nil
            throw failure
        }
    }
}
