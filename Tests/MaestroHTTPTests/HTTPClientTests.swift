import Foundation
import MaestroCore
import MaestroTestSupport
import Testing

@testable import MaestroHTTP

func echo(_ response: HTTPResponse) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
}

@Suite("HTTP client against a loopback server", .testThreads, .timeLimit(.minutes(2)))
struct HTTPClientTests {
    @Test("GET, POST, PATCH and DELETE with headers and bodies over one reused handle")
    func methods() throws {
        let server = try HTTPTestServer()
        let client = try HTTPClient(options: HTTPClientOptions(bearerToken: "tok-123"))
        for method in ["GET", "POST", "PATCH", "DELETE", "PUT"] {
            let body: [UInt8]? = method == "GET" ? nil : Array("{\"m\":\"\(method)\"}".utf8)
            let response = try client.perform(HTTPRequest(method: method, url: server.baseURL + "/echo?x=1",
                                                          headers: [("Content-Type", "application/json"), ("X-Custom", "v 1")], body: body))
            #expect(response.status == 200)
            #expect(response.header("x-test") == "yes")
            let json = try echo(response)
            #expect(json["method"] as? String == method)
            #expect(json["path"] as? String == "/echo?x=1")
            let headers = json["headers"] as? [String: String] ?? [:]
            #expect(headers["x-custom"] == "v 1")
            #expect(headers["authorization"] == "Bearer tok-123")
            #expect(json["body"] as? String == (body.map { String(decoding: $0, as: UTF8.self) } ?? ""))
        }
        let notFound = try client.perform(HTTPRequest(url: server.baseURL + "/status/404"))
        #expect(notFound.status == 404)
    }

    @Test("redirects are not followed unless asked")
    func redirects() throws {
        let server = try HTTPTestServer()
        let client = try HTTPClient()
        #expect(try client.perform(HTTPRequest(url: server.baseURL + "/redirect")).status == 302)
        client.options.followRedirects = true
        let followed = try client.perform(HTTPRequest(url: server.baseURL + "/redirect"))
        #expect(followed.status == 200)
        #expect(try echo(followed)["path"] as? String == "/echo")
    }

    @Test("a slow server hits the total timeout")
    func timeout() throws {
        let server = try HTTPTestServer()
        let client = try HTTPClient(options: HTTPClientOptions(totalTimeoutMilliseconds: 300))
        let error = try #require(throws: HTTPError.self) { try client.perform(HTTPRequest(url: server.baseURL + "/slow")) }
        #expect(error.kind == .timeout)
        #expect(error.isTransient)
    }

    @Test("a closed port is connection refused")
    func refused() throws {
        let port = try freeLoopbackPort()
        let client = try HTTPClient()
        let error = try #require(throws: HTTPError.self) { try client.perform(HTTPRequest(url: "http://127.0.0.1:\(port)/")) }
        #expect(error.kind == .connectionRefused)
    }

    @Test("TLS: CA from a file and from memory; unknown CA fails; insecure is explicit")
    func tls() throws {
        let certificates = try TestCertificates()
        let server = try HTTPTestServer(arguments: ["--cert", certificates.serverCertificate, "--key", certificates.serverKey], tls: true)
        let url = server.baseURL + "/echo"

        let untrusted = try HTTPClient()
        let failure = try #require(throws: HTTPError.self) { try untrusted.perform(HTTPRequest(url: url)) }
        #expect(failure.kind == .tls)

        let fromFile = try HTTPClient(options: HTTPClientOptions(tls: TLSOptions(certificateAuthority: .file(certificates.caCertificate))))
        #expect(try fromFile.perform(HTTPRequest(url: url)).status == 200)

        let pem = try Array(Data(contentsOf: URL(fileURLWithPath: certificates.caCertificate)))
        let fromMemory = try HTTPClient(options: HTTPClientOptions(tls: TLSOptions(certificateAuthority: .pem(pem))))
        #expect(try fromMemory.perform(HTTPRequest(url: url)).status == 200)

        let insecure = try HTTPClient(options: HTTPClientOptions(tls: TLSOptions(insecure: true)))
        #expect(try insecure.perform(HTTPRequest(url: url)).status == 200)
    }

    @Test("mutual TLS with a client certificate from files and from memory")
    func clientCertificates() throws {
        let certificates = try TestCertificates()
        let server = try HTTPTestServer(arguments: ["--cert", certificates.serverCertificate, "--key", certificates.serverKey,
                                                    "--client-ca", certificates.caCertificate], tls: true)
        let url = server.baseURL + "/echo"
        let ca = PEMSource.file(certificates.caCertificate)

        let anonymous = try HTTPClient(options: HTTPClientOptions(tls: TLSOptions(certificateAuthority: ca)))
        #expect(throws: HTTPError.self) { try anonymous.perform(HTTPRequest(url: url)) }

        let fromFiles = try HTTPClient(options: HTTPClientOptions(tls: TLSOptions(
            certificateAuthority: ca, clientCertificate: .file(certificates.clientCertificate), clientKey: .file(certificates.clientKey))))
        let response = try fromFiles.perform(HTTPRequest(url: url))
        #expect((try echo(response)["client"] as? [String: String])?["commonName"] == "maestro-client")

        let certificate = try Array(Data(contentsOf: URL(fileURLWithPath: certificates.clientCertificate)))
        let key = try Array(Data(contentsOf: URL(fileURLWithPath: certificates.clientKey)))
        let fromMemory = try HTTPClient(options: HTTPClientOptions(tls: TLSOptions(
            certificateAuthority: ca, clientCertificate: .pem(certificate), clientKey: .pem(key))))
        #expect(try fromMemory.perform(HTTPRequest(url: url)).status == 200)
    }

    @Test("header injection and oversized bodies are refused")
    func limits() throws {
        let server = try HTTPTestServer()
        let client = try HTTPClient(options: HTTPClientOptions(maximumResponseBytes: 10))
        let injected = try #require(throws: HTTPError.self) {
            try client.perform(HTTPRequest(url: server.baseURL + "/", headers: [("X-A", "b\r\nX-Evil: 1")]))
        }
        #expect(injected.kind == .invalidRequest)
        let large = try #require(throws: HTTPError.self) { try client.perform(HTTPRequest(url: server.baseURL + "/echo")) }
        #expect(large.kind == .responseTooLarge)
    }

    @Test("credentials in a URL are not repeated in errors")
    func redaction() throws {
        let port = try freeLoopbackPort()
        let client = try HTTPClient()
        let error = try #require(throws: HTTPError.self) { try client.perform(HTTPRequest(url: "http://user:pa55word@127.0.0.1:\(port)/")) }
        #expect(!error.description.contains("pa55word"))
    }
}
