import Logging
import MaestroTestSupport
import Testing

@testable import MaestroCore

@Suite("Which collector's logs are read next", .testThreads, .timeLimit(.minutes(1)))
struct ExporterLogOrderTests {
    func watch() -> ExporterLogWatch {
        ExporterLogWatch(client: KubernetesClient(credentials: KubeCredentials(server: "https://127.0.0.1:1", origin: "test"), logger: Logger(label: "test")),
                         readsPerSecond: 1, podNames: { _, _ throws(ClusterError) in [] }, verdictChanged: { _ in })
    }

    @Test("new and changed collectors first, in the order they came; then the one read longest ago")
    func order() {
        let logs = watch()
        for sinkID in ["a", "b", "c"] { logs.watch(sinkID: sinkID, name: "otel-\(sinkID)", namespace: "n", fingerprint: "1") }
        #expect(logs.nextCollector()?.0 == "a", "a new collector is read first")
        logs.markRead("a")
        #expect(logs.nextCollector()?.0 == "b")
        logs.markRead("b")
        #expect(logs.nextCollector()?.0 == "c")
        logs.markRead("c")
        #expect(logs.nextCollector()?.0 == "a", "then each in turn, the one read longest ago first")
        logs.markRead("a")
        logs.watch(sinkID: "c", name: "otel-c", namespace: "n", fingerprint: "2")
        #expect(logs.nextCollector()?.0 == "c", "a changed collector goes before b, though b waited longer")
        logs.markRead("c")
        #expect(logs.nextCollector()?.0 == "b")
        logs.forget(sinkID: "b")
        logs.markRead("a")
        #expect(logs.nextCollector()?.0 == "c", "a forgotten collector is not read")
    }
}
