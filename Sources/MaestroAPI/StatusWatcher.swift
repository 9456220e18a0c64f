internal import Foundation
internal import MaestroCore
internal import MaestroRedis
internal import Synchronization

/// Follows `orb.maestro.sink_status` from the moment of `subscribe()` (XREAD BLOCK on a thread of its
/// own) and yields the sink id of every status change, optionally of one sink only.
final class StatusWatcher: Sendable {
    let redisURL: RedisURL
    let names: RedisNames
    let sinkID: String?
    private let reader = BackgroundThreads()
    private let stream = Mutex<AsyncStream<String>.Continuation?>(nil)

    init(redisURL: RedisURL, names: RedisNames, sinkID: String?) {
        self.redisURL = redisURL
        self.names = names
        self.sinkID = sinkID
    }

    /// Pins "now" (the newest entry's id) on a connection of its own before returning, so that every
    /// status change after this call is seen; then follows the stream on a thread. Throws when Redis
    /// cannot be reached, so that the caller learns it at once rather than from a silent stream.
    func subscribe() throws -> AsyncStream<String> {
        let first = try RedisConnection(url: redisURL)
        let newest: String
        do {
            newest = try first.command(["XREVRANGE", names.statusStream, "+", "-", "COUNT", "1"]).array?.first?.array?.first?.string ?? "0-0"
        } catch {
            first.close()
            throw error
        }
        let (events, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(1_000))
        stream.withLock { $0 = continuation }
        reader.spawn("maestro-status-watch") { [self] in
            var redis: RedisConnection? = first
            var lastID = newest
            while !reader.isStopping {
                do {
                    if redis == nil || redis!.isBroken { redis = try RedisConnection(url: redisURL) }
                    let reply = try redis!.blockingCommand(["XREAD", "COUNT", "100", "BLOCK", "500", "STREAMS", names.statusStream, lastID],
                                                           blockMilliseconds: 500)
                    guard let streams = reply.array, let entries = streams.first?.array?.last?.array else { continue }
                    for entry in entries {
                        guard let parts = entry.array, parts.count == 2, let id = parts[0].string else { continue }
                        lastID = id
                        let fields = parts[1].array ?? []
                        var changed: String?
                        var index = 0
                        while index + 1 < fields.count {
                            if fields[index].string == "sink_id" { changed = fields[index + 1].string }
                            index += 2
                        }
                        if let changed, sinkID == nil || sinkID == changed { continuation.yield(changed) }
                    }
                } catch {
                    redis?.close()
                    reader.pause(0.5)
                }
            }
            redis?.close()
            continuation.finish()
        }
        continuation.onTermination = { [self] _ in stop() }
        return events
    }

    /// Ends the stream now; the reading thread ends after its current XREAD.
    func stop() {
        reader.requestStop()
        // finish() runs onTermination, which calls stop() again: never finish under the lock.
        let continuation = stream.withLock { current -> AsyncStream<String>.Continuation? in
            defer { current = nil }
            return current
        }
        continuation?.finish()
    }
}
