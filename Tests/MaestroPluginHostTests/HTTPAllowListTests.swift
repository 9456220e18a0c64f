import Foundation
import MaestroHTTP
import MaestroTestSupport
import MaestroValue
import Synchronization
import Testing

@testable import MaestroPluginHost

/// Whether ::1 is configured (a network namespace may lack it).
let loopbackIPv6: Bool = {
    (try? String(contentsOfFile: "/proc/net/if_inet6", encoding: .utf8))?.contains("00000000000000000000000000000001") ?? false
}()

/// The `maestro.http` allow-list as an attacker sees it: every request here targets loopback only;
/// destinations elsewhere are checked by the decision functions, which open no connection.
@Suite("maestro.http allow-list table", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct HTTPAllowListTests {
    func request(_ url: String, headers: [(name: String, value: String)] = [], policy: HTTPHostPolicy) -> (status: Int?, error: String?) {
        let result = HTTPHostModule.perform(method: "GET", url: url, headers: headers, body: nil, timeout: 2_000, policy: policy)
        if let response = result.first ?? nil, case .int(let status)? = response["status"] { return (Int(status), nil) }
        return (nil, result.count > 1 ? result[1]?.stringValue : nil)
    }

    @Test("a NUL or other control character cannot carry a request past the allow-list to another host")
    func controlCharacters() throws {
        let allowed = try HTTPTestServer(host: "127.0.0.1")
        let other = try HTTPTestServer(host: "127.0.0.2")
        let policy = HTTPHostPolicy(allowedHosts: ["127.0.0.1"], timeoutMilliseconds: 2_000)
        let attacks = [
            "http://127.0.0.2:\(other.port)\u{0}@127.0.0.1:\(allowed.port)/",
            "http://127.0.0.2:\(other.port)/\u{0}http://127.0.0.1:\(allowed.port)/",
            "http://127.0.0.2:\(other.port)\u{0}.127.0.0.1:\(allowed.port)/",
            "http://127.0.0.1:\(allowed.port)\u{0}/",
            "http://127.0.0.1:\(allowed.port)/a\u{0}b",
            "http://127.0.0.1:\(allowed.port)/\r\nHost: 127.0.0.2",
            "http://127.0.0.1:\(allowed.port)/\t",
            "http://127.0.0.1:\(allowed.port)/\u{7F}",
            "http://127.0.0.2:\(other.port)@127.0.0.1:\(allowed.port)/",
            "http://127.0.0.2:\(other.port)\\@127.0.0.1:\(allowed.port)/",
        ]
        for url in attacks {
            let outcome = request(url, policy: policy)
            #expect(outcome.status == nil, "\(url.debugDescription) was requested")
            #expect(outcome.error?.hasPrefix("maestro.http:") == true, "\(url.debugDescription): \(outcome.error ?? "no error")")
        }
        let headerAttacks: [(name: String, value: String)] = [
            ("X-A", "b\u{0}c"), ("X-A\u{0}", "b"), ("X-A", "b\r\nHost: 127.0.0.2"), ("X-A", "b\u{1}"), ("X A", "b"), ("", "b"),
        ]
        for header in headerAttacks {
            let outcome = request("http://127.0.0.1:\(allowed.port)/echo", headers: [header], policy: policy)
            #expect(outcome.status == nil, "\(header) was sent")
        }
        #expect(try other.requestsReceived() == 0, "the host that is not allowed never receives a request")
        #expect(try allowed.requestsReceived() == 0, "nothing with a control character reaches the allowed host either")
        #expect(request("http://127.0.0.1:\(allowed.port)/echo", headers: [("X-Tab", "a\tb")], policy: policy).status == 200)
        #expect(try allowed.requestsReceived() == 1)
    }

    @Test("an IPv6 literal URL reaches a server on ::1", .enabled(if: loopbackIPv6, "this machine has no IPv6 loopback (::1)"))
    func ipv6Literal() throws {
        let server = try HTTPTestServer(host: "::1")
        for allowed in ["::1", "[::1]", "0:0:0:0:0:0:0:1"] {
            let policy = HTTPHostPolicy(allowedHosts: [allowed], timeoutMilliseconds: 2_000)
            let outcome = request("http://[::1]:\(server.port)/echo", policy: policy)
            #expect(outcome.status == 200, "allow-listed as \(allowed): \(outcome.error ?? "")")
        }
        let policy = HTTPHostPolicy(allowedHosts: ["::1"], timeoutMilliseconds: 2_000)
        #expect(request("http://[0:0::1]:\(server.port)/echo", policy: policy).status == 200, "any spelling of the address")
        #expect(try server.requestsReceived() == 4)
    }

    @Test("metadata names are refused before they are resolved; a name resolving to a metadata address after")
    func namesAndResolution() {
        let asked = Mutex<[String]>([])
        let zone: [String: [String]] = [
            "alibaba.test": ["100.100.100.200"], "mixed.test": ["127.0.0.1", "169.254.169.254"], "mapped.test": ["::ffff:a9fe:a9fe"],
            "oracle6.test": ["fd00:c1::a9fe:a9fe"], "fine.test": ["127.0.0.1"],
        ]
        let metadataNames = ["metadata.google.internal", "metadata.goog", "metadata", "instance-data", "metadata.tencentyun.com"]
        let policy = HTTPHostPolicy(allowedHosts: Array(zone.keys) + metadataNames + ["metadata.google.internal.", "100.100.100.200",
                                                                                    "192.0.0.192", "fd00:ec2::254"],
                                    resolver: { name in
                                        asked.withLock { $0.append(name) }
                                        return zone[name] ?? []
                                    })
        for name in metadataNames {
            guard case .refused(let reason) = HTTPHostModule.decide("http://\(name.uppercased())/computeMetadata/v1/", policy: policy) else {
                Issue.record("\(name) must be refused")
                continue
            }
            #expect(reason.contains("cloud metadata service"), "\(reason)")
        }
        #expect(asked.withLock { $0 }.isEmpty, "a metadata name is never resolved")
        for name in ["alibaba.test", "mixed.test", "mapped.test", "oracle6.test"] {
            guard case .refused(let reason) = HTTPHostModule.decide("http://\(name):8080/", policy: policy) else {
                Issue.record("\(name) must be refused")
                continue
            }
            #expect(reason.contains("resolves to"), "\(reason)")
        }
        for literal in ["http://100.100.100.200/", "http://192.0.0.192/", "http://[fd00:ec2::254]/", "http://[FD00:EC2:0:0::254]/",
                        "http://metadata.google.internal./", "http://1684300000/", "http://0x64.0x64.0x64.0xc8/"] {
            guard case .refused = HTTPHostModule.decide(literal, policy: policy) else {
                Issue.record("\(literal) must be refused")
                continue
            }
        }
        guard case .allowed(let destination) = HTTPHostModule.decide("http://fine.test:8080/x", policy: policy) else {
            Issue.record("a name resolving to loopback is allowed")
            return
        }
        #expect(destination.address == IPAddress(parsing: "127.0.0.1"))
        #expect(destination.url.text == "http://fine.test:8080/x")
    }

    @Test("cloud metadata addresses are refused after resolution (the decision; no connection is made)")
    func metadataAddresses() {
        let refused = [
            "169.254.169.254", "169.254.170.2", "169.254.0.23", "100.100.100.200", "192.0.0.192", "168.63.129.16", "0.0.0.0",
            "fd00:ec2::254", "fd00:ec2::253", "fd20:ce::254", "fd00:c1::a9fe:a9fe", "fe80::a9fe:a9fe", "fe80::1", "::",
            "::ffff:169.254.169.254", "::ffff:100.100.100.200", "::ffff:6464:64c8", "::ffff:0:100.100.100.200",
            "64:ff9b::100.100.100.200", "64:ff9b::a9fe:a9fe", "2002:6464:64c8::1", "::ffff:192.0.0.192",
        ]
        for address in refused {
            let refusal = HTTPHostPolicy.refusal(host: "allowed.example", addresses: [address])
            #expect(refusal != nil, "\(address) must be refused")
        }
        // Any one bad address among good ones refuses the name.
        #expect(HTTPHostPolicy.refusal(host: "allowed.example", addresses: ["127.0.0.1", "100.100.100.200"]) != nil)
        for address in ["127.0.0.1", "::1", "10.0.0.1", "192.0.0.193", "100.100.100.201", "2001:db8::1", "fd00:ec3::254"] {
            #expect(HTTPHostPolicy.refusal(host: "allowed.example", addresses: [address]) == nil, "\(address) is not a metadata address")
        }
        for name in ["metadata.google.internal", "METADATA.Google.Internal", "metadata.goog", "metadata", "instance-data",
                     "metadata.tencentyun.com"] {
            #expect(HTTPHostPolicy.refusal(host: name, addresses: ["127.0.0.1"]) != nil, "\(name) is refused by name")
        }
    }
}
