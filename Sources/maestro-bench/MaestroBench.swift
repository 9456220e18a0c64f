import ArgumentParser

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
