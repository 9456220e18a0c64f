internal import Foundation
public import Logging
public import MaestroHTTP
public import MaestroValue
internal import Synchronization
internal import CoreMetrics

/// A response of the API server, decoded.
public struct KubeResponse: Sendable {
    public var status: Int
    public var body: Value
    public var text: String
}

/// Calls the Kubernetes API over libcurl — no kubectl. 429, 5xx and connection failures are retried
/// with capped exponential backoff that honours Retry-After; a 401 re-runs an exec credential plugin
/// once. Handles are pooled: safe to use from several threads.
public final class KubernetesClient: Sendable {
    public let credentials: KubeCredentials
    public let maximumAttempts: Int
    public let maximumBackoff: Double
    private let logger: Logger
    private let handles = Mutex<[HTTPClientBox]>([])
    private let counts = Mutex<[String: Int]>([:])

    public init(credentials: KubeCredentials, maximumAttempts: Int = 6, maximumBackoff: Double = 10, logger: Logger) {
        self.credentials = credentials
        self.maximumAttempts = max(1, maximumAttempts)
        self.maximumBackoff = maximumBackoff
        self.logger = logger
    }

    /// Requests made, by `<verb> <code>` (`PATCH 200`, `GET 404`, `GET error`).
    public var requestCounts: [String: Int] { counts.withLock { $0 } }

    private func withHandle<R>(_ body: (HTTPClient) throws -> R) throws -> R {
        let box = try handles.withLock { $0.popLast() } ?? HTTPClientBox(client: HTTPClient(options: HTTPClientOptions(
            connectTimeoutMilliseconds: 5_000, totalTimeoutMilliseconds: 30_000, tls: credentials.tls)))
        defer { handles.withLock { $0.append(box) } }
        return try body(box.client)
    }

    /// One API call; `body` is sent as JSON (valid YAML for apply patches too).
    public func request(_ method: String, _ path: String, query: [(String, String)] = [], body: Value? = nil,
                       contentType: String = "application/json") throws(ClusterError) -> KubeResponse {
        var url = credentials.server.trimmingSuffix("/") + path
        if !query.isEmpty {
            url += "?" + query.map { "\(PercentEncoding.encode($0.0))=\(PercentEncoding.encode($0.1))" }.joined(separator: "&")
        }
        var payload: [UInt8]?
        if let body {
            do {
                payload = Array(try JSON.encode(body).utf8)
            } catch {
                throw ClusterError(.rejected, "cannot encode the request: \(error)")
            }
        }
        var attempt = 0
        var reauthenticated = false
        while true {
            attempt += 1
            var headers: [(name: String, value: String)] = [("Accept", "application/json")]
            if payload != nil { headers.append(("Content-Type", contentType)) }
            do {
                if let token = try credentials.token.token() { headers.append(("Authorization", "Bearer \(token)")) }
            } catch {
                throw ClusterError(.unavailable, "cannot get credentials: \(error)")
            }
            let response: HTTPResponse
            do {
                response = try withHandle { client in
                    if let pair = try credentials.token.clientCertificate() {
                        client.options.tls.clientCertificate = .pem(pair.certificate)
                        client.options.tls.clientKey = .pem(pair.key)
                    }
                    return try client.perform(HTTPRequest(method: method, url: url, headers: headers, body: payload))
                }
            } catch let error as HTTPError {
                count(method, "error")
                guard error.isTransient || error.kind == .other, attempt < maximumAttempts else {
                    throw ClusterError(error.kind == .tls ? .rejected : .unavailable, "Kubernetes API: \(error.message)")
                }
                pause(attempt: attempt, retryAfter: nil)
                continue
            } catch {
                throw ClusterError(.unavailable, "Kubernetes API: \(error)")
            }
            count(method, String(response.status))
            if response.status == 401 && !reauthenticated {
                reauthenticated = true
                credentials.token.invalidate()
                continue
            }
            if response.status == 429 || response.status >= 500 {
                let retryAfter = response.header("Retry-After").flatMap(Double.init)
                guard attempt < maximumAttempts else {
                    throw ClusterError(.unavailable, "Kubernetes API answered \(response.status) \(attempt) times: \(Self.message(response))",
                                       retryAfter: retryAfter)
                }
                pause(attempt: attempt, retryAfter: retryAfter)
                continue
            }
            let decoded = (try? JSON.decode(bytes: response.body)) ?? .null
            return KubeResponse(status: response.status, body: decoded, text: response.text)
        }
    }

    private func pause(attempt: Int, retryAfter: Double?) {
        Thread.sleep(forTimeInterval: Backoff(first: 0.1, maximum: maximumBackoff).delay(attempt: attempt, atLeast: retryAfter))
    }

    private func count(_ method: String, _ code: String) {
        counts.withLock { $0["\(method) \(code)", default: 0] += 1 }
        Counter(label: "maestro_kube_requests_total", dimensions: [("verb", method), ("code", code)]).increment()
    }

    /// The API's own message from a Status body.
    public static func message(_ response: HTTPResponse) -> String {
        (try? JSON.decode(bytes: response.body))?["message"]?.stringValue ?? "HTTP \(response.status)"
    }
}

/// An HTTP handle handed between threads by the pool; used by one thread at a time.
final class HTTPClientBox: @unchecked Sendable {
    let client: HTTPClient
    init(client: HTTPClient) { self.client = client }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}

/// Where an object lives in the API: `/api/v1/namespaces/<ns>/secrets/<name>`.
public struct KubeResourcePath: Sendable {
    static let plurals: [String: String] = [
        "Secret": "secrets", "ConfigMap": "configmaps", "Service": "services", "Pod": "pods", "Namespace": "namespaces",
        "Deployment": "deployments", "Lease": "leases", "ServiceAccount": "serviceaccounts", "StatefulSet": "statefulsets",
        "DaemonSet": "daemonsets", "HorizontalPodAutoscaler": "horizontalpodautoscalers", "PodDisruptionBudget": "poddisruptionbudgets",
        "NetworkPolicy": "networkpolicies", "Ingress": "ingresses",
    ]
    static let clusterScoped: Set<String> = ["Namespace"]

    public static func collection(apiVersion: String, kind: String, namespace: String?) -> String {
        let base = apiVersion.contains("/") ? "/apis/\(apiVersion)" : "/api/\(apiVersion)"
        let plural = plurals[kind] ?? kind.lowercased() + "s"
        if clusterScoped.contains(kind) || namespace == nil { return "\(base)/\(plural)" }
        return "\(base)/namespaces/\(namespace!)/\(plural)"
    }

    public static func object(apiVersion: String, kind: String, namespace: String?, name: String) -> String {
        collection(apiVersion: apiVersion, kind: kind, namespace: namespace) + "/" + name
    }
}
