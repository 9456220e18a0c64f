public import MaestroCore
public import MaestroRedis
internal import MaestroValue
internal import MaestroYAML

/// What a candidate plugin or template makes of one stored sink, next to what is stored.
public struct ShadowResult: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case same
        /// `-` lines stored only, `+` lines the candidate's only; secrets masked.
        case changed([String])
        /// The candidate rejects the sink's input (a plugin: its schema or a rejection).
        case invalid(String)
        /// The candidate failed on it (a plugin error, a template that does not render).
        case failed(String)
        /// Not run: nothing to build from.
        case skipped(String)
    }

    public var sinkID: String
    public var outcome: Outcome

    public init(sinkID: String, outcome: Outcome) {
        self.sinkID = sinkID
        self.outcome = outcome
    }
}

extension Array where Element == ShadowResult {
    /// The exit code of `maestro plugins diff` and `maestro templates diff`: 2 when the candidate failed
    /// or rejected a sink, else 1 when a result differs, else 0.
    public var shadowExitCode: Int32 {
        if contains(where: { if case .failed = $0.outcome { return true }; if case .invalid = $0.outcome { return true }; return false }) { return 2 }
        if contains(where: { if case .changed = $0.outcome { return true }; return false }) { return 1 }
        return 0
    }
}

/// Shadow runs: a candidate plugin folder or template over every stored sink it concerns, compared
/// with what is stored, storing nothing. Plugins run without Redis (`maestro.redis` answers that it is
/// not available) and without a cluster (`maestro.k8s` writes are dropped), so a candidate cannot
/// change anything; what they print has the sink's secrets masked.
public enum ShadowRun {
    /// The candidate catalog of `context` over the live sinks of the backends it serves (`backend`:
    /// only that one), against the stored collector configs.
    public static func plugins(redis: RedisConnection, context: SinkerContext, backend: String? = nil) throws(RedisError) -> [ShadowResult] {
        var context = context
        context.collectors = nil
        context.cluster = nil
        context.generations = nil
        let runtime = PluginRuntime(catalog: context.catalog, names: context.names, logger: context.logger, httpPolicy: context.httpPolicy, cluster: nil)
        let builder = CollectorConfigBuilder(context: context, runtime: runtime)
        var results: [ShadowResult] = []
        for (sinkID, record) in try liveSinks(redis, names: context.names) {
            guard let sinkBackend = record.backend, backend == nil || sinkBackend == backend else { continue }
            // A candidate that drops or renames a plugin would leave its sinks without a builder: that is
            // a failure of the candidate, not "no difference".
            guard let plugin = context.catalog.plugin(forBackend: sinkBackend) else {
                results.append(ShadowResult(sinkID: sinkID, outcome: .failed("no candidate plugin serves its backend \(sinkBackend)")))
                continue
            }
            guard let input = record.input else {
                results.append(ShadowResult(sinkID: sinkID, outcome: .skipped("no input kept: stored before inputs were kept")))
                continue
            }
            let message = SinkMessage(config: input, plugin: plugin, cipher: context.cipher)
            switch builder.build(operation: .update, sinkID: sinkID, ownerID: record.ownerID, backend: sinkBackend, config: input) {
            case .config(let value, _):
                let stored = try redis.hget(context.names.configHash, field: sinkID)
                let before = stored.flatMap { try? YAML.parse($0) }
                let lines = maskedLines(before, message: message, stored: stored)
                let after = maskedLines(value, message: message, stored: "")
                let difference = ObjectDiff.lineDiff(before: lines, after: after)
                results.append(ShadowResult(sinkID: sinkID, outcome: difference.isEmpty ? .same : .changed(difference)))
            case .invalid(let text):
                results.append(ShadowResult(sinkID: sinkID, outcome: .invalid(message.statusLine(text))))
            case .failed(let error, _):
                results.append(ShadowResult(sinkID: sinkID, outcome: .failed(message.reasonLine(error.message))))
            }
        }
        return results
    }

    /// The config as YAML lines with credentials masked: those of the sink's schema and their decrypted
    /// forms, and whatever looks like one (`SecretMasker`). A stored config that is not YAML is shown as
    /// stored, scrubbed.
    private static func maskedLines(_ value: Value?, message: SinkMessage, stored: String?) -> [String] {
        guard let value else {
            return (stored ?? "").isEmpty ? [] : message.scrubbed(stored ?? "").split(separator: "\n").map(String.init)
        }
        let yaml = (try? YAML.emit(SecretMasker().mask(value))) ?? ""
        return message.scrubbed(yaml).split(separator: "\n").map(String.init)
    }

    /// `renderer` (the candidate template) over every sink with a desired state, against the stored
    /// desired states. Secret objects show their keys only, as `maestro diff` does.
    public static func templates(redis: RedisConnection, names: RedisNames, renderer: any CollectorRenderer) throws(RedisError) -> [ShadowResult] {
        // The installation's key, read only: without one no desired state was ever rendered.
        let hasher = ConfigHasher(keyHex: try redis.get(names.configHashKey) ?? String(repeating: "0", count: 64))
        var desiredStates: [(String, String)] = []
        var cursor = "0"
        repeat {
            let page = try redis.hscan(names.deploymentHash, cursor: cursor, count: 200)
            cursor = page.cursor
            desiredStates += page.fields
        } while cursor != "0"
        var results: [ShadowResult] = []
        for (sinkID, desiredYAML) in desiredStates.sorted(by: { $0.0 < $1.0 }) {
            guard let config = try redis.hget(names.configHash, field: sinkID) else {
                results.append(ShadowResult(sinkID: sinkID, outcome: .skipped("no stored config")))
                continue
            }
            let record = try redis.hget(names.collectorsHash, field: sinkID).flatMap { try? JSON.decode($0) }
            var owner = record?["owner_id"]?.stringValue ?? ""
            if owner.isEmpty { owner = try SinkStore.record(redis, names: names, sinkID: sinkID)?.ownerID ?? "" }
            // A candidate may copy the config anywhere (an annotation, a ConfigMap, an error message): its
            // credentials are scrubbed from everything printed, not only from Secret objects.
            let message = SinkMessage(secrets: (try? YAML.parse(config)).map { SecretMasker().secrets(in: $0) } ?? [])
            let rendered: RenderedCollector
            do {
                rendered = try renderer.render(CollectorInputs(sinkID: sinkID, ownerID: owner, configYAML: config, configHash: hasher.hash(config)))
            } catch {
                results.append(ShadowResult(sinkID: sinkID, outcome: .failed(message.reasonLine("\(error)"))))
                continue
            }
            let stored = (try? YAML.parseAll(desiredYAML)) ?? []
            let before = message.scrubbed((try? YAML.emitAll(ObjectDiff.redacted(stored))) ?? "").split(separator: "\n").map(String.init)
            let after = message.scrubbed((try? YAML.emitAll(ObjectDiff.redacted(rendered.objects))) ?? "").split(separator: "\n").map(String.init)
            let difference = ObjectDiff.lineDiff(before: before, after: after)
            results.append(ShadowResult(sinkID: sinkID, outcome: difference.isEmpty ? .same : .changed(difference)))
        }
        return results
    }

    /// Live sinks (created, not removed), in sink id order.
    static func liveSinks(_ redis: RedisConnection, names: RedisNames) throws(RedisError) -> [(String, SinkRecord)] {
        var records: [(String, SinkRecord)] = []
        var cursor = "0"
        repeat {
            let page = try redis.hscan(names.sinksHash, cursor: cursor, count: 200)
            cursor = page.cursor
            for (id, json) in page.fields {
                if let record = SinkRecord(json: json), !record.removed, record.created { records.append((id, record)) }
            }
        } while cursor != "0"
        return records.sorted { $0.0 < $1.0 }
    }
}
