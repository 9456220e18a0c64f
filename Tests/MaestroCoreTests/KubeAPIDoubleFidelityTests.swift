import Foundation
import MaestroCore
import MaestroTestSupport
import Testing

/// maestro's Kubernetes tests are only as true as the API double they run against: its fidelity suite
/// (Tests/Support/kube_api_double_fidelity.py: kubectl client- and server-side apply, an apply conflict
/// without and with force, get, diff, delete, and HTTP cases for each API server behaviour) runs here,
/// against one double, so scripts/test and CI run it. Alone it takes about 3 s; inside the full run on two
/// cores, where every kubectl start competes with the other suites, up to about 50 s were measured.
@Suite("the Kubernetes API double behaves like an API server", .testThreads, .timeLimit(.minutes(2)))
struct KubeAPIDoubleFidelityTests {
    @Test("every case of the double's fidelity suite passes, with kubectl and over HTTP")
    func fidelitySuite() async throws {
        // The suite runs for seconds: waited for on a thread of its own, not on one the concurrent tests share.
        let run = try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    try runProgram([try executable("python3"), repositoryRoot + "/Tests/Support/kube_api_double_fidelity.py"])
                })
            }.start()
        }
        let cases = run.output.split(separator: "\n").filter { $0.hasPrefix("test_") && $0.contains(") ... ") }
        #expect(cases.count >= 17, "the suite ran every case: \(run.output)")
        for line in cases where !line.hasSuffix(" ok") {
            Issue.record("fidelity case failed: \(line)")
        }
        #expect(run.code == 0, "\(run.output)")
    }
}
