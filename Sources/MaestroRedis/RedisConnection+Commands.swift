
/// One entry of a stream. `fields` keeps the producer's order; a pending entry that was trimmed or
/// deleted before it was read comes back with `isDeleted` set and no fields.
public struct StreamEntry: Sendable, Equatable {
    public var id: String
    public var fields: [Field]
    public var isDeleted: Bool

    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String
        /// False when Redis held bytes that are not UTF-8 in the name or the value: the strings then
        /// hold U+FFFD in their place, so two different byte strings may read the same. Decoders
        /// refuse such fields instead of using them.
        public var isValidUTF8: Bool
        public init(_ name: String, _ value: String, isValidUTF8: Bool = true) {
            self.name = name
            self.value = value
            self.isValidUTF8 = isValidUTF8
        }
    }

    public init(id: String, fields: [Field], isDeleted: Bool = false) {
        self.id = id
        self.fields = fields
        self.isDeleted = isDeleted
    }

    /// The first value of a field, as Redis streams allow repeated names.
    public subscript(name: String) -> String? {
        fields.first { $0.name == name }?.value
    }

    static func parse(_ reply: RedisReply) throws(RedisError) -> StreamEntry {
        guard let parts = reply.array, parts.count == 2, let id = parts[0].string else {
            throw RedisError(kind: .protocolViolation, message: "malformed stream entry")
        }
        if parts[1].isNull { return StreamEntry(id: id, fields: [], isDeleted: true) }
        guard let flat = parts[1].array, flat.count % 2 == 0 else {
            throw RedisError(kind: .protocolViolation, message: "malformed stream entry fields")
        }
        var fields: [Field] = []
        fields.reserveCapacity(flat.count / 2)
        var index = 0
        while index < flat.count {
            fields.append(Field(flat[index].string ?? "", flat[index + 1].string ?? "",
                                isValidUTF8: flat[index].isValidUTF8 && flat[index + 1].isValidUTF8))
            index += 2
        }
        return StreamEntry(id: id, fields: fields)
    }

    static func parseList(_ reply: RedisReply) throws(RedisError) -> [StreamEntry] {
        guard let items = reply.array else { return [] }
        var entries: [StreamEntry] = []
        entries.reserveCapacity(items.count)
        for item in items { entries.append(try parse(item)) }
        return entries
    }
}

/// A summary line of XPENDING … IDLE … (extended form).
public struct PendingEntry: Sendable, Equatable {
    public var id: String
    public var consumer: String
    public var idleMilliseconds: Int64
    public var deliveries: Int64
}

public struct PendingSummary: Sendable, Equatable {
    public var count: Int64
    public var smallestID: String?
    public var largestID: String?
    public var consumers: [String: Int64]
}

public enum StreamTrim: Sendable, Equatable {
    /// `MAXLEN ~ n`: approximate, cheap.
    case approximateMaxLength(Int)
    case none
}

extension RedisConnection {
    // MARK: keys and strings

    public func ping() throws(RedisError) -> String {
        try command(["PING"]).string ?? ""
    }

    public func get(_ key: String) throws(RedisError) -> String? {
        try command(["GET", key]).string
    }

    /// SET with options; returns false when NX prevented the write.
    @discardableResult
    public func set(_ key: String, _ value: String, onlyIfAbsent: Bool = false, expireMilliseconds: Int? = nil) throws(RedisError) -> Bool {
        var arguments = ["SET", key, value]
        if let expireMilliseconds { arguments += ["PX", String(expireMilliseconds)] }
        if onlyIfAbsent { arguments.append("NX") }
        return !(try command(arguments).isNull)
    }

    @discardableResult
    public func del(_ keys: [String]) throws(RedisError) -> Int64 {
        try command(["DEL"] + keys).integer ?? 0
    }

    @discardableResult
    public func expire(_ key: String, seconds: Int) throws(RedisError) -> Bool {
        try command(["EXPIRE", key, String(seconds)]).integer == 1
    }

    // MARK: hashes

    @discardableResult
    public func hset(_ key: String, _ fields: [(String, String)]) throws(RedisError) -> Int64 {
        var arguments = ["HSET", key]
        for (field, value) in fields { arguments += [field, value] }
        return try command(arguments).integer ?? 0
    }

    @discardableResult
    public func hset(_ key: String, field: String, value: String) throws(RedisError) -> Int64 {
        try hset(key, [(field, value)])
    }

    public func hget(_ key: String, field: String) throws(RedisError) -> String? {
        try command(["HGET", key, field]).string
    }

    @discardableResult
    public func hdel(_ key: String, fields: [String]) throws(RedisError) -> Int64 {
        try command(["HDEL", key] + fields).integer ?? 0
    }

    public func hgetall(_ key: String) throws(RedisError) -> [String: String] {
        let reply = try command(["HGETALL", key])
        guard let pairs = reply.pairs else { throw RedisError(kind: .protocolViolation, message: "HGETALL reply is not a flat map") }
        return pairs.compactMapValues { $0.string }
    }

    public func hkeys(_ key: String) throws(RedisError) -> [String] {
        (try command(["HKEYS", key]).array ?? []).compactMap { $0.string }
    }

    public func hlen(_ key: String) throws(RedisError) -> Int64 {
        try command(["HLEN", key]).integer ?? 0
    }

    /// One HSCAN step: the next cursor ("0" when done) and the fields of this page.
    public func hscan(_ key: String, cursor: String = "0", count: Int = 100, match: String? = nil) throws(RedisError) -> (cursor: String, fields: [(String, String)]) {
        var arguments = ["HSCAN", key, cursor]
        if let match { arguments += ["MATCH", match] }
        arguments += ["COUNT", String(count)]
        let reply = try command(arguments)
        guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let flat = parts[1].array, flat.count % 2 == 0 else {
            throw RedisError(kind: .protocolViolation, message: "malformed HSCAN reply")
        }
        var fields: [(String, String)] = []
        var index = 0
        while index < flat.count {
            fields.append((flat[index].string ?? "", flat[index + 1].string ?? ""))
            index += 2
        }
        return (next, fields)
    }

    // MARK: streams

    public static func xaddArguments(_ stream: String, fields: [(String, String)], id: String = "*", trim: StreamTrim = .none) -> [String] {
        var arguments = ["XADD", stream]
        if case .approximateMaxLength(let length) = trim { arguments += ["MAXLEN", "~", String(length)] }
        arguments.append(id)
        for (name, value) in fields { arguments += [name, value] }
        return arguments
    }

    /// XADD; returns the new entry's id.
    @discardableResult
    public func xadd(_ stream: String, fields: [(String, String)], id: String = "*", trim: StreamTrim = .none) throws(RedisError) -> String {
        guard let id = try command(Self.xaddArguments(stream, fields: fields, id: id, trim: trim)).string else {
            throw RedisError(kind: .protocolViolation, message: "XADD returned no id")
        }
        return id
    }

    /// XGROUP CREATE … MKSTREAM; returns false when the group existed already (BUSYGROUP).
    @discardableResult
    public func xgroupCreate(_ stream: String, group: String, startID: String = "0", makeStream: Bool = true) throws(RedisError) -> Bool {
        var arguments = ["XGROUP", "CREATE", stream, group, startID]
        if makeStream { arguments.append("MKSTREAM") }
        do {
            try command(arguments)
            return true
        } catch where error.kind == .busyGroup {
            return false
        }
    }

    /// Removes a consumer; returns how many entries it still had pending (they are dropped from the PEL).
    @discardableResult
    public func xgroupDelConsumer(_ stream: String, group: String, consumer: String) throws(RedisError) -> Int64 {
        try command(["XGROUP", "DELCONSUMER", stream, group, consumer]).integer ?? 0
    }

    /// XREADGROUP for one stream. `id` is `>` for new entries or `0` for this consumer's pending ones.
    /// Returns no entries when BLOCK timed out.
    public func xreadgroup(group: String, consumer: String, stream: String, id: String = ">", count: Int = 100,
                           blockMilliseconds: Int? = nil) throws(RedisError) -> [StreamEntry] {
        var arguments = ["XREADGROUP", "GROUP", group, consumer, "COUNT", String(count)]
        if let blockMilliseconds { arguments += ["BLOCK", String(blockMilliseconds)] }
        arguments += ["STREAMS", stream, id]
        let result: RedisReply
        if let blockMilliseconds {
            result = try blockingCommand(arguments, blockMilliseconds: blockMilliseconds)
        } else {
            result = try command(arguments)
        }
        guard let streams = result.array, let first = streams.first?.array, first.count == 2 else { return [] }
        return try StreamEntry.parseList(first[1])
    }

    public static func xackArguments(_ stream: String, group: String, ids: [String]) -> [String] {
        ["XACK", stream, group] + ids
    }

    @discardableResult
    public func xack(_ stream: String, group: String, ids: [String]) throws(RedisError) -> Int64 {
        try command(Self.xackArguments(stream, group: group, ids: ids)).integer ?? 0
    }

    /// XCLAIM of specific ids; returns the entries now owned by `consumer`.
    public func xclaim(_ stream: String, group: String, consumer: String, minIdleMilliseconds: Int, ids: [String]) throws(RedisError) -> [StreamEntry] {
        let reply = try command(["XCLAIM", stream, group, consumer, String(minIdleMilliseconds)] + ids)
        return try StreamEntry.parseList(reply)
    }

    public func xpendingSummary(_ stream: String, group: String) throws(RedisError) -> PendingSummary {
        let reply = try command(["XPENDING", stream, group])
        guard let parts = reply.array, parts.count == 4 else {
            throw RedisError(kind: .protocolViolation, message: "malformed XPENDING reply")
        }
        var consumers: [String: Int64] = [:]
        for item in parts[3].array ?? [] {
            if let pair = item.array, pair.count == 2, let name = pair[0].string { consumers[name] = pair[1].integer ?? 0 }
        }
        return PendingSummary(count: parts[0].integer ?? 0, smallestID: parts[1].string, largestID: parts[2].string, consumers: consumers)
    }

    /// XPENDING's extended form: pending entries between `start` and `end`, optionally of one consumer.
    public func xpending(_ stream: String, group: String, start: String = "-", end: String = "+", count: Int = 100,
                         consumer: String? = nil, minIdleMilliseconds: Int? = nil) throws(RedisError) -> [PendingEntry] {
        var arguments = ["XPENDING", stream, group]
        if let minIdleMilliseconds { arguments += ["IDLE", String(minIdleMilliseconds)] }
        arguments += [start, end, String(count)]
        if let consumer { arguments.append(consumer) }
        let reply = try command(arguments)
        return (reply.array ?? []).compactMap { item in
            guard let parts = item.array, parts.count == 4, let id = parts[0].string, let owner = parts[1].string else { return nil }
            return PendingEntry(id: id, consumer: owner, idleMilliseconds: parts[2].integer ?? 0, deliveries: parts[3].integer ?? 0)
        }
    }

    public func xinfoGroups(_ stream: String) throws(RedisError) -> [[String: RedisReply]] {
        (try command(["XINFO", "GROUPS", stream]).array ?? []).compactMap(\.pairs)
    }

    public func xinfoConsumers(_ stream: String, group: String) throws(RedisError) -> [[String: RedisReply]] {
        (try command(["XINFO", "CONSUMERS", stream, group]).array ?? []).compactMap(\.pairs)
    }

    public func xinfoStream(_ stream: String) throws(RedisError) -> [String: RedisReply] {
        try command(["XINFO", "STREAM", stream]).pairs ?? [:]
    }

    public func xlen(_ stream: String) throws(RedisError) -> Int64 {
        try command(["XLEN", stream]).integer ?? 0
    }

    public func xrange(_ stream: String, start: String = "-", end: String = "+", count: Int? = nil) throws(RedisError) -> [StreamEntry] {
        var arguments = ["XRANGE", stream, start, end]
        if let count { arguments += ["COUNT", String(count)] }
        return try StreamEntry.parseList(command(arguments))
    }

    // MARK: transactions and scripts

    /// MULTI, the commands, EXEC in one round trip. Returns the commands' replies, or nil when a WATCHed
    /// key changed and Redis aborted the transaction.
    public func transaction(_ commands: [[String]]) throws(RedisError) -> [RedisReply]? {
        let replies = try pipeline([["MULTI"]] + commands + [["EXEC"]])
        for reply in replies.dropLast() {
            if case .error(let text) = reply {
                // A command rejected while queueing aborts the whole transaction (EXECABORT).
                throw RedisError.fromReply(text)
            }
        }
        switch replies.last! {
        case .null: return nil
        case .array(let results): return results
        case .error(let text): throw RedisError.fromReply(text)
        default: throw RedisError(kind: .protocolViolation, message: "malformed EXEC reply")
        }
    }

    @discardableResult
    public func scriptLoad(_ source: String) throws(RedisError) -> String {
        guard let sha = try command(["SCRIPT", "LOAD", source]).string else {
            throw RedisError(kind: .protocolViolation, message: "SCRIPT LOAD returned no digest")
        }
        return sha
    }

    public func evalsha(_ sha: String, keys: [String], arguments: [String]) throws(RedisError) -> RedisReply {
        try command(["EVALSHA", sha, String(keys.count)] + keys + arguments)
    }
}
