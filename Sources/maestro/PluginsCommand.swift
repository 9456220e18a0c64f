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
        abstract: "The plugins of --plugins-dir: list them, lint them (schemas, settings, handlers load), run their specs, diff them against the stored sinks.",
        subcommands: [List.self, Lint.self, Test.self, PluginsDiffCommand.self]
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
        static let configuration = CommandConfiguration(
            commandName: "lint",
            abstract: "Load every plugin (or those named) as maestro run would: schemas checked strictly, settings, handlers; exit 1 with file:line when one fails."
        )
        @OptionGroup var settings: SettingsOptions
        @Argument(help: "Plugins to check (folder names); all when none is given.")
        var names: [String] = []

        func run() throws {
            var failed = false
            try exitingOnInvalidInput {
                let catalog = try PluginsCommand.load(settings, only: names)
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
            abstract: "Run each plugin's spec/*_spec.lua (describe/it/assert, spec.validate|build|render) and golden pairs spec/golden/<case>.json → <case>.yaml; exit 1 on a failure or when no case ran."
        )
        @OptionGroup var settings: SettingsOptions
        @Argument(help: "Plugins to test (folder names); all when none is given.")
        var names: [String] = []
        @Flag(name: .customLong("update-golden"), help: "Write spec/golden/<case>.yaml from what the plugin builds now, where it is missing or differs.")
        var updateGolden = false
        @Flag(name: .customLong("verbose"), help: "Show what every case printed and logged (always shown for a failing case).")
        var verbose = false

        func run() throws {
            var failed = false
            try exitingOnInvalidInput {
                let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
                let catalog = try PluginsCommand.load(settings, only: names)
                let wiring = Wiring(configuration: configuration)
                let options = SpecOptions(updateGolden: updateGolden, templatesRoot: wiring.templatesRoot,
                                          templateSettings: wiring.templateSettings())
                let results = PluginSpecRunner.run(catalog: catalog, options: options)
                for result in results {
                    if let failure = result.failure {
                        print("FAIL  \(result.location)  \(result.name)\n      " + failure.replacingOccurrences(of: "\n", with: "\n      "))
                    } else {
                        print("ok    \(result.location)  \(result.name)")
                    }
                    if verbose || result.failure != nil {
                        for line in result.output { print("      | \(line)") }
                    }
                }
                for failure in catalog.failures { print("FAIL  \(failure.folder): \(failure.message)") }
                for plugin in catalog.plugins where !results.contains(where: { $0.plugin == plugin.name }) {
                    print("note  \(plugin.name): no spec case (add spec/*_spec.lua, or spec/golden/<case>.json with <case>.yaml)")
                }
                let failures = results.filter { $0.failure != nil }.count + catalog.failures.count
                print("\(results.count) case\(results.count == 1 ? "" : "s") ran: \(results.count - results.filter { $0.failure != nil }.count) passed, \(failures) failed")
                if results.isEmpty {
                    print("FAIL  no spec case ran: add spec/*_spec.lua or spec/golden/<case>.json (and <case>.yaml) to the plugin")
                }
                failed = failures > 0 || results.isEmpty
            }
            if failed { throw ExitCode(1) }
        }
    }

    static func load(_ settings: SettingsOptions, only names: [String] = []) throws -> PluginCatalog {
        let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
        LoggingSystem.bootstrap { label in MaestroLogHandler(label: label, format: .text, logLevel: .critical) }
        let wiring = Wiring(configuration: configuration)
        try wiring.requireSharedFolders(templates: false)
        let catalog = wiring.loadPlugins(logger: Logger(label: "maestro"))
        guard !names.isEmpty else { return catalog }
        let (selected, unknown) = catalog.only(names)
        if !unknown.isEmpty {
            let known = (catalog.plugins.map(\.name) + catalog.failures.map { ($0.folder as NSString).lastPathComponent }).sorted()
            throw InvalidInput("no plugin named " + unknown.joined(separator: ", ") + " in \(catalog.root) (plugins: " + known.joined(separator: ", ") + ")")
        }
        return selected
    }
}
