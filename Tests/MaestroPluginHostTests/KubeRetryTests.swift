import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Synchronization
import Testing

@testable import MaestroPluginHost

/// A log handler that keeps every line with its metadata and time, for tests that assert what a
/// component decided (a retry delay) rather than assume it.
final class RecordingLogHandler: LogHandler, @unchecked Sendable {
    struct Line: Sendable {
        let message: String
        let metadata: [String: String]
        let time: Date
    }

    // @unchecked: the lines are behind the mutex; metadata and logLevel are set before the logger is
    // used, never while it logs.
    private let store: Mutex<[Line]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    init() { store = Mutex([]) }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let line = Line(message: "\(event.message)", metadata: merged.mapValues { "\($0)" }, time: Date())
        store.withLock { $0.append(line) }
    }

    var lines: [Line] { store.withLock { $0 } }
}

/// An exec credential plugin as kubectl runs it: it counts its runs in `runs`, prints the token on the
/// line of `tokens` for this run (the last line once they run out), and the expiry in `expires`.
func execCredentialPlugin(in directory: TemporaryDirectory, tokens: [String], expires: String) throws -> String {
    try directory.write("tokens", tokens.joined(separator: "\n") + "\n")
    try directory.write("expires", expires)
    let plugin = try directory.write("plugin.sh", #"""
    #!/bin/sh
    dir=$(dirname "$0")
    echo run >> "$dir/runs"
    n=$(wc -l < "$dir/runs")
    token=$(sed -n "${n}p" "$dir/tokens")
    [ -z "$token" ] && token=$(tail -n 1 "$dir/tokens")
    printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "$token" "$(cat "$dir/expires")"
    """#)
    chmod(plugin, 0o755)
    return "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: ./plugin.sh"
}

func pluginRuns(_ directory: TemporaryDirectory) -> Int {
    ((try? directory.read("runs")) ?? "").split(separator: "\n").count
}

@Suite("Kubernetes credentials, retries and the orphan guard", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct KubeRetryTests {
    @Test("an exec credential plugin runs once while its credential is valid, again once it expires, and again on a 401")
    func execCredential() throws {
        let double = try KubeAPIDouble(token: "right-token")
        // A stale token first: the 401 makes the client run the plugin again, and the request succeeds.
        let stale = try TemporaryDirectory()
        let staleUser = try execCredentialPlugin(in: stale, tokens: ["stale-token", "right-token"], expires: "2099-01-01T00:00:00Z")
        let staleClient = kubeClient(try KubeConfigLoader.load(kubeconfig: try double.kubeconfig(in: stale, user: staleUser)), attempts: 1)
        #expect(try staleClient.request("GET", "/api/v1/namespaces").status == 200)
        #expect(pluginRuns(stale) == 2, "the 401 re-ran the plugin")
        #expect(try staleClient.request("GET", "/api/v1/namespaces").status == 200)
        #expect(pluginRuns(stale) == 2, "a valid credential is reused")

        // An expired credential is not reused; a fresh one is.
        let expiring = try TemporaryDirectory()
        let expiringUser = try execCredentialPlugin(in: expiring, tokens: ["right-token"], expires: "2000-01-01T00:00:00Z")
        let client = kubeClient(try KubeConfigLoader.load(kubeconfig: try double.kubeconfig(in: expiring, user: expiringUser)), attempts: 1)
        #expect(try client.request("GET", "/api/v1/namespaces").status == 200)
        let afterFirst = pluginRuns(expiring)
        #expect(afterFirst >= 1)
        #expect(try client.request("GET", "/api/v1/namespaces").status == 200)
        let afterSecond = pluginRuns(expiring)
        #expect(afterSecond > afterFirst, "an expired credential is not reused: the next request runs the plugin again")
        try expiring.write("expires", "2099-01-01T00:00:00Z")
        #expect(try client.request("GET", "/api/v1/namespaces").status == 200)
        let afterValid = pluginRuns(expiring)
        #expect(afterValid > afterSecond)
        #expect(try client.request("GET", "/api/v1/namespaces").status == 200)
        #expect(try client.request("GET", "/api/v1/namespaces").status == 200)
        #expect(pluginRuns(expiring) == afterValid, "once valid, the credential is reused")
    }

    /// The retries the reconciler logged for `sinkID`: the delay it chose and when it failed.
    func retries(_ handler: RecordingLogHandler, _ sinkID: String) -> [(seconds: Double, time: Date)] {
        handler.lines.filter { $0.message == "reconcile failed, will retry" && $0.metadata["sink.id"] == sinkID }
            .compactMap { line in line.metadata["retry.seconds"].flatMap(Double.init).map { ($0, line.time) } }
    }

    func makeReconciler(_ double: KubeAPIDouble, _ pipeline: PipelineFixture, maximumBackoff: Double, handler: RecordingLogHandler) throws
        -> (Reconciler, CollectorManager) {
        // One attempt per request: each 429 reaches the reconciler, which decides the delay.
        let client = kubeClient(KubeCredentials(server: double.server, origin: "test"), attempts: 1)
        let backend = KubernetesBackend(client: client, namespace: "otelcollectors", createNamespace: false)
        let url = try RedisURL(parsing: pipeline.redisURL)
        let logger = Logger(label: "test") { _ in handler }
        let reconciler = Reconciler(redisURL: url, names: pipeline.names, backend: backend,
                                    options: ReconcilerOptions(resyncInterval: 3_600, maximumBackoff: maximumBackoff), logger: logger)
        let manager = CollectorManager(reconciler: reconciler, logger: logger) {
            try TemplateRenderer(root: repositoryRoot + "/templates")
        }
        return (reconciler, manager)
    }

    @Test("the reconciler's retry delay is what Retry-After asks, and never longer than its cap")
    func retryDelay() throws {
        let double = try KubeAPIDouble()
        try double.faults(["error429": 1.0, "retry_after": 2])

        // Retry-After 2 s above the doubling's 1 s: honoured.
        let honoured = RecordingLogHandler()
        let pipeline = try PipelineFixture()
        let redis = try pipeline.connect()
        let (reconciler, manager) = try makeReconciler(double, pipeline, maximumBackoff: 60, handler: honoured)
        try redis.hset(pipeline.names.configHash, field: "ra-1", value: "receivers: {}\n")
        reconciler.start()
        try manager.create(sinkID: "ra-1", ownerID: "o")
        #expect(eventually(timeout: 20) { retries(honoured, "ra-1").count >= 2 })
        reconciler.stop()
        // The first retry waits what Retry-After asks, not the doubling's 1 s, and no retry waits less.
        // (Not timed between log lines: two attempts were seen failing within milliseconds of each other.)
        let seen = retries(honoured, "ra-1")
        #expect(seen.first?.seconds == 2, "\(seen.map(\.seconds))")
        #expect(seen.allSatisfy { $0.seconds >= 2 }, "\(seen.map(\.seconds))")

        // Retry-After 30 s with a 1 s cap: the cap wins, every time.
        try double.faults(["error429": 1.0, "retry_after": 30])
        let capped = RecordingLogHandler()
        let cappedPipeline = try PipelineFixture()
        let cappedRedis = try cappedPipeline.connect()
        let (cappedReconciler, cappedManager) = try makeReconciler(double, cappedPipeline, maximumBackoff: 1, handler: capped)
        try cappedRedis.hset(cappedPipeline.names.configHash, field: "ra-2", value: "receivers: {}\n")
        cappedReconciler.start()
        try cappedManager.create(sinkID: "ra-2", ownerID: "o")
        #expect(eventually(timeout: 20) { retries(capped, "ra-2").count >= 3 }, "attempts keep coming at the capped delay")
        cappedReconciler.stop()
        let cappedSeen = retries(capped, "ra-2")
        #expect(cappedSeen.allSatisfy { $0.seconds == 1 }, "\(cappedSeen.map(\.seconds))")
        if cappedSeen.count >= 3 {
            #expect(cappedSeen[2].time.timeIntervalSince(cappedSeen[0].time) < 10, "two retries within the cap, not Retry-After's 30 s")
        }
        try double.faults(["error429": 0.0])
    }

    @Test("the orphan guard against the API double: young orphans wait for the grace period; one sweep deletes at most its share")
    func orphanGuard() throws {
        let strict = try KubeFixture(options: ReconcilerOptions(resyncInterval: 3_600, orphanGrace: 3_600, orphanMaxShare: 0.1, maximumBackoff: 2))
        let redis = try strict.pipeline.connect()
        strict.reconciler.start()
        defer { strict.reconciler.stop() }
        for index in 0..<20 {
            try strict.addConfig(redis, "g\(index)")
            try strict.manager.create(sinkID: "g\(index)", ownerID: "o")
        }
        let deployments = "/apis/apps/v1/namespaces/otelcollectors/deployments"
        func deployed() -> Int { (try? strict.double.get(deployments).body["items"]?.listValue?.count) ?? -1 }
        #expect(strict.waitFor(60) { deployed() == 20 && strict.reconciler.backlog == 0 })
        // Redis emptied: no desired state at all, 20 collectors in the cluster.
        try redis.del(strict.pipeline.names.keys)
        try strict.reconciler.resync()
        #expect(deployed() == 20, "young orphans wait for the grace period")

        let eager = Reconciler(redisURL: try RedisURL(parsing: strict.pipeline.redisURL), names: strict.pipeline.names, backend: strict.backend,
                               options: ReconcilerOptions(resyncInterval: 3_600, orphanGrace: 0, orphanMaxShare: 0.1), logger: Logger(label: "test"))
        try eager.resync()
        #expect(deployed() == 18, "one sweep deletes at most 10% of the 20 managed collectors")
        #expect(eager.counters.orphansDeleted == 2)
    }
}
