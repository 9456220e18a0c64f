import ArgumentParser
import Foundation
import Logging
import MaestroCommandLine
import MaestroCore
import MaestroPluginHost
import MaestroRoles

struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "The plugins of --plugins-dir: list them, lint them (schemas, settings, handlers load), run their specs.",
        subcommands: [List.self, Lint.self, Test.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Discovered plugins, their versions, bindings and capabilities (declared, and whether granted).")
        @OptionGroup var settings: SettingsOptions

        func run() throws {
            try exitingOnInvalidInput {
                let catalog = try PluginsCommand.load(settings)
                let rows = catalog.plugins.map { plugin in
                    [plugin.name, plugin.version, plugin.bindings.map { binding in
                        binding == "sink_backend" ? "sink_backend=\(plugin.sinkBackend ?? "")" : binding
                    }.joined(separator: ", "), plugin.capabilities.summary, plugin.description]
                }
                print(formatTable(["PLUGIN", "VERSION", "BINDS", "CAPABILITIES", "DESCRIPTION"], rows))
                for failure in catalog.failures { printError("maestro: \(failure.folder): \(failure.message)") }
            }
        }
    }

    struct Lint: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "lint", abstract: "Check every plugin; exit 1 when one fails to load.")
        @OptionGroup var settings: SettingsOptions

        func run() throws {
            var failed = false
            try exitingOnInvalidInput {
                let catalog = try PluginsCommand.load(settings)
                for plugin in catalog.plugins { print("ok    \(plugin.name) \(plugin.version)") }
                for failure in catalog.failures { print("FAIL  \(failure.folder): \(failure.message)") }
                failed = !catalog.failures.isEmpty
            }
            if failed { throw ExitCode(1) }
        }
    }

    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "test",
            abstract: "Run each plugin's spec/*_spec.lua (describe/it/assert) against in-memory Redis and Kubernetes; exit 1 on a failure."
        )
        @OptionGroup var settings: SettingsOptions

        func run() throws {
            var failed = false
            try exitingOnInvalidInput {
                let catalog = try PluginsCommand.load(settings)
                let results = PluginSpecRunner.run(catalog: catalog)
                for result in results {
                    if let failure = result.failure {
                        print("FAIL  \(result.location)  \(result.name)\n      \(failure)")
                    } else {
                        print("ok    \(result.location)  \(result.name)")
                    }
                }
                for failure in catalog.failures { print("FAIL  \(failure.folder): \(failure.message)") }
                let failures = results.filter { $0.failure != nil }.count + catalog.failures.count
                print("\(results.count - results.filter { $0.failure != nil }.count) passed, \(failures) failed")
                failed = failures > 0
            }
            if failed { throw ExitCode(1) }
        }
    }

    static func load(_ settings: SettingsOptions) throws -> PluginCatalog {
        let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
        LoggingSystem.bootstrap { label in MaestroLogHandler(label: label, format: .text, logLevel: .critical) }
        return Wiring(configuration: configuration).loadPlugins(logger: Logger(label: "maestro"))
    }
}
