import Foundation
import MaestroCore
import MaestroTestSupport
import MaestroValue
import Testing

/// A number the double answered (its JSON has doubles, and integers where the value is whole).
private func number(_ value: Value?) -> Double {
    switch value {
    case .double(let number)?: number
    case .int(let number)?: Double(number)
    default: 0
    }
}

/// Two `maestro run` replicas of the maestro role against one API double and one Redis.
private final class TwoReplicas {
    let double: KubeAPIDouble
    let directory: TemporaryDirectory
    let kubeconfig: String
    let common: [String]
    private(set) var processes: [String: ChildProcess] = [:]
    static let leasePath = "/apis/coordination.k8s.io/v1/namespaces/otelcollectors/leases/maestro-leader"
    /// Short, so that the tests wait seconds, not the default 15 s; the same proportions as the defaults.
    static let timing = ["--lease-duration", "3s", "--lease-renew-deadline", "2s", "--lease-retry-period", "400ms"]

    init(prefix: String) throws {
        double = try KubeAPIDouble()
        directory = try TemporaryDirectory()
        kubeconfig = try double.kubeconfig(in: directory)
        common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(RedisTestServer.uniquePrefix(prefix))
    }

    deinit {
        for process in processes.values where process.isRunning {
            process.signal(SIGCONT)
            process.signal(SIGKILL)
            _ = process.wait(timeout: 10)
        }
    }

    /// Starts a replica named `name` (its consumer name, its lease identity and its User-Agent).
    func start(_ name: String) throws {
        processes[name] = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                            "--kube-backend", "kubernetes", "--kubeconfig", kubeconfig, "--consumer-name", name,
                                            "--min-idle", "2s"] + Self.timing + common,
                                           logPath: directory.path + "/\(name).log")
    }

    func process(_ name: String) -> ChildProcess { processes[name]! }
    func log(_ name: String) -> String { (try? String(contentsOfFile: directory.path + "/\(name).log", encoding: .utf8)) ?? "" }

    var holder: String? { (try? double.get(Self.leasePath).body["spec"]?["holderIdentity"]?.stringValue) ?? nil }

    func createSink(_ sinkID: String) throws {
        let config = #"{"exporter":{"remote_host":"https://\#(sinkID).example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#
        let created = try maestro(["sinks", "create", "--sink-id", sinkID, "--backend", "prometheus", "--sink-config", config] + common)
        #expect(created.code == 0, "\(created.output)")
    }

    func hasCollector(_ sinkID: String) -> Bool {
        (try? double.get("/apis/apps/v1/namespaces/otelcollectors/deployments/otel-\(sinkID)").status) == 200
            && (try? double.get("/api/v1/namespaces/otelcollectors/services/otel-\(sinkID)").status) == 200
    }

    /// The double's request log, and its clock now.
    func requests() throws -> (entries: [Value], now: Double) {
        let answer = try double.post("/_double/requests", .map([:]))
        return (answer["requests"]?.listValue ?? [], number(answer["now"]))
    }

    /// Lists of Deployments (not their watches) `name` made.
    func deploymentLists(by name: String) throws -> [Value] {
        try requests().entries.filter { entry in
            entry["agent"]?.stringValue == "maestro/\(name)" && entry["method"]?.stringValue == "GET"
                && (entry["path"]?.stringValue ?? "").hasSuffix("/deployments") && !(entry["query"]?.stringValue ?? "").contains("watch=")
        }
    }

    /// Requests of `name` for the Lease after `since`.
    func leaseReads(by name: String, since: Double) throws -> Int {
        try requests().entries.filter { entry in
            entry["agent"]?.stringValue == "maestro/\(name)" && number(entry["at"]) > since && entry["path"]?.stringValue == Self.leasePath
        }.count
    }

    /// Writes by `name` that arrived after `since` (the double's clock), other than its own Lease's.
    func writes(by name: String, since: Double) throws -> [String] {
        try requests().entries.filter { entry in
            entry["agent"]?.stringValue == "maestro/\(name)" && number(entry["at"]) > since
                && entry["method"]?.stringValue != "GET" && entry["path"]?.stringValue != Self.leasePath
        }.map { "\($0["method"]?.stringValue ?? "") \($0["path"]?.stringValue ?? "")" }
    }
}

@Suite("Leader failover of the maestro role across processes, against the API double", .serialized, .testThreads, .timeLimit(.minutes(6)))
struct LeaderFailoverTests {
    @Test("the leader SIGKILLed: the warm standby takes the Lease over and converges a change made meanwhile")
    func killedLeader() throws {
        let replicas = try TwoReplicas(prefix: "failover-kill")
        try replicas.start("a")
        #expect(eventually(timeout: 60) { replicas.holder == "a" })
        try replicas.start("b")
        try replicas.createSink("before")
        #expect(eventually(timeout: 60) { replicas.hasCollector("before") })
        #expect(replicas.holder == "a")
        // The standby watches too (its caches fill), but writes nothing.
        #expect(eventually(timeout: 60) { ((try? replicas.deploymentLists(by: "b")) ?? []).count == 1 })
        let standbyWrites = try replicas.writes(by: "b", since: 0)
        #expect(standbyWrites.isEmpty, "the standby wrote: \(standbyWrites)")

        replicas.process("a").signal(SIGKILL)
        _ = replicas.process("a").wait(timeout: 10)
        try replicas.createSink("meanwhile")
        #expect(eventually(timeout: 60) { replicas.holder == "b" }, "the standby takes the lease over")
        #expect(eventually(timeout: 60) { replicas.hasCollector("meanwhile") }, "\(replicas.log("b"))")
        #expect(replicas.hasCollector("before"))
        // The new leader did not list again what it watched as a standby: one list per watched kind.
        let lists = try replicas.deploymentLists(by: "b")
        #expect(lists.count == 1, "\(lists)")
    }

    @Test("the leader frozen with SIGSTOP past its lease: the other takes over; after SIGCONT the old leader writes nothing and stands by")
    func frozenLeader() throws {
        let replicas = try TwoReplicas(prefix: "failover-stop")
        try replicas.start("a")
        #expect(eventually(timeout: 60) { replicas.holder == "a" })
        try replicas.start("b")
        // Slow answers keep the leader's passes in flight, so that it is frozen between two writes.
        try replicas.double.faults(["latency_seconds": 0.2])
        let sinks = (0..<8).map { "frozen-\($0)" }
        for sink in sinks { try replicas.createSink(sink) }
        #expect(eventually(timeout: 60) { ((try? replicas.writes(by: "a", since: 0)) ?? []).contains { $0.hasPrefix("PATCH") } })
        replicas.process("a").signal(SIGSTOP)
        #expect(eventually(timeout: 60) { replicas.holder == "b" }, "the other replica takes the lease over")
        let resumed = try replicas.requests().now
        replicas.process("a").signal(SIGCONT)

        #expect(eventually(timeout: 90) { sinks.allSatisfy(replicas.hasCollector) }, "\(replicas.log("b"))")
        // The old leader ran again: it read the lease, found another holder and stands by.
        #expect(eventually(timeout: 30) { ((try? replicas.leaseReads(by: "a", since: resumed)) ?? 0) > 0 })
        try replicas.double.faults(["latency_seconds": 0])
        try replicas.createSink("after")
        // Known defect (issue 22, open): under the whole suite's load the sink created after the takeover
        // has twice not converged within 60 s, with nothing logged by either replica; never alone or with
        // the CPU saturated. Kept visible as a known issue until it is found; the fence's checks below hold.
        withKnownIssue("a sink created after the takeover may not converge under load (issue 22)", isIntermittent: true) {
            #expect(eventually(timeout: 60) { replicas.hasCollector("after") }, "a:\n\(replicas.log("a"))\nb:\n\(replicas.log("b"))")
        }
        #expect(replicas.holder == "b")
        let oldLeaderWrites = try replicas.writes(by: "a", since: resumed)
        #expect(oldLeaderWrites.isEmpty, "the old leader wrote after SIGCONT: \(oldLeaderWrites)\n\(replicas.log("a"))")
        let leaderWrites = try replicas.writes(by: "b", since: resumed)
        #expect(!leaderWrites.isEmpty, "the new leader did the work")
    }
}
