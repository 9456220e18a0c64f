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

/// A list of every page of a collection (`KubernetesClient.list`).
public struct KubeList: Sendable {
    public var items: [Value]
    /// The list's `metadata.resourceVersion`: a watch from it misses nothing and repeats nothing.
    public var resourceVersion: String

    public init(items: [Value], resourceVersion: String) {
        self.items = items
        self.resourceVersion = resourceVersion
    }
}

/// How a watch (`KubernetesClient.watch`) ended without an error.
public enum KubeWatchEnd: Sendable, Equatable {
    /// The server closed it (its timeout, a restart): watch again from the last resourceVersion seen.
    case closed
    /// The resourceVersion is too old for the server (410 Gone, as an ERROR event or as the answer):
    /// list again.
    case expired
    /// The caller ended it: its event callback returned false, or `shouldStop` said so.
    case stopped
}

/// Calls the Kubernetes API over libcurl — no kubectl. 429, 5xx and connection failures are retried
/// with capped exponential backoff that honours Retry-After; a 401 re-runs an exec credential plugin
/// once. Every attempt, and every watch's start, first takes a token from the rate limiter (when one
/// is given). Handles are pooled: safe to use from several threads.
public final class KubernetesClient: Sendable {
    public let credentials: KubeCredentials
    public let maximumAttempts: Int
    public let maximumBackoff: Double
    /// nil: no client-side limit (`--kube-qps 0`).
    public let rateLimiter: KubeRateLimiter?
    /// The leader's fence: every write (any verb but GET) is checked against it first; nil: no fence
    /// (a client that does not write as the maestro role's leader).
    public let fence: LeaderFence?
    /// Sent as User-Agent, so that the API server's audit log (and the test double's request log) tells
    /// replicas apart.
    public let userAgent: String?
    private let logger: Logger
    private let handles = Mutex<[HTTPClientBox]>([])
    private let counts = Mutex<[String: Int]>([:])

    public init(credentials: KubeCredentials, maximumAttempts: Int = 6, maximumBackoff: Double = 10, rateLimiter: KubeRateLimiter? = nil,
                fence: LeaderFence? = nil, userAgent: String? = nil, logger: Logger) {
        self.credentials = credentials
        self.maximumAttempts = max(1, maximumAttempts)
        self.maximumBackoff = maximumBackoff
        self.rateLimiter = rateLimiter?.isEnabled == true ? rateLimiter : nil
        self.fence = fence
        self.userAgent = userAgent
        self.logger = logger
    }

    /// Requests made, by `<verb> <code>` (`PATCH 200`, `GET 404`, `GET error`; a watch's verb is `WATCH`).
    public var requestCounts: [String: Int] { counts.withLock { $0 } }

    private func withHandle<R>(_ body: (HTTPClient) throws -> R) throws -> R {
        let box = try handles.withLock { $0.popLast() } ?? HTTPClientBox(client: HTTPClient(options: HTTPClientOptions(
            connectTimeoutMilliseconds: 5_000, totalTimeoutMilliseconds: 30_000, tls: credentials.tls)))
        defer { handles.withLock { $0.append(box) } }
        return try body(box.client)
    }

    /// One API call; `body` is sent as JSON (valid YAML for apply patches too).
    /// `accept`: what the answer should be (`…;as=PartialObjectMetadataList;…` for metadata only).
    /// `fenced: false` only for the lease's own requests: taking or renewing it is how a replica
    /// becomes or stays the leader.
    public func request(_ method: String, _ path: String, query: [(String, String)] = [], body: Value? = nil,
                       contentType: String = "application/json", accept: String = "application/json",
                       fenced: Bool = true) throws(ClusterError) -> KubeResponse {
        try FlowTracing.span("kubernetes.request", kind: .client, attributes: { $0["http.request.method"] = method; $0["url.path"] = path }) {
            span throws(ClusterError) in
            let response = try perform(method, path, query: query, body: body, contentType: contentType, accept: accept,
                                       fence: fenced && method != "GET" ? fence : nil)
            span?.updateAttributes { $0["http.response.status_code"] = response.status }
            return response
        }
    }

    private func perform(_ method: String, _ path: String, query: [(String, String)], body: Value?,
                         contentType: String, accept: String, fence: LeaderFence?) throws(ClusterError) -> KubeResponse {
        let url = self.url(path, query: query)
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
            rateLimiter?.acquire()
            // Checked before every attempt: a retry after a backoff (or a pause) may come too late.
            try fence?.check(method, path)
            var headers: [(name: String, value: String)] = [("Accept", accept)]
            if let userAgent { headers.append(("User-Agent", userAgent)) }
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
                count(method, path, "error")
                guard error.isTransient || error.kind == .other, attempt < maximumAttempts else {
                    throw ClusterError(error.kind == .tls ? .rejected : .unavailable, "Kubernetes API: \(error.message)")
                }
                pause(attempt: attempt, retryAfter: nil)
                continue
            } catch {
                throw ClusterError(.unavailable, "Kubernetes API: \(error)")
            }
            count(method, path, String(response.status))
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

    private func url(_ path: String, query: [(String, String)]) -> String {
        var url = credentials.server.trimmingSuffix("/") + path
        if !query.isEmpty {
            url += "?" + query.map { "\(PercentEncoding.encode($0.0))=\(PercentEncoding.encode($0.1))" }.joined(separator: "&")
        }
        return url
    }

    private func count(_ verb: String, _ path: String, _ code: String) {
        counts.withLock { $0["\(verb) \(code)", default: 0] += 1 }
        Counter(label: "maestro_kube_requests_total",
                dimensions: [("verb", verb), ("resource", KubeResourcePath.resource(ofPath: path)), ("code", code)]).increment()
    }

    /// Every item of a collection, `pageSize` at a time (`limit`/`continue`), with the list's
    /// resourceVersion (see `listPages`).
    public func list(_ path: String, labelSelector: String? = nil, pageSize: Int = 500,
                     accept: String = "application/json") throws(ClusterError) -> KubeList {
        var items: [Value] = []
        let resourceVersion = try listPages(path, labelSelector: labelSelector, pageSize: pageSize, accept: accept,
                                            restarted: { items = [] }, page: { items += $0 })
        return KubeList(items: items, resourceVersion: resourceVersion)
    }

    /// Lists a collection `pageSize` items at a time (`limit`/`continue`), handing each page to `page` as it
    /// arrives — a caller that keeps less than the whole objects never holds a whole list of them — and
    /// answers the list's resourceVersion. A continue token that expired meanwhile (410: the server
    /// compacted its history) starts the list over, as client-go's pager does, a few times at most:
    /// `restarted` is called first, and the caller drops the pages it was given.
    public func listPages(_ path: String, labelSelector: String? = nil, pageSize: Int = 500, accept: String = "application/json",
                          restarted: () -> Void, page: ([Value]) -> Void) throws(ClusterError) -> String {
        var restarts = 0
        while true {
            var token: String?
            repeat {
                var query: [(String, String)] = []
                if let labelSelector, !labelSelector.isEmpty { query.append(("labelSelector", labelSelector)) }
                if pageSize > 0 { query.append(("limit", String(pageSize))) }
                if let token { query.append(("continue", token)) }
                let response = try request("GET", path, query: query, accept: accept)
                if response.status == 410 && token != nil { break }
                guard response.status == 200 else {
                    let message = "cannot list \(path): \(response.body["message"]?.stringValue ?? "HTTP \(response.status)")"
                    throw ClusterError([400, 403, 404].contains(response.status) ? .rejected : .failed, message)
                }
                page(response.body["items"]?.listValue ?? [])
                let metadata = response.body["metadata"]
                token = metadata?["continue"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
                if token == nil { return metadata?["resourceVersion"]?.stringValue ?? "" }
            } while true
            restarts += 1
            guard restarts <= 5 else { throw ClusterError(.failed, "cannot list \(path): its continue token expired \(restarts) times") }
            logger.debug("list continue token expired, listing again", metadata: ["kube.path": "\(path)"])
            restarted()
        }
    }

    /// Watches a collection: `onEvent` gets each event (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`) with
    /// its object as it arrives, on the calling thread, until the server closes the watch, the
    /// resourceVersion proves too old (`.expired`), or the caller stops it (`onEvent` returns false, or
    /// `shouldStop` — asked about once a second even while nothing arrives). `query` carries
    /// `resourceVersion`, `allowWatchBookmarks`, `timeoutSeconds`, selectors; `watch=1` is added. The
    /// start takes a token from the rate limiter; the stream itself does not. A connection silent for
    /// `idleTimeoutSeconds` (no event, no bookmark) is taken for dead: `.unavailable`. Not retried here:
    /// a watcher reconnects with its own backoff. Errors: 429/5xx and connection failures `.unavailable`
    /// (with Retry-After), a 401 re-runs the credential plugin next time, other answers `.failed`.
    public func watch(_ path: String, query: [(String, String)], accept: String = "application/json", idleTimeoutSeconds: Int,
                      shouldStop: @escaping @Sendable () -> Bool = { false },
                      onEvent: @escaping (_ type: String, _ object: Value) -> Bool) throws(ClusterError) -> KubeWatchEnd {
        let url = self.url(path, query: query + [("watch", "1")])
        rateLimiter?.acquire()
        var headers: [(name: String, value: String)] = [("Accept", accept)]
        if let userAgent { headers.append(("User-Agent", userAgent)) }
        do {
            if let token = try credentials.token.token() { headers.append(("Authorization", "Bearer \(token)")) }
        } catch {
            throw ClusterError(.unavailable, "cannot get credentials: \(error)")
        }
        var pending: [UInt8] = []
        var expired = false
        var failure: ClusterError?
        let result: HTTPStreamResult
        do {
            // A handle of its own: a watch holds it for minutes, and the pool's handles carry a total timeout.
            let client = try HTTPClient(options: HTTPClientOptions(connectTimeoutMilliseconds: 5_000, tls: credentials.tls))
            if let pair = try credentials.token.clientCertificate() {
                client.options.tls.clientCertificate = .pem(pair.certificate)
                client.options.tls.clientKey = .pem(pair.key)
            }
            result = try client.stream(HTTPRequest(method: "GET", url: url, headers: headers), idleTimeoutSeconds: idleTimeoutSeconds,
                                       shouldStop: shouldStop) { chunk in
                pending += chunk
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = pending[..<newline]
                    pending.removeSubrange(...newline)
                    guard !line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) else { continue }
                    guard let event = try? JSON.decode(bytes: Array(line)), let type = event["type"]?.stringValue else {
                        failure = ClusterError(.failed, "watch of \(path): an event that is not JSON")
                        return false
                    }
                    let object = event["object"] ?? .null
                    if type == "ERROR" {
                        if object["code"]?.intValue == 410 {
                            expired = true
                        } else {
                            failure = ClusterError(.failed, "watch of \(path): \(object["message"]?.stringValue ?? "an ERROR event")")
                        }
                        return false
                    }
                    guard onEvent(type, object) else { return false }
                }
                return true
            }
        } catch let error as HTTPError {
            count("WATCH", path, "error")
            throw ClusterError(error.kind == .tls ? .rejected : .unavailable, "Kubernetes API watch: \(error.message)")
        } catch {
            throw ClusterError(.unavailable, "Kubernetes API watch: \(error)")
        }
        count("WATCH", path, String(result.status))
        if let failure { throw failure }
        if expired { return .expired }
        switch result.status {
        case 200..<300:
            return result.endedByCaller ? .stopped : .closed
        case 410:
            return .expired
        case 401:
            credentials.token.invalidate()
            throw ClusterError(.unavailable, "watch of \(path): HTTP 401, the credentials are renewed for the next try")
        case 429, 500...:
            throw ClusterError(.unavailable, "watch of \(path): HTTP \(result.status)", retryAfter: result.header("Retry-After").flatMap(Double.init))
        default:
            let message = (try? JSON.decode(bytes: result.body))?["message"]?.stringValue ?? "HTTP \(result.status)"
            throw ClusterError([400, 403, 404].contains(result.status) ? .rejected : .failed, "watch of \(path): \(message)")
        }
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

    /// Subresources of a namespace itself: `/api/v1/namespaces/<ns>/status` is not a collection in it.
    static let namespaceSubresources: Set<String> = ["status", "finalize"]

    /// The resource a request path is about, as RBAC names it (the metrics' `resource` label):
    /// `deployments` for `/apis/apps/v1/namespaces/ns/deployments/x`, `pods/log` for a pod's log,
    /// `namespaces` for a namespace; `""` for paths outside `/api` and `/apis` (discovery, `/version`).
    public static func resource(ofPath path: String) -> String {
        let withoutQuery = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        var segments = withoutQuery.split(separator: "/").map(String.init)
        switch segments.first {
        case "api": segments.removeFirst(min(2, segments.count))
        case "apis": segments.removeFirst(min(3, segments.count))
        default: return ""
        }
        if segments.count >= 3, segments[0] == "namespaces", !namespaceSubresources.contains(segments[2]) {
            segments.removeFirst(2)
        }
        guard let plural = segments.first else { return "" }
        return segments.count >= 3 ? "\(plural)/\(segments[2])" : plural
    }
}
