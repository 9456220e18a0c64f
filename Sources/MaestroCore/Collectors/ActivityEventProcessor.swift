public import Logging
public import MaestroRedis
internal import MaestroValue

/// The maestro role under `--create-policy on-activity`: Orb's sinker reports activity on
/// `orb.sink_activity` (create the collector if it is not running) and idleness on `orb.sink_idle`
/// (remove the objects, keep the config, status `idle`).
public final class ActivityEventProcessor: StreamBatchProcessor {
    public enum Kind: Sendable {
        case activity
        case idle
    }

    let kind: Kind
    let manager: CollectorManager
    let logger: Logger

    public init(kind: Kind, manager: CollectorManager, logger: Logger) {
        self.kind = kind
        self.manager = manager
        self.logger = logger
    }

    public func process(_ batch: [DeliveredEntry], redis: RedisConnection) throws(RedisError) -> [EntryOutcome] {
        var outcomes: [EntryOutcome] = []
        for delivered in batch {
            guard let sinkID = delivered.entry["sink_id"], !sinkID.isEmpty else {
                outcomes.append(.deadLetter(reason: "missing field sink_id", plugin: nil))
                continue
            }
            guard sinkID.utf8.count <= SinkEvent.maximumSinkIDBytes,
                  !sinkID.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                outcomes.append(.deadLetter(reason: "sink_id is not a valid sink id", plugin: nil))
                continue
            }
            let ownerID = delivered.entry["owner_id"] ?? delivered.entry["owner"] ?? ""
            switch kind {
            case .activity:
                outcomes.append(try activity(sinkID: sinkID, ownerID: ownerID, redis: redis))
            case .idle:
                outcomes.append(try idle(sinkID: sinkID, ownerID: ownerID, redis: redis))
            }
        }
        return outcomes
    }

    /// Records that the collector should run; its reconcile does the rest (a running one stays as it is).
    private func activity(sinkID: String, ownerID: String, redis: RedisConnection) throws(RedisError) -> EntryOutcome {
        do {
            try manager.create(sinkID: sinkID, ownerID: ownerID)
            return .acknowledged
        } catch where error.kind == .notFound {
            logger.info("activity for a sink without a stored config, or removed; nothing to deploy",
                        metadata: ["sink.id": "\(sinkID)", "error": "\(error.message)"])
            return .acknowledged
        } catch {
            return error.kind == .unavailable ? .retry(reason: error.message) : .deadLetter(reason: error.message, plugin: nil)
        }
    }

    /// Records that the collector should be idle; its reconcile removes the objects and publishes `idle`.
    private func idle(sinkID: String, ownerID: String, redis: RedisConnection) throws(RedisError) -> EntryOutcome {
        do {
            try manager.idle(sinkID: sinkID)
            return .acknowledged
        } catch {
            return .retry(reason: error.message)
        }
    }
}
