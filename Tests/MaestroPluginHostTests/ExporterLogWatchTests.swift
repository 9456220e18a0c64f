import Foundation
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Synchronization
import Testing

@Suite("Exporter logs read at a bounded rate", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct ExporterLogWatchTests {
    /// Collectors applied to the double and running; the names of their pods from a LIST.
    func runningCollectors(_ fixture: KubeFixture, _ sinkIDs: [String]) throws {
        let redis = try fixture.pipeline.connect()
        fixture.reconciler.start()
        for sinkID in sinkIDs {
            try fixture.addConfig(redis, sinkID, "exporters: {otlphttp: {endpoint: https://a}}\n")
            try fixture.manager.create(sinkID: sinkID, ownerID: "o")
        }
        #expect(fixture.waitFor { fixture.reconciler.backlog == 0 })
        fixture.reconciler.stop()
        for sinkID in sinkIDs {
            #expect(try fixture.waitFor { !(try podNames(fixture, "otel-\(sinkID)")).isEmpty })
        }
    }

    func podNames(_ fixture: KubeFixture, _ name: String) throws(ClusterError) -> [String] {
        let response = try fixture.client.request("GET", "/api/v1/namespaces/otelcollectors/pods",
                                                  query: [("labelSelector", "app.kubernetes.io/instance=\(name)")])
        return (response.body["items"]?.listValue ?? []).compactMap { $0["metadata"]?["name"]?.stringValue }
    }

    @Test("an exporter's 401 becomes the collector's verdict, announced once; a collector changed since is read before the others")
    func verdicts() throws {
        let fixture = try KubeFixture()
        try runningCollectors(fixture, ["l1", "l2", "l3"])
        try fixture.double.setLogs("otel-l2", """
        2026-11-29T10:00:00Z info service started
        2026-11-29T10:00:05Z error exporterhelper: Exporting failed. error: Permanent error: HTTP status 401 Unauthorized
        """)
        let announced = Mutex<[String]>([])
        let watch = ExporterLogWatch(client: fixture.client, readsPerSecond: 50, podNames: { name, _ throws(ClusterError) in
            try podNames(fixture, name)
        }, verdictChanged: { sinkID in announced.withLock { $0.append(sinkID) } })
        for sinkID in ["l1", "l2", "l3"] { watch.watch(sinkID: sinkID, name: "otel-\(sinkID)", namespace: "otelcollectors", fingerprint: "1") }
        watch.start()
        defer { watch.stop() }
        #expect(eventually { watch.verdict(sinkID: "l2")?.status == .error })
        #expect(watch.verdict(sinkID: "l2")?.message.contains("401") == true)
        let readsAfterFirstRound = watch.reads
        #expect(eventually { watch.reads >= readsAfterFirstRound + 6 }, "the collectors take turns")
        #expect(announced.withLock { $0 } == ["l2"], "a verdict is announced when it changes, once")
        #expect(watch.verdict(sinkID: "l1") == nil && watch.verdict(sinkID: "l3") == nil)

        try fixture.double.setLogs("otel-l2", "2026-11-29T10:10:00Z info all good\n")
        watch.watch(sinkID: "l2", name: "otel-l2", namespace: "otelcollectors", fingerprint: "2")
        #expect(eventually { watch.verdict(sinkID: "l2") == nil }, "a changed collector (a new fingerprint) is read again first")
        #expect(announced.withLock { $0 } == ["l2", "l2"])
        watch.forget(sinkID: "l2")
        #expect(watch.verdict(sinkID: "l2") == nil)
    }

    @Test("reads stay within the rate whatever the fleet's size")
    func rateBound() throws {
        let fixture = try KubeFixture()
        let sinkIDs = (0..<6).map { "r\($0)" }
        try runningCollectors(fixture, sinkIDs)
        let rate = 4.0
        let watch = ExporterLogWatch(client: fixture.client, readsPerSecond: rate, podNames: { name, _ throws(ClusterError) in
            try podNames(fixture, name)
        }, verdictChanged: { _ in })
        for sinkID in sinkIDs { watch.watch(sinkID: sinkID, name: "otel-\(sinkID)", namespace: "otelcollectors", fingerprint: "1") }
        let started = Date()
        watch.start()
        #expect(eventually { watch.reads >= 8 })
        watch.stop()
        let elapsed = Date().timeIntervalSince(started)
        // The first read is due at once; every later one waits its turn of 1/rate seconds.
        #expect(Double(watch.reads) <= 1 + rate * elapsed, "\(watch.reads) reads in \(elapsed) s at \(rate)/s")
    }
}
