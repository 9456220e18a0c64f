import Foundation
import MaestroCore
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Testing

/// docs/plugins.md, followed as a new author would: every block marked `<!-- file: PATH -->` written
/// where it says, every line of every block marked `<!-- run -->` run as written, in the page's order,
/// with `maestro` on the PATH, from a folder holding copies of the shipped plugins/ and templates/.
@Suite("docs/plugins.md followed literally", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct PluginsGuideTests {
    enum Step {
        case file(path: String, text: String)
        case command(String)
    }

    static func steps(of page: String) throws -> [Step] {
        let lines = page.components(separatedBy: "\n")
        var steps: [Step] = []
        var index = 0
        while index < lines.count {
            let line = lines[index].trimmingCharacters(in: .whitespaces)
            index += 1
            let file = line.hasPrefix("<!-- file: ") ? String(line.dropFirst("<!-- file: ".count).dropLast(" -->".count)) : nil
            guard file != nil || line == "<!-- run -->" else { continue }
            try #require(lines[index].hasPrefix("```"), "a marked block must follow its marker (line \(index + 1))")
            index += 1
            var body: [String] = []
            while index < lines.count && !lines[index].hasPrefix("```") {
                body.append(lines[index])
                index += 1
            }
            index += 1
            if let file {
                steps.append(.file(path: file, text: body.joined(separator: "\n") + "\n"))
            } else {
                steps += body.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map { .command($0) }
            }
        }
        return steps
    }

    @Test("schema, handler, spec with a golden pair, lint, test, render and run, as the page says")
    func followThePage() throws {
        let page = try String(contentsOfFile: repositoryRoot + "/docs/plugins.md", encoding: .utf8)
        let steps = try Self.steps(of: page)
        let work = try TemporaryDirectory()
        try FileManager.default.copyItem(atPath: repositoryRoot + "/plugins", toPath: work.path + "/plugins")
        try FileManager.default.copyItem(atPath: repositoryRoot + "/templates", toPath: work.path + "/templates")
        try FileManager.default.createDirectory(atPath: work.path + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: work.path + "/bin/maestro", withDestinationPath: maestroBinary())

        // The user's shell: maestro on the PATH; this test's Redis and private names through the
        // environment, so that the page's commands run unchanged.
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAESTRO_") && !$0.key.hasPrefix("ORB_") }
        environment["PATH"] = work.path + "/bin:" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["MAESTRO_REDIS_URL"] = try RedisTestServer.url
        let names = MaestroProcess.names(RedisTestServer.uniquePrefix("guide"))
        for pair in stride(from: 0, to: names.count, by: 2) {
            environment["MAESTRO_" + names[pair].dropFirst(2).uppercased().replacingOccurrences(of: "-", with: "_")] = names[pair + 1]
        }

        // What the page says each command does.
        var expectations: [(prefix: String, check: ((code: Int32, output: String)) -> Bool)] = [
            ("maestro plugins lint loki", { $0.code == 0 && $0.output.contains("ok    loki 0.1.0") }),
            ("maestro plugins test loki --update-golden", { $0.code == 0 && $0.output.contains("wrote plugins/loki/spec/golden/basic.yaml") }),
            ("maestro plugins test loki", { $0.code == 0 && $0.output.contains("3 cases ran: 3 passed, 0 failed") }),
            ("maestro render --backend loki", { $0.code == 0 && $0.output.contains("kafka/logs") && $0.output.contains("loki:") }),
            ("maestro sinks create --backend loki --sink-id logs-1", { $0.code == 0 }),
            ("maestro sinks create --backend loki --sink-id logs-2", { $0.code == 0 }),
        ]
        var background: [ChildProcess] = []
        defer {
            for process in background {
                process.signal(SIGTERM)
                _ = process.wait(timeout: 30)
            }
        }
        var ran: [String] = []
        for step in steps {
            switch step {
            case .file(let path, let text):
                try work.write(path, text)
            case .command(let line):
                ran.append(line)
                if line.hasSuffix("&") {
                    let command = String(line.dropLast()).trimmingCharacters(in: .whitespaces)
                    background.append(try ChildProcess([try executable("env"), "-C", work.path]
                                                       + environment.map { "\($0.key)=\($0.value)" }.sorted()
                                                       + ["bash", "-c", "exec " + command], logPath: work.path + "/run.log"))
                    continue
                }
                if line.hasPrefix("maestro status") {
                    // The page says what status shows once maestro has handled both events.
                    var last = ""
                    let shown = eventually {
                        last = (try? runProgram(["bash", "-c", line], environment: environment, in: work.path).output) ?? ""
                        let rows = last.split(separator: "\n")
                        let first = rows.first { $0.contains("logs-1") } ?? ""
                        let second = rows.first { $0.contains("logs-2") } ?? ""
                        return first.contains("otel-logs-1") && first.contains("provisioning") && !first.contains("provisioning_error")
                            && second.contains("provisioning_error") && second.contains("tenant must match the pattern ^t%-%d+$")
                    }
                    #expect(shown, "\(last)\n\((try? String(contentsOfFile: work.path + "/run.log", encoding: .utf8)) ?? "")")
                    continue
                }
                let result = try runProgram(["bash", "-c", line], environment: environment, in: work.path)
                guard let index = expectations.firstIndex(where: { line.hasPrefix($0.prefix) }) else {
                    Issue.record("the page runs a command this test does not know: \(line)")
                    continue
                }
                #expect(expectations[index].check(result), "\(line)\n\(result.output)")
                expectations.remove(at: index)
            }
        }
        #expect(expectations.isEmpty, "the page no longer runs: \(expectations.map(\.prefix))")
        #expect(ran.contains { $0.hasPrefix("maestro run") } && ran.contains { $0.hasPrefix("maestro status") }, "\(ran)")

        // The golden file the page had maestro write: the collector config the page describes.
        let golden = try YAML.parse(try String(contentsOfFile: work.path + "/plugins/loki/spec/golden/basic.yaml", encoding: .utf8))
        #expect(golden["exporters"]?["loki"]?["headers"]?["X-Scope-OrgID"] == "t-42")
        #expect(golden["receivers"]?["kafka/logs"]?["topic"] == "otlp_logs-logs-1")
        #expect(golden["service"]?["pipelines"] == ["logs": ["receivers": ["kafka/logs"], "exporters": ["loki"]]])
        // And the page names the collector image the shipped template runs.
        let template = try String(contentsOfFile: repositoryRoot + "/templates/otel-collector.lua", encoding: .utf8)
        #expect(template.contains("default = \"otel/opentelemetry-collector-contrib:0.91.0\"") && page.contains("`otel/opentelemetry-collector-contrib:0.91.0`"))
    }
}
