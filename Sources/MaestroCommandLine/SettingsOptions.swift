public import ArgumentParser
public import MaestroCore
import Foundation
import MaestroRoles

/// The flags every subcommand that reads settings accepts; one per entry of `Settings.all`.
public struct SettingsOptions: ParsableArguments, Sendable {
    public init() {}

    @Option(name: .customLong("config"), help: "YAML file of settings (keys are the flag names).")
    var config: String?

    @Option(name: .customLong("redis-url"), help: "Redis: redis://[user:password@]host:port[/db] (default redis://127.0.0.1:6379/0).")
    var redisURL: String?
    @Option(name: .customLong("redis-url-file"), help: "File holding the Redis URL (keeps a password out of ps).")
    var redisURLFile: String?
    @Option(name: .customLong("plugins-dir"), help: "Folder of Lua plugins (default ./plugins).")
    var pluginsDir: String?
    @Option(name: .customLong("templates-dir"), help: "Folder of Lua templates (default ./templates).")
    var templatesDir: String?
    @Option(name: .customLong("lua-instruction-budget"), help: "Instructions one Lua call may run (default 50000000).")
    var luaInstructionBudget: String?
    @Option(name: .customLong("lua-memory-mb"), help: "Memory cap of each Lua VM in MiB (default 64).")
    var luaMemoryMB: String?
    @Option(name: .customLong("kafka-url"), help: "Kafka brokers the collectors consume from (default kafka1:19092).")
    var kafkaURL: String?
    @Option(name: .customLong("secret-key-file"), help: "File holding Orb's secret key (ORB_SINKS_SECRET_KEY; default orb).")
    var secretKeyFile: String?
    @Option(name: .customLong("create-policy"), help: ArgumentHelp(Settings.definition("create-policy")?.help ?? ""))
    var createPolicy: String?
    @Option(name: .customLong("workers"), help: ArgumentHelp(Settings.definition("workers")?.help ?? ""))
    var workers: String?
    @Option(name: .customLong("stream-maxlen"), help: ArgumentHelp(Settings.definition("stream-maxlen")?.help ?? ""))
    var streamMaxlen: String?
    @Option(name: .customLong("group"), help: ArgumentHelp(Settings.definition("group")?.help ?? ""))
    var group: String?
    @Option(name: .customLong("group-start"), help: ArgumentHelp(Settings.definition("group-start")?.help ?? ""))
    var groupStart: String?
    @Option(name: .customLong("consumer-name"), help: ArgumentHelp(Settings.definition("consumer-name")?.help ?? ""))
    var consumerName: String?
    @Option(name: .customLong("min-idle"), help: ArgumentHelp(Settings.definition("min-idle")?.help ?? ""))
    var minIdle: String?
    @Option(name: .customLong("shutdown-timeout"), help: ArgumentHelp(Settings.definition("shutdown-timeout")?.help ?? ""))
    var shutdownTimeout: String?
    @Option(name: .customLong("reload-interval"), help: ArgumentHelp(Settings.definition("reload-interval")?.help ?? ""))
    var reloadInterval: String?
    @Option(name: .customLong("max-deliveries"), help: ArgumentHelp(Settings.definition("max-deliveries")?.help ?? ""))
    var maxDeliveries: String?
    @Option(name: .customLong("sinks-stream"), help: ArgumentHelp(Settings.definition("sinks-stream")?.help ?? ""))
    var sinksStream: String?
    @Option(name: .customLong("config-hash"), help: ArgumentHelp(Settings.definition("config-hash")?.help ?? ""))
    var configHash: String?
    @Option(name: .customLong("sinks-hash"), help: ArgumentHelp(Settings.definition("sinks-hash")?.help ?? ""))
    var sinksHash: String?
    @Option(name: .customLong("deployment-hash"), help: ArgumentHelp(Settings.definition("deployment-hash")?.help ?? ""))
    var deploymentHash: String?
    @Option(name: .customLong("collectors-hash"), help: ArgumentHelp(Settings.definition("collectors-hash")?.help ?? ""))
    var collectorsHash: String?
    @Option(name: .customLong("status-stream"), help: ArgumentHelp(Settings.definition("status-stream")?.help ?? ""))
    var statusStream: String?
    @Option(name: .customLong("deadletter-stream"), help: ArgumentHelp(Settings.definition("deadletter-stream")?.help ?? ""))
    var deadletterStream: String?
    @Option(name: .customLong("role"), help: ArgumentHelp(Settings.definition("role")?.help ?? ""))
    var role: String?
    @Option(name: .customLong("kube-backend"), help: ArgumentHelp(Settings.definition("kube-backend")?.help ?? ""))
    var kubeBackend: String?
    @Option(name: .customLong("manifests-dir"), help: ArgumentHelp(Settings.definition("manifests-dir")?.help ?? ""))
    var manifestsDir: String?
    @Option(name: .customLong("namespace"), help: ArgumentHelp(Settings.definition("namespace")?.help ?? ""))
    var namespace: String?
    @Option(name: .customLong("resync-interval"), help: ArgumentHelp(Settings.definition("resync-interval")?.help ?? ""))
    var resyncInterval: String?
    @Option(name: .customLong("orphan-grace"), help: ArgumentHelp(Settings.definition("orphan-grace")?.help ?? ""))
    var orphanGrace: String?
    @Option(name: .customLong("orphan-max-share"), help: ArgumentHelp(Settings.definition("orphan-max-share")?.help ?? ""))
    var orphanMaxShare: String?
    @Option(name: .customLong("activity-stream"), help: ArgumentHelp(Settings.definition("activity-stream")?.help ?? ""))
    var activityStream: String?
    @Option(name: .customLong("idle-stream"), help: ArgumentHelp(Settings.definition("idle-stream")?.help ?? ""))
    var idleStream: String?
    @Option(name: .customLong("maestro-group"), help: ArgumentHelp(Settings.definition("maestro-group")?.help ?? ""))
    var maestroGroup: String?
    @Option(name: .customLong("kubeconfig"), help: ArgumentHelp(Settings.definition("kubeconfig")?.help ?? ""))
    var kubeconfig: String?
    @Flag(name: .customLong("create-namespace"), help: "Create the collector namespace when it is missing.")
    var createNamespace: Bool = false
    @Option(name: .customLong("maestro-target"), help: ArgumentHelp(Settings.definition("maestro-target")?.help ?? ""))
    var maestroTarget: String?
    @Option(name: .customLong("grpc-listen"), help: ArgumentHelp(Settings.definition("grpc-listen")?.help ?? ""))
    var grpcListen: String?
    @Option(name: .customLong("grpc-socket"), help: ArgumentHelp(Settings.definition("grpc-socket")?.help ?? ""))
    var grpcSocket: String?
    @Option(name: .customLong("grpc-tls-cert"), help: ArgumentHelp(Settings.definition("grpc-tls-cert")?.help ?? ""))
    var grpcTlsCert: String?
    @Option(name: .customLong("grpc-tls-key"), help: ArgumentHelp(Settings.definition("grpc-tls-key")?.help ?? ""))
    var grpcTlsKey: String?
    @Option(name: .customLong("grpc-client-ca"), help: ArgumentHelp(Settings.definition("grpc-client-ca")?.help ?? ""))
    var grpcClientCa: String?
    @Option(name: .customLong("http-allow-host"), help: "A host maestro.http may call (repeatable).")
    var httpAllowHost: [String] = []
    @Option(name: .customLong("collector-deny-cidr"),
            help: "An address range exporter URLs may not point at (repeatable; replaces the defaults; none: only metadata and link-local).")
    var collectorDenyCIDR: [String] = []
    @Option(name: .customLong("collector-endpoint-resolution"), help: ArgumentHelp(Settings.definition("collector-endpoint-resolution")?.help ?? ""))
    var collectorEndpointResolution: String?
    @Option(name: .customLong("http-listen"), help: ArgumentHelp(Settings.definition("http-listen")?.help ?? ""))
    var httpListen: String?
    @Option(name: .customLong("grpc-token-file"), help: "File holding the API's bearer token.")
    var grpcTokenFile: String?
    @Flag(name: .customLong("grpc-insecure"), help: "Allow the API on a non-loopback address without a token or TLS.")
    var grpcInsecure: Bool = false
    @Option(name: .customLong("log-format"), help: "text or json (default text).")
    var logFormat: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, warning or error (default info).")
    var logLevel: String?

    /// Flag name → values, as `Configuration.resolve` takes them.
    var given: [String: [String]] {
        let pairs: [(String, String?)] = [
            ("config", config), ("redis-url", redisURL), ("redis-url-file", redisURLFile), ("plugins-dir", pluginsDir),
            ("templates-dir", templatesDir), ("lua-instruction-budget", luaInstructionBudget), ("lua-memory-mb", luaMemoryMB),
            ("kafka-url", kafkaURL), ("secret-key-file", secretKeyFile), ("log-format", logFormat), ("log-level", logLevel),
            ("maestro-target", maestroTarget), ("grpc-listen", grpcListen), ("grpc-socket", grpcSocket), ("grpc-tls-cert", grpcTlsCert), ("grpc-tls-key", grpcTlsKey), ("grpc-client-ca", grpcClientCa), ("grpc-token-file", grpcTokenFile), ("http-listen", httpListen),
            ("activity-stream", activityStream), ("idle-stream", idleStream), ("maestro-group", maestroGroup),
            ("collector-endpoint-resolution", collectorEndpointResolution), ("role", role), ("kube-backend", kubeBackend), ("manifests-dir", manifestsDir), ("namespace", namespace), ("resync-interval", resyncInterval), ("orphan-grace", orphanGrace), ("orphan-max-share", orphanMaxShare),
            ("create-policy", createPolicy), ("workers", workers), ("stream-maxlen", streamMaxlen), ("group", group), ("group-start", groupStart), ("consumer-name", consumerName), ("min-idle", minIdle), ("shutdown-timeout", shutdownTimeout), ("reload-interval", reloadInterval), ("max-deliveries", maxDeliveries), ("sinks-stream", sinksStream), ("config-hash", configHash), ("sinks-hash", sinksHash), ("deployment-hash", deploymentHash), ("collectors-hash", collectorsHash), ("status-stream", statusStream), ("deadletter-stream", deadletterStream),
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
