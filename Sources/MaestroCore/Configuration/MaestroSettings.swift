internal import Foundation

/// Every setting of `Settings.all`, typed, read once from the resolved configuration. Resolution fills
/// in the table's defaults and checks each value against its kind, so nothing here can be missing or
/// malformed, and no default is written here: a setting without one in the table stays optional.
public struct MaestroSettings: Sendable {
    public enum Role: String, Sendable { case all, sinker, maestro }

    public var redisURL: String
    public var redisURLOrigin: SettingOrigin
    /// Whether `redis-url` was given: the demo and the pipeline benchmark start a private redis-server when not.
    public var redisURLIsGiven: Bool { redisURLOrigin != .defaultValue }
    /// Replicas that must confirm an outcome (WAIT) before its event is acknowledged.
    public var redisWaitReplicas: Int
    public var pluginsDir: String
    public var templatesDir: String
    /// Whether `plugins-dir` / `templates-dir` were set (flag, environment, file): else maestro looks for
    /// an installed layout (`Wiring.sharedFolder`).
    public var pluginsDirIsGiven: Bool
    public var templatesDirIsGiven: Bool
    public var luaInstructionBudget: Int
    public var luaMemoryMB: Int
    public var kafkaURL: String
    public var secretKey: String
    public var role: Role
    public var maestroTarget: String?
    public var grpcListen: String?
    public var grpcSocket: String?
    public var grpcToken: String?
    public var grpcTLSCertificate: String?
    public var grpcTLSKey: String?
    public var grpcClientCA: String?
    public var grpcInsecure: Bool
    public var httpListen: String?
    public var httpAllowedHosts: [String]
    /// As given, else the default ranges (`EndpointPolicy.defaultDeniedRanges`, the table's default for a list).
    public var collectorDeniedRanges: [String]
    public var resolvesCollectorEndpoints: Bool
    /// nil: chosen by what is found (a kubeconfig or a service account: kubernetes).
    public var kubeBackend: String?
    public var kubeconfig: String?
    /// Requests a second to the Kubernetes API after a burst of `kubeBurst`; 0: no client-side limit.
    public var kubeQPS: Int
    public var kubeBurst: Int
    /// Collector logs read a second across the fleet (ExporterLogWatch); 0: none.
    public var kubeLogReadsPerSecond: Int
    /// Reconcile passes started a second after a burst of `reconcileBurst`; 0: no limit.
    public var reconcileQPS: Int
    public var reconcileBurst: Int
    public var createNamespace: Bool
    public var manifestsDir: String
    public var namespace: String
    /// Whether `namespace` was given (flag, environment or file) rather than defaulted.
    public var namespaceIsGiven: Bool
    /// Seconds.
    public var resyncInterval: Double
    public var orphanGrace: Double
    /// The leader lease's timing (`--lease-duration`, `--lease-renew-deadline`, `--lease-retry-period`).
    public var leaseTiming: LeaseTiming
    public var configHistory: Int
    public var rolloutTimeout: Double
    public var rolloutCanary: Int
    public var rolloutGateTimeout: Double
    public var rolloutMaxUnavailable: Int
    public var rolloutMaxFailures: Int
    /// Percent.
    public var orphanMaxShare: Int
    public var createPolicy: CreatePolicy
    /// One per core unless given.
    public var workers: Int
    public var streamMaxLength: Int
    public var groupStart: String
    /// nil: the pod name, else host name and process id.
    public var consumerName: String?
    public var shutdownTimeout: Double
    public var reloadInterval: Double
    /// Sinks rebuilt a second after a backend plugin changed; 0: no pacing.
    public var rebuildRate: Int
    public var minIdle: Double
    public var maxDeliveries: Int
    public var names: RedisNames
    /// nil: tracing off (no tracer is installed).
    public var otelEndpoint: String?
    public var otelSamplePercent: Int
    public var logFormat: String
    public var logLevel: String
    /// Whether `log-level` was given rather than defaulted (the demo is quieter by default).
    public var logLevelIsGiven: Bool

    public init(_ configuration: Configuration) {
        let read = TypedReader(configuration: configuration)
        redisURL = read.text("redis-url")
        redisURLOrigin = configuration.origin("redis-url") ?? .defaultValue
        redisWaitReplicas = read.integer("redis-wait-replicas")
        pluginsDir = read.text("plugins-dir")
        templatesDir = read.text("templates-dir")
        pluginsDirIsGiven = configuration.origin("plugins-dir") != .defaultValue
        templatesDirIsGiven = configuration.origin("templates-dir") != .defaultValue
        luaInstructionBudget = read.integer("lua-instruction-budget")
        luaMemoryMB = read.integer("lua-memory-mb")
        kafkaURL = read.text("kafka-url")
        secretKey = read.text("secret-key")
        role = Role(rawValue: read.text("role"))!
        maestroTarget = configuration.string("maestro-target").flatMap { $0.isEmpty ? nil : $0 }
        grpcListen = configuration.string("grpc-listen")
        grpcSocket = configuration.string("grpc-socket")
        grpcToken = configuration.string("grpc-token")
        grpcTLSCertificate = configuration.string("grpc-tls-cert")
        grpcTLSKey = configuration.string("grpc-tls-key")
        grpcClientCA = configuration.string("grpc-client-ca")
        grpcInsecure = read.boolean("grpc-insecure")
        httpListen = configuration.string("http-listen")
        httpAllowedHosts = configuration.values("http-allow-host")
        let deniedRanges = configuration.values("collector-deny-cidr")
        collectorDeniedRanges = deniedRanges.isEmpty ? EndpointPolicy.defaultDeniedRanges : deniedRanges
        resolvesCollectorEndpoints = read.text("collector-endpoint-resolution") == "on"
        kubeBackend = configuration.string("kube-backend")
        kubeconfig = configuration.string("kubeconfig")
        kubeQPS = read.integer("kube-qps")
        kubeBurst = read.integer("kube-burst")
        kubeLogReadsPerSecond = read.integer("kube-log-reads-per-second")
        reconcileQPS = read.integer("reconcile-qps")
        reconcileBurst = read.integer("reconcile-burst")
        createNamespace = read.boolean("create-namespace")
        manifestsDir = read.text("manifests-dir")
        namespace = read.text("namespace")
        namespaceIsGiven = configuration.origin("namespace") != .defaultValue
        resyncInterval = read.duration("resync-interval")
        orphanGrace = read.duration("orphan-grace")
        leaseTiming = LeaseTiming(leaseDuration: read.duration("lease-duration"), renewDeadline: read.duration("lease-renew-deadline"),
                                  retryPeriod: read.duration("lease-retry-period"))
        configHistory = read.integer("config-history")
        rolloutTimeout = read.duration("rollout-timeout")
        rolloutCanary = read.integer("rollout-canary")
        rolloutGateTimeout = read.duration("rollout-gate-timeout")
        rolloutMaxUnavailable = read.integer("rollout-max-unavailable")
        rolloutMaxFailures = read.integer("rollout-max-failures")
        orphanMaxShare = read.integer("orphan-max-share")
        createPolicy = CreatePolicy(rawValue: read.text("create-policy"))!
        workers = configuration.integer("workers") ?? ProcessInfo.processInfo.activeProcessorCount
        streamMaxLength = read.integer("stream-maxlen")
        groupStart = read.text("group-start")
        consumerName = configuration.string("consumer-name").flatMap { $0.isEmpty ? nil : $0 }
        shutdownTimeout = read.duration("shutdown-timeout")
        reloadInterval = read.duration("reload-interval")
        rebuildRate = read.integer("rebuild-rate")
        minIdle = read.duration("min-idle")
        maxDeliveries = read.integer("max-deliveries")
        var names = RedisNames()
        names.sinksStream = read.text("sinks-stream")
        names.sinkerGroup = read.text("group")
        names.configHash = read.text("config-hash")
        names.sinksHash = read.text("sinks-hash")
        names.deploymentHash = read.text("deployment-hash")
        names.collectorsHash = read.text("collectors-hash")
        names.rolloutsHash = read.text("rollouts-hash")
        names.rollbackRequests = read.text("rollback-requests")
        names.fleetRollout = read.text("fleet-rollout-key")
        names.fleetRolloutRequests = read.text("fleet-rollout-requests")
        names.statusStream = read.text("status-stream")
        names.deadLetterStream = read.text("deadletter-stream")
        names.activityStream = read.text("activity-stream")
        names.idleStream = read.text("idle-stream")
        names.maestroGroup = read.text("maestro-group")
        self.names = names
        otelEndpoint = configuration.string("otel-endpoint").flatMap { $0.isEmpty ? nil : $0 }
        otelSamplePercent = read.integer("otel-sample-percent")
        logFormat = read.text("log-format")
        logLevel = read.text("log-level")
        logLevelIsGiven = configuration.origin("log-level") != .defaultValue
    }
}

/// Reads a setting the table gives a default and a kind: resolution guarantees a valid value, so a
/// missing or malformed one is a programming error (a setting read here that is not in the table).
private struct TypedReader {
    let configuration: Configuration

    func text(_ key: String) -> String {
        guard let value = configuration.string(key) else { preconditionFailure("setting \(key) has no value: is it in Settings.all with a default?") }
        return value
    }

    func integer(_ key: String) -> Int { parsed(key, as: "a whole number") { Int($0) } }
    func duration(_ key: String) -> Double { parsed(key, as: "a duration", parseDuration) }
    func boolean(_ key: String) -> Bool { parsed(key, as: "true or false", parseBoolean) }

    private func parsed<Value>(_ key: String, as kind: String, _ parse: (String) -> Value?) -> Value {
        guard let value = parse(text(key)) else { preconditionFailure("setting \(key) is not \(kind)") }
        return value
    }
}
