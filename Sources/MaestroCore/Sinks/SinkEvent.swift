public import MaestroRedis
public import MaestroValue

/// An event of Orb's `orb.sinks` stream (reference §1), decoded and checked for shape. Whether the
/// sink's config is *valid* is decided later, against the backend plugin's schema.
public struct SinkEvent: Sendable, Equatable {
    public enum Operation: String, Sendable {
        case create = "sinks.create"
        case update = "sinks.update"
        case remove = "sinks.remove"
    }

    public var operation: Operation
    public var sinkID: String
    public var ownerID: String
    /// nil when the event does not name one: always for removes, and for updates made through Orb's
    /// user API, whose `backend` is `""` (the backend of a sink cannot change).
    public var backend: String?
    /// The sink's config as a map, already in Orb's current model (the legacy flat model is converted).
    public var config: Value?
    /// The stream entry this event arrived in.
    public var entryID: String
    /// The id ordering compares: the original id for a replayed dead letter (`replay_of`), else `entryID`.
    public var orderingID: String

    public static let maximumSinkIDBytes = 253
    public static let maximumConfigBytes = 1 << 20
    public static let maximumFields = 64
    public static let maximumFieldBytes = 2 << 20
}

/// Why an entry is malformed: dead-lettered at once with this reason. Never holds a field's value.
public struct MalformedEvent: Error, CustomStringConvertible, Equatable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

extension SinkEvent {
    /// Decodes a stream entry, surviving every quirk of Orb's producer (reference §1): the zero
    /// timestamp, an empty backend on update, removes without config, `owner_id` instead of `owner`,
    /// and the legacy flat config (= prometheus + basicauth).
    public static func decode(_ entry: StreamEntry) throws(MalformedEvent) -> SinkEvent {
        guard entry.fields.count <= maximumFields else {
            throw MalformedEvent("entry has \(entry.fields.count) fields (the limit is \(maximumFields))")
        }
        for field in entry.fields where field.value.utf8.count > maximumFieldBytes || field.name.utf8.count > 256 {
            throw MalformedEvent("field \(sanitizedName(field.name)) is larger than the size limit")
        }
        // Bytes that are not UTF-8 would be read as U+FFFD, so `inv\xff` and `inv\xfe` would be one sink.
        for field in entry.fields where !field.isValidUTF8 {
            throw MalformedEvent("field \(sanitizedName(field.name)) is not valid UTF-8")
        }
        guard let operationText = entry["operation"], !operationText.isEmpty else {
            throw MalformedEvent("missing field operation")
        }
        guard let operation = Operation(rawValue: operationText) else {
            throw MalformedEvent("unknown operation \"\(sanitizedName(operationText))\"")
        }
        guard let sinkID = entry["sink_id"], !sinkID.isEmpty else { throw MalformedEvent("missing field sink_id") }
        guard sinkID.utf8.count <= maximumSinkIDBytes else {
            throw MalformedEvent("sink_id is longer than \(maximumSinkIDBytes) bytes")
        }
        guard !sinkID.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw MalformedEvent("sink_id contains control characters")
        }
        let ownerID = entry["owner"] ?? entry["owner_id"] ?? ""
        var orderingID = entry.id
        if let replayOf = entry["replay_of"] {
            guard StreamID(replayOf) != nil else { throw MalformedEvent("replay_of is not a stream entry id") }
            orderingID = replayOf
        }
        let backendText = entry["backend"] ?? ""
        let backend = backendText.isEmpty ? nil : backendText
        var config: Value?
        var resolvedBackend = backend
        switch operation {
        case .create, .update:
            if operation == .create && backend == nil { throw MalformedEvent("sinks.create without backend") }
            guard let text = entry["config"] else { throw MalformedEvent("\(operation.rawValue) without config") }
            guard text.utf8.count <= maximumConfigBytes else {
                throw MalformedEvent("config is larger than \(maximumConfigBytes) bytes")
            }
            let parsed: Value
            do {
                parsed = try JSON.decode(text)
            } catch {
                // The parser's message names a byte offset, never the text around it.
                throw MalformedEvent("config is not valid JSON (\(error.message) at byte \(error.offset ?? 0))")
            }
            guard case .map = parsed else { throw MalformedEvent("config is not a JSON object") }
            if resolvedBackend == nil && isLegacyFlat(parsed) {
                // The flat model only ever existed for prometheus.
                resolvedBackend = "prometheus"
            }
            config = normalizeLegacyConfig(parsed)
        case .remove:
            config = nil
            resolvedBackend = nil
        }
        return SinkEvent(operation: operation, sinkID: sinkID, ownerID: ownerID, backend: resolvedBackend, config: config,
                         entryID: entry.id, orderingID: orderingID)
    }

    /// Orb's older flat model: `{"remote_host", "username", "password", "opentelemetry"}`.
    static func isLegacyFlat(_ config: Value) -> Bool {
        config["exporter"] == nil && config["remote_host"] != nil
    }

    static func normalizeLegacyConfig(_ config: Value) -> Value {
        guard isLegacyFlat(config) else { return config }
        var authentication: [String: Value] = ["type": "basicauth"]
        if let username = config["username"] { authentication["username"] = username }
        if let password = config["password"] { authentication["password"] = password }
        return .map(["exporter": .map(["remote_host": config["remote_host"]!]), "authentication": .map(authentication)])
    }

    /// A field name or operation fit for a reason: short, printable.
    public static func sanitizedName(_ text: String) -> String {
        let printable = text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : String($0) }.joined()
        return printable.count > 64 ? String(printable.prefix(64)) + "…" : printable
    }
}
