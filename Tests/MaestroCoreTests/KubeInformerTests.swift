import Foundation
import Logging
import MaestroCore
import MaestroTestSupport
import MaestroValue
import Synchronization
import Testing

/// Every change an informer's handler heard, in order.
final class HeardChanges: Sendable {
    private let changes = Mutex<[(event: KubeInformerEvent, name: String, object: Value)]>([])

    func record(_ event: KubeInformerEvent, _ object: Value) {
        changes.withLock { $0.append((event, object["metadata"]?["name"]?.stringValue ?? "", object)) }
    }

    /// `added a`, `deleted b`, …
    var log: [String] { changes.withLock { $0.map { "\($0.event.rawValue) \($0.name)" } } }
    var objects: [Value] { changes.withLock { $0.map(\.object) } }
}

private let namespace = "otelcollectors"
private let configMaps = "/api/v1/namespaces/otelcollectors/configmaps"
private let secrets = "/api/v1/namespaces/otelcollectors/secrets"

private func configMap(_ name: String, labels: [String: Value] = ["app": "maestro-test"], data: [String: Value] = ["k": "v"]) -> Value {
    ["apiVersion": "v1", "kind": "ConfigMap", "metadata": ["name": .string(name), "labels": .map(labels)], "data": .map(data)]
}

/// A client as the tests' writer and as the informer's, with short retry pauses.
private func testClient(_ double: KubeAPIDouble, attempts: Int = 6, maximumBackoff: Double = 0.2, rateLimiter: KubeRateLimiter? = nil) -> KubernetesClient {
    KubernetesClient(credentials: KubeCredentials(server: double.server, origin: "test"), maximumAttempts: attempts,
                     maximumBackoff: maximumBackoff, rateLimiter: rateLimiter, logger: Logger(label: "test"))
}

private func informer(_ double: KubeAPIDouble, kind: String = "ConfigMap", selector: String? = "app=maestro-test",
                      options: KubeInformerOptions = KubeInformerOptions(backoff: Backoff(first: 0.1, maximum: 0.5)),
                      heard: HeardChanges) -> KubeInformer {
    KubeInformer(client: testClient(double), apiVersion: "v1", kind: kind, namespace: namespace, labelSelector: selector,
                 options: options, logger: Logger(label: "test")) { event, object in heard.record(event, object) }
}

@Suite("the watch-based cache (KubeInformer) and the client's list, watch and limits against the API double",
       .serialized, .testThreads, .timeLimit(.minutes(3)))
struct KubeInformerTests {
    @Test("list then watch: objects created, changed and deleted through the API reach the cache and the handler")
    func listAndWatch() throws {
        let double = try KubeAPIDouble()
        let writer = testClient(double)
        #expect(try writer.request("POST", configMaps, body: configMap("before")).status == 201)
        #expect(try writer.request("POST", configMaps, body: configMap("unlabelled", labels: [:])).status == 201)
        let heard = HeardChanges()
        let cache = informer(double, heard: heard)
        cache.start()
        defer { cache.stop() }
        #expect(cache.waitUntilSynced(timeout: 20))
        #expect(cache.hasSynced)
        #expect(heard.log == ["added before"], "the selector leaves the unlabelled one out")

        #expect(try writer.request("POST", configMaps, body: configMap("during")).status == 201)
        #expect(eventually { cache.get("during") != nil })
        let patched = try writer.request("PATCH", configMaps + "/before", body: ["data": ["k": "changed"]], contentType: "application/merge-patch+json")
        #expect(patched.status == 200)
        #expect(eventually { cache.get("before")?["data"]?["k"] == "changed" })
        #expect(try writer.request("DELETE", configMaps + "/during").status == 200)
        #expect(eventually { cache.get("during") == nil })
        #expect(heard.log == ["added before", "added during", "updated before", "deleted during"])
        #expect(cache.resourceVersion == patched.body["metadata"]?["resourceVersion"]?.stringValue.map { String(Int($0)! + 1) },
                "the deletion's resourceVersion, the one after the patch's")
        #expect(cache.get("before")?["metadata"]?["managedFields"] == nil, "managedFields are not cached")
        #expect(try double.get(configMaps + "/before").body["metadata"]?["managedFields"] != nil, "though the server has them")
    }

    @Test("a list in pages of 2 gets all 7 objects, and the list's resourceVersion")
    func paging() throws {
        let double = try KubeAPIDouble()
        let writer = testClient(double)
        for index in 1...7 { #expect(try writer.request("POST", configMaps, body: configMap("page-\(index)")).status == 201) }
        let reader = testClient(double)
        let list = try reader.list(configMaps, labelSelector: "app=maestro-test", pageSize: 2)
        #expect(Set(list.items.compactMap { $0["metadata"]?["name"]?.stringValue }) == Set((1...7).map { "page-\($0)" }))
        #expect(list.resourceVersion == String(try #require(double.stats()["resourceVersion"]?.intValue)))
        #expect(reader.requestCounts["GET 200"] == 4, "7 objects, 2 a page: 4 pages")

        let heard = HeardChanges()
        let cache = informer(double, options: KubeInformerOptions(pageSize: 2), heard: heard)
        cache.start()
        defer { cache.stop() }
        #expect(cache.waitUntilSynced(timeout: 20))
        #expect(cache.count == 7)
        #expect(heard.log.sorted() == (1...7).map { "added page-\($0)" })
    }

    @Test("a continue token that expires in the middle of a list starts the list over")
    func expiredContinue() throws {
        let double = try KubeAPIDouble()
        let writer = testClient(double)
        for index in 1...5 { #expect(try writer.request("POST", configMaps, body: configMap("c-\(index)")).status == 201) }
        try double.post("/_double/reset-stats", .map([:]))
        // Every request waits a second before it is served: the compaction lands while the second page's
        // request waits, after the first page made its snapshot.
        try double.faults(["latency_seconds": 1.0])
        let reader = testClient(double)
        let result = Mutex<Result<KubeList, ClusterError>?>(nil)
        let thread = Thread {
            do throws(ClusterError) {
                let list = try reader.list(configMaps, pageSize: 2)
                result.withLock { $0 = .success(list) }
            } catch {
                result.withLock { $0 = .failure(error) }
            }
        }
        thread.start()
        #expect(eventually { (try? double.stats()["requests"]?["GET"]?.intValue) == 2 })
        try double.post("/_double/compact", .map([:]))
        #expect(eventually(timeout: 30) { result.withLock { $0 } != nil })
        try double.faults(["latency_seconds": 0.0])
        let list = try #require(try result.withLock { $0 }?.get())
        #expect(Set(list.items.compactMap { $0["metadata"]?["name"]?.stringValue }) == Set((1...5).map { "c-\($0)" }))
        #expect(reader.requestCounts["GET 410"] == 1, "\(reader.requestCounts)")
    }

    @Test("after a compaction while the watch was away, the informer lists again and misses nothing, a deletion included")
    func relistAfterGone() throws {
        let double = try KubeAPIDouble()
        for name in ["keep", "gone", "change"] { #expect(try double.send("POST", configMaps, configMap(name)).status == 201) }
        let heard = HeardChanges()
        // Watches that last a second: the one open when the faults start ends soon.
        let cache = informer(double, options: KubeInformerOptions(watchTimeoutSeconds: 1, backoff: Backoff(first: 0.1, maximum: 0.3)), heard: heard)
        cache.start()
        defer { cache.stop() }
        #expect(cache.waitUntilSynced(timeout: 20))
        #expect(cache.count == 3)

        // Every request of the informer's is reset: once one attempt has failed, no watch is open.
        try double.faults(["reset": 1.0])
        #expect(eventually { cache.counters.failures >= 1 })
        #expect(try double.send("DELETE", configMaps + "/gone").status == 200)
        #expect(try double.send("PATCH", configMaps + "/change", ["data": ["k": "new"]], contentType: "application/merge-patch+json").status == 200)
        #expect(try double.send("POST", configMaps, configMap("new")).status == 201)
        try double.post("/_double/compact", .map([:]))
        try double.faults(["reset": 0.0])

        #expect(eventually { cache.get("new") != nil && cache.get("gone") == nil && cache.get("change")?["data"]?["k"] == "new" })
        #expect(cache.counters.expirations >= 1, "the watch from the old resourceVersion was 410 Gone")
        let afterSync = Array(heard.log.dropFirst(3))
        #expect(afterSync.sorted() == ["added new", "deleted gone", "updated change"], "\(heard.log)")
        #expect(Set(cache.objects.keys) == ["keep", "change", "new"])
    }

    @Test("cached Secrets hold metadata only: no data, no stringData, no managedFields, no last-applied copy")
    func secretsAreMetadataOnly() throws {
        let double = try KubeAPIDouble()
        let writer = testClient(double)
        func secret(_ name: String) -> Value {
            ["apiVersion": "v1", "kind": "Secret",
             "metadata": ["name": .string(name), "labels": ["app": "maestro-test"],
                          "annotations": ["kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}", "kept": "yes"]],
             "data": ["password": "aHVudGVyMg=="], "stringData": ["token": "hunter3"]]
        }
        #expect(try writer.request("POST", secrets, body: secret("listed")).status == 201)
        let heard = HeardChanges()
        let cache = informer(double, kind: "Secret", heard: heard)
        cache.start()
        defer { cache.stop() }
        #expect(cache.waitUntilSynced(timeout: 20))
        #expect(try writer.request("POST", secrets, body: secret("watched")).status == 201)
        #expect(eventually { cache.get("watched") != nil })
        let stored = try #require(try double.get(secrets + "/listed").body.mapValue)
        #expect(stored["data"] != nil && stored["metadata"]?["managedFields"] != nil, "the server holds data and managedFields")
        for name in ["listed", "watched"] {
            let cached = try #require(cache.get(name)?.mapValue)
            #expect(Set(cached.keys) == ["apiVersion", "kind", "metadata"], "\(name): \(cached.keys)")
            #expect(cached["kind"] == "Secret")
            #expect(cached["metadata"]?["managedFields"] == nil)
            #expect(cached["metadata"]?["annotations"]?["kubectl.kubernetes.io/last-applied-configuration"] == nil)
            #expect(cached["metadata"]?["annotations"]?["kept"] == "yes")
            #expect(cached["metadata"]?["labels"]?["app"] == "maestro-test")
        }
        let everything = "\(cache.objects) \(heard.objects)"
        #expect(!everything.contains("aHVudGVyMg==") && !everything.contains("hunter3"), "no credential anywhere in the cache or the handler's objects")
    }

    @Test("stop ends a watch that is waiting for events within seconds")
    func stopWhileWatching() throws {
        let double = try KubeAPIDouble()
        // No bookmark either: nothing arrives on the watch that could end it by another way.
        try double.post("/_double/controller", ["bookmark_seconds": 600])
        let heard = HeardChanges()
        let cache = informer(double, options: KubeInformerOptions(watchTimeoutSeconds: 600, idleTimeoutSeconds: 600), heard: heard)
        cache.start()
        #expect(cache.waitUntilSynced(timeout: 20))
        #expect(eventually { cache.counters.watches == 1 })
        let started = Date()
        #expect(cache.stop(timeout: 10))
        #expect(Date().timeIntervalSince(started) < 4, "curl is asked about the stop about once a second")
    }

    @Test("a server that closes every watch at once is not asked again in a tight loop")
    func closedAtOnce() throws {
        let double = try KubeAPIDouble()
        let heard = HeardChanges()
        // timeoutSeconds 0: the double ends each watch as soon as it starts.
        let cache = informer(double, options: KubeInformerOptions(watchTimeoutSeconds: 0, backoff: Backoff(first: 0.5, maximum: 1)), heard: heard)
        cache.start()
        defer { cache.stop() }
        #expect(cache.waitUntilSynced(timeout: 20))
        let started = Date()
        #expect(eventually { cache.counters.watches >= 4 })
        let elapsed = Date().timeIntervalSince(started)
        // At least three pauses of 0.5 s between the first watch and the fourth.
        #expect(elapsed >= 1.4, "\(cache.counters.watches) watches in \(elapsed) s")
        #expect(cache.counters.failures == 0, "a closed watch is no failure")
    }

    @Test("bookmarks move the resourceVersion on while nothing the informer watches changes")
    func bookmarks() throws {
        let double = try KubeAPIDouble()
        try double.post("/_double/controller", ["bookmark_seconds": 0.2])
        let heard = HeardChanges()
        let cache = informer(double, heard: heard)
        cache.start()
        defer { cache.stop() }
        #expect(cache.waitUntilSynced(timeout: 20))
        let listed = cache.resourceVersion
        // A Secret: a change elsewhere moves the server's resourceVersion, but sends this watch no event.
        #expect(try double.send("POST", secrets, ["apiVersion": "v1", "kind": "Secret", "metadata": ["name": "elsewhere"]]).status == 201)
        let current = String(try #require(double.stats()["resourceVersion"]?.intValue))
        #expect(current != listed)
        #expect(eventually { cache.resourceVersion == current })
        #expect(cache.counters.bookmarks >= 1)
        #expect(heard.log.isEmpty)
    }

    @Test("a 429's Retry-After is waited for between attempts, and reaches the caller with the error")
    func retryAfter() throws {
        let double = try KubeAPIDouble()
        try double.faults(["error429": 1.0, "retry_after": 1])
        try double.post("/_double/reset-stats", .map([:]))
        // Backoff alone would wait 0.1 s, then 0.2 s: Retry-After asks 1 s each time.
        let client = testClient(double, attempts: 3, maximumBackoff: 10)
        let started = Date()
        let error = try #require(throws: ClusterError.self) { try client.request("GET", configMaps) }
        let elapsed = Date().timeIntervalSince(started)
        #expect(error.kind == .unavailable)
        #expect(error.retryAfter == 1)
        #expect(try double.stats()["requests"]?["GET"]?.intValue == 3)
        #expect(client.requestCounts["GET 429"] == 3)
        #expect(elapsed >= 2, "two pauses of at least Retry-After's second: \(elapsed) s")
    }

    @Test("the informer waits what a 429's Retry-After asks before it watches again")
    func informerHonoursRetryAfter() throws {
        let double = try KubeAPIDouble()
        let heard = HeardChanges()
        // Its own backoff would wait 0.1 s, then 0.2 s; watches end every second so the faults meet the next one.
        let cache = informer(double, options: KubeInformerOptions(watchTimeoutSeconds: 1, backoff: Backoff(first: 0.1, maximum: 10)), heard: heard)
        cache.start()
        defer { cache.stop() }
        #expect(cache.waitUntilSynced(timeout: 20))
        try double.faults(["error429": 1.0, "retry_after": 2])
        #expect(eventually { cache.counters.failures >= 1 })
        let first = Date()
        #expect(eventually { cache.counters.failures >= 3 })
        let elapsed = Date().timeIntervalSince(first)
        try double.faults(["error429": 0.0])
        #expect(elapsed >= 3.9, "two pauses of Retry-After's 2 s between the first failure and the third: \(elapsed) s")
    }

    @Test("every request takes a token: 5 requests with a burst of 2 at 1 a second wait 3 s of the limiter's clock")
    func clientUsesTheLimiter() throws {
        let double = try KubeAPIDouble()
        let clock = ManualClock()
        let client = testClient(double, rateLimiter: KubeRateLimiter(queriesPerSecond: 1, burst: 2, clock: clock))
        let start = clock.now()
        for _ in 0..<5 { #expect(try client.request("GET", configMaps).status == 200) }
        #expect(abs(clock.now() - start - 3) < 1e-6)
        let unlimited = testClient(double, rateLimiter: KubeRateLimiter(queriesPerSecond: 0, burst: 2, clock: clock))
        #expect(unlimited.rateLimiter == nil)
    }

    @Test("the metrics' resource label is the resource the path names", arguments: [
        ("/apis/apps/v1/namespaces/ns/deployments/x", "deployments"),
        ("/apis/apps/v1/namespaces/ns/deployments", "deployments"),
        ("/api/v1/namespaces/ns/pods/p-1/log", "pods/log"),
        ("/apis/apps/v1/namespaces/ns/deployments/x/scale", "deployments/scale"),
        ("/api/v1/namespaces", "namespaces"),
        ("/api/v1/namespaces/ns", "namespaces"),
        ("/api/v1/namespaces/ns/status", "namespaces/status"),
        ("/apis/coordination.k8s.io/v1/namespaces/ns/leases/maestro-leader", "leases"),
        ("/api/v1/nodes/n1", "nodes"),
        ("/version", ""),
        ("/apis", ""),
    ])
    func resourceLabel(_ path: String, _ resource: String) {
        #expect(KubeResourcePath.resource(ofPath: path) == resource)
    }
}
