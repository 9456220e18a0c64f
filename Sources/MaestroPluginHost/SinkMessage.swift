internal import Logging
internal import MaestroCore
internal import MaestroValue

/// What a plugin's message (a rejection, an error, a spec's output) may show of a sink's config: its
/// secrets are replaced — those of the config as Orb sent it and as decrypted for the plugin, at any
/// depth, list items included — before anything else is done to the text. Cutting or cleaning first
/// would leave a secret that straddles the cut, or holds a control character, unrecognisable and in view.
struct SinkMessage {
    /// Longest first, so that a secret containing another is replaced whole.
    let secrets: [String]

    init(secrets: some Sequence<String>) {
        self.secrets = Set(secrets).sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    init(config: Value?, plugin: PluginManifest?, cipher: OrbSecretCipher) {
        self.init(secrets: Self.secrets(of: config, plugin: plugin, cipher: cipher))
    }

    static func secrets(of config: Value?, plugin: PluginManifest?, cipher: OrbSecretCipher) -> [String] {
        guard let config else { return [] }
        let masker = SecretMasker(secretPaths: plugin?.sinkSchema.secretPaths ?? [])
        return masker.secrets(in: config) + masker.secrets(in: cipher.decryptCredentials(in: config))
    }

    static let limit = 500

    /// The text with every secret (three characters or more) replaced by `***`.
    func scrubbed(_ text: String) -> String {
        var scrubbed = text
        for secret in secrets where secret.count >= 3 {
            scrubbed = scrubbed.split(separator: secret, omittingEmptySubsequences: false).joined(separator: "***")
        }
        return scrubbed
    }

    /// A status message: scrubbed, then on one line (control characters as spaces), then cut.
    func statusLine(_ text: String) -> String {
        let line = String(scrubbed(text).unicodeScalars.map { $0.properties.generalCategory == .control ? " " : Character($0) })
        return line.count > Self.limit ? String(line.prefix(Self.limit - 3)) + "..." : line
    }

    /// A failure reason: scrubbed, then its first line, cut.
    func reasonLine(_ text: String) -> String {
        let scrubbed = scrubbed(text)
        let firstLine = scrubbed.split(separator: "\n").first.map(String.init) ?? scrubbed
        return String(firstLine.prefix(Self.limit))
    }
}

/// A plugin's log lines, scrubbed of the secrets of the sink it is handling (`PluginInvocation`): a
/// plugin that logs `"logging in with " .. password` shows no password in maestro's log.
struct SinkSecretScrubbingLogHandler: LogHandler {
    var base: any LogHandler
    let invocation: PluginInvocation

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.message = Logger.Message(stringLiteral: invocation.scrubbed("\(event.message)"))
        event.metadata = event.metadata?.mapValues { .string(invocation.scrubbed("\($0)")) }
        base.log(event: event)
    }
}
