internal import CHiredis
internal import Dispatch
#if canImport(Glibc)
internal import Glibc
#endif

/// A reply from Redis, copied out of hiredis' memory.
public enum RedisReply: Sendable, Equatable {
    case status(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case null
    case array([RedisReply])

    /// Text of a bulk or status reply (lossy for non-UTF-8 bytes).
    public var string: String? {
        switch self {
        case .bulk(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .status(let text): return text
        default: return nil
        }
    }

    /// Whether a bulk reply's bytes are UTF-8 (other replies: true).
    public var isValidUTF8: Bool {
        if case .bulk(let bytes) = self { return String(validating: bytes, as: UTF8.self) != nil }
        return true
    }

    public var integer: Int64? {
        switch self {
        case .integer(let number): return number
        case .bulk, .status: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    public var array: [RedisReply]? {
        if case .array(let items) = self { return items }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// A flat `[key, value, key, value, …]` array as a dictionary (XINFO, HGETALL).
    public var pairs: [String: RedisReply]? {
        guard let items = array, items.count % 2 == 0 else { return nil }
        var result: [String: RedisReply] = [:]
        var index = 0
        while index < items.count {
            guard let key = items[index].string else { return nil }
            result[key] = items[index + 1]
            index += 2
        }
        return result
    }
}

public struct RedisError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The connection could not be made or was lost; reconnecting may help.
        case connection
        /// No reply within the command timeout; the connection was dropped.
        case timeout
        /// A consumer group does not exist (`NOGROUP`).
        case noGroup
        /// A consumer group exists already (`BUSYGROUP`).
        case busyGroup
        /// A key holds another type (`WRONGTYPE`).
        case wrongType
        /// A script is not in the script cache (`NOSCRIPT`).
        case noScript
        /// The server refused the credentials.
        case authentication
        /// Any other error reply; `message` holds Redis's text.
        case server
        /// A reply that was not of the expected shape.
        case protocolViolation
    }

    public let kind: Kind
    public let message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "Redis: \(message)" }

    /// Whether the failure concerns the connection rather than the command (retry after reconnecting).
    public var isConnectionFailure: Bool { kind == .connection || kind == .timeout }

    /// Classifies an error reply by its prefix.
    public static func fromReply(_ text: String) -> RedisError {
        let code = text.prefix { $0 != " " }
        switch code {
        case "NOGROUP": return RedisError(kind: .noGroup, message: text)
        case "BUSYGROUP": return RedisError(kind: .busyGroup, message: text)
        case "WRONGTYPE": return RedisError(kind: .wrongType, message: text)
        case "NOSCRIPT": return RedisError(kind: .noScript, message: text)
        case "NOAUTH", "WRONGPASS": return RedisError(kind: .authentication, message: text)
        default: return RedisError(kind: .server, message: text)
        }
    }
}

/// One connection to Redis. hiredis is blocking, so a connection belongs to one thread at a time (a
/// worker's own thread, never the cooperative pool).
/// `@unchecked Sendable`: it may be handed from one thread to another, but never used by two at once.
public final class RedisConnection: @unchecked Sendable {
    public let url: RedisURL
    public let connectTimeoutMilliseconds: Int
    public var commandTimeoutMilliseconds: Int
    private var context: UnsafeMutablePointer<redisContext>?
    /// The sentinel that answered last: asked first next time.
    private var preferredSentinel = 0

    public init(url: RedisURL, connectTimeoutMilliseconds: Int = 2_000, commandTimeoutMilliseconds: Int = 5_000) throws(RedisError) {
        self.url = url
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.commandTimeoutMilliseconds = commandTimeoutMilliseconds
        try connect()
    }

    deinit {
        if let context { redisFree(context) }
    }

    /// True when the last failure left the connection unusable; the next command reconnects.
    public var isBroken: Bool { context == nil }

    /// Drops the connection (if any) and connects again, with AUTH and SELECT.
    public func reconnect() throws(RedisError) {
        close()
        try connect()
    }

    public func close() {
        if let context { redisFree(context) }
        context = nil
    }

    /// The data node this connection is (or was last) connected to: with Sentinel, the master found.
    public private(set) var address: RedisURL.Address?

    private func connect() throws(RedisError) {
        if let sentinel = url.sentinel {
            try connectThroughSentinel(sentinel)
        } else {
            try open(RedisURL.Address(host: url.host, port: url.port), confirmsMaster: false)
        }
    }

    /// Asks the sentinels for the master, confirms it with ROLE, and during a failover (no sentinel
    /// answers, or the one named is not a master yet) asks again with a capped backoff until the
    /// connect timeout has passed. Callers retry past that with their own backoff.
    private func connectThroughSentinel(_ sentinel: RedisURL.Sentinel) throws(RedisError) {
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(1, connectTimeoutMilliseconds)) * 1_000_000
        let perNodeTimeout = min(connectTimeoutMilliseconds, 1_000)
        var lastError = RedisError(kind: .connection, message: "no sentinel answered")
        var attempt = 0
        while true {
            for index in sentinel.nodes.indices {
                let node = sentinel.nodes[(index + preferredSentinel) % sentinel.nodes.count]
                do {
                    let master = try Self.askSentinel(node, sentinel: sentinel, timeoutMilliseconds: perNodeTimeout)
                    try open(master, confirmsMaster: true)
                    preferredSentinel = (index + preferredSentinel) % sentinel.nodes.count
                    return
                } catch {
                    lastError = error
                    // Wrong credentials do not get better by asking again.
                    if error.kind == .authentication { throw RedisError(kind: .authentication, message: "\(url): \(error.message)") }
                }
            }
            attempt += 1
            let pause = min(1_000, 50 << min(attempt, 5))
            let now = DispatchTime.now().uptimeNanoseconds
            guard now + UInt64(pause) * 1_000_000 < deadline else { break }
            usleep(UInt32(pause * 1_000))
        }
        throw RedisError(kind: .connection, message: "no master \"\(sentinel.masterName)\" through \(url): \(lastError.message)")
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` on one sentinel, with the sentinels' credentials.
    private static func askSentinel(_ node: RedisURL.Address, sentinel: RedisURL.Sentinel, timeoutMilliseconds: Int) throws(RedisError) -> RedisURL.Address {
        let connection = try RedisConnection(url: RedisURL(host: node.host, port: node.port, username: sentinel.username, password: sentinel.password),
                                             connectTimeoutMilliseconds: timeoutMilliseconds, commandTimeoutMilliseconds: timeoutMilliseconds)
        defer { connection.close() }
        let reply = try connection.command(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel.masterName])
        guard let pair = reply.array, pair.count == 2, let host = pair[0].string, let port = pair[1].integer.flatMap({ Int(exactly: $0) }) else {
            throw RedisError(kind: .connection, message: "sentinel \(node) knows no master named \"\(sentinel.masterName)\"")
        }
        return RedisURL.Address(host: host, port: port)
    }

    /// Connects to one data node, with AUTH and SELECT; `confirmsMaster`: ROLE must say master (a
    /// sentinel may still name the old master for a moment after a failover).
    private func open(_ target: RedisURL.Address, confirmsMaster: Bool) throws(RedisError) {
        guard let fresh = maestro_redis_connect(target.host, Int32(target.port), connectTimeoutMilliseconds) else {
            throw RedisError(kind: .connection, message: "cannot allocate a connection to \(url)")
        }
        if fresh.pointee.err != 0 {
            let reason = Self.errorText(fresh)
            redisFree(fresh)
            throw RedisError(kind: .connection, message: "cannot connect to \(url)\(url.sentinel == nil ? "" : " (master \(target))"): \(reason)")
        }
        context = fresh
        address = target
        applyTimeout(commandTimeoutMilliseconds)
        do throws(RedisError) {
            if let password = url.password {
                if let username = url.username {
                    _ = try command(["AUTH", username, password])
                } else {
                    _ = try command(["AUTH", password])
                }
            }
            if confirmsMaster {
                let role = try command(["ROLE"]).array?.first?.string
                guard role == "master" else {
                    throw RedisError(kind: .connection, message: "\(target) named by the sentinels answers ROLE \(role ?? "?"), not master")
                }
            }
            if url.database != 0 { _ = try command(["SELECT", String(url.database)]) }
        } catch {
            close()
            // Never repeat the server's text for AUTH failures verbatim into places that may log arguments.
            throw RedisError(kind: error.kind, message: "\(url): \(error.message)")
        }
    }

    private func applyTimeout(_ milliseconds: Int) {
        if let context { _ = maestro_redis_set_timeout(context, milliseconds) }
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Runs one command. An error reply is thrown as a typed `RedisError`.
    @discardableResult
    public func command(_ arguments: [String]) throws(RedisError) -> RedisReply {
        let replies = try pipeline([arguments])
        if case .error(let text) = replies[0] { throw RedisError.fromReply(text) }
        return replies[0]
    }

    /// Runs a blocking command (XREADGROUP BLOCK …) whose reply may take `blockMilliseconds`.
    @discardableResult
    public func blockingCommand(_ arguments: [String], blockMilliseconds: Int) throws(RedisError) -> RedisReply {
        applyTimeout(commandTimeoutMilliseconds + blockMilliseconds)
        defer { applyTimeout(commandTimeoutMilliseconds) }
        return try command(arguments)
    }

    /// Sends every command, then reads every reply: one round trip for the lot. Error replies are
    /// returned in place (`.error`), so one failing command does not hide the others' results.
    public func pipeline(_ commands: [[String]]) throws(RedisError) -> [RedisReply] {
        if context == nil { try connect() }
        guard let context else { throw RedisError(kind: .connection, message: "not connected") }
        for arguments in commands {
            let appended = Self.withArgv(arguments) { count, argv, lengths in
                redisAppendCommandArgv(context, count, argv, lengths)
            }
            guard appended == REDIS_OK else { throw fail(context) }
        }
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutablePointer<redisReply>?
            guard maestro_redis_get_reply(context, &raw) == REDIS_OK, let raw else { throw fail(context) }
            replies.append(Self.copy(raw))
            freeReplyObject(raw)
        }
        if let demotion = replies.lazy.compactMap(Self.demotion).first {
            close()
            throw RedisError(kind: .connection, message: "\(url)\(address.map { " at \($0)" } ?? ""): \(demotion); reconnecting to the master")
        }
        return replies
    }

    /// The error text of a reply saying this server is no longer a writable master (a failover demoted
    /// it, or it lost its link to the master): the command did nothing, and the connection is dropped so
    /// that the next one finds the current master. The whole pipeline counts as failed: callers run it again
    /// (the writes refused this way did nothing).
    private static func demotion(_ reply: RedisReply) -> String? {
        guard case .error(let text) = reply else { return nil }
        let code = text.prefix { $0 != " " }
        return code == "READONLY" || code == "MASTERDOWN" || code == "UNBLOCKED" ? String(text.prefix(120)) : nil
    }

    /// Marks the connection broken and describes why.
    private func fail(_ context: UnsafeMutablePointer<redisContext>) -> RedisError {
        let code = context.pointee.err
        let reason = Self.errorText(context)
        let timedOut = code == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)
        close()
        if timedOut {
            return RedisError(kind: .timeout, message: "no reply from \(url) within \(commandTimeoutMilliseconds) ms")
        }
        return RedisError(kind: .connection, message: "connection to \(url) lost: \(reason.isEmpty ? "error \(code)" : reason)")
    }

    private static func withArgv<R>(_ arguments: [String], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R) -> R {
        var storage: [UInt8] = []
        var offsets: [Int] = []
        var lengths: [Int] = []
        storage.reserveCapacity(arguments.reduce(0) { $0 + $1.utf8.count + 1 })
        for argument in arguments {
            offsets.append(storage.count)
            lengths.append(argument.utf8.count)
            storage.append(contentsOf: argument.utf8)
            storage.append(0)
        }
        return storage.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            var pointers: [UnsafePointer<CChar>?] = offsets.map { base + $0 }
            return pointers.withUnsafeMutableBufferPointer { argv in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    body(Int32(arguments.count), argv.baseAddress!, lengthBuffer.baseAddress!)
                }
            }
        }
    }

    private static func copy(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        switch value.type {
        case REDIS_REPLY_STRING:
            guard let text = value.str else { return .bulk([]) }
            return .bulk(Array(UnsafeRawBufferPointer(start: text, count: value.len)))
        case REDIS_REPLY_STATUS:
            return .status(value.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: value.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_ERROR:
            return .error(value.str.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: value.len), as: UTF8.self) } ?? "")
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(value.elements)
            for index in 0..<value.elements {
                if let element = value.element[index] { items.append(copy(element)) } else { items.append(.null) }
            }
            return .array(items)
        default:
            return .null
        }
    }
}
