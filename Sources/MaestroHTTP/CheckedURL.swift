internal import CCurl

/// An absolute http or https URL, parsed once and strictly, so that the host a policy checks is the
/// host curl connects to. Swift strings may hold a NUL that a C string ends at, and URL parsers
/// disagree on user-info, backslashes and numeric host spellings: the grammar accepted here is small
/// enough that curl's own parser reads the canonical text the same way (`curlAgrees`, and the
/// `http-url` fuzz target).
///
/// Accepted: `http` or `https` (any case), `://`, a host (a DNS name of letters, digits, `-`, `_` and
/// `.`; an IPv4 address as four decimal numbers; or a bracketed IPv6 address without a zone), an
/// optional port 1–65535, then a path and query of printable ASCII. Refused: any byte outside
/// printable ASCII (control characters, NUL, space, non-ASCII — percent-encode them), user-info (`@`
/// before the path: credentials go in headers), a backslash before the path, a host name ending in
/// `.`, and numeric host spellings other than dotted decimal (`127.1`, `0x7f.0.0.1`, `2130706433`).
/// The fragment is dropped (it is never sent).
public struct CheckedURL: Sendable, Equatable, CustomStringConvertible {
    /// `http` or `https`.
    public let scheme: String
    /// Lowercased; an IPv6 address in its canonical text, without brackets.
    public let host: String
    public let isIPv6: Bool
    /// The port connected to (the scheme's default when the URL has none).
    public let port: Int
    public let hasExplicitPort: Bool
    /// Path and query, starting with `/`.
    public let target: String

    /// The text handed to curl: exactly what was checked.
    public var text: String {
        "\(scheme)://\(hostForURL)\(hasExplicitPort ? ":\(port)" : "")\(target)"
    }

    /// The host as it appears in a URL (IPv6 in brackets).
    public var hostForURL: String { isIPv6 ? "[\(host)]" : host }

    public var description: String { text }

    public struct Refusal: Error, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
        init(_ message: String) { self.message = message }
    }

    public static func parse(_ url: String) throws(Refusal) -> CheckedURL {
        let bytes = Array(url.utf8)
        if let bad = bytes.firstIndex(where: { $0 < 0x21 || $0 > 0x7E }) {
            let byte = bytes[bad]
            let what = byte < 0x20 || byte == 0x7F ? "a control character" : byte == 0x20 ? "a space" : "a non-ASCII byte"
            throw Refusal("the URL contains \(what) at byte \(bad) (percent-encode it)")
        }
        guard let colon = url.firstIndex(of: ":") else { throw Refusal("only absolute http and https URLs") }
        let scheme = url[..<colon].lowercased()
        guard scheme == "http" || scheme == "https", url[colon...].hasPrefix("://") else {
            throw Refusal("only absolute http and https URLs")
        }
        let rest = url[url.index(colon, offsetBy: 3)...]
        let delimiters: Set<Character> = ["/", "?", "#"]
        let authorityEnd = rest.firstIndex(where: delimiters.contains) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        var target = String(rest[authorityEnd...])
        if let hash = target.firstIndex(of: "#") { target = String(target[..<hash]) }
        if target.isEmpty { target = "/" } else if target.hasPrefix("?") { target = "/" + target }
        if authority.contains("@") { throw Refusal("user-info in a URL is refused (send credentials in a header)") }
        if authority.contains("\\") { throw Refusal("a backslash in the URL's host is refused") }

        var host: String
        var isIPv6 = false
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw Refusal("an IPv6 address without its closing ']'") }
            let inside = authority[authority.index(after: authority.startIndex)..<close]
            guard let canonical = IPAddress(parsing: String(inside)), canonical.isIPv6 else {
                throw Refusal("\(inside) is not an IPv6 address (zones are refused)")
            }
            host = canonical.text
            isIPv6 = true
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw Refusal("unexpected text after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else {
            let colon = authority.firstIndex(of: ":")
            host = String(authority[..<(colon ?? authority.endIndex)]).lowercased()
            if let colon { portText = authority[authority.index(after: colon)...] }
            try checkHostName(host)
        }
        var port = scheme == "https" ? 443 : 80
        if let portText {
            guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let number = Int(portText), (1...65_535).contains(number) else {
                throw Refusal("the port must be a number from 1 to 65535")
            }
            port = number
        }
        if host.isEmpty { throw Refusal("the URL has no host") }
        return CheckedURL(scheme: scheme, host: host, isIPv6: isIPv6, port: port, hasExplicitPort: portText != nil, target: target)
    }

    /// A DNS name, or an IPv4 address in dotted decimal: nothing a resolver or curl could read as
    /// another address than the one checked.
    static func checkHostName(_ host: String) throws(Refusal) {
        guard !host.isEmpty else { throw Refusal("the URL has no host") }
        guard host.utf8.allSatisfy({ isHostByte($0) }) else {
            throw Refusal("the host \(host) may hold only letters, digits, '-', '_' and '.' (IDN names in their xn-- form)")
        }
        if host.hasSuffix(".") { throw Refusal("a host name ending in '.' is refused (write it without)") }
        if host.hasPrefix(".") || host.contains("..") { throw Refusal("the host \(host) has an empty label") }
        // A host whose last label is numeric is an address (WHATWG's rule; inet_aton reads 127.1,
        // 0x7f.1 and 2130706433 too): only the plain four-number spelling is accepted.
        let labels = host.split(separator: ".")
        if let last = labels.last, isNumericLabel(last) {
            guard let address = IPAddress(parsing: host), !address.isIPv6, address.text == host else {
                throw Refusal("the host \(host) looks like an IPv4 address: write it as four decimal numbers (a.b.c.d)")
            }
        }
    }

    /// WHATWG's "ends in a number": decimal digits, or `0x` and hexadecimal digits.
    static func isNumericLabel(_ label: Substring) -> Bool {
        let lowered = label.lowercased()
        if lowered.hasPrefix("0x") { return lowered.dropFirst(2).allSatisfy { $0.isASCII && $0.isHexDigit } }
        return !lowered.isEmpty && lowered.allSatisfy { $0.isASCII && $0.isNumber }
    }

    static func isHostByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }

    /// How curl's own URL parser reads `text`: scheme, host (IPv6 in brackets) and port, or nil when it
    /// refuses the text.
    public static func curlView(of text: String) -> (scheme: String, host: String, port: Int)? {
        guard let handle = curl_url() else { return nil }
        defer { curl_url_cleanup(handle) }
        guard curl_url_set(handle, CURLUPART_URL, text, 0) == CURLUE_OK else { return nil }
        func part(_ which: CURLUPart, _ flags: UInt32 = 0) -> String? {
            var value: UnsafeMutablePointer<CChar>?
            guard curl_url_get(handle, which, &value, flags) == CURLUE_OK, let value else { return nil }
            defer { curl_free(value) }
            return String(cString: value)
        }
        guard let scheme = part(CURLUPART_SCHEME), let host = part(CURLUPART_HOST),
              let portText = part(CURLUPART_PORT, UInt32(CURLU_DEFAULT_PORT)), let port = Int(portText) else { return nil }
        return (scheme.lowercased(), host.lowercased(), port)
    }

    /// Whether curl reads this URL's text as the same scheme, host and port.
    public var curlAgrees: Bool {
        guard let view = Self.curlView(of: text) else { return false }
        return view.scheme == scheme && view.host == hostForURL && view.port == port
    }
}
