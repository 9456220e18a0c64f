internal import MaestroCore
internal import MaestroValue
internal import Synchronization

/// What a plugin may reach beyond its own keys, its own objects and the sink it is handling. A plugin
/// has a capability only when its `schema.lua` declares it (`capabilities = { ... }`) and the operator
/// grants it in the config file (`plugins: {<name>: {grants: [...]}}`).
///
/// - `sinks:read`: any sink's record and collector config (`maestro.redis.hget` of the sinks, config
///   and deployment hashes), not only the current sink's;
/// - `collectors:read`: `maestro.k8s.get|list` of any object maestro manages, not only the plugin's own
///   and its current sink's collector;
/// - `http:<host>`: `maestro.http.request` to that host (which must also be on `--http-allow-host`).
///   A plugin that calls a URL its settings name declares `http:*`: whatever hosts the operator grants.
///   Granting `http:*` grants every host of `--http-allow-host`.
public struct PluginCapabilities: Sendable, Equatable {
    public static let sinksRead = "sinks:read"
    public static let collectorsRead = "collectors:read"

    /// What `schema.lua` declares, in its order.
    public var declared: [String]
    /// What the config file grants, in its order.
    public var granted: [String]

    public init(declared: [String] = [], granted: [String] = []) {
        self.declared = declared
        self.granted = granted
    }

    /// `sinks:read`, `collectors:read`, `http:*` or `http:<host>` (a host name or address, lowercase, no
    /// port; IPv6 without brackets).
    public static func isKnown(_ capability: String) -> Bool {
        if capability == sinksRead || capability == collectorsRead { return true }
        guard capability.hasPrefix("http:") else { return false }
        let host = capability.dropFirst(5)
        if host == "*" { return true }
        return !host.isEmpty && host.utf8.count <= 253
            && host.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || [0x2D, 0x2E, 0x3A, 0x5F].contains($0) }
    }

    /// A list of capability strings (`path` names where it came from, for the error).
    static func parse(_ value: Value?, path: String) throws(PluginError) -> [String] {
        guard let value, !value.isNull else { return [] }
        guard case .list(let items) = value else { throw PluginError("\(path) must be a list of capabilities (\(vocabulary))") }
        var result: [String] = []
        for (index, item) in items.enumerated() {
            guard case .string(let text) = item else { throw PluginError("\(path)[\(index + 1)] must be a string") }
            let capability = text.hasPrefix("http:") ? "http:" + HTTPHostPolicy.normalizedHost(String(text.dropFirst(5))) : text
            guard isKnown(capability) else {
                throw PluginError("\(path)[\(index + 1)]: unknown capability \"\(SinkEvent.sanitizedName(text))\" (known: \(vocabulary))")
            }
            if !result.contains(capability) { result.append(capability) }
        }
        return result
    }

    static let vocabulary = "sinks:read, collectors:read, http:<host>, http:*"

    /// Whether a declared capability covers `capability` (`http:*` covers every `http:<host>`).
    static func covers(_ list: [String], _ capability: String) -> Bool {
        list.contains(capability) || (capability.hasPrefix("http:") && list.contains("http:*"))
    }

    /// Declared and granted.
    public func has(_ capability: String) -> Bool {
        Self.covers(declared, capability) && Self.covers(granted, capability)
    }

    /// Grants the schema does not declare: each one a load error (a grant that does nothing is a
    /// mistake in the config file — a typo, or the wrong plugin).
    var undeclaredGrants: [String] {
        granted.filter { grant in
            if grant == "http:*" { return !declared.contains { $0.hasPrefix("http:") } }
            return !Self.covers(declared, grant)
        }
    }

    /// The error for a call that needs `capability`, naming it and where to declare and grant it.
    func refusal(_ capability: String, plugin: String) -> String {
        if Self.covers(declared, capability) {
            return "needs capability \(capability), which plugin \(plugin) declares but the operator has not granted "
                + "(config file: plugins: {\(plugin): {grants: [\(capability)]}})"
        }
        return "needs capability \(capability), which plugin \(plugin) does not declare (schema.lua: capabilities = { \"\(capability)\" }; "
            + "the operator then grants it in the config file: plugins: {\(plugin): {grants: [\(capability)]}})"
    }

    /// `maestro plugins list`'s column: `sinks:read (granted), http:* (not granted)`.
    public var summary: String {
        let declaredText = declared.map { capability -> String in
            let grants = granted.filter { Self.covers([capability], $0) || capability == $0 }
            if grants.isEmpty { return "\(capability) (not granted)" }
            if grants == [capability] { return "\(capability) (granted)" }
            return "\(capability) (granted: \(grants.joined(separator: " ")))"
        }
        return declaredText.isEmpty ? "-" : declaredText.joined(separator: ", ")
    }
}

/// The sink the current plugin call handles (`maestro.ctx.sink_id`), as the host modules see it.
public final class PluginInvocation: Sendable {
    private let current = Mutex<(sinkID: String?, buildingConfig: Bool)>((nil, false))
    public init() {}
    public var sinkID: String? { current.withLock { $0.sinkID } }
    /// Whether the call builds a sink's collector config (its handler or a schema hook): the only
    /// place where `maestro.reject` means something.
    public var isBuildingConfig: Bool { current.withLock { $0.buildingConfig } }
    /// The secrets of the sink whose config is being built, as sent and as decrypted for the plugin:
    /// what the plugin logs and the label values it records are scrubbed of them.
    private let sinkSecrets = Mutex(SinkMessage(secrets: []))

    func useSecrets(_ message: SinkMessage) { sinkSecrets.withLock { $0 = message } }

    func scrubbed(_ text: String) -> String { sinkSecrets.withLock { $0 }.scrubbed(text) }

    /// Runs `body` with `sinkID` as the current sink.
    func handling<T, E: Error>(_ sinkID: String?, buildingConfig: Bool = false, _ body: () throws(E) -> T) throws(E) -> T {
        current.withLock { $0 = (sinkID, buildingConfig) }
        defer { current.withLock { $0 = (nil, false) } }
        return try body()
    }
}
