/// The one masker for everything that leaves maestro without an explicit request to reveal secrets:
/// gRPC Render, `maestro render`, `maestro diff`, the demo's output, dead-letter reasons and log fields.
///
/// A value is masked when
/// - it sits at one of the plugin schemas' secret paths (dotted, from the sink config's root);
/// - it is a header value: any scalar inside a map whose key is `headers` (any case), whatever the
///   header's name (`X-Api-Key`, `X-Scope-OrgID` — a header is where credentials travel);
/// - its key looks like a credential: contains `key`, `secret`, `token`, `password`, `passwd`, `auth`,
///   `credential`, `cookie`, `private` or `signature` (case-insensitive, anywhere in the key, so
///   `client_secret`, `X-Api-Key`, `bearer_token`, `sasl.password`, `authorization`) — unless the key
///   names a reference rather than a value (it ends in `name`, `ref`, `file`, `path`, `url`, `type`
///   or `enabled`: `secretName`, `tokenSecretRef`, `key_file`, `token_url`);
/// - it is the value of an environment-style pair `{name: <credential-looking>, value: …}`;
/// - it is data of a Kubernetes Secret (`data`, `stringData`).
/// Maps and lists are walked; only strings and numbers are replaced, by `marker` (a boolean such as
/// `automountServiceAccountToken: false` is no credential). The secret strings found are
/// also scrubbed from free text (`scrub`), so a message that quotes one (`error("bad password " .. p)`)
/// does not leak it.
public struct SecretMasker: Sendable {
    public static let marker = "<redacted>"
    static let credentialFragments = ["key", "secret", "token", "password", "passwd", "auth", "credential", "cookie", "private",
                                      "signature"]

    /// Dotted paths (`authentication.password`) of secret fields.
    public var secretPaths: Set<String>

    public init(secretPaths: some Sequence<String> = []) {
        self.secretPaths = Set(secretPaths)
    }

    static let referenceSuffixes = ["name", "ref", "file", "path", "url", "type", "enabled"]

    public static func looksLikeCredential(_ key: String) -> Bool {
        let lowered = key.lowercased()
        guard credentialFragments.contains(where: { lowered.contains($0) }) else { return false }
        return !referenceSuffixes.contains { lowered.hasSuffix($0) }
    }

    /// The value with every secret replaced by `marker`.
    public func mask(_ value: Value) -> Value {
        mask(value, path: "", secretContext: false)
    }

    /// Kubernetes objects: Secrets' data masked whole, everything else as `mask`.
    public func maskObjects(_ objects: [Value]) -> [Value] {
        objects.map { object in
            guard case .map(var entries) = mask(object) else { return object }
            if object["kind"] == .string("Secret") {
                for field in ["data", "stringData"] {
                    if case .map(let data)? = entries[field] { entries[field] = .map(data.mapValues { _ in .string(Self.marker) }) }
                }
            }
            return .map(entries)
        }
    }

    /// Every secret string in `value` (what `mask` replaces), longest first.
    public func secrets(in value: Value) -> [String] {
        var found: Set<String> = []
        collect(value, path: "", secretContext: false, into: &found)
        return found.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    /// `text` with every secret string of `value` (three characters or more) replaced by `***`.
    public func scrub(_ text: String, secretsOf value: Value?) -> String {
        guard let value else { return text }
        var scrubbed = text
        for secret in secrets(in: value) where secret.count >= 3 {
            scrubbed = scrubbed.split(separator: secret, omittingEmptySubsequences: false).joined(separator: "***")
        }
        return scrubbed
    }

    private func isSecret(key: String, path: String, parentKey: String?) -> Bool {
        secretPaths.contains(path) || Self.looksLikeCredential(key) || parentKey?.lowercased() == "headers"
    }

    private func mask(_ value: Value, path: String, secretContext: Bool, parentKey: String? = nil) -> Value {
        switch value {
        case .map(let entries):
            var result: [String: Value] = [:]
            let environmentPair = entries["name"]?.stringValue.map(Self.looksLikeCredential) ?? false
            for (key, item) in entries {
                let childPath = path.isEmpty ? key : path + "." + key
                let secret = isSecret(key: key, path: childPath, parentKey: parentKey) || (environmentPair && key == "value")
                result[key] = mask(item, path: childPath, secretContext: secret, parentKey: key)
            }
            return .map(result)
        case .list(let items):
            return .list(items.map { mask($0, path: path, secretContext: secretContext, parentKey: parentKey) })
        case .null, .bool:
            return value
        default:
            return secretContext ? .string(Self.marker) : value
        }
    }

    private func collect(_ value: Value, path: String, secretContext: Bool, parentKey: String? = nil, into found: inout Set<String>) {
        switch value {
        case .map(let entries):
            let environmentPair = entries["name"]?.stringValue.map(Self.looksLikeCredential) ?? false
            for (key, item) in entries {
                let childPath = path.isEmpty ? key : path + "." + key
                let secret = isSecret(key: key, path: childPath, parentKey: parentKey) || (environmentPair && key == "value")
                collect(item, path: childPath, secretContext: secret, parentKey: key, into: &found)
            }
        case .list(let items):
            for item in items { collect(item, path: path, secretContext: secretContext, parentKey: parentKey, into: &found) }
        case .string(let text):
            if secretContext && !text.isEmpty { found.insert(text) }
        default:
            break
        }
    }
}
