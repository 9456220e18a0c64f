internal import Foundation
public import Logging
internal import MaestroCore
internal import MaestroRoles
internal import CoreMetrics
internal import OTel
public import ServiceLifecycle
internal import Tracing

/// The one place swift-otel is wired, linked by the two programs only (scripts/check-boundaries): with `--otel-endpoint`, an OTLP/HTTP
/// exporter behind a batching span processor (a bounded queue: the flow never waits for the receiver, and
/// what it cannot take is dropped and counted in `maestro_trace_spans_dropped_total`). Without it nothing
/// is installed: the tracing API's no-op tracer stays, and the flow starts no span.
public struct TraceExporter: Sendable {
    /// Runs the exporter; stopped last, it sends what it still holds.
    public let service: any Service
    /// For `MaestroLogHandler.bootstrap`: a line logged within a span names its trace and span.
    public let loggingMetadata: Logger.MetadataProvider

    /// Installs the tracer and switches the flow's tracing on; nil when tracing is off (no endpoint).
    public static func start(endpoint: String?, samplePercent: Int, logFormat: String, logLevel: String) throws -> TraceExporter? {
        guard let endpoint else { return nil }
        guard let url = URL(string: endpoint), ["http", "https"].contains(url.scheme ?? ""), !(url.host ?? "").isEmpty else {
            throw InvalidInput("--otel-endpoint \(endpoint) is not an http:// or https:// URL")
        }
        var configuration = OTel.Configuration.default
        configuration.serviceName = "maestro"
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.endpoint = endpoint
        // The standard OTLP/HTTP encoding; OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json selects JSON.
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        guard let sampler = OTel.Configuration.TracesConfiguration.SamplerConfiguration.parentBasedTraceIDRatio(ratio: Double(samplePercent) / 100) else {
            throw InvalidInput("--otel-sample-percent \(samplePercent) is not between 0 and 100")
        }
        configuration.traces.sampler = sampler
        // Its warnings (a batch it could not send, spans the full queue dropped) become the drop counter, then
        // a line of maestro's log.
        configuration.diagnosticLogLevel = .warning
        let format = MaestroLogHandler.Format(rawValue: logFormat) ?? .text
        configuration.diagnosticLogger = .custom(Logger(label: "otel") { label in
            DroppedSpanCounter(forwarding: MaestroLogHandler(label: label, format: format, logLevel: Logger.Level(rawValue: logLevel) ?? .info))
        })
        let (tracer, service): (any Tracer, any Service)
        do {
            (tracer, service) = try OTel.makeTracingBackend(configuration: configuration)
        } catch {
            throw InvalidInput("cannot export traces to --otel-endpoint \(endpoint): \(error)")
        }
        InstrumentationSystem.bootstrap(tracer)
        FlowTracing.switchOn()
        return TraceExporter(service: service, loggingMetadata: OTel.makeLoggingMetadataProvider())
    }
}

/// Counts the spans the exporter lost, from its own diagnostics: those the full queue refused
/// (`dropped_count`) and those of a batch it could not send (`batch_size`).
struct DroppedSpanCounter: LogHandler {
    var forwarding: MaestroLogHandler

    var logLevel: Logger.Level {
        get { forwarding.logLevel }
        set { forwarding.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { forwarding.metadata }
        set { forwarding.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { forwarding[metadataKey: key] }
        set { forwarding[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        func count(_ key: String) -> Int? { all[key].flatMap { Int("\($0)") } }
        if event.message.description.hasPrefix("Spans were dropped"), let dropped = count("dropped_count") {
            Counter(label: "maestro_trace_spans_dropped_total", dimensions: [("reason", "queue_full")]).increment(by: dropped)
        } else if event.message.description.hasPrefix("Failed to export batch"), let lost = count("batch_size") {
            Counter(label: "maestro_trace_spans_dropped_total", dimensions: [("reason", "export_failed")]).increment(by: lost)
        }
        forwarding.log(event: event)
    }
}
