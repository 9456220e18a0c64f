import ArgumentParser
import Foundation
import MaestroCommandLine
import MaestroCore
import MaestroRedis
import MaestroRoles

struct DeadLetterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deadletter",
        abstract: "List dead letters with their reasons, or replay them onto their stream after a fix.",
        subcommands: [List.self, Replay.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Dead letters and why (never their fields: they may hold credentials).")

        @OptionGroup var settings: SettingsOptions
        @Option(name: .customLong("count"), help: "At most this many, oldest first.") var count = 1_000

        func run() throws {
            try exitingOnInvalidInput {
                let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
                let wiring = Wiring(configuration: configuration)
                let redis = try RedisConnection(url: wiring.redisURL())
                let letters = try DeadLetters.list(redis, names: wiring.names, count: count)
                let rows = letters.map { [$0.id, $0.stream, $0.originalID, $0.plugin.isEmpty ? "-" : $0.plugin, $0.deliveries, $0.failedAt, $0.reason] }
                print(formatTable(["ID", "STREAM", "ORIGINAL", "PLUGIN", "DELIVERIES", "FAILED AT", "REASON"], rows))
                print("\n\(letters.count) dead letters in \(wiring.names.deadLetterStream)")
            }
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "replay",
            abstract: "Put dead letters back on their stream (replay_of = the original id) and remove them from the dead-letter stream."
        )

        @OptionGroup var settings: SettingsOptions
        @Option(name: .customLong("id"), help: "A dead letter's id (repeatable).") var ids: [String] = []
        @Flag(name: .customLong("all"), help: "Replay every dead letter.") var all: Bool = false

        func validate() throws {
            guard all != !ids.isEmpty else { throw ValidationError("give --id (one or more) or --all") }
        }

        func run() throws {
            try exitingOnInvalidInput {
                let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
                let wiring = Wiring(configuration: configuration)
                let redis = try RedisConnection(url: wiring.redisURL())
                do {
                    let replayed = try DeadLetters.replay(redis, names: wiring.names, ids: all ? nil : ids,
                                                          streamMaxLength: wiring.settings.streamMaxLength)
                    for id in replayed { print(id) }
                    printError("replayed \(replayed.count) dead letters")
                } catch let error as DeadLetterError {
                    throw InvalidInput(error.description)
                }
            }
        }
    }
}
