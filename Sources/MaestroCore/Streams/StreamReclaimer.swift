internal import CoreMetrics
internal import Foundation
internal import Logging
internal import MaestroRedis

/// Takes over the entries other consumers left pending, one page per reader turn, and keeps this
/// consumer's own in-flight entries from looking abandoned to other replicas.
struct StreamReclaimer: Sendable {
    let options: StreamConsumerOptions
    let logger: Logger
    let ledger: StreamConsumerLedger
    let workers: StreamWorkerPool

    /// Pending entries one reclaim page looks at.
    static let pageSize = 1_000

    /// A scan over the group's pending entries: `cursor` is where the next page starts, nil between scans.
    struct Scan {
        var cursor: String?
        var started = Date.distantPast
    }

    /// One page of the reclaim scan: other consumers' entries idle past min-idle are claimed and handed
    /// to the workers at once. This consumer's own entries are never claimed (that would count a
    /// delivery each time); those still in flight have their idle time reset once past a quarter of
    /// min-idle (XCLAIM JUSTID, which counts none; scans run every half min-idle), so no other
    /// replica takes them. Returns where the next page starts, nil at the end.
    func page(_ redis: RedisConnection, from cursor: String) throws(RedisError) -> String? {
        let refreshAfter = options.minIdleMilliseconds / 4
        let page = try redis.xpending(options.stream, group: options.group, start: cursor, end: "+", count: Self.pageSize,
                                      minIdleMilliseconds: refreshAfter)
        guard let last = page.last else { return nil }
        let inFlight = ledger.inFlight
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
            if !missing.isEmpty { try acknowledgeTrimmed(missing, redis: redis) }
            // XCLAIM counted one more delivery than the pending list showed.
            let deliveries = Dictionary(others.map { ($0.id, Int($0.deliveries) + 1) }, uniquingKeysWith: { first, _ in first })
            let dispatched = workers.dispatch(claimed, deliveries: deliveries, redelivered: true)
            if dispatched > 0 {
                ledger.count { $0.reclaimed += dispatched }
                logger.info("reclaimed entries of a consumer idle longer than the min-idle time",
                            metadata: ["stream.name": "\(options.stream)", "stream.entries": "\(dispatched)"])
            }
        }
        return page.count < Self.pageSize ? nil : "(" + last.id
    }

    /// Entries that were pending but not claimed: taken by another replica meanwhile, or deleted from the
    /// stream (trimmed). A deleted entry has nothing left to handle and leaves the pending list.
    private func acknowledgeTrimmed(_ missing: [String], redis: RedisConnection) throws(RedisError) {
        let replies = try redis.pipeline(missing.map { ["XRANGE", options.stream, $0, $0] })
        let deleted = zip(missing, replies).filter { $0.1.array?.isEmpty == true }.map(\.0)
        guard !deleted.isEmpty else { return }
        _ = try redis.command(["XACK", options.stream, options.group] + deleted)
        ledger.count { $0.trimmedBeforeRead += deleted.count }
        Counter(label: "maestro_stream_trimmed_total", dimensions: [("stream", options.stream)]).increment(by: deleted.count)
        logger.warning("pending entries were trimmed from the stream before they were handled",
                       metadata: ["stream.name": "\(options.stream)", "stream.entries": "\(deleted.count)"])
    }
}
