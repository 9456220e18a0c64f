internal import Foundation
public import MaestroRedis
internal import MaestroValue

/// A dead letter as maestro wrote it: where the entry came from, why it failed, and its fields.
public struct DeadLetter: Sendable, Equatable {
    public var id: String
    public var stream: String
    public var originalID: String
    public var reason: String
    public var plugin: String
    public var deliveries: String
    public var failedAt: String
    /// The original entry's fields (JSON object of strings); may hold credentials — never print it.
    public var fieldsJSON: String

    init(_ entry: StreamEntry) {
        id = entry.id
        stream = entry["stream"] ?? ""
        originalID = entry["id"] ?? ""
        reason = entry["reason"] ?? ""
        plugin = entry["plugin"] ?? ""
        deliveries = entry["deliveries"] ?? ""
        failedAt = entry["failed_at"] ?? ""
        fieldsJSON = entry["fields"] ?? "{}"
    }
}

extension DeadLetter {
    /// The fields of the dead letter written for `delivered`, an entry of `stream` — the format
    /// `init(_:)` reads back (DESIGN "Redis: names and rules"). The entry's fields go in as one JSON
    /// object; of a repeated field name, the first value.
    static func fields(of delivered: DeliveredEntry, stream: String, reason: String, plugin: String?, failedAt: Date) -> [(String, String)] {
        var fields: [String: Value] = [:]
        for field in delivered.entry.fields where fields[field.name] == nil { fields[field.name] = .string(field.value) }
        return [
            ("stream", stream), ("id", delivered.entry.id), ("reason", reason), ("plugin", plugin ?? ""),
            ("deliveries", String(delivered.deliveries)), ("failed_at", StatusPublisher.rfc3339(failedAt)),
            ("fields", (try? JSON.encode(.map(fields))) ?? "{}"), (RecordSchema.field, String(RecordSchema.version)),
        ]
    }
}

public struct DeadLetterError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Listing and replaying dead letters (`maestro deadletter list|replay`).
public enum DeadLetters {
    public static func list(_ redis: RedisConnection, names: RedisNames, count: Int = 1_000) throws(RedisError) -> [DeadLetter] {
        try redis.xrange(names.deadLetterStream, count: count).map(DeadLetter.init)
    }

    /// Puts each dead letter's original entry back on its stream, with `replay_of` = its original id
    /// (so ordering treats it as the event it was and a replay never overrides newer state), and removes
    /// the dead letter — both in one MULTI/EXEC. Returns the new entries' ids.
    public static func replay(_ redis: RedisConnection, names: RedisNames, ids: [String]?, streamMaxLength: Int = 100_000) throws -> [String] {
        let letters = try list(redis, names: names, count: 100_000)
        let chosen = ids.map { wanted in letters.filter { wanted.contains($0.id) } } ?? letters
        if let ids, chosen.count != ids.count {
            let missing = Set(ids).subtracting(chosen.map(\.id)).sorted()
            throw DeadLetterError("no dead letter with id \(missing.joined(separator: ", ")) in \(names.deadLetterStream)")
        }
        var replayed: [String] = []
        for letter in chosen {
            guard !letter.stream.isEmpty, StreamID(letter.originalID) != nil,
                  case .map(let fields)? = try? JSON.decode(letter.fieldsJSON) else {
                throw DeadLetterError("dead letter \(letter.id) does not hold a replayable entry")
            }
            var pairs: [(String, String)] = fields.keys.sorted().filter { $0 != "replay_of" }.compactMap { key in
                fields[key]?.stringValue.map { (key, $0) }
            }
            // A replay of a replay still orders as the first original.
            pairs.append(("replay_of", fields["replay_of"]?.stringValue ?? letter.originalID))
            let results = try redis.transaction([
                RedisConnection.xaddArguments(letter.stream, fields: pairs, trim: .approximateMaxLength(streamMaxLength)),
                ["XDEL", names.deadLetterStream, letter.id],
            ])
            guard let results, let id = results.first?.string else { throw DeadLetterError("replay of \(letter.id) was aborted") }
            replayed.append(id)
        }
        return replayed
    }
}
