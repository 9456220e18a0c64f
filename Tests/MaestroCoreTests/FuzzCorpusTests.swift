import Foundation
import MaestroFuzzTargets
import MaestroTestSupport
import Testing

/// The committed fuzz corpora (fuzz/corpus/<target>/) and every input a fuzzer ever crashed on
/// (fuzz/regressions/<target>/), through the same functions libFuzzer runs: a regression crashes here.
@Suite("fuzz corpora replayed", .testThreads, .timeLimit(.minutes(3)))
struct FuzzCorpusTests {
    @Test("every corpus and regression input", arguments: FuzzTargets.all.map(\.name))
    func replay(_ name: String) throws {
        let target = try #require(FuzzTargets.all.first { $0.name == name })
        var inputs = 0
        for folder in ["corpus", "regressions"] {
            let directory = repositoryRoot + "/fuzz/\(folder)/\(name)"
            for file in ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted() {
                let bytes = try #require(FileManager.default.contents(atPath: directory + "/" + file), "\(directory)/\(file)")
                target.run(Array(bytes))
                inputs += 1
            }
        }
        #expect(inputs >= 2, "fuzz/corpus/\(name) holds seeds")
    }
}
