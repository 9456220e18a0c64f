internal import Crypto

/// A server-side Lua script, run by its SHA-1 (EVALSHA) on its own or inside a pipeline. The digest is
/// computed here, so a command can be built without a round trip. A server that does not know the script
/// (it restarted, or a client ran SCRIPT FLUSH) answers NOSCRIPT; `RedisConnection.pipeline(_:loading:)`
/// then loads the scripts and runs the commands again — the one place that recovery lives.
public struct RedisScript: Sendable, Hashable {
    public let source: String
    public let sha: String

    public init(_ source: String) {
        self.source = source
        sha = Self.sha1Hex(source)
    }

    /// Lower-case hex SHA-1 of the text's UTF-8 bytes, as Redis's `redis.sha1hex` computes it.
    public static func sha1Hex(_ text: String) -> String {
        Insecure.SHA1.hash(data: Array(text.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    /// The EVALSHA command, to be sent with `pipeline(_:loading:)`.
    public func command(keys: [String], arguments: [String]) -> [String] {
        ["EVALSHA", sha, String(keys.count)] + keys + arguments
    }
}

extension RedisConnection {
    /// Loads the scripts into the server's script cache, all or none (one MULTI/EXEC): a pipeline of
    /// several of them never meets the server knowing some and not the others.
    public func load(_ scripts: [RedisScript]) throws(RedisError) {
        let replies = try pipeline([["MULTI"]] + scripts.map { ["SCRIPT", "LOAD", $0.source] } + [["EXEC"]])
        if case .error(let text) = replies.last { throw RedisError.fromReply(text) }
        let digests = replies.last?.array ?? []
        guard digests.count == scripts.count else {
            throw RedisError(kind: .protocolViolation, message: "SCRIPT LOAD in MULTI answered \(digests.count) digests for \(scripts.count) scripts")
        }
        for (script, digest) in zip(scripts, digests) {
            if case .error(let text) = digest { throw RedisError.fromReply(text) }
            guard digest.string == script.sha else {
                throw RedisError(kind: .protocolViolation, message: "SCRIPT LOAD returned digest \(digest.string ?? "?"), expected \(script.sha)")
            }
        }
    }

    /// Sends `commands` in one pipeline; among them, EVALSHA commands of `scripts`. When any reply is
    /// NOSCRIPT, the scripts are loaded and all commands run again: so every command in a pipeline
    /// sent this way must be safe to repeat (idempotent, or guarded by the script itself).
    public func pipeline(_ commands: [[String]], loading scripts: [RedisScript]) throws(RedisError) -> [RedisReply] {
        let replies = try pipeline(commands)
        let unknownScript = replies.contains { reply in
            if case .error(let text) = reply { return RedisError.fromReply(text).kind == .noScript }
            return false
        }
        guard unknownScript else { return replies }
        try load(scripts)
        return try pipeline(commands)
    }

    /// Runs one script on its own; an error reply is thrown.
    public func eval(_ script: RedisScript, keys: [String], arguments: [String]) throws(RedisError) -> RedisReply {
        let reply = try pipeline([script.command(keys: keys, arguments: arguments)], loading: [script])[0]
        if case .error(let text) = reply { throw RedisError.fromReply(text) }
        return reply
    }
}
