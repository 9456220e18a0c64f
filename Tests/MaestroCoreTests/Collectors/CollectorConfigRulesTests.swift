import Foundation
import Logging
import MaestroTestSupport
import MaestroValue
import Testing

@testable import MaestroCore

/// The shipped component lists, read from the repository's plugins folder.
func shippedComponentLists() throws -> CollectorComponentLists {
    try CollectorComponentLists.load(folder: repositoryRoot + "/plugins/_components")
}

/// Orb's collector config (reference §4) with the health_check extension maestro adds: what every
/// shipped backend emits, and a config the collector starts with.
let orbConfig = """
    receivers:
      kafka:
        brokers: [kafka:9092]
        topic: otlp_metrics-sink-1
        protocol_version: 2.0.0
    extensions:
      pprof: {endpoint: 0.0.0.0:1888}
      health_check: {endpoint: 0.0.0.0:13133}
      basicauth/exporter: {client_auth: {username: u, password: p}}
    exporters:
      prometheusremotewrite:
        endpoint: https://acme.com/prom/push
        auth: {authenticator: basicauth/exporter}
    service:
      extensions: [pprof, health_check, basicauth/exporter]
      pipelines:
        metrics:
          receivers: [kafka]
          exporters: [prometheusremotewrite]

    """

@Suite("The collector's structural rules for its config", .timeLimit(.minutes(1)))
struct CollectorConfigRulesTests {
    static let contrib091 = "otel/opentelemetry-collector-contrib:0.91.0"
    static let contrib0100 = "otel/opentelemetry-collector-contrib:0.100.0"

    func violation(_ yaml: String, image: String? = contrib091) throws -> String? {
        let components = try image.map { try #require(try shippedComponentLists().components(forImage: $0)) }
        return CollectorConfigRules.violation(inYAML: yaml, components: components)
    }

    @Test("Orb's config for the image docs/plugins.md names passes")
    func orbsConfigPasses() throws {
        #expect(try violation(orbConfig) == nil)
    }

    @Test("a pipeline naming an undefined exporter is refused, naming the exporter and the pipeline")
    func undefinedExporter() throws {
        let config = orbConfig.replacingOccurrences(of: "exporters: [prometheusremotewrite]", with: "exporters: [prometheusremotewrite, otlphttp/missing]")
        #expect(try violation(config) == "collector config: pipeline \"metrics\": exporter \"otlphttp/missing\" is not defined in exporters or connectors")
    }

    @Test("undefined receivers and processors are refused the same way")
    func undefinedReceiverAndProcessor() throws {
        let receiver = orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: [kafka/other]")
        #expect(try violation(receiver) == "collector config: pipeline \"metrics\": receiver \"kafka/other\" is not defined in receivers or connectors")
        let processor = orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: [kafka]\n      processors: [batch]")
        #expect(try violation(processor) == "collector config: pipeline \"metrics\": processor \"batch\" is not defined in processors")
    }

    @Test("a pipeline without a receiver, or without an exporter, is refused")
    func pipelineWithoutReceiverOrExporter() throws {
        let noReceiver = orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: []")
        #expect(try violation(noReceiver) == "collector config: pipeline \"metrics\" has no receiver (it needs at least one)")
        let noExporter = orbConfig.replacingOccurrences(of: "      exporters: [prometheusremotewrite]\n", with: "")
        #expect(try violation(noExporter) == "collector config: pipeline \"metrics\" has no exporter (it needs at least one)")
        let noPipelines = orbConfig.components(separatedBy: "  pipelines:")[0] + "  pipelines: {}\n"
        #expect(try violation(noPipelines) == "collector config: service.pipelines must hold at least one pipeline")
        #expect(try violation("receivers: {}\n") == "collector config: service is missing")
    }

    @Test("service.extensions naming an undefined extension is refused")
    func undefinedExtension() throws {
        let config = orbConfig.replacingOccurrences(of: "extensions: [pprof, health_check, basicauth/exporter]",
                                                    with: "extensions: [pprof, health_check, bearertokenauth/withscheme]")
        #expect(try violation(config) == "collector config: service.extensions: extension \"bearertokenauth/withscheme\" is not defined in extensions")
    }

    @Test("a connector joins the end of one pipeline to the start of another; used on one side only, it is refused")
    func connectors() throws {
        // traces → count → metrics/counted: the connector ends one pipeline and starts another.
        let config = orbConfig.replacingOccurrences(of: "receivers:\n  kafka:", with: "receivers:\n  otlp: {}\n  kafka:")
            .replacingOccurrences(of: "exporters: [prometheusremotewrite]", with: """
            exporters: [prometheusremotewrite]
                traces:
                  receivers: [otlp]
                  exporters: [count]
                metrics/counted:
                  receivers: [count]
                  exporters: [prometheusremotewrite]
            """) + "connectors:\n  count: {}\n"
        #expect(try violation(config) == nil)

        let exporterOnly = orbConfig.replacingOccurrences(of: "exporters: [prometheusremotewrite]", with: "exporters: [prometheusremotewrite, count]")
            + "connectors:\n  count: {}\n"
        #expect(try violation(exporterOnly)
                == "collector config: pipeline \"metrics\": connector \"count\" is used as an exporter but no pipeline uses it as a receiver")
        let receiverOnly = orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: [kafka, forward]")
            + "connectors:\n  forward: {}\n"
        #expect(try violation(receiverOnly)
                == "collector config: pipeline \"metrics\": connector \"forward\" is used as a receiver but no pipeline uses it as an exporter")
        let clash = orbConfig + "connectors:\n  kafka: {}\n"
        #expect(try violation(clash)
                == "collector config: connector \"kafka\" has the id of a receiver (connectors and receivers must not share ids)")
    }

    @Test("an unknown component type is refused for one image version and accepted for one that has it")
    func componentTypesByImage() throws {
        // opensearch: in the 0.100.0 manifest, not in 0.91.0's; dynatrace the other way round.
        let opensearch = orbConfig.replacingOccurrences(of: "exporters:\n  prometheusremotewrite:", with: "exporters:\n  opensearch/logs: {}\n  prometheusremotewrite:")
            .replacingOccurrences(of: "exporters: [prometheusremotewrite]", with: "exporters: [prometheusremotewrite, opensearch/logs]")
        #expect(try violation(opensearch, image: Self.contrib091) == "collector config: pipeline \"metrics\": exporter \"opensearch/logs\": type "
                + "\"opensearch\" is not an exporter of the image otel/opentelemetry-collector-contrib:0.91.0 (_components/otel-collector-contrib-0.91.0.yaml)")
        #expect(try violation(opensearch, image: Self.contrib0100) == nil)
        let dynatrace = orbConfig.replacingOccurrences(of: "exporters:\n  prometheusremotewrite:", with: "exporters:\n  dynatrace: {}\n  prometheusremotewrite:")
        #expect(try violation(dynatrace, image: Self.contrib091) == nil)
        #expect(try violation(dynatrace, image: Self.contrib0100)?.hasPrefix("collector config: exporters: exporter \"dynatrace\": type \"dynatrace\"") == true,
                "a component defined and used by no pipeline is still refused: the collector refuses its type at start")
        // Without a list for the image the structure is still checked, the types are not.
        #expect(try violation(opensearch, image: nil) == nil)
        #expect(try violation(orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: []"), image: nil) != nil)
    }

    @Test("the shipped lists: one per image, the image the template runs by default among them, with the components the plugins emit")
    func shippedLists() throws {
        let lists = try shippedComponentLists()
        #expect(lists.lists.count >= 2)
        let template = try String(contentsOfFile: repositoryRoot + "/templates/otel-collector.lua", encoding: .utf8)
        #expect(template.contains("default = \"\(Self.contrib091)\""), "the template's default image changed: add its list")
        let list = try #require(lists.components(forImage: Self.contrib091))
        for (kind, type) in [(CollectorComponents.Kind.receivers, "kafka"), (.exporters, "prometheusremotewrite"), (.exporters, "otlphttp"),
                             (.extensions, "health_check"), (.extensions, "pprof"), (.extensions, "basicauth"),
                             (.extensions, "bearertokenauth"), (.processors, "batch"), (.processors, "memory_limiter"),
                             (.connectors, "count"), (.connectors, "forward")] {
            #expect(list.has(type, of: kind), "\(type) is a \(kind.singular) of the contrib image")
        }
        #expect(lists.components(forImage: "otel/opentelemetry-collector-contrib:0.0.1") == nil)
    }

    @Test("a broken component list, or two lists for one image, is an error naming the file")
    func brokenLists() throws {
        let folder = try TemporaryDirectory()
        try folder.write("a.yaml", "images: [x:1]\nreceivers: [otlp]\nprocessors: []\nexporters: []\nextensions: []\n")
        #expect(throws: CollectorComponentsError("_components/a.yaml: connectors must be a list")) { try CollectorComponentLists.load(folder: folder.path) }
        try folder.write("a.yaml", "images: [x:1]\nreceivers: [otlp]\nprocessors: []\nexporters: []\nextensions: []\nconnectors: []\n")
        try folder.write("b.yaml", "images: [x:1]\nreceivers: []\nprocessors: []\nexporters: []\nextensions: []\nconnectors: []\n")
        #expect(throws: CollectorComponentsError("_components/b.yaml: image x:1 is described by _components/a.yaml already")) {
            try CollectorComponentLists.load(folder: folder.path)
        }
        #expect(try CollectorComponentLists.load(folder: folder.path + "/none").checksConfigs == false)
    }

    // MARK: attacks: a clear error, never a crash or a hang

    @Test("attack: weird ids — an empty name, an empty type, a bad type, control characters, a huge id")
    func weirdIDs() throws {
        let trailing = orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: [\"otlp/\"]")
        #expect(try violation(trailing) == "collector config: pipeline \"metrics\": receivers: \"otlp/\" is not a component id: the name after \"/\" is empty")
        let leading = orbConfig + "processors:\n  /x: {}\n"
        #expect(try violation(leading) == "collector config: processors: \"/x\" is not a component id: the type is empty")
        let digit = orbConfig.replacingOccurrences(of: "extensions:\n  pprof:", with: "extensions:\n  9lives: {}\n  pprof:")
        #expect(try violation(digit)?.hasPrefix("collector config: extensions: \"9lives\" is not a component id: the type must be a letter") == true)
        let control = orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: [\"ka\\nfka\"]")
        #expect(try violation(control)?.contains("\"ka?fka\"") == true, "a control character reaches the status")
        let huge = String(repeating: "a", count: 100_000)
        let message = try #require(try violation(orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: [\(huge)]")))
        #expect(message.count < 400, "the message quotes a cut id")
        #expect(try violation(orbConfig.replacingOccurrences(of: "metrics:\n      receivers", with: "spans:\n      receivers"))
                == "collector config: pipeline \"spans\": the signal must be traces, metrics or logs, not \"spans\"")
    }

    @Test("attack: sections, pipelines and lists of the wrong shape")
    func wrongShapes() throws {
        #expect(try violation("- a\n- b\n") == "collector config: must be a map, not a list")
        #expect(try violation(orbConfig + "processors: [batch]\n") == "collector config: processors must be a map of components (type[/name]), not a list")
        #expect(try violation(orbConfig.replacingOccurrences(of: "exporters: [prometheusremotewrite]", with: "exporters: prometheusremotewrite"))
                == "collector config: pipeline \"metrics\": exporters must be a list of component ids, not a string")
        #expect(try violation(orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: [[kafka]]"))
                == "collector config: pipeline \"metrics\": receivers must hold component ids, not a list")
        let batched = orbConfig + "processors:\n  batch: {}\n"
        #expect(try violation(batched.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: [kafka]\n      processors: [batch, batch]"))
                == "collector config: pipeline \"metrics\": processors names \"batch\" twice")
        #expect(try violation(orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: [kafka, kafka]")) == nil,
                "the collector takes a receiver listed twice")
        #expect(try violation("service: 7\n") == "collector config: service must be a map, not an integer")
        #expect(try violation("service: {pipelines: [metrics]}\n") == "collector config: service.pipelines must be a map of pipelines (signal[/name])")
        #expect(try violation("service: {pipelines: {metrics: 1}}\n")
                == "collector config: pipeline \"metrics\" must be a map of receivers, processors and exporters, not an integer")
        #expect(try violation("receivers: [\n")?.hasPrefix("collector config: not valid YAML") == true)
    }

    @Test("attack: huge pipeline lists and many pipelines are checked in bounded time")
    func hugeLists() throws {
        var receivers = "receivers:\n"
        var names: [String] = []
        for index in 0..<20_000 {
            receivers += "  otlp/r\(index): {}\n"
            names.append("otlp/r\(index)")
        }
        var pipelines = ""
        for index in 0..<2_000 { pipelines += "    metrics/p\(index): {receivers: [otlp/r\(index)], exporters: [debug]}\n" }
        let config = receivers + "exporters: {debug: {}}\nservice:\n  pipelines:\n    metrics:\n      receivers: [\(names.joined(separator: ", "))]\n"
            + "      exporters: [debug, debug/missing]\n" + pipelines
        let started = Date()
        #expect(try violation(config) == "collector config: pipeline \"metrics\": exporter \"debug/missing\" is not defined in exporters or connectors")
        #expect(try violation(config.replacingOccurrences(of: ", debug/missing]", with: "]")) == nil)
        #expect(Date().timeIntervalSince(started) < 20)
    }

    @Test("attack: YAML anchors — a list reused by aliases is checked as written; an alias bomb is refused by the node budget")
    func anchors() throws {
        let reused = orbConfig.replacingOccurrences(of: "receivers: [kafka]", with: "receivers: &shared [kafka]")
            .replacingOccurrences(of: "exporters: [prometheusremotewrite]", with: "exporters: [prometheusremotewrite]\n    metrics/again: {receivers: *shared, exporters: [nowhere]}")
        #expect(try violation(reused) == "collector config: pipeline \"metrics/again\": exporter \"nowhere\" is not defined in exporters or connectors")
        var bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1..<12 { bomb += "l\(level): &l\(level) [" + Array(repeating: level == 1 ? "*a" : "*l\(level - 1)", count: 10).joined(separator: ", ") + "]\n" }
        let started = Date()
        let message = try #require(try violation(bomb + "service: {pipelines: {metrics: {receivers: *l11, exporters: *l11}}}\n"))
        #expect(message.hasPrefix("collector config: not valid YAML"), "\(message)")
        #expect(Date().timeIntervalSince(started) < 10)
    }
}
