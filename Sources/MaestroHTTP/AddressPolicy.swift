#if canImport(Glibc)
internal import Glibc
#endif

/// An IPv4 or IPv6 address as bytes, parsed strictly (IPv4: four decimal numbers; IPv6: inet_pton,
/// so no zone), compared by value so that every spelling of an address is the same address.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 (IPv6), network order.
    public let bytes: [UInt8]
    public var isIPv6: Bool { bytes.count == 16 }

    public init?(parsing text: String) {
        if text.contains(":") {
            var storage = in6_addr()
            guard inet_pton(AF_INET6, text, &storage) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &storage) { Array($0) }
        } else {
            var storage = in_addr()
            // inet_pton (unlike inet_aton) takes only a.b.c.d with decimal parts.
            guard inet_pton(AF_INET, text, &storage) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &storage) { Array($0) }
        }
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// The canonical text (inet_ntop): lowercase, `::` compressed.
    public var text: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = isIPv6 ? AF_INET6 : AF_INET
        let written = bytes.withUnsafeBytes { raw in inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count)) }
        guard written != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String { text }

    /// The IPv4 address an IPv6 address carries and reaches: IPv4-mapped (`::ffff:a.b.c.d`),
    /// IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`,
    /// `64:ff9b:1::/48`) and 6to4 (`2002:AABB:CCDD::/48`).
    public var embeddedIPv4: IPAddress? {
        guard isIPv6 else { return nil }
        let b = bytes
        let zeros = { (range: Range<Int>) in b[range].allSatisfy { $0 == 0 } }
        if zeros(0..<10) && b[10] == 0xFF && b[11] == 0xFF { return IPAddress(bytes: Array(b[12..<16])) }
        if zeros(0..<8) && b[8] == 0xFF && b[9] == 0xFF && zeros(10..<12) { return IPAddress(bytes: Array(b[12..<16])) }
        // IPv4-compatible; ::1 and :: are IPv6's own loopback and unspecified addresses, not IPv4.
        if zeros(0..<12) && b[12] != 0 { return IPAddress(bytes: Array(b[12..<16])) }
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B {
            if zeros(4..<12) { return IPAddress(bytes: Array(b[12..<16])) }
            // RFC 8215's local-use prefix 64:ff9b:1::/48: the address sits in the last 32 bits.
            if b[4] == 0x00 && b[5] == 0x01 { return IPAddress(bytes: Array(b[12..<16])) }
        }
        if b[0] == 0x20 && b[1] == 0x02 { return IPAddress(bytes: Array(b[2..<6])) }
        return nil
    }
}

/// An address range, `address/prefix`.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    /// `a.b.c.d/n`, `x:y::/n`, or a single address (a /32 or /128).
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parsing: String(parts[0])) else { return nil }
        let maximum = address.bytes.count * 8
        var length = maximum
        if parts.count == 2 {
            guard !parts[1].isEmpty, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(parts[1]),
                  (0...maximum).contains(value) else { return nil }
            length = value
        }
        self.address = address
        self.prefixLength = length
    }

    public func contains(_ other: IPAddress) -> Bool {
        guard other.bytes.count == address.bytes.count else { return false }
        var remaining = prefixLength
        for index in 0..<address.bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask: UInt8 = bits == 8 ? 0xFF : ~(0xFF >> UInt8(bits))
            if address.bytes[index] & mask != other.bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String { "\(address.text)/\(prefixLength)" }
}

/// Cloud metadata services and link-local addresses: what neither `maestro.http` nor a collector's
/// exporter may reach. Names are refused before they are resolved; every address a name resolves to
/// (and every address literal) is checked after, IPv6 spellings of IPv4 addresses included.
///
/// Sources (as of 2026): AWS EC2 user guide, "Access instance metadata" (169.254.169.254, IPv6
/// fd00:ec2::254; fd00:ec2::/32 also holds the Amazon DNS and time servers; ECS task metadata on
/// 169.254.170.2; the name instance-data); Google Compute Engine, "About VM metadata"
/// (metadata.google.internal, metadata.goog, 169.254.169.254, fd20:ce::254 for IPv6-only VMs);
/// Azure, "Instance Metadata Service" and "What is IP address 168.63.129.16" (169.254.169.254 and
/// the WireServer 168.63.129.16); Alibaba Cloud ECS, "Instance metadata" (100.100.100.200); Oracle
/// Cloud, "Getting instance metadata" (169.254.169.254, the legacy 192.0.0.192, IPv6
/// fd00:c1::a9fe:a9fe); DigitalOcean "Metadata API", Hetzner Cloud, OpenStack Nova and IBM Cloud
/// (169.254.169.254); OpenStack Neutron's IPv6 metadata spec (fe80::a9fe:a9fe, link-local); Tencent
/// Cloud (metadata.tencentyun.com, 169.254.0.23); Equinix Metal (metadata.platformequinix.com,
/// metadata.packet.net); and the collected list of PayloadsAllTheThings, "SSRF URL for Cloud
/// Instances". docs/lua-api.md carries the same list.
public enum MetadataEndpoints {
    /// Host names of metadata services (compared lowercased, exactly).
    public static let names: Set<String> = [
        "metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal",
        "metadata.azure.com", "metadata.tencentyun.com", "metadata.platformequinix.com", "metadata.packet.net",
        "rancher-metadata",
    ]

    /// Ranges refused, with why.
    public static let networks: [(network: IPNetwork, reason: String)] = [
        ("0.0.0.0/8", "the unspecified network (reaches this host)"),
        ("169.254.0.0/16", "link-local (the metadata services of AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack, Hetzner, IBM, Tencent; ECS task metadata)"),
        ("100.100.100.200/32", "Alibaba Cloud's metadata service"),
        ("192.0.0.192/32", "Oracle Cloud's legacy metadata service"),
        ("168.63.129.16/32", "Azure's WireServer"),
        ("::/128", "the unspecified address (reaches this host)"),
        ("fe80::/10", "IPv6 link-local (OpenStack's fe80::a9fe:a9fe metadata)"),
        ("fd00:ec2::/32", "AWS's IPv6 metadata, DNS and time services"),
        ("fd20:ce::254/128", "Google Cloud's IPv6 metadata service"),
        ("fd00:c1::a9fe:a9fe/128", "Oracle Cloud's IPv6 metadata service"),
    ].map { (IPNetwork(parsing: $0.0)!, $0.1) }

    /// Why a host name is refused before it is resolved, or nil.
    public static func refusal(forName host: String) -> String? {
        names.contains(host.lowercased()) ? "\(host) is a cloud metadata service" : nil
    }

    /// Why an address is refused, or nil. `extra` are further ranges (an operator's internal networks).
    public static func refusal(forAddress address: IPAddress, extra: [IPNetwork] = []) -> String? {
        for (network, reason) in networks where network.contains(address) { return "\(address) is \(reason)" }
        for network in extra where network.contains(address) { return "\(address) is in the denied range \(network)" }
        if let inner = address.embeddedIPv4, let reason = refusal(forAddress: inner, extra: extra) {
            return "\(address) carries \(reason)"
        }
        return nil
    }
}
