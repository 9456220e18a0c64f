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

    public init(label: String, format: Format, logLevel: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = logLevel
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
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

    public static func bootstrap(format: String, level: String) {
        let parsedFormat = Format(rawValue: format) ?? .text
        let parsedLevel = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in
            MaestroLogHandler(label: label, format: parsedFormat, logLevel: parsedLevel)
        }
    }
}
