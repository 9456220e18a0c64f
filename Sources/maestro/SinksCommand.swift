import ArgumentParser
import Foundation
import MaestroCommandLine
import MaestroCore
import MaestroRedis
import MaestroRoles
import MaestroValue

/// Emits Orb-format events on the sinks stream, exactly as Orb's sinks service does (for demos, tests
/// and operators).
struct SinksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sinks",
        abstract: "Emit Orb-format sink events (create, update, remove) on the sinks stream; rebuild stored sinks with the plugins in use.",
        subcommands: [Emit.self, Emit.Update.self, Emit.Remove.self, RebuildCommand.self]
    )

    struct Emit: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Emit a sinks.create event.")

        @OptionGroup var settings: SettingsOptions
        @Option(name: .customLong("sink-id")) var sinkID: String
        @Option(name: .customLong("owner")) var owner: String = ""
        @Option(name: .customLong("backend")) var backend: String
        @Option(name: .customLong("sink-config"), help: "JSON, or @FILE.") var sinkConfig: String

        func run() throws {
            try emit(settings: settings, operation: "sinks.create", sinkID: sinkID, owner: owner, backend: backend, config: sinkConfig)
        }

        struct Update: ParsableCommand {
            static let configuration = CommandConfiguration(commandName: "update", abstract: "Emit a sinks.update event (backend \"\" as Orb's API sends it, unless given).")

            @OptionGroup var settings: SettingsOptions
            @Option(name: .customLong("sink-id")) var sinkID: String
            @Option(name: .customLong("owner")) var owner: String = ""
            @Option(name: .customLong("backend")) var backend: String = ""
            @Option(name: .customLong("sink-config"), help: "JSON, or @FILE.") var sinkConfig: String

            func run() throws {
                try emit(settings: settings, operation: "sinks.update", sinkID: sinkID, owner: owner, backend: backend, config: sinkConfig)
            }
        }

        struct Remove: ParsableCommand {
            static let configuration = CommandConfiguration(commandName: "remove", abstract: "Emit a sinks.remove event.")

            @OptionGroup var settings: SettingsOptions
            @Option(name: .customLong("sink-id")) var sinkID: String
            @Option(name: .customLong("owner")) var owner: String = ""

            func run() throws {
                try emit(settings: settings, operation: "sinks.remove", sinkID: sinkID, owner: owner, backend: nil, config: nil)
            }
        }
    }
}

/// Adds one Orb-format event to the sinks stream and prints its id.
private func emit(settings: SettingsOptions, operation: String, sinkID: String, owner: String, backend: String?, config: String?) throws {
    try exitingOnInvalidInput {
        let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
        let wiring = Wiring(configuration: configuration)
        var fields: [(String, String)] = [("sink_id", sinkID), ("owner", owner)]
        if let backend { fields.append(("backend", backend)) }
        if let config {
            let text = try Wiring.inlineOrFile(config, flag: "--sink-config")
            guard case .map? = try? JSON.decode(text) else { throw InvalidInput("--sink-config must be a JSON object") }
            fields.append(("config", text))
            // Orb's producer never sets the timestamp: Go's zero time.
            fields.append(("timestamp", "-62135596800"))
        }
        fields.append(("operation", operation))
        let redis = try RedisConnection(url: wiring.redisURL())
        let id = try redis.xadd(wiring.names.sinksStream, fields: fields, trim: .approximateMaxLength(wiring.settings.streamMaxLength))
        print(id)
    }
}
