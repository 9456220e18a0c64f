internal import CoreMetrics
internal import Foundation
internal import Logging
internal import MaestroRedis

/// What the reader does for the group now and then: removes consumers idle for long with nothing
/// pending, and reports entries trimmed from the stream before the group read them.
struct StreamGroupMaintenance: Sendable {
    let options: StreamConsumerOptions
    let logger: Logger
    let ledger: StreamConsumerLedger

    func run(_ redis: RedisConnection) throws(RedisError) {
        for consumer in try redis.xinfoConsumers(options.stream, group: options.group) {
            guard let name = consumer["name"]?.string, name != options.consumerName,
                  consumer["pending"]?.integer == 0, let idle = consumer["idle"]?.integer,
                  idle > Int64(options.consumerRemovalMilliseconds) else { continue }
            try redis.xgroupDelConsumer(options.stream, group: options.group, consumer: name)
            logger.info("removed an idle consumer with nothing pending", metadata: ["stream.consumer": "\(name)"])
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
        guard trimmed > 0, ledger.noteTrimmedGap("\(lastDelivered)..\(first)") else { return }
        ledger.count { $0.trimmedBeforeRead += Int(trimmed) }
        Counter(label: "maestro_stream_trimmed_total", dimensions: [("stream", options.stream)]).increment(by: Int(trimmed))
        logger.warning("entries were trimmed from the stream before this group read them; raise the producer's MAXLEN",
                       metadata: ["stream.name": "\(options.stream)", "stream.entries": "\(trimmed)",
                                  "stream.gap_after": "\(lastDelivered)", "stream.gap_before": "\(first)"])
    }
}
