import ArgumentParser
import Foundation
import Logging
import MaestroCommandLine
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroRoles

/// `maestro plugins diff`: a candidate plugins folder over every stored sink of its backends.
struct PluginsDiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Run the plugins of --plugins-dir (a candidate) over every stored sink of their backends and print how the collector configs would change; store nothing.",
        discussion: "Secrets are masked. Exit 0: no difference; 1: differences; 2: the candidate fails or rejects a stored sink (or cannot load)."
    )

    @OptionGroup var settings: SettingsOptions
    @Option(name: .customLong("backend"), help: "Only the sinks of this backend.") var backend: String?

    func run() throws {
        var code: Int32 = 0
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let wiring = Wiring(configuration: configuration)
            var logger = Logger(label: "maestro")
            logger.logLevel = .error
            try wiring.requireSharedFolders(templates: false)
            let catalog = wiring.loadPlugins(logger: logger)
            for failure in catalog.failures { printError("maestro: \(failure.folder): \(failure.message)") }
            guard catalog.failures.isEmpty else { throw InvalidInput("the candidate plugins in \(wiring.pluginsRoot) do not all load") }
            // An empty candidate would otherwise compare nothing and pass as "no difference".
            guard !catalog.plugins.isEmpty else { throw InvalidInput("the candidate folder \(wiring.pluginsRoot) holds no plugin") }
            if let backend, catalog.plugin(forBackend: backend) == nil {
                throw InvalidInput("no plugin in \(wiring.pluginsRoot) serves backend \(backend)")
            }
            let redis = try RedisConnection(url: wiring.redisURL())
            defer { redis.close() }
            let results = try ShadowRun.plugins(redis: redis, context: wiring.sinkerContext(catalog: catalog, collectors: nil, logger: logger),
                                                backend: backend)
            printShadow(results, before: "stored", after: "candidate")
            code = results.shadowExitCode
        }
        if code != 0 { throw ExitCode(code) }
    }
}

/// `maestro templates diff`: a candidate template over every stored collector.
struct TemplatesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "templates",
        abstract: "The collector template of --templates-dir.",
        subcommands: [Diff.self]
    )

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "diff",
            abstract: "Render every stored collector with the template of --templates-dir (a candidate) and print how the objects would change; store nothing.",
            discussion: "Secret objects show their keys only. Exit 0: no difference; 1: differences; 2: the candidate fails on a collector (or cannot load)."
        )

        @OptionGroup var settings: SettingsOptions

        func run() throws {
            var code: Int32 = 0
            try exitingOnInvalidInput {
                let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
                let wiring = Wiring(configuration: configuration)
                var logger = Logger(label: "maestro")
                logger.logLevel = .error
                guard wiring.sharedFolder("templates").exists else {
                    throw InvalidInput("the templates folder \(wiring.templatesRoot) (--templates-dir) does not exist")
                }
                let renderer: TemplateRenderer
                do {
                    renderer = try wiring.templateFactory(root: wiring.templatesRoot, logger: logger)()
                } catch {
                    printError("maestro: the candidate template cannot be loaded: \(error)")
                    code = 2
                    return
                }
                let redis = try RedisConnection(url: wiring.redisURL())
                defer { redis.close() }
                let results = try ShadowRun.templates(redis: redis, names: wiring.names, renderer: renderer)
                printShadow(results, before: "stored", after: "candidate")
                code = results.shadowExitCode
            }
            if code != 0 { throw ExitCode(code) }
        }
    }
}

/// Every sink that differs, fails or was skipped, then a count of each.
func printShadow(_ results: [ShadowResult], before: String, after: String) {
    var counts: [String: Int] = [:]
    for result in results {
        switch result.outcome {
        case .same:
            counts["same", default: 0] += 1
        case .changed(let lines):
            counts["changed", default: 0] += 1
            print("--- \(result.sinkID) (\(before))\n+++ \(result.sinkID) (\(after))")
            print(lines.joined(separator: "\n"))
        case .invalid(let message):
            counts["invalid", default: 0] += 1
            print("INVALID \(result.sinkID): \(message)")
        case .failed(let reason):
            counts["failed", default: 0] += 1
            print("FAILED  \(result.sinkID): \(reason)")
        case .skipped(let why):
            counts["skipped", default: 0] += 1
            print("SKIPPED \(result.sinkID): \(why)")
        }
    }
    print("\(results.count) sinks" + (counts.isEmpty ? "" : ": " + counts.keys.sorted().map { "\($0) \(counts[$0]!)" }.joined(separator: ", ")))
}
