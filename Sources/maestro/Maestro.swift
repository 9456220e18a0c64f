import ArgumentParser

@main
struct Maestro: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maestro",
        abstract: "Turns Orb sink events into OpenTelemetry Collector deployments, through Lua plugins and templates.",
        discussion: """
        Settings come from flags, MAESTRO_* environment variables, Orb's variables and a --config YAML \
        file, in that order of precedence. `maestro config` shows where each value came from.
        Exit codes: 0 success, 2 invalid input, 64 usage error.
        """,
        version: MaestroVersion.current,
        subcommands: [RunCommand.self, DemoCommand.self, RenderCommand.self, SinksCommand.self, StatusCommand.self, DiffCommand.self, DeadLetterCommand.self, HistoryCommand.self, RollbackCommand.self, RolloutCommand.self, CollectorsCommand.self, PluginsCommand.self, TemplatesCommand.self, ConfigCommand.self]
    )
}

enum MaestroVersion {
    static let current = "0.1.0"
}
