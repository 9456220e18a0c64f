public import ArgumentParser
public import MaestroCore
import Foundation
import MaestroRoles

/// The flags every subcommand that reads settings accepts; one per entry of `Settings.all`, its help
/// text and default from that table.
public struct SettingsOptions: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .customLong("config"), help: "YAML file of settings (keys are the flag names).")
    var config: String?

    @Option(name: .customLong("redis-url"), help: ArgumentHelp(Settings.flagHelp("redis-url")))
    var redisURL: String?
    @Option(name: .customLong("redis-url-file"), help: ArgumentHelp(Settings.fileFlagHelp("redis-url")))
    var redisURLFile: String?
    @Option(name: .customLong("redis-wait-replicas"), help: ArgumentHelp(Settings.flagHelp("redis-wait-replicas")))
    var redisWaitReplicas: String?
    @Option(name: .customLong("plugins-dir"), help: ArgumentHelp(Settings.flagHelp("plugins-dir")))
    var pluginsDir: String?
    @Option(name: .customLong("templates-dir"), help: ArgumentHelp(Settings.flagHelp("templates-dir")))
    var templatesDir: String?
    @Option(name: .customLong("lua-instruction-budget"), help: ArgumentHelp(Settings.flagHelp("lua-instruction-budget")))
    var luaInstructionBudget: String?
    @Option(name: .customLong("lua-memory-mb"), help: ArgumentHelp(Settings.flagHelp("lua-memory-mb")))
    var luaMemoryMB: String?
    @Option(name: .customLong("kafka-url"), help: ArgumentHelp(Settings.flagHelp("kafka-url")))
    var kafkaURL: String?
    @Option(name: .customLong("secret-key-file"), help: ArgumentHelp(Settings.fileFlagHelp("secret-key")))
    var secretKeyFile: String?
    @Option(name: .customLong("create-policy"), help: ArgumentHelp(Settings.flagHelp("create-policy")))
    var createPolicy: String?
    @Option(name: .customLong("workers"), help: ArgumentHelp(Settings.flagHelp("workers")))
    var workers: String?
    @Option(name: .customLong("stream-maxlen"), help: ArgumentHelp(Settings.flagHelp("stream-maxlen")))
    var streamMaxlen: String?
    @Option(name: .customLong("group"), help: ArgumentHelp(Settings.flagHelp("group")))
    var group: String?
    @Option(name: .customLong("group-start"), help: ArgumentHelp(Settings.flagHelp("group-start")))
    var groupStart: String?
    @Option(name: .customLong("consumer-name"), help: ArgumentHelp(Settings.flagHelp("consumer-name")))
    var consumerName: String?
    @Option(name: .customLong("min-idle"), help: ArgumentHelp(Settings.flagHelp("min-idle")))
    var minIdle: String?
    @Option(name: .customLong("shutdown-timeout"), help: ArgumentHelp(Settings.flagHelp("shutdown-timeout")))
    var shutdownTimeout: String?
    @Option(name: .customLong("reload-interval"), help: ArgumentHelp(Settings.flagHelp("reload-interval")))
    var reloadInterval: String?
    @Option(name: .customLong("rebuild-rate"), help: ArgumentHelp(Settings.flagHelp("rebuild-rate")))
    var rebuildRate: String?
    @Option(name: .customLong("max-deliveries"), help: ArgumentHelp(Settings.flagHelp("max-deliveries")))
    var maxDeliveries: String?
    @Option(name: .customLong("sinks-stream"), help: ArgumentHelp(Settings.flagHelp("sinks-stream")))
    var sinksStream: String?
    @Option(name: .customLong("config-hash"), help: ArgumentHelp(Settings.flagHelp("config-hash")))
    var configHash: String?
    @Option(name: .customLong("sinks-hash"), help: ArgumentHelp(Settings.flagHelp("sinks-hash")))
    var sinksHash: String?
    @Option(name: .customLong("deployment-hash"), help: ArgumentHelp(Settings.flagHelp("deployment-hash")))
    var deploymentHash: String?
    @Option(name: .customLong("collectors-hash"), help: ArgumentHelp(Settings.flagHelp("collectors-hash")))
    var collectorsHash: String?
    @Option(name: .customLong("status-stream"), help: ArgumentHelp(Settings.flagHelp("status-stream")))
    var statusStream: String?
    @Option(name: .customLong("deadletter-stream"), help: ArgumentHelp(Settings.flagHelp("deadletter-stream")))
    var deadletterStream: String?
    @Option(name: .customLong("role"), help: ArgumentHelp(Settings.flagHelp("role")))
    var role: String?
    @Option(name: .customLong("kube-backend"), help: ArgumentHelp(Settings.flagHelp("kube-backend")))
    var kubeBackend: String?
    @Option(name: .customLong("manifests-dir"), help: ArgumentHelp(Settings.flagHelp("manifests-dir")))
    var manifestsDir: String?
    @Option(name: .customLong("namespace"), help: ArgumentHelp(Settings.flagHelp("namespace")))
    var namespace: String?
    @Option(name: .customLong("resync-interval"), help: ArgumentHelp(Settings.flagHelp("resync-interval")))
    var resyncInterval: String?
    @Option(name: .customLong("rollouts-hash"), help: ArgumentHelp(Settings.flagHelp("rollouts-hash")))
    var rolloutsHash: String?
    @Option(name: .customLong("rollback-requests"), help: ArgumentHelp(Settings.flagHelp("rollback-requests")))
    var rollbackRequests: String?
    @Option(name: .customLong("fleet-rollout-key"), help: ArgumentHelp(Settings.flagHelp("fleet-rollout-key")))
    var fleetRolloutKey: String?
    @Option(name: .customLong("fleet-rollout-requests"), help: ArgumentHelp(Settings.flagHelp("fleet-rollout-requests")))
    var fleetRolloutRequests: String?
    @Option(name: .customLong("config-history"), help: ArgumentHelp(Settings.flagHelp("config-history")))
    var configHistory: String?
    @Option(name: .customLong("rollout-timeout"), help: ArgumentHelp(Settings.flagHelp("rollout-timeout")))
    var rolloutTimeout: String?
    @Option(name: .customLong("rollout-canary"), help: ArgumentHelp(Settings.flagHelp("rollout-canary")))
    var rolloutCanary: String?
    @Option(name: .customLong("rollout-gate-timeout"), help: ArgumentHelp(Settings.flagHelp("rollout-gate-timeout")))
    var rolloutGateTimeout: String?
    @Option(name: .customLong("rollout-max-unavailable"), help: ArgumentHelp(Settings.flagHelp("rollout-max-unavailable")))
    var rolloutMaxUnavailable: String?
    @Option(name: .customLong("rollout-max-failures"), help: ArgumentHelp(Settings.flagHelp("rollout-max-failures")))
    var rolloutMaxFailures: String?
    @Option(name: .customLong("orphan-grace"), help: ArgumentHelp(Settings.flagHelp("orphan-grace")))
    var orphanGrace: String?
    @Option(name: .customLong("lease-duration"), help: ArgumentHelp(Settings.flagHelp("lease-duration")))
    var leaseDuration: String?
    @Option(name: .customLong("lease-renew-deadline"), help: ArgumentHelp(Settings.flagHelp("lease-renew-deadline")))
    var leaseRenewDeadline: String?
    @Option(name: .customLong("lease-retry-period"), help: ArgumentHelp(Settings.flagHelp("lease-retry-period")))
    var leaseRetryPeriod: String?
    @Option(name: .customLong("orphan-max-share"), help: ArgumentHelp(Settings.flagHelp("orphan-max-share")))
    var orphanMaxShare: String?
    @Option(name: .customLong("activity-stream"), help: ArgumentHelp(Settings.flagHelp("activity-stream")))
    var activityStream: String?
    @Option(name: .customLong("idle-stream"), help: ArgumentHelp(Settings.flagHelp("idle-stream")))
    var idleStream: String?
    @Option(name: .customLong("maestro-group"), help: ArgumentHelp(Settings.flagHelp("maestro-group")))
    var maestroGroup: String?
    @Option(name: .customLong("kubeconfig"), help: ArgumentHelp(Settings.flagHelp("kubeconfig")))
    var kubeconfig: String?
    @Option(name: .customLong("kube-qps"), help: ArgumentHelp(Settings.flagHelp("kube-qps")))
    var kubeQPS: String?
    @Option(name: .customLong("kube-burst"), help: ArgumentHelp(Settings.flagHelp("kube-burst")))
    var kubeBurst: String?
    @Option(name: .customLong("reconcile-qps"), help: ArgumentHelp(Settings.flagHelp("reconcile-qps")))
    var reconcileQPS: String?
    @Option(name: .customLong("reconcile-burst"), help: ArgumentHelp(Settings.flagHelp("reconcile-burst")))
    var reconcileBurst: String?
    @Option(name: .customLong("kube-log-reads-per-second"), help: ArgumentHelp(Settings.flagHelp("kube-log-reads-per-second")))
    var kubeLogReadsPerSecond: String?
    @Flag(name: .customLong("create-namespace"), help: ArgumentHelp(Settings.flagHelp("create-namespace")))
    var createNamespace: Bool = false
    @Option(name: .customLong("maestro-target"), help: ArgumentHelp(Settings.flagHelp("maestro-target")))
    var maestroTarget: String?
    @Option(name: .customLong("grpc-listen"), help: ArgumentHelp(Settings.flagHelp("grpc-listen")))
    var grpcListen: String?
    @Option(name: .customLong("grpc-socket"), help: ArgumentHelp(Settings.flagHelp("grpc-socket")))
    var grpcSocket: String?
    @Option(name: .customLong("grpc-tls-cert"), help: ArgumentHelp(Settings.flagHelp("grpc-tls-cert")))
    var grpcTlsCert: String?
    @Option(name: .customLong("grpc-tls-key"), help: ArgumentHelp(Settings.flagHelp("grpc-tls-key")))
    var grpcTlsKey: String?
    @Option(name: .customLong("grpc-client-ca"), help: ArgumentHelp(Settings.flagHelp("grpc-client-ca")))
    var grpcClientCa: String?
    @Option(name: .customLong("http-allow-host"), help: ArgumentHelp(Settings.flagHelp("http-allow-host")))
    var httpAllowHost: [String] = []
    @Option(name: .customLong("collector-deny-cidr"), help: ArgumentHelp(Settings.flagHelp("collector-deny-cidr")))
    var collectorDenyCIDR: [String] = []
    @Option(name: .customLong("collector-endpoint-resolution"), help: ArgumentHelp(Settings.flagHelp("collector-endpoint-resolution")))
    var collectorEndpointResolution: String?
    @Option(name: .customLong("http-listen"), help: ArgumentHelp(Settings.flagHelp("http-listen")))
    var httpListen: String?
    @Option(name: .customLong("grpc-token-file"), help: ArgumentHelp(Settings.fileFlagHelp("grpc-token")))
    var grpcTokenFile: String?
    @Flag(name: .customLong("grpc-insecure"), help: ArgumentHelp(Settings.flagHelp("grpc-insecure")))
    var grpcInsecure: Bool = false
    @Option(name: .customLong("otel-endpoint"), help: ArgumentHelp(Settings.flagHelp("otel-endpoint")))
    var otelEndpoint: String?
    @Option(name: .customLong("otel-sample-percent"), help: ArgumentHelp(Settings.flagHelp("otel-sample-percent")))
    var otelSamplePercent: String?
    @Option(name: .customLong("log-format"), help: ArgumentHelp(Settings.flagHelp("log-format")))
    var logFormat: String?
    @Option(name: .customLong("log-level"), help: ArgumentHelp(Settings.flagHelp("log-level")))
    var logLevel: String?

    /// Flag name → values, as `Configuration.resolve` takes them.
    var given: [String: [String]] {
        let pairs: [(String, String?)] = [
            ("config", config), ("redis-url", redisURL), ("redis-url-file", redisURLFile), ("redis-wait-replicas", redisWaitReplicas), ("plugins-dir", pluginsDir),
            ("templates-dir", templatesDir), ("lua-instruction-budget", luaInstructionBudget), ("lua-memory-mb", luaMemoryMB),
            ("kafka-url", kafkaURL), ("secret-key-file", secretKeyFile), ("log-format", logFormat), ("log-level", logLevel),
            ("maestro-target", maestroTarget), ("grpc-listen", grpcListen), ("grpc-socket", grpcSocket), ("grpc-tls-cert", grpcTlsCert), ("grpc-tls-key", grpcTlsKey), ("grpc-client-ca", grpcClientCa), ("grpc-token-file", grpcTokenFile), ("http-listen", httpListen),
            ("otel-endpoint", otelEndpoint), ("otel-sample-percent", otelSamplePercent),
            ("activity-stream", activityStream), ("idle-stream", idleStream), ("maestro-group", maestroGroup),
            ("collector-endpoint-resolution", collectorEndpointResolution), ("role", role), ("kube-backend", kubeBackend), ("kube-qps", kubeQPS), ("kube-burst", kubeBurst), ("reconcile-qps", reconcileQPS), ("reconcile-burst", reconcileBurst), ("kube-log-reads-per-second", kubeLogReadsPerSecond), ("manifests-dir", manifestsDir), ("namespace", namespace), ("resync-interval", resyncInterval), ("orphan-grace", orphanGrace), ("lease-duration", leaseDuration), ("lease-renew-deadline", leaseRenewDeadline), ("lease-retry-period", leaseRetryPeriod), ("config-history", configHistory), ("rollouts-hash", rolloutsHash), ("rollback-requests", rollbackRequests), ("fleet-rollout-key", fleetRolloutKey), ("fleet-rollout-requests", fleetRolloutRequests), ("rollout-timeout", rolloutTimeout), ("rollout-canary", rolloutCanary), ("rollout-gate-timeout", rolloutGateTimeout), ("rollout-max-unavailable", rolloutMaxUnavailable), ("rollout-max-failures", rolloutMaxFailures), ("orphan-max-share", orphanMaxShare),
            ("create-policy", createPolicy), ("workers", workers), ("stream-maxlen", streamMaxlen), ("group", group), ("group-start", groupStart), ("consumer-name", consumerName), ("min-idle", minIdle), ("shutdown-timeout", shutdownTimeout), ("reload-interval", reloadInterval), ("rebuild-rate", rebuildRate), ("max-deliveries", maxDeliveries), ("sinks-stream", sinksStream), ("config-hash", configHash), ("sinks-hash", sinksHash), ("deployment-hash", deploymentHash), ("collectors-hash", collectorsHash), ("status-stream", statusStream), ("deadletter-stream", deadletterStream),
        ]
        var result: [String: [String]] = [:]
        if createNamespace { result["create-namespace"] = ["true"] }
        if grpcInsecure { result["grpc-insecure"] = ["true"] }
        if !httpAllowHost.isEmpty { result["http-allow-host"] = httpAllowHost }
        if !collectorDenyCIDR.isEmpty { result["collector-deny-cidr"] = collectorDenyCIDR }
        if let kubeconfig { result["kubeconfig"] = [kubeconfig] }
        for (name, value) in pairs {
            if let value { result[name] = [value] }
        }
        return result
    }

    /// Resolves the settings, or exits with code 2 and a message naming the setting. `overriding`: flag
    /// values that win over the given ones (the demo's own settings).
    public func resolve(environment: [String: String], overriding: [String: [String]] = [:]) throws -> Configuration {
        do {
            return try Configuration.resolve(ConfigurationInput(flags: given.merging(overriding) { _, override in override }, environment: environment))
        } catch {
            throw InvalidInput(error.message)
        }
    }
}

/// Runs `body`, turning invalid input into exit code 2 with a message on stderr.
public func exitingOnInvalidInput(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as InvalidInput {
        printError("maestro: \(error.description)")
        throw ExitCode(2)
    }
}

public func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
