import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

/// The value of every /metrics sample of `name` whose labels contain all of `labels` (`key="value"`).
func samples(_ metrics: String, _ name: String, _ labels: [String] = []) -> [Double] {
    metrics.split(separator: "\n").compactMap { line -> Double? in
        guard line.hasPrefix(name + "{") || line.hasPrefix(name + " ") else { return nil }
        let parts = line.split(separator: " ")
        guard parts.count >= 2, labels.allSatisfy({ parts[0].contains($0) }) else { return nil }
        return Double(parts[1])
    }
}

@Suite("maestro run's metrics against the Kubernetes API double", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct MetricsTests {
    @Test("maestro_kube_requests_total counts what the API got; maestro_drift_corrected_total a re-created object; plugin instructions and memory")
    func kubeDriftAndPluginMetrics() throws {
        let double = try KubeAPIDouble()
        let directory = try TemporaryDirectory()
        let kubeconfig = try double.kubeconfig(in: directory)
        let prefix = RedisTestServer.uniquePrefix("metrics")
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        let run = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                    "--kube-backend", "kubernetes", "--kubeconfig", kubeconfig, "--resync-interval", "1s",
                                    "--http-listen", "127.0.0.1:0"] + common, logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let port = try loggedPort("http.port", in: directory.path + "/run.log", of: run)
        func metrics() -> String { (try? runProgram([try executable("curl"), "-s", "http://127.0.0.1:\(port)/metrics"]).output) ?? "" }
        let config = #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#
        #expect(try maestro(["sinks", "create", "--sink-id", "met-k1", "--backend", "prometheus", "--sink-config", config] + common).code == 0)
        let service = "/api/v1/namespaces/otelcollectors/services/otel-met-k1"
        #expect(eventually { (try? double.get(service).status) == 200 })

        // The plugin built the config: its instructions and peak memory are recorded.
        #expect(eventually { (samples(metrics(), "maestro_plugin_peak_memory_bytes", [#"plugin="prometheus""#]).first ?? 0) > 0 }, "\(metrics())")
        #expect(samples(metrics(), "maestro_plugin_instructions_total", [#"plugin="prometheus""#]).count == 1)
        #expect((samples(metrics(), "maestro_plugin_instructions_total", [#"plugin="prometheus""#]).first ?? 0) > 0)

        // Every request maestro counted reached the API: counted before, so never more than the API saw since.
        let counted = metrics()
        let seen = try double.stats()["requests"]
        for verb in ["GET", "PATCH"] {
            let total = samples(counted, "maestro_kube_requests_total", [#"verb="\#(verb)""#]).reduce(0, +)
            #expect(total > 0, "no \(verb) counted:\n\(counted)")
            #expect(total <= Double(seen?[verb]?.intValue ?? 0), "\(verb): maestro counted \(total), the API saw \(seen?[verb] ?? .null)")
        }

        // Each request is counted under the resource its path names: the template's Deployment and Service.
        for resource in ["deployments", "services"] {
            #expect(samples(counted, "maestro_kube_requests_total", [#"verb="PATCH""#, #"resource="\#(resource)""#]).reduce(0, +) > 0,
                    "no PATCH of \(resource) counted:\n\(counted)")
        }

        // Deleted behind maestro's back: the next resync re-creates it and counts the drift.
        #expect(samples(metrics(), "maestro_drift_corrected_total").reduce(0, +) == 0)
        #expect(try runProgram([try executable("curl"), "-s", "-X", "DELETE", double.server + service]).code == 0)
        #expect(eventually { (try? double.get(service).status) == 200 && samples(metrics(), "maestro_drift_corrected_total").reduce(0, +) == 1 },
                "\(metrics().split(separator: "\n").filter { $0.contains("drift") })")
    }
}
