internal import MaestroLua
internal import MaestroValue
internal import MaestroHTTP

/// `maestro.http.request{...}` for ops hooks: only hosts on `--http-allow-host`; the URL parsed once,
/// strictly (`CheckedURL`: no control characters, no user-info, no ambiguous host spellings), and the
/// text checked is the text curl gets; cloud-metadata names refused before resolution and link-local
/// and metadata addresses after (`MetadataEndpoints`), and the connection pinned to the checked
/// address, so neither DNS nor a second reading of the URL can change it; no proxy from the
/// environment; redirects never followed; timeouts always.
public struct HTTPHostPolicy: Sendable {
    public var allowedHosts: Set<String>
    public var timeoutMilliseconds: Int
    public var maximumResponseBytes: Int
    /// Name resolution: the numeric addresses of a host name (getaddrinfo; tests give their own).
    public var resolver: @Sendable (String) -> [String]
    /// The plugin this policy is for: it may call only the hosts of `allowedHosts` it declares and is
    /// granted (`http:<host>`). nil: `allowedHosts` alone (tests of the global list).
    public var plugin: (name: String, capabilities: PluginCapabilities)?

    public init(allowedHosts: [String], timeoutMilliseconds: Int = 5_000, maximumResponseBytes: Int = 1 << 20,
                resolver: (@Sendable (String) -> [String])? = nil) {
        self.allowedHosts = Set(allowedHosts.map(Self.normalizedHost))
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maximumResponseBytes = maximumResponseBytes
        self.resolver = resolver ?? { HostResolver.addresses(of: $0) }
    }

    /// An allow-list entry as `CheckedURL` spells hosts: lowercased, IPv6 without brackets and in
    /// canonical form.
    static func normalizedHost(_ host: String) -> String {
        var text = host.lowercased()
        if text.hasPrefix("[") && text.hasSuffix("]") { text = String(text.dropFirst().dropLast()) }
        if text.contains(":"), let address = IPAddress(parsing: text) { return address.text }
        return text
    }

    /// Why a destination is refused, or nil when it may be called: a metadata name, a name that does
    /// not resolve, or any of its addresses a link-local or metadata one.
    static func refusal(host: String, addresses: [String]) -> String? {
        if let refusal = MetadataEndpoints.refusal(forName: host) { return refusal }
        if addresses.isEmpty { return "\(host) does not resolve" }
        for text in addresses {
            guard let address = IPAddress(parsing: text) else { return "\(host) resolves to \(text), which is not an address" }
            if let refusal = MetadataEndpoints.refusal(forAddress: address) { return "\(host) resolves to \(refusal)" }
        }
        return nil
    }
}

enum HTTPHostModule {
    static func module(policy: HTTPHostPolicy) -> LuaHostModule {
        LuaHostModule(name: "http", functions: [
            LuaHostFunction("request") { arguments throws(LuaHostError) in
                guard arguments.count >= 1, case .map(let options)? = arguments[0] else {
                    throw LuaHostError.badArgument(1, "a table {method=, url=, headers=, body=, timeout_ms=} expected")
                }
                guard case .string(let url)? = options["url"] else { throw LuaHostError.badArgument(1, "url (a string) is required") }
                let method = options["method"]?.stringValue?.uppercased() ?? "GET"
                guard ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(method) else {
                    throw LuaHostError.badArgument(1, "method must be GET, POST, PUT, PATCH, DELETE or HEAD")
                }
                var headers: [(name: String, value: String)] = []
                if case .map(let given)? = options["headers"] {
                    for key in given.keys.sorted() {
                        guard case .string(let value) = given[key]! else { throw LuaHostError.badArgument(1, "header \(key) must be a string") }
                        headers.append((key, value))
                    }
                }
                var body: [UInt8]?
                if let value = options["body"], !value.isNull {
                    guard case .string(let text) = value else { throw LuaHostError.badArgument(1, "body must be a string (use maestro.json.encode)") }
                    body = Array(text.utf8)
                }
                let timeout = min(Int(options["timeout_ms"]?.intValue ?? Int64(policy.timeoutMilliseconds)), 30_000)
                return perform(method: method, url: url, headers: headers, body: body, timeout: timeout, policy: policy)
            },
        ])
    }

    /// Where a checked request goes: the URL curl gets and the address it must connect to.
    struct Destination: Equatable {
        var url: CheckedURL
        var address: IPAddress
    }

    enum Decision: Equatable {
        case allowed(Destination)
        case refused(String)
    }

    /// The whole decision, without a connection: parse, allow-list, metadata names, resolution,
    /// metadata addresses. Returns the destination or why it is refused.
    static func decide(_ text: String, policy: HTTPHostPolicy) -> Decision {
        let url: CheckedURL
        do {
            url = try CheckedURL.parse(text)
        } catch {
            return .refused(error.message)
        }
        guard policy.allowedHosts.contains(url.host) else {
            return .refused("host \(url.host) is not on the allow-list (--http-allow-host)")
        }
        if let plugin = policy.plugin, !plugin.capabilities.has("http:" + url.host) {
            return .refused("host \(url.host) is not on this plugin's allow-list: "
                            + plugin.capabilities.refusal("http:" + url.host, plugin: plugin.name))
        }
        if let refusal = MetadataEndpoints.refusal(forName: url.host) { return .refused("refused: \(refusal)") }
        // An address literal is its own resolution; a name goes to the resolver only once checked.
        let literal = IPAddress(parsing: url.host)
        let addresses = literal.map { [$0.text] } ?? policy.resolver(url.host)
        if let refusal = HTTPHostPolicy.refusal(host: url.host, addresses: addresses) { return .refused("refused: \(refusal)") }
        guard let address = literal ?? IPAddress(parsing: addresses[0]) else { return .refused("refused: \(url.host) does not resolve") }
        guard url.curlAgrees else { return .refused("refused: curl reads \(url.text) differently") }
        return .allowed(Destination(url: url, address: address))
    }

    static func perform(method: String, url text: String, headers: [(name: String, value: String)], body: [UInt8]?, timeout: Int,
                        policy: HTTPHostPolicy) -> [Value?] {
        let destination: Destination
        switch decide(text, policy: policy) {
        case .allowed(let checked): destination = checked
        case .refused(let refusal): return [nil, .string("maestro.http: \(refusal)")]
        }
        for header in headers {
            if let problem = headerProblem(header) { return [nil, .string("maestro.http: \(problem)")] }
        }
        var options = HTTPClientOptions(connectTimeoutMilliseconds: min(timeout, 5_000), totalTimeoutMilliseconds: timeout,
                                        followRedirects: false, maximumResponseBytes: policy.maximumResponseBytes)
        let url = destination.url
        let pinned = destination.address.isIPv6 ? "[\(destination.address.text)]" : destination.address.text
        // Both pins: a name resolves to the checked address, and every connection goes there.
        if IPAddress(parsing: url.host) == nil { options.resolve = ["\(url.host):\(url.port):\(pinned)"] }
        options.connectTo = ["::\(pinned):\(url.port)"]
        options.ignoreProxies = true
        do {
            let client = try HTTPClient(options: options)
            let response = try client.perform(HTTPRequest(method: method, url: url.text, headers: headers, body: body))
            var responseHeaders: [String: Value] = [:]
            for header in response.headers { responseHeaders[header.name.lowercased()] = .string(header.value) }
            return [.map(["status": .int(Int64(response.status)), "headers": .map(responseHeaders), "body": .string(response.text)])]
        } catch {
            return [nil, .string("maestro.http: \(error.message)")]
        }
    }

    /// A header name is a token; a value holds no control character but tab.
    static func headerProblem(_ header: (name: String, value: String)) -> String? {
        let tokenBytes = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)
        if header.name.isEmpty || !header.name.utf8.allSatisfy(tokenBytes.contains) {
            return "a header name must be a token (letters, digits and !#$%&'*+-.^_`|~)"
        }
        if header.value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
            return "header \(header.name) contains a control character"
        }
        return nil
    }
}
