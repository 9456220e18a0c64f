/// The Redis keys maestro reads and writes (DESIGN "Redis: names and rules"). Every name is
/// configurable; these are the defaults, which are Orb's.
public struct RedisNames: Sendable, Equatable {
    public var sinksStream = "orb.sinks"
    public var sinkerGroup = "orb.sinker"
    public var configHash = "orb.sinker.otelConfigYaml"
    public var sinksHash = "orb.sinker.sinks"
    public var deploymentHash = "orb.maestro.otelCollector"
    public var collectorsHash = "orb.maestro.collectors"
    /// Sink id → JSON: the rollout history (versions, the last good objects) and the failed mark.
    public var rolloutsHash = "orb.maestro.rollouts"
    /// Sink ids whose desired state `maestro rollback` changed, for the maestro role to reconcile now.
    public var rollbackRequests = "maestro:rollback-requests"
    /// The fleet rollout under way or last run (JSON), and the requests for it (`maestro rollout`).
    public var fleetRollout = "maestro:fleet-rollout"
    public var fleetRolloutRequests = "maestro:fleet-rollout-requests"
    public var statusStream = "orb.maestro.sink_status"
    public var deadLetterStream = "orb.maestro.deadletter"
    public var activityStream = "orb.sink_activity"
    public var idleStream = "orb.sink_idle"
    public var maestroGroup = "orb.maestro"
    /// Group of the ops hooks on the status stream.
    public var hooksGroup = "maestro.hooks"
    /// The per-installation key of the config-hash HMAC.
    public var configHashKey = "maestro:config-hash-key"
    /// Prefix of the keys a plugin may write: `<prefix><plugin name>:…`.
    public var pluginKeyPrefix = "maestro:plugin:"
    /// Prefix of the per-sink reconcile locks (`<prefix><sink id>`, with an expiry).
    public var reconcileLockPrefix = "maestro:lock:reconcile:"

    public init() {}

    /// Every name with `prefix` in front: a private namespace on a shared Redis (demo, bench, tests).
    public func prefixed(_ prefix: String) -> RedisNames {
        var names = self
        names.sinksStream = prefix + sinksStream
        names.sinkerGroup = prefix + sinkerGroup
        names.configHash = prefix + configHash
        names.sinksHash = prefix + sinksHash
        names.deploymentHash = prefix + deploymentHash
        names.collectorsHash = prefix + collectorsHash
        names.rolloutsHash = prefix + rolloutsHash
        names.rollbackRequests = prefix + rollbackRequests
        names.fleetRollout = prefix + fleetRollout
        names.fleetRolloutRequests = prefix + fleetRolloutRequests
        names.statusStream = prefix + statusStream
        names.deadLetterStream = prefix + deadLetterStream
        names.configHashKey = prefix + configHashKey
        names.activityStream = prefix + activityStream
        names.idleStream = prefix + idleStream
        names.maestroGroup = prefix + maestroGroup
        names.hooksGroup = prefix + hooksGroup
        names.reconcileLockPrefix = prefix + reconcileLockPrefix
        names.pluginKeyPrefix = prefix + pluginKeyPrefix
        return names
    }

    /// Every key these names denote (the group is not a key).
    public var keys: [String] {
        [sinksStream, configHash, sinksHash, deploymentHash, collectorsHash, rolloutsHash, rollbackRequests, fleetRollout, fleetRolloutRequests, statusStream, deadLetterStream, activityStream, idleStream]
    }
}
