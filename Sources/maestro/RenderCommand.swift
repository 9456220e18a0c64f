import ArgumentParser
import Foundation
import Logging
import MaestroCommandLine
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroRoles
import MaestroValue
import MaestroYAML

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

    @Flag(name: .customLong("objects"), help: "Print the Kubernetes objects the template renders, as they would be applied (credentials redacted unless --reveal-secrets).")
    var objects = false

    @Flag(name: .customLong("reveal-secrets"), help: "Print credentials in clear (by default every credential is shown as <redacted>).")
    var revealSecrets = false

    func run() throws {
        try exitingOnInvalidInput {
            let configuration = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let wiring = Wiring(configuration: configuration)
            try wiring.requireSharedFolders(templates: objects)
            MaestroLogHandler.bootstrap(format: wiring.settings.logFormat, level: wiring.settings.logLevel)
            let logger = Logger(label: "maestro")
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
            case .config(let config, let yaml):
                // The one masker: credential-looking keys and header values, and the values at the
                // schema's secret paths of the sink config wherever the plugin copied them.
                let masker = SecretMasker(secretPaths: catalog.plugin(forBackend: backend)?.sinkSchema.secretPaths ?? [])
                func shown(_ text: String) -> String { revealSecrets ? text : masker.scrub(text, secretsOf: parsed) }
                guard objects else {
                    print(revealSecrets ? yaml : shown((try? YAML.emit(masker.mask(config))) ?? "<redacted>\n"), terminator: "")
                    return
                }
                let keyHex: String
                if !wiring.settings.redisURLIsGiven {
                    keyHex = ConfigHasher.placeholderKeyHex
                    printError("maestro: no --redis-url: the config-hash annotation uses a placeholder key, not the installation's")
                } else {
                    let redis = try RedisConnection(url: wiring.redisURL())
                    keyHex = try ConfigHasher.installationKey(redis, names: wiring.names)
                }
                let renderer: TemplateRenderer
                do {
                    renderer = try TemplateRenderer(root: wiring.templatesRoot,
                                                    settings: wiring.templateSettings(), limits: wiring.luaLimits, logger: logger)
                } catch {
                    throw InvalidInput("the template cannot be loaded: \(error)")
                }
                let inputs = CollectorInputs(sinkID: sinkID, ownerID: owner, configYAML: yaml, configHash: ConfigHasher(keyHex: keyHex).hash(yaml))
                do {
                    let rendered = try renderer.render(inputs)
                    print(revealSecrets ? rendered.yaml : shown((try? YAML.emitAll(masker.maskObjects(rendered.objects))) ?? "<redacted>\n"),
                          terminator: "")
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
