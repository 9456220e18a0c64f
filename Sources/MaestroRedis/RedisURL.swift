internal import MaestroValue

/// Where and how to connect: `redis://[user:password@]host:port[/db]`, Orb's bare `host:port`, or through
/// Redis Sentinel: `redis+sentinel://[user:password@]host1:26379,host2:26379/<master name>[/db]`
/// `[?sentinel-username=…&sentinel-password=…]`. The user and password before `@` are the data nodes'
/// (as in `redis://`); the sentinels' own credentials, when they have any, are the query's.
public struct RedisURL: Sendable, Equatable, CustomStringConvertible {
    /// The data node to connect to; with Sentinel, the one discovery found last (the first sentinel until then).
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int
    /// Set for a `redis+sentinel://` URL: the master is discovered through these sentinels.
    public var sentinel: Sentinel?

    /// The sentinels of a `redis+sentinel://` URL, the master's name, and the sentinels' credentials.
    public struct Sentinel: Sendable, Equatable {
        public var nodes: [Address]
        public var masterName: String
        public var username: String?
        public var password: String?

        public init(nodes: [Address], masterName: String, username: String? = nil, password: String? = nil) {
            self.nodes = nodes
            self.masterName = masterName
            self.username = username
            self.password = password
        }
    }

    public struct Address: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }
    }

    public init(host: String = "127.0.0.1", port: Int = 6379, username: String? = nil, password: String? = nil, database: Int = 0,
                sentinel: Sentinel? = nil) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.sentinel = sentinel
    }

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let message: String
        public var description: String { message }
    }

    /// The URL with the passwords replaced, safe for logs and errors.
    public var description: String {
        var text = sentinel == nil ? "redis://" : "redis+sentinel://"
        if let username { text += PercentEncoding.encode(username) }
        if password != nil { text += ":***" }
        if username != nil || password != nil { text += "@" }
        guard let sentinel else { return text + Address(host: host, port: port).description + "/\(database)" }
        text += sentinel.nodes.map(\.description).joined(separator: ",")
        text += "/" + PercentEncoding.encode(sentinel.masterName) + "/\(database)"
        var query: [String] = []
        if let user = sentinel.username { query.append("sentinel-username=" + PercentEncoding.encode(user)) }
        if sentinel.password != nil { query.append("sentinel-password=***") }
        return query.isEmpty ? text : text + "?" + query.joined(separator: "&")
    }

    public init(parsing text: String) throws(ParseError) {
        var rest = Substring(text)
        var isSentinel = false
        if rest.hasPrefix("redis://") {
            rest = rest.dropFirst("redis://".count)
        } else if rest.hasPrefix("redis+sentinel://") {
            rest = rest.dropFirst("redis+sentinel://".count)
            isSentinel = true
        } else if rest.contains("://") {
            throw ParseError(message: "unsupported scheme in Redis URL (redis:// and redis+sentinel:// are supported; for TLS see docs/operations.md)")
        }
        var query: Substring = ""
        if isSentinel, let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            (username, password) = try Self.credentials(rest[..<at])
            rest = rest[rest.index(after: at)...]
        }
        guard isSentinel else {
            var database = 0
            if let slash = rest.firstIndex(of: "/") {
                database = try Self.database(rest[rest.index(after: slash)...])
                rest = rest[..<slash]
            }
            let address = try Self.address(rest, defaultPort: 6379)
            self.init(host: address.host, port: address.port, username: username, password: password, database: database)
            return
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2, !parts[1].isEmpty else {
            throw ParseError(message: "Redis Sentinel URL needs the master's name: redis+sentinel://host:26379[,host:26379…]/<master name>[/db]")
        }
        guard parts.count <= 3 else { throw ParseError(message: "Redis Sentinel URL has text after the database") }
        let database = parts.count == 3 ? try Self.database(parts[2]) : 0
        let nodes = try parts[0].split(separator: ",", omittingEmptySubsequences: false).map { node throws(ParseError) in
            try Self.address(node, defaultPort: 26379)
        }
        var sentinel = Sentinel(nodes: nodes, masterName: try Self.percentDecode(parts[1]))
        for pair in query.split(separator: "&") {
            let key = pair.prefix { $0 != "=" }
            let value = try Self.percentDecode(pair.dropFirst(key.count + 1))
            switch key {
            case "sentinel-username": sentinel.username = value.isEmpty ? nil : value
            case "sentinel-password": sentinel.password = value
            default: throw ParseError(message: "Redis Sentinel URL has an unknown parameter \"\(key)\" (known: sentinel-username, sentinel-password)")
            }
        }
        self.init(host: nodes[0].host, port: nodes[0].port, username: username, password: password, database: database, sentinel: sentinel)
    }

    private static func credentials(_ text: Substring) throws(ParseError) -> (username: String?, password: String?) {
        if let colon = text.firstIndex(of: ":") {
            let user = text[..<colon]
            return (user.isEmpty ? nil : try percentDecode(user), try percentDecode(text[text.index(after: colon)...]))
        }
        // `redis://secret@host` is how many clients spell a password alone.
        return (nil, text.isEmpty ? nil : try percentDecode(text))
    }

    private static func database(_ path: Substring) throws(ParseError) -> Int {
        if path.isEmpty { return 0 }
        guard let number = Int(path), number >= 0 else {
            throw ParseError(message: "Redis URL database must be a number, got \"\(path)\"")
        }
        return number
    }

    private static func address(_ text: Substring, defaultPort: Int) throws(ParseError) -> Address {
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw ParseError(message: "Redis URL has an unclosed '[' in the host") }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty {
                throw ParseError(message: "Redis URL has text after the host")
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = text
        }
        guard !host.isEmpty else { throw ParseError(message: "Redis URL has no host") }
        var port = defaultPort
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw ParseError(message: "Redis URL port must be 1-65535, got \"\(portText)\"")
            }
            port = number
        }
        return Address(host: String(host), port: port)
    }

    static func percentDecode(_ text: Substring) throws(ParseError) -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                      let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else {
                    throw ParseError(message: "Redis URL has an invalid percent escape")
                }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
