import ArgumentParser
import Foundation
import Logging
import MaestroCommandLine
import MaestroRoles

/// Benchmarks (not tests): figures printed for a person, never asserted. A program of its own, so the
/// shipped `maestro` carries no benchmark code, no test double's control endpoint and no kubectl runs.
@main
struct MaestroBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maestro-bench",
        abstract: "Measure maestro (scripts/bench runs every figure next to its alternative; see BENCHMARKS.md).",
        subcommands: [PipelineBench.self, TemplatesBench.self, ApplyBench.self]
    )
}

/// What every benchmark starts from: the settings, and logging of errors only (the figures are printed).
func start(_ settings: SettingsOptions) throws -> (wiring: Wiring, logger: Logger) {
    let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
    LoggingSystem.bootstrap { label in MaestroLogHandler(label: label, format: .text, logLevel: .error) }
    return (Wiring(configuration: configuration), Logger(label: "bench"))
}
