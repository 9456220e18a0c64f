public import MaestroLua
public import MaestroValue
internal import MaestroHTTP
internal import Foundation

/// `maestro.http.request{...}` for ops hooks: only hosts on `--http-allow-host`; link-local and
/// cloud-metadata addresses refused after resolution (and the connection pinned to the checked
/// address, so DNS cannot change it in between); redirects never followed; timeouts always.
public struct HTTPHostPolicy: Sendable {
    public var allowedHosts: Set<String>
    public var timeoutMilliseconds: Int
    public var maximumResponseBytes: Int

    public init(allowedHosts: [String], timeoutMilliseconds: Int = 5_000, maximumResponseBytes: Int = 1 << 20) {
        self.allowedHosts = Set(allowedHosts.map { $0.lowercased() })
        self.timeoutMilliseconds = timeoutMilliseconds
        self.maximumResponseBytes = maximumResponseBytes
    }

    /// Why a destination is refused, or nil when it may be called.
    static func refusal(host: String, addresses: [String]) -> String? {
        let metadataNames: Set<String> = ["metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"]
        if metadataNames.contains(host.lowercased()) { return "\(host) is a cloud metadata service" }
        if addresses.isEmpty { return "\(host) does not resolve" }
        for address in addresses where isForbidden(address) {
            return "\(host) resolves to \(address), a link-local or cloud metadata address"
        }
        return nil
    }

    static func isForbidden(_ address: String) -> Bool {
        let lowered = address.lowercased()
        if lowered.hasPrefix("169.254.") || lowered == "0.0.0.0" { return true }
        if lowered.hasPrefix("fe8") || lowered.hasPrefix("fe9") || lowered.hasPrefix("fea") || lowered.hasPrefix("feb") { return true }
        if lowered == "fd00:ec2::254" || lowered.hasPrefix("::ffff:169.254.") { return true }
        return false
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

    static func perform(method: String, url: String, headers: [(name: String, value: String)], body: [UInt8]?, timeout: Int,
                        policy: HTTPHostPolicy) -> [Value?] {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = components.host, !host.isEmpty else {
            return [nil, .string("maestro.http: only absolute http and https URLs")]
        }
        guard policy.allowedHosts.contains(host.lowercased()) else {
            return [nil, .string("maestro.http: host \(host) is not on the allow-list (--http-allow-host)")]
        }
        let addresses = HostResolver.addresses(of: host)
        if let refusal = HTTPHostPolicy.refusal(host: host, addresses: addresses) {
            return [nil, .string("maestro.http: refused: \(refusal)")]
        }
        let port = components.port ?? (scheme == "https" ? 443 : 80)
        var options = HTTPClientOptions(connectTimeoutMilliseconds: min(timeout, 5_000), totalTimeoutMilliseconds: timeout,
                                        followRedirects: false, maximumResponseBytes: policy.maximumResponseBytes)
        let pinned = addresses[0].contains(":") ? "[\(addresses[0])]" : addresses[0]
        options.resolve = ["\(host):\(port):\(pinned)"]
        do {
            let client = try HTTPClient(options: options)
            let response = try client.perform(HTTPRequest(method: method, url: url, headers: headers, body: body))
            var responseHeaders: [String: Value] = [:]
            for header in response.headers { responseHeaders[header.name.lowercased()] = .string(header.value) }
            return [.map(["status": .int(Int64(response.status)), "headers": .map(responseHeaders), "body": .string(response.text)])]
        } catch {
            return [nil, .string("maestro.http: \(error.message)")]
        }
    }
}
