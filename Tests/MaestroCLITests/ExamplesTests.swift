import Foundation
import MaestroCore
import MaestroTestSupport
import Testing

@Suite("examples/: every run.sh passes; maestro.yaml is complete and valid", .testThreads, .timeLimit(.minutes(4)))
struct ExamplesTests {
    @Test("run.sh", arguments: ["01-quickstart", "02-custom-backend", "03-ops-hook", "04-custom-template"])
    func example(_ name: String) throws {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAESTRO_") && !$0.key.hasPrefix("ORB_") }
        environment["MAESTRO"] = maestroBinary()
        #expect(FileManager.default.fileExists(atPath: repositoryRoot + "/examples/\(name)/README.md"))
        let result = try runProgram([try executable("bash"), repositoryRoot + "/examples/\(name)/run.sh"], environment: environment)
        #expect(result.code == 0, "\(result.output)")
        #expect(result.output.contains("all steps passed"), "\(result.output)")
        #expect(!result.output.contains("FAILED:"))
    }

    @Test("examples/maestro.yaml names every setting and is accepted by maestro config and plugins lint")
    func fullConfiguration() throws {
        let path = repositoryRoot + "/examples/maestro.yaml"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for definition in Settings.all {
            let named = text.contains("\n\(definition.key):") || text.contains("# \(definition.key):") || text.contains("# \(definition.key)-file:")
            #expect(named, "\(definition.key) is missing from examples/maestro.yaml")
        }
        let config = try maestro(["config", "--config", path])
        #expect(config.code == 0, "\(config.output)")
        let lint = try runProgram([maestroBinary(), "plugins", "lint", "--config", path, "--plugins-dir", repositoryRoot + "/plugins"])
        #expect(lint.code == 0, "\(lint.output)")
    }
}
