import ArgumentParser
import Foundation
import MaestroCommandLine
import MaestroCore
import MaestroRoles

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Show every setting, its value (secrets masked) and where it came from."
    )

    @OptionGroup var settings: SettingsOptions

    func run() throws {
        try exitingOnInvalidInput {
            let resolved = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let rows = resolved.describe().map { [$0.key, $0.value, $0.origin.description] }
            print(formatTable(["SETTING", "VALUE", "FROM"], rows))
            if !resolved.plugins.isEmpty {
                print("\nplugin settings in the config file: " + resolved.plugins.keys.sorted().joined(separator: ", "))
            }
        }
    }
}
