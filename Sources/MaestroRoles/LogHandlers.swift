import Foundation
public import Logging
import MaestroCore
import MaestroValue

/// Log lines on stderr, as text (`2026-01-01T00:00:00Z info maestro: message key=value`) or one JSON
/// object per line. Metadata keys are dotted (`sink.id`, `plugin.name`, `event.id`).
public struct MaestroLogHandler: LogHandler {
    public enum Format: String, Sendable { case text, json }

    public let label: String
    public let format: Format
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    /// The trace's ids (`trace_id`, `span_id`) when tracing is on and a span is current.
    public var metadataProvider: Logger.MetadataProvider?

    public init(label: String, format: Format, logLevel: Logger.Level, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.format = format
        self.logLevel = logLevel
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        // The one masker's rule for keys: a field named like a credential is never written.
        for key in merged.keys where SecretMasker.looksLikeCredential(key) { merged[key] = .string(SecretMasker.marker) }
        let timestamp = Date().formatted(.iso8601)
        var line: String
        switch format {
        case .text:
            // Escaped and quoted by LogLine: a plugin's message cannot forge a line or a field.
            line = LogLine.text(timestamp: timestamp, level: "\(event.level)", label: label, message: "\(event.message)",
                                metadata: merged.keys.sorted().map { ($0, "\(merged[$0]!)") })
        case .json:
            var object: [String: Value] = ["time": .string(timestamp), "level": .string("\(event.level)"),
                                           "logger": .string(label), "message": .string("\(event.message)")]
            for (key, value) in merged { object[key] = .string("\(value)") }
            line = (try? JSON.encode(.map(object))) ?? "{\"message\":\"unencodable log line\"}"
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// `metadataProvider`: the tracer's, so that a line logged within a span names its trace and span.
    public static func bootstrap(format: String, level: String, metadataProvider: Logger.MetadataProvider? = nil) {
        let parsedFormat = Format(rawValue: format) ?? .text
        let parsedLevel = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap({ label, provider in
            MaestroLogHandler(label: label, format: parsedFormat, logLevel: parsedLevel, metadataProvider: provider)
        }, metadataProvider: metadataProvider)
    }
}
