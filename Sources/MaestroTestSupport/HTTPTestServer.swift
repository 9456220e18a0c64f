internal import Foundation
public import MaestroCore
internal import MaestroHTTP
public import MaestroValue

/// Tests/Support/http_test_server.py on a free loopback port (echoes requests as JSON).
public final class HTTPTestServer: @unchecked Sendable {
    public let port: Int
    public let process: ChildProcess
    public let scheme: String
    /// The loopback address it listens on.
    public let host: String
    public var baseURL: String { "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)" }

    public init(arguments: [String] = [], tls: Bool = false, host: String = "127.0.0.1") throws {
        (process, port) = try startSupportScript("http_test_server.py", arguments: arguments + ["--bind", host])
        scheme = tls ? "https" : "http"
        self.host = host
    }

    /// How many requests the server has received (its /requests endpoint, not counted itself).
    public func requestsReceived() throws -> Int {
        let response = try HTTPClient().perform(HTTPRequest(url: baseURL + "/requests"))
        guard case .map(let fields) = try JSON.decode(response.text), case .int(let count)? = fields["count"] else {
            throw ProcessError("/requests answered \(response.text)")
        }
        return Int(count)
    }

    deinit {
        process.signal(SIGKILL)
        process.wait()
    }

    /// Every request the server got so far, oldest first: `method`, `path`, `headers` (lower-case
    /// names) and `body`.
    public func received() throws -> [Value] {
        let client = try HTTPClient(options: HTTPClientOptions(tls: TLSOptions(insecure: true)))
        let response = try client.perform(HTTPRequest(url: baseURL + "/_received"))
        return try JSON.decode(bytes: response.body).listValue ?? []
    }
}

/// A throw-away certificate authority with a server certificate for 127.0.0.1 and a client
/// certificate, made with the openssl command.
public final class TestCertificates: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public var caCertificate: String { directory.path + "/ca.crt" }
    public var serverCertificate: String { directory.path + "/server.crt" }
    public var serverKey: String { directory.path + "/server.key" }
    public var clientCertificate: String { directory.path + "/client.crt" }
    public var clientKey: String { directory.path + "/client.key" }

    public init() throws {
        directory = try TemporaryDirectory()
        let openssl = try executable("openssl")
        let path = directory.path
        try directory.write("san.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        let steps: [[String]] = [
            ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(path)/ca.key",
             "-out", "\(path)/ca.crt", "-days", "2", "-subj", "/CN=maestro-test-ca"],
            ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(path)/server.key",
             "-out", "\(path)/server.csr", "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", "\(path)/server.csr", "-CA", "\(path)/ca.crt", "-CAkey", "\(path)/ca.key", "-CAcreateserial",
             "-out", "\(path)/server.crt", "-days", "2", "-extfile", "\(path)/san.ext"],
            ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(path)/client.key",
             "-out", "\(path)/client.csr", "-subj", "/CN=maestro-client"],
            ["x509", "-req", "-in", "\(path)/client.csr", "-CA", "\(path)/ca.crt", "-CAkey", "\(path)/ca.key", "-CAcreateserial",
             "-out", "\(path)/client.crt", "-days", "2"],
        ]
        for step in steps {
            let result = try runProgram([openssl] + step)
            guard result.code == 0 else { throw ProcessError("openssl \(step[0]) failed: \(result.output)") }
        }
    }
}

/// Starts a script of Tests/Support that prints "PORT <n>" first; returns it and the port.
func startSupportScript(_ name: String, arguments: [String]) throws -> (ChildProcess, Int) {
    let log = NSTemporaryDirectory() + "maestro-\(name)-" + UUID().uuidString
    let process = try ChildProcess([try executable("python3"), repositoryRoot + "/Tests/Support/" + name] + arguments, logPath: log)
    let deadline = Date().addingTimeInterval(10)
    while Date() < deadline {
        if let text = try? String(contentsOfFile: log, encoding: .utf8), let line = text.split(separator: "\n").first(where: { $0.hasPrefix("PORT ") }),
           let port = Int(line.dropFirst(5)) {
            return (process, port)
        }
        guard process.isRunning else { throw ProcessError("\(name) exited: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")") }
        usleep(20_000)
    }
    throw ProcessError("\(name) did not start within 10 s")
}
