public import MaestroRedis
public import MaestroValue

/// One sink whose collector config is wanted, as the sinker's rules see it.
public struct CollectorConfigRequest: Sendable, Equatable {
    /// `create` for a sink never created or removed since, whatever the event said.
    public var operation: SinkEvent.Operation
    public var sinkID: String
    public var ownerID: String
    public var backend: String
    /// The sink's config as the event carried it (still encrypted, not validated).
    public var config: Value
    /// The stream entry being handled, and how often it was delivered (plugins see both).
    public var eventID: String
    public var deliveries: Int

    public init(operation: SinkEvent.Operation, sinkID: String, ownerID: String, backend: String, config: Value,
                eventID: String = "", deliveries: Int = 1) {
        self.operation = operation
        self.sinkID = sinkID
        self.ownerID = ownerID
        self.backend = backend
        self.config = config
        self.eventID = eventID
        self.deliveries = deliveries
    }
}

/// What came of asking for a sink's collector config.
public enum CollectorConfigOutcome: Sendable, Equatable {
    /// The collector config, as YAML.
    case config(yaml: String)
    /// The sink's config is the user's error: provisioning_error with this message (it names the field).
    case invalid(String)
    /// The plugin failed; `reason` holds no secret of the sink. A terminal failure is dead-lettered,
    /// any other retried.
    case failed(reason: String, plugin: String, terminal: Bool)
}

/// Turns a sink into its collector config: the seam PluginHost fills with the backend plugins (Lua).
/// One per sinker worker; used by one thread at a time.
public protocol CollectorConfigSource: AnyObject {
    /// Called before each batch with the worker's connection (plugins reach Redis through it); a
    /// source may switch to newer plugins here, never within a batch.
    func beginBatch(redis: RedisConnection)
    func collectorConfig(for request: CollectorConfigRequest) -> CollectorConfigOutcome
    /// The fingerprint of the plugin serving `backend` in the generation in use (see `beginBatch`),
    /// kept in the sink's record with the config it built; nil where plugins are not fingerprinted.
    func pluginFingerprint(forBackend backend: String) -> String?
}

extension CollectorConfigSource {
    public func pluginFingerprint(forBackend backend: String) -> String? { nil }
}
