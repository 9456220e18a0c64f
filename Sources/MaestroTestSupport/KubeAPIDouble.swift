internal import Foundation
public import MaestroCore
internal import MaestroHTTP
public import MaestroValue

/// Tests/Support/kube_api_double.py on a free loopback port, with its control endpoints.
public final class KubeAPIDouble: @unchecked Sendable {
    public let port: Int
    public let process: ChildProcess
    public let scheme: String
    public var server: String { "\(scheme)://127.0.0.1:\(port)" }
    private let control: HTTPClient

    public init(namespaces: [String] = ["otelcollectors"], token: String? = nil, tls: (cert: String, key: String, clientCA: String?)? = nil) throws {
        var arguments: [String] = []
        for namespace in namespaces { arguments += ["--namespace", namespace] }
        if let token { arguments += ["--token", token] }
        if let tls {
            arguments += ["--cert", tls.cert, "--key", tls.key]
            if let clientCA = tls.clientCA { arguments += ["--client-ca", clientCA] }
        }
        (process, port) = try startSupportScript("kube_api_double.py", arguments: arguments)
        scheme = tls == nil ? "http" : "https"
        control = try HTTPClient(options: HTTPClientOptions(tls: TLSOptions(insecure: true)))
    }

    deinit {
        process.signal(SIGKILL)
        process.wait()
    }

    @discardableResult
    public func post(_ path: String, _ body: Value) throws -> Value {
        let response = try control.perform(HTTPRequest(method: "POST", url: server + path, headers: [("Content-Type", "application/json")],
                                                       text: try JSON.encode(body)))
        return try JSON.decode(bytes: response.body)
    }

    /// Fault shares: `error500`, `error429`, `reset`, `delay` (0...1), `delay_seconds`, `retry_after`; of writes
    /// after they committed: `error500_after_commit`, `reset_after_commit`; `latency_seconds` on every request
    /// (Tests/Support/README.md).
    public func faults(_ settings: [String: Value]) throws { try post("/_double/faults", .map(settings)) }
    /// Whether the fake controller makes the Deployment's pods available, or fails its rollout.
    public func setAvailable(_ deployment: String, _ available: Bool, failed: Bool = false) throws {
        try post("/_double/available", ["name": .string(deployment), "available": .bool(available), "failed": .bool(failed)])
    }
    /// How the Deployment's pods of the current template behave: `CrashLoopBackOff`, `OOMKilled`,
    /// `ImagePullBackOff`, `Unschedulable`, `ReplicaFailure`, `Stalled`, `ProgressDeadlineExceeded`,
    /// `NotReady`, or nil for healthy (Tests/Support/README.md).
    public func setRollout(_ deployment: String, _ mode: String?) throws {
        try post("/_double/rollout", ["name": .string(deployment), "mode": mode.map(Value.string) ?? .null])
    }
    /// The controller's settings: `paused`, `delay_seconds`, `pod_start_seconds`, …
    public func controller(_ settings: [String: Value]) throws { try post("/_double/controller", .map(settings)) }
    public func setLogs(_ deployment: String, _ text: String) throws { try post("/_double/logs", ["name": .string(deployment), "text": .string(text)]) }
    public func stats() throws -> Value { try post("/_double/stats", .map([:])) }

    /// A GET against the API, as the double answers it (no auth, no faults: for assertions).
    public func get(_ path: String, token: String? = nil) throws -> (status: Int, body: Value) {
        var headers: [(name: String, value: String)] = [("X-Double-Control", "1")]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        let response = try control.perform(HTTPRequest(url: server + path, headers: headers))
        return (response.status, (try? JSON.decode(bytes: response.body)) ?? .null)
    }

    /// A write (or any request) to the API that faults never touch (`X-Double-Control: 1`): a test's own
    /// changes while it injects faults into maestro's requests.
    @discardableResult
    public func send(_ method: String, _ path: String, _ body: Value? = nil, contentType: String = "application/json") throws -> (status: Int, body: Value) {
        var headers: [(name: String, value: String)] = [("X-Double-Control", "1")]
        if body != nil { headers.append(("Content-Type", contentType)) }
        let response = try control.perform(HTTPRequest(method: method, url: server + path, headers: headers,
                                                       body: try body.map { Array(try JSON.encode($0).utf8) }))
        return (response.status, (try? JSON.decode(bytes: response.body)) ?? .null)
    }

    /// A kubeconfig pointing at this double.
    public func kubeconfig(in directory: TemporaryDirectory, user: String = "token: test-token", cluster extra: String = "") throws -> String {
        try directory.write("kubeconfig", """
        apiVersion: v1
        kind: Config
        clusters:
        - name: double
          cluster:
            server: \(server)
        \(extra.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        users:
        - name: tester
          user:
        \(user.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        contexts:
        - name: test
          context:
            cluster: double
            user: tester
            namespace: otelcollectors
        current-context: test
        """)
    }
}
