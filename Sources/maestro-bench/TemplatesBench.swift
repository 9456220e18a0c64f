import ArgumentParser
import Foundation
import Logging
import MaestroCommandLine
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroRoles
import MaestroValue

/// The template path on its own: render N collectors (Lua template + YAML emitter), single thread; and the
/// prometheus plugin's cost per event. Writes the inputs for the Jinja2 side (bench/jinja_render.py).
struct TemplatesBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "templates",
        abstract: "Render N collectors through the Lua template and the YAML emitter; time the prometheus plugin per event."
    )

    @OptionGroup var settings: SettingsOptions

    @Option(name: .customLong("sinks"), help: "Collectors rendered per run.")
    var sinks = 10_000

    @Option(name: .customLong("runs"), help: "Runs; the median is reported.")
    var runs = 3

    @Option(name: .customLong("inputs-out"), help: "Write the template values and the collector config used, as JSON, for the Jinja2 side.")
    var inputsOut: String?

    @Option(name: .customLong("sample-out"), help: "Write the first collector's rendered YAML here.")
    var sampleOut: String?

    func run() throws {
        try exitingOnInvalidInput {
            let (wiring, logger) = try start(settings)
            // The golden data's values exercise every optional part: resources, nodeSelector, tolerations, labels, annotations.
            let testdata = wiring.templatesRoot + "/testdata/otel-collector/values.json"
            guard let text = TextFile.read(testdata), let values = (try? JSON.decode(text))?["values"] else {
                throw InvalidInput("cannot read \(testdata)")
            }
            let renderer = try TemplateRenderer(root: wiring.templatesRoot, settings: values, limits: wiring.luaLimits, logger: logger)

            let catalog = wiring.loadPlugins(logger: logger)
            var context = wiring.sinkerContext(catalog: catalog, collectors: nil, logger: logger)
            context.policy = .external
            let builder = CollectorConfigBuilder(context: context, runtime: PluginRuntime(catalog: catalog, names: context.names, logger: logger))
            let sinkConfig: Value = ["exporter": ["remote_host": "https://prometheus.example.com/api/v1/write"],
                                     "authentication": ["type": "basicauth", "username": "bench-user", "password": "bench-password"]]
            var configYAML = ""
            var pluginMicroseconds: [Double] = []
            for _ in 0..<runs {
                let started = Date()
                for index in 0..<sinks {
                    guard case .config(_, let yaml) = builder.build(operation: .create, sinkID: "bench-sink-\(index)", ownerID: "bench-owner",
                                                                    backend: "prometheus", config: sinkConfig) else {
                        throw InvalidInput("the prometheus plugin failed")
                    }
                    if index == 0 { configYAML = yaml }
                }
                pluginMicroseconds.append(Date().timeIntervalSince(started) * 1e6 / Double(sinks))
                print(String(format: "  prometheus plugin: %.1f µs per event", pluginMicroseconds.last!))
            }

            func inputs(_ index: Int) -> CollectorInputs {
                CollectorInputs(sinkID: "bench-sink-\(index)", ownerID: "bench-owner", configYAML: configYAML,
                                configHash: String(format: "%064x", index))
            }
            if let inputsOut {
                try JSON.encode(["values": renderer.values, "config_yaml": .string(configYAML)]).write(toFile: inputsOut, atomically: true, encoding: .utf8)
            }
            if let sampleOut {
                try renderer.render(inputs(0)).yaml.write(toFile: sampleOut, atomically: true, encoding: .utf8)
            }
            var rates: [Double] = []
            var bytes = 0
            for _ in 0..<runs {
                let started = Date()
                for index in 0..<sinks { bytes = try renderer.render(inputs(index)).yaml.utf8.count }
                rates.append(Double(sinks) / Date().timeIntervalSince(started))
                print(String(format: "  Lua template + YAML emitter: %.0f renders/s (%d bytes of YAML each)", rates.last!, bytes))
            }
            print("RESULT " + (try JSON.encode(["renders_per_second": .list(rates.map { .double($0) }),
                                               "plugin_microseconds": .list(pluginMicroseconds.map { .double($0) })])))
        }
    }
}
