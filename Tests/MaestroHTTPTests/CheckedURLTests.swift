import MaestroHTTP
import MaestroTestSupport
import Testing

@Suite("the strict URL check and address ranges", .testThreads, .timeLimit(.minutes(2)))
struct CheckedURLTests {
    /// Input → the text curl is given.
    static let accepted: [(String, String)] = [
        ("http://127.0.0.1:8080/echo", "http://127.0.0.1:8080/echo"),
        ("HTTPS://Example.COM/a?b=c#fragment", "https://example.com/a?b=c"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com?x=1", "http://example.com/?x=1"),
        ("http://[::1]:9000/p", "http://[::1]:9000/p"),
        ("http://[0:0:0:0:0:0:0:1]/", "http://[::1]/"),
        ("http://[FD00:EC2::254]/", "http://[fd00:ec2::254]/"),
        ("http://my_host-1.internal.example:1/", "http://my_host-1.internal.example:1/"),
        ("http://xn--bcher-kva.example/%00", "http://xn--bcher-kva.example/%00"),
    ]

    static let refused: [(String, String)] = [
        ("http://127.0.0.2:80\u{0}@127.0.0.1:80/", "control character"),
        ("http://127.0.0.1/\u{0}", "control character"),
        ("http://127.0.0.1/a b", "space"),
        ("http://127.0.0.1/\u{7F}", "control character"),
        ("http://bücher.example/", "non-ASCII"),
        ("http://user:pw@127.0.0.1/", "user-info"),
        ("http://127.0.0.2@127.0.0.1/", "user-info"),
        ("http://a\\@127.0.0.1/", "user-info"),
        ("http://a\\b/", "backslash"),
        ("http://2852039166/", "four decimal numbers"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "four decimal numbers"),
        ("http://169.254.43518/", "four decimal numbers"),
        ("http://127.1/", "four decimal numbers"),
        ("http://0177.0.0.1/", "four decimal numbers"),
        ("http://example.123/", "four decimal numbers"),
        ("http://metadata.google.internal./", "ending in '.'"),
        ("http://a..b/", "empty label"),
        ("http://[fe80::1%25eth0]/", "not an IPv6 address"),
        ("http://[::1/", "closing"),
        ("http://[::1]x/", "after the IPv6"),
        ("http://127.0.0.1:0/", "port"),
        ("http://127.0.0.1:65536/", "port"),
        ("http://127.0.0.1:+80/", "port"),
        ("http://127.0.0.1:/", "port"),
        ("http:///path", "no host"),
        ("ftp://127.0.0.1/", "only absolute http"),
        ("file:///etc/passwd", "only absolute http"),
        ("127.0.0.1/x", "only absolute http"),
    ]

    @Test("accepted URLs become the canonical text curl reads the same way", arguments: accepted.indices)
    func accepts(_ index: Int) throws {
        let (input, expected) = Self.accepted[index]
        let url = try CheckedURL.parse(input)
        #expect(url.text == expected)
        #expect(url.curlAgrees, "curl reads \(url.text) as \(String(describing: CheckedURL.curlView(of: url.text)))")
    }

    @Test("refused URLs say why", arguments: refused.indices)
    func refuses(_ index: Int) {
        let (input, reason) = Self.refused[index]
        #expect {
            try CheckedURL.parse(input)
        } throws: { error in
            "\(error)".contains(reason)
        }
    }

    @Test("address ranges compare bytes, whatever the spelling")
    func ranges() throws {
        let network = try #require(IPNetwork(parsing: "169.254.0.0/16"))
        #expect(network.contains(try #require(IPAddress(parsing: "169.254.169.254"))))
        #expect(!network.contains(try #require(IPAddress(parsing: "169.255.0.1"))))
        #expect(IPNetwork(parsing: "10.0.0.0/33") == nil)
        #expect(IPNetwork(parsing: "fd00::/8")?.contains(try #require(IPAddress(parsing: "fd12::1"))) == true)
        #expect(IPAddress(parsing: "::ffff:169.254.169.254")?.embeddedIPv4 == IPAddress(parsing: "169.254.169.254"))
        #expect(IPAddress(parsing: "::1")?.embeddedIPv4 == nil)
        #expect(IPAddress(parsing: "2001:db8::1")?.embeddedIPv4 == nil)
        #expect(IPAddress(parsing: "01.2.3.4") == nil, "no octal-looking parts")
        #expect(MetadataEndpoints.refusal(forAddress: try #require(IPAddress(parsing: "10.1.2.3")),
                                          extra: [try #require(IPNetwork(parsing: "10.0.0.0/8"))]) != nil)
    }
}
