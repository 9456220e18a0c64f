import ArgumentParser
import Foundation
import Logging
import MaestroCommandLine
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroRoles
import MaestroValue
import MaestroYAML
import Synchronization

/// Collectors applied per second against an API server (the test double), next to `kubectl apply -f`
/// once per collector on the same rendered objects (how Orb applied them).
struct ApplyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Apply N collectors through the Kubernetes API, then the same objects with kubectl apply -f per collector."
    )

    @OptionGroup var settings: SettingsOptions

    @Option(name: .customLong("collectors"), help: "Collectors per side and run.")
    var collectors = 1_000

    @Option(name: .customLong("parallel"), help: "maestro's concurrent appliers (the reconciler's workers).")
    var parallel = 4

    @Option(name: .customLong("runs"), help: "Runs; medians are reported.")
    var runs = 3

    @Option(name: .customLong("sample-out"), help: "Write the first collector's objects as YAML here (for the double's ceiling client).")
    var sampleOut: String?

    @Option(name: .customLong("side"), help: "maestro, kubectl or both (scripts/bench gives each side a fresh double).")
    var side = "both"

    func run() throws {
        try exitingOnInvalidInput {
            let (wiring, logger) = try start(settings)
            let client = try wiring.kubernetesClient(logger: logger)
            let namespace = wiring.collectorNamespace
            let backend = KubernetesBackend(client: client, namespace: namespace, createNamespace: true)
            let renderer = try TemplateRenderer(root: wiring.templatesRoot, settings: wiring.templateSettings(), limits: wiring.luaLimits, logger: logger)
            let config = "receivers: {kafka: {brokers: [kafka:9092]}}\n"
            func render(_ prefix: String) throws -> [DesiredCollector] {
                try (0..<collectors).map { index in
                    let rendered = try renderer.render(CollectorInputs(sinkID: "\(prefix)-\(index)", ownerID: "bench", configYAML: config, configHash: "h\(index)"))
                    return DesiredCollector(sinkID: "\(prefix)-\(index)", name: rendered.name, namespace: rendered.namespace, objects: rendered.objects)
                }
            }
            /// Requests the double has served (its control endpoint; not counted by the double itself).
            func doubleRequests() throws -> Int {
                let response = try client.request("POST", "/_double/stats", body: .map([:]))
                return (response.body["requests"]?.mapValue ?? [:]).values.reduce(0) { $0 + Int($1.intValue ?? 0) }
            }
            print("apply: \(collectors) collectors (Secret, Deployment, Service) per side and run, against \(client.credentials.server)")
            if let sampleOut {
                try YAML.emitAll(try render("bench-ceiling")[0].objects).write(toFile: sampleOut, atomically: true, encoding: .utf8)
            }
            var result: [String: [Value]] = [:]
            func record(_ key: String, _ value: Double) { result[key, default: []].append(.double(value)) }
            let kubectl = try executable("kubectl")
            let kubeconfig = KubeConfigLoader.kubeconfigPath(flag: wiring.settings.kubeconfig, environment: ProcessInfo.processInfo.environment) ?? ""
            for run in 0..<runs where side != "kubectl" {
                let ours = try render("bench-maestro-\(run)")
                let requestsBefore = try doubleRequests()
                let cpuBefore = cpuSeconds()
                let started = Date()
                let next = Mutex(0)
                let failures = Mutex(0)
                DispatchQueue.concurrentPerform(iterations: parallel) { _ in
                    while true {
                        let index = next.withLock { value -> Int in
                            defer { value += 1 }
                            return value
                        }
                        guard index < ours.count else { return }
                        do {
                            try backend.apply(ours[index])
                        } catch {
                            failures.withLock { $0 += 1 }
                        }
                    }
                }
                let elapsed = Date().timeIntervalSince(started)
                let maestroCPU = cpuSeconds() - cpuBefore
                // The stats call itself is one request the double counts: not maestro's.
                let maestroRequests = try doubleRequests() - requestsBefore - 1
                if failures.withLock({ $0 }) > 0 { throw InvalidInput("\(failures.withLock { $0 }) applies failed") }
                record("maestro_collectors_per_second", Double(collectors) / elapsed)
                record("maestro_requests_per_second", Double(maestroRequests) / elapsed)
                record("maestro_requests_per_collector", Double(maestroRequests) / Double(collectors))
                record("maestro_cpu_seconds_per_collector", maestroCPU / Double(collectors))
                print(String(format: "  maestro (%d appliers), run %d: %.1f collectors/s, %.1f requests/collector, %.5f CPU s/collector",
                             parallel, run + 1, Double(collectors) / elapsed, Double(maestroRequests) / Double(collectors), maestroCPU / Double(collectors)))
            }
            for run in 0..<runs where side != "maestro" {

                let folder = NSTemporaryDirectory() + "maestro-bench-" + UUID().uuidString
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: folder) }
                var files: [String] = []
                for collector in try render("bench-kubectl-\(run)") {
                    let path = "\(folder)/\(collector.name).yaml"
                    try YAML.emitAll(collector.objects).write(toFile: path, atomically: true, encoding: .utf8)
                    files.append(path)
                }
                let kubectlRequestsBefore = try doubleRequests()
                let childCPUBefore = childrenCPUSeconds()
                let kubectlStarted = Date()
                for file in files {
                    let child = try ChildProcess([kubectl, "apply", "--server-side", "--validate=false", "-f", file],
                                                 environment: ["KUBECONFIG": kubeconfig, "HOME": folder, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"])
                    child.wait()
                    guard child.exitCode == 0 else { throw InvalidInput("kubectl apply failed for \(file)") }
                }
                let kubectlElapsed = Date().timeIntervalSince(kubectlStarted)
                let kubectlCPU = childrenCPUSeconds() - childCPUBefore
                let kubectlRequests = try doubleRequests() - kubectlRequestsBefore - 1
                record("kubectl_collectors_per_second", Double(collectors) / kubectlElapsed)
                record("kubectl_requests_per_collector", Double(kubectlRequests) / Double(collectors))
                record("kubectl_cpu_seconds_per_collector", kubectlCPU / Double(collectors))
                print(String(format: "  kubectl apply -f per collector, run %d: %.1f collectors/s, %.1f requests/collector, %.5f CPU s/collector",
                             run + 1, Double(collectors) / kubectlElapsed, Double(kubectlRequests) / Double(collectors), kubectlCPU / Double(collectors)))
            }
            print("RESULT " + (try JSON.encode(.map(result.mapValues { .list($0) }))))
        }
    }

    func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    func childrenCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }
}
