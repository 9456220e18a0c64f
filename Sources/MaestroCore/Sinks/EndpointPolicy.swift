public import MaestroHTTP
internal import Synchronization
internal import Foundation

/// Where a collector's exporter may point. Exporter endpoints are tenant input that the cluster will
/// call, so a `url` field of a sink config is refused (provisioning_error naming the field) when its
/// host is a cloud-metadata name, or is or resolves to a link-local or cloud-metadata address
/// (`MetadataEndpoints`, always) or an address in a denied range (`--collector-deny-cidr`; by default
/// loopback, the private ranges, carrier-grade NAT and IPv6 unique-local). Names are resolved by
/// maestro's resolver (cached for a minute); a name that does not resolve here is accepted, since the
/// cluster may resolve names maestro cannot — the template's NetworkPolicy is the backstop.
public struct EndpointPolicy: Sendable {
    public static let defaultDeniedRanges = ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                             "fc00::/7"]

    /// The defaults; valid by construction.
    public static let standard: EndpointPolicy = {
        do {
            return try EndpointPolicy()
        } catch {
            preconditionFailure("the default denied ranges parse: \(error)")
        }
    }()

    public var denied: [IPNetwork]
    private let resolve: @Sendable (String) -> [String]

    /// `denied` in CIDR form; an entry `none` alone denies nothing beyond the metadata addresses.
    /// `resolvesNames` false checks literal addresses and metadata names only (no DNS lookups).
    public init(denied: [String] = defaultDeniedRanges, resolvesNames: Bool = true,
                resolver: (@Sendable (String) -> [String])? = nil) throws(ConfigSchemaError) {
        var ranges: [IPNetwork] = []
        for text in denied where text != "none" {
            guard let network = IPNetwork(parsing: text) else {
                throw ConfigSchemaError(field: "collector-deny-cidr", message: "collector-deny-cidr: \(text) is not an address range such as 10.0.0.0/8")
            }
            ranges.append(network)
        }
        self.denied = ranges
        let cache = ResolutionCache()
        let lookup = resolver ?? { HostResolver.addresses(of: $0) }
        if resolvesNames {
            resolve = { name in cache.addresses(of: name, lookup: lookup) }
        } else {
            resolve = { _ in [] }
        }
    }

    /// Why an endpoint URL must not be called by a collector, or nil. Never repeats the URL (it may
    /// carry credentials).
    public func refusal(url text: String) -> String? {
        guard let host = Self.host(of: text) else { return nil }
        if MetadataEndpoints.refusal(forName: host) != nil { return "names a cloud metadata service" }
        let addresses: [IPAddress]
        if let literal = IPAddress(parsing: host) {
            addresses = [literal]
        } else if let last = host.split(separator: ".").last, last.allSatisfy({ $0.isASCII && $0.isNumber }) || last.lowercased().hasPrefix("0x") {
            return "has a host that looks like an IP address but is not written as one (a.b.c.d)"
        } else {
            addresses = resolve(host).compactMap { IPAddress(parsing: $0) }
        }
        for address in addresses {
            if MetadataEndpoints.refusal(forAddress: address) != nil {
                return "points at a link-local or cloud metadata address (\(address))"
            }
            if let range = denied.first(where: { $0.contains(address) || address.embeddedIPv4.map($0.contains) == true }) {
                return "points at \(address), in a range collectors may not reach (\(range); --collector-deny-cidr)"
            }
        }
        return nil
    }

    /// The host of `scheme://[user@]host[:port]/…`: lowercased, IPv6 without brackets, no trailing dot.
    static func host(of text: String) -> String? {
        guard let separator = text.firstRange(of: "://") else { return nil }
        var authority = text[separator.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var host: Substring
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {
            host = authority[authority.index(after: authority.startIndex)..<close]
            if let zone = host.firstIndex(of: "%") { host = host[..<zone] }
        } else {
            host = authority.prefix { $0 != ":" }
        }
        while host.hasSuffix(".") { host = host.dropLast() }
        return host.isEmpty ? nil : host.lowercased()
    }
}

/// Resolutions of the last minute, so that re-validating every sink does not ask DNS each time.
final class ResolutionCache: Sendable {
    private let entries = Mutex<[String: (addresses: [String], until: Date)]>([:])

    func addresses(of name: String, lookup: (String) -> [String]) -> [String] {
        let now = Date()
        if let cached = entries.withLock({ $0[name] }), cached.until > now { return cached.addresses }
        let addresses = lookup(name)
        entries.withLock { table in
            if table.count > 4_096 { table.removeAll() }
            table[name] = (addresses, now.addingTimeInterval(60))
        }
        return addresses
    }
}
