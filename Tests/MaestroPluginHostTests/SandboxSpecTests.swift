import Foundation
import MaestroPluginHost
import MaestroTestSupport
import Testing

/// The specs of the sandbox's own Lua (Sources/MaestroLua/lua/spec/), run by the plugin spec runner in a
/// plain sandbox VM.
@Suite("Sandbox specs", .testThreads, .timeLimit(.minutes(2)))
struct SandboxSpecTests {
    @Test("every it of sandbox_spec.lua and patterns_spec.lua runs and passes, reported at its line")
    func specsPass() throws {
        let folder = "Sources/MaestroLua/lua/spec"
        let files = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/" + folder).filter { $0.hasSuffix("_spec.lua") }.sorted()
        #expect(files == ["patterns_spec.lua", "sandbox_spec.lua"])
        for file in files {
            let location = folder + "/" + file
            let results = PluginSpecRunner.runSandboxSpec(repositoryRoot + "/" + location, location: location)
            // The cases are counted from the file itself: one per line that starts with `it(`.
            let lines = try String(contentsOfFile: repositoryRoot + "/" + location, encoding: .utf8).components(separatedBy: "\n")
            let declared = lines.indices.filter { lines[$0].trimmingCharacters(in: .whitespaces).hasPrefix("it(") }.map { "\(location):\($0 + 1)" }
            #expect(declared.count >= 6, "\(location)")
            #expect(results.map(\.location) == declared, "\(results)")
            for result in results { #expect(result.failure == nil, "\(result.location) \(result.name): \(result.failure ?? "")") }
        }
    }

    @Test("a failing case in a sandbox spec is reported with its line")
    func failureIsReported() throws {
        let directory = try TemporaryDirectory()
        let path = try directory.write("broken_spec.lua", "describe('broken', function()\n  it('compares', function()\n    assert.equals(1, string.len('ab'))\n  end)\nend)\n")
        let results = PluginSpecRunner.runSandboxSpec(path, location: "broken_spec.lua")
        #expect(results.map(\.location) == ["broken_spec.lua:2"])
        #expect(results.first?.name == "broken compares")
        #expect(results.first?.failure == "broken_spec.lua:3: expected 1, got 2", "\(results)")
    }
}
