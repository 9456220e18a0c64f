import Foundation
import Logging
import MaestroCore
import MaestroPluginHost
import MaestroRedis
import MaestroValue
import MaestroAPI

/// Builds maestro's parts from the resolved settings.
struct Wiring {
    let configuration: Configuration

    var names: RedisNames { RedisNames(configuration: configuration) }

    func redisURL() throws -> RedisURL {
        do {
            return try RedisURL(parsing: configuration.string("redis-url") ?? "")
        } catch {
            throw InvalidInput("invalid value for redis-url (from \(configuration.origin("redis-url")?.description ?? "default")): \(error.message)")
        }
    }

    var luaLimits: PluginCatalog.LuaLimits {
        PluginCatalog.LuaLimits(instructionBudget: configuration.integer("lua-instruction-budget") ?? 50_000_000,
                                memoryLimitBytes: (configuration.integer("lua-memory-mb") ?? 64) << 20)
    }

    var pluginsRoot: String { absolute(configuration.string("plugins-dir") ?? "./plugins") }
    var templatesRoot: String { absolute(configuration.string("templates-dir") ?? "./templates") }

    /// `root`: where to load from instead of `plugins-dir` (a snapshot of it, for `maestro run`).
    func loadPlugins(logger: Logger, root: String? = nil) -> PluginCatalog {
        PluginCatalog.load(root: root ?? pluginsRoot, settings: configuration.plugins, limits: luaLimits, logger: logger)
    }

    var createPolicy: CreatePolicy { CreatePolicy(rawValue: configuration.string("create-policy") ?? "eager") ?? .eager }

    var httpPolicy: HTTPHostPolicy { HTTPHostPolicy(allowedHosts: configuration.values("http-allow-host")) }
    /// Where exporters may point (`--collector-deny-cidr`, checked when the settings were resolved).
    var endpointPolicy: EndpointPolicy {
        let given = configuration.values("collector-deny-cidr")
        let resolves = configuration.string("collector-endpoint-resolution") != "off"
        return (try? EndpointPolicy(denied: given.isEmpty ? EndpointPolicy.defaultDeniedRanges : given, resolvesNames: resolves)) ?? .standard
    }

    func sinkerContext(catalog: PluginCatalog, collectors: (any CollectorService)?, cluster: (any PluginCluster)? = nil,
                       logger: Logger) -> SinkerContext {
        var context = SinkerContext(catalog: catalog, names: names, cipher: OrbSecretCipher(secret: configuration.string("secret-key") ?? "orb"),
                                    kafkaURL: configuration.string("kafka-url") ?? "kafka1:19092",
                                    policy: createPolicy,
                                    collectors: collectors, streamMaxLength: configuration.integer("stream-maxlen") ?? 100_000, logger: logger)
        context.cluster = cluster
        context.httpPolicy = httpPolicy
        context.endpointPolicy = endpointPolicy
        return context
    }

    /// What `maestro.k8s` reaches, for the backend in use.
    func pluginCluster(backend: any ClusterBackend) -> any PluginCluster {
        let namespace = collectorNamespace
        if let kubernetes = backend as? KubernetesBackend {
            return KubernetesPluginCluster(client: kubernetes.client, namespace: namespace)
        }
        return DirectoryPluginCluster(root: absolute(configuration.string("manifests-dir") ?? "./manifests"), namespace: namespace)
    }

    var workers: Int { configuration.integer("workers") ?? ProcessInfo.processInfo.activeProcessorCount }

    /// The pod name in a cluster, else host name and process id.
    var consumerName: String {
        if let name = configuration.string("consumer-name"), !name.isEmpty { return name }
        if let pod = ProcessInfo.processInfo.environment["POD_NAME"], !pod.isEmpty { return pod }
        return "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
    }

    func consumerOptions() -> StreamConsumerOptions {
        StreamConsumerOptions(stream: names.sinksStream, group: names.sinkerGroup, groupStart: configuration.string("group-start") ?? "0",
                              consumerName: consumerName, workers: workers,
                              minIdleMilliseconds: Int((configuration.duration("min-idle") ?? 60) * 1000),
                              maxDeliveries: configuration.integer("max-deliveries") ?? 5, deadLetterStream: names.deadLetterStream,
                              streamMaxLength: configuration.integer("stream-maxlen") ?? 100_000)
    }

    func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// A `--flag` value given inline or as `@FILE`.
    static func inlineOrFile(_ text: String, flag: String) throws -> String {
        guard text.hasPrefix("@") else { return text }
        let path = String(text.dropFirst())
        guard let contents = TextFile.read(path) else { throw InvalidInput("cannot read the file given to \(flag): \(path)") }
        return contents
    }
}

extension Wiring {
    /// The collector namespace, one value for the template, the backend, the Lease, the orphan sweep
    /// and plugins: `namespace` when it is set (flag, environment or file), else the template's
    /// `namespace` value in the config file, else the default.
    var collectorNamespace: String {
        if configuration.origin("namespace") != .defaultValue, let namespace = configuration.string("namespace") { return namespace }
        if let namespace = configuration.templates["otel-collector"]?["namespace"]?.stringValue { return namespace }
        return configuration.string("namespace") ?? "otelcollectors"
    }

    /// The template's values: the config file's `templates: {otel-collector: …}`, with the collector namespace.
    func templateSettings(_ name: String = "otel-collector") -> Value {
        var values = configuration.templates[name]?.mapValue ?? [:]
        values["namespace"] = .string(collectorNamespace)
        return .map(values)
    }

    var backendName: String {
        if let chosen = configuration.string("kube-backend") { return chosen }
        return KubeConfigLoader.clusterAvailable(flag: configuration.string("kubeconfig"), environment: ProcessInfo.processInfo.environment)
            ? "kubernetes" : "directory"
    }

    func kubernetesClient(logger: Logger) throws -> KubernetesClient {
        do {
            let credentials = try KubeConfigLoader.load(flag: configuration.string("kubeconfig"), environment: ProcessInfo.processInfo.environment)
            return KubernetesClient(credentials: credentials, logger: logger)
        } catch {
            throw InvalidInput("cannot use the Kubernetes API: \(error)")
        }
    }

    func clusterBackend(logger: Logger = Logger(label: "maestro")) throws -> any ClusterBackend {
        switch backendName {
        case "kubernetes":
            return KubernetesBackend(client: try kubernetesClient(logger: logger), namespace: collectorNamespace,
                                     createNamespace: configuration.boolean("create-namespace"))
        default:
            return DirectoryBackend(root: absolute(configuration.string("manifests-dir") ?? "./manifests"))
        }
    }

    func reconcilerOptions() -> ReconcilerOptions {
        ReconcilerOptions(resyncInterval: configuration.duration("resync-interval") ?? 300,
                          orphanGrace: configuration.duration("orphan-grace") ?? 600,
                          orphanMaxShare: Double(configuration.integer("orphan-max-share") ?? 10) / 100,
                          statusStreamMaxLength: configuration.integer("stream-maxlen") ?? 100_000,
                          checksEagerInvariant: createPolicy == .eager)
    }

    /// The maestro role: the collector manager, its reconciler, and the lease of the singleton loops.
    func collectors(redisURL: RedisURL, logger: Logger, templatesRoot: String? = nil)
        throws -> (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease) {
        let names = self.names
        let makeRenderer = templateFactory(root: templatesRoot ?? self.templatesRoot, logger: logger)
        // Fail at start, not at the first event, when the template is broken.
        _ = try makeRenderer()
        let backend = try clusterBackend(logger: logger)
        let lease: any LeaderLease
        if let kubernetes = backend as? KubernetesBackend {
            lease = KubeLease(name: "maestro-leader", namespace: kubernetes.namespace, holder: consumerName, client: kubernetes.client, logger: logger)
        } else {
            lease = RedisLease(key: "maestro:leader:" + names.deploymentHash, holder: consumerName, redisURL: redisURL, logger: logger)
        }
        let reconciler = Reconciler(redisURL: redisURL, names: names, backend: backend, options: reconcilerOptions(), logger: logger,
                                    isLeader: { lease.isLeader })
        let manager = CollectorManager(redisURL: redisURL, names: names, reconciler: reconciler, logger: logger,
                                       deleteGuard: createPolicy == .eager ? .unlessLive : .always, makeRenderer: makeRenderer)
        reconciler.setDesiredStateRenderer { [manager] sinkID, ownerID in try manager.create(sinkID: sinkID, ownerID: ownerID) }
        return (manager, reconciler, lease)
    }

    func templateFactory(root: String, logger: Logger) -> @Sendable () throws -> TemplateRenderer {
        let settings = templateSettings()
        let limits = luaLimits
        return { try TemplateRenderer(root: root, settings: settings, limits: limits, logger: logger) }
    }

    /// What a hot reload loads: plugins always; templates where this process renders collectors.
    func reloadSources(manager: CollectorManager?, logger: Logger) -> HotReloader.Sources {
        let wiring = self
        return HotReloader.Sources(
            pluginsRoot: pluginsRoot,
            loadPlugins: { root in wiring.loadPlugins(logger: logger, root: root) },
            templatesRoot: manager == nil ? nil : templatesRoot,
            checkTemplates: { root in
                // A sample collector, so a template that loads but fails when rendering is refused too.
                let renderer = try wiring.templateFactory(root: root, logger: logger)()
                _ = try renderer.render(CollectorInputs(sinkID: "reload-check", ownerID: "reload-check",
                                                        configYAML: "receivers: {}\n", configHash: String(repeating: "0", count: 64)))
            },
            applyTemplates: { root in manager?.replaceTemplates(wiring.templateFactory(root: root, logger: logger)) ?? 0 })
    }
}

extension Wiring {
    func apiServerConfiguration() -> APIServerConfiguration {
        APIServerConfiguration(listen: configuration.string("grpc-listen"), socketPath: configuration.string("grpc-socket"),
                               token: configuration.string("grpc-token"), tlsCertificate: configuration.string("grpc-tls-cert"),
                               tlsKey: configuration.string("grpc-tls-key"), clientCA: configuration.string("grpc-client-ca"),
                               insecure: configuration.boolean("grpc-insecure"))
    }

    /// The client side of the same settings (a sinker, `maestro collectors`).
    func apiClientConfiguration(target: String) -> APIClientConfiguration {
        APIClientConfiguration(target: target, token: configuration.string("grpc-token"), caCertificate: configuration.string("grpc-client-ca"),
                               clientCertificate: configuration.string("grpc-tls-cert"), clientKey: configuration.string("grpc-tls-key"))
    }
}
