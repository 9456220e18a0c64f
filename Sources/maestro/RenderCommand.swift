import ArgumentParser
import Foundation
import Logging
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroValue

struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Print the collector config YAML a sink's backend plugin builds. Needs no Redis and no cluster."
    )

    @OptionGroup var settings: SettingsOptions

    @Option(name: .customLong("backend"), help: "The sink's backend (prometheus, otlphttp, or any plugin's).")
    var backend: String

    @Option(name: .customLong("sink-id"), help: "The sink's id.")
    var sinkID: String

    @Option(name: .customLong("owner"), help: "The sink's owner id.")
    var owner: String = ""

    @Option(name: .customLong("sink-config"), help: "The sink's config as JSON, or @FILE.")
    var sinkConfig: String

    @Flag(name: .customLong("objects"), help: "Print the Kubernetes objects the template renders, exactly as they would be applied.")
    var objects = false

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            MaestroLogHandler.bootstrap(format: configuration.string("log-format") ?? "text", level: configuration.string("log-level") ?? "warning")
            let logger = Logger(label: "maestro")
            let wiring = Wiring(configuration: configuration)
            let text = try Wiring.inlineOrFile(sinkConfig, flag: "--sink-config")
            let parsed: Value
            do {
                parsed = try JSON.decode(text)
            } catch {
                throw InvalidInput("--sink-config is not valid JSON: \(error)")
            }
            guard case .map = parsed else { throw InvalidInput("--sink-config must be a JSON object") }
            let catalog = wiring.loadPlugins(logger: logger)
            let context = wiring.sinkerContext(catalog: catalog, collectors: nil, logger: logger)
            let builder = CollectorConfigBuilder(context: context, runtime: PluginRuntime(catalog: catalog, names: wiring.names, logger: logger))
            switch builder.build(operation: .create, sinkID: sinkID, ownerID: owner, backend: backend, config: parsed) {
            case .config(_, let yaml):
                guard objects else {
                    print(yaml, terminator: "")
                    return
                }
                let keyHex: String
                if configuration.origin("redis-url") == .defaultValue {
                    keyHex = ConfigHasher.placeholderKeyHex
                    printError("maestro: no --redis-url: the config-hash annotation uses a placeholder key, not the installation's")
                } else {
                    let redis = try RedisConnection(url: wiring.redisURL())
                    keyHex = try ConfigHasher.installationKey(redis, names: wiring.names)
                }
                let renderer: TemplateRenderer
                do {
                    renderer = try TemplateRenderer(root: wiring.absolute(configuration.string("templates-dir") ?? "./templates"),
                                                    settings: wiring.templateSettings(), limits: wiring.luaLimits, logger: logger)
                } catch {
                    throw InvalidInput("the template cannot be loaded: \(error)")
                }
                let inputs = CollectorInputs(sinkID: sinkID, ownerID: owner, configYAML: yaml, configHash: ConfigHasher(keyHex: keyHex).hash(yaml))
                do {
                    print(try renderer.render(inputs).yaml, terminator: "")
                } catch {
                    throw InvalidInput("the template failed: \(error)")
                }
            case .invalid(let message):
                throw InvalidInput(message)
            case .failed(let error, let plugin):
                throw InvalidInput("plugin \(plugin) failed: \(error.message)")
            }
        }
    }
}
