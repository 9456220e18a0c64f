import Foundation
public import Logging
public import MaestroCore
public import MaestroPluginHost
public import MaestroRedis
public import MaestroValue
public import MaestroAPI

/// Builds maestro's parts from the resolved settings.
public struct Wiring: Sendable {
    public let configuration: Configuration
    /// The settings, typed, read once.
    public let settings: MaestroSettings
    /// In front of every Redis key maestro uses, the leader lease's too: a private namespace on a shared
    /// Redis (the demo's `maestro-demo:`). Empty for `maestro run`.
    public let keyPrefix: String
    /// The template's image for the sinker's checks, shared by the copies of this wiring: set when the
    /// sinker's context is made, replaced when the templates reload.
    let collectorImageSource = CollectorImageSource(nil)

    public init(configuration: Configuration, keyPrefix: String = "") {
        self.configuration = configuration
        settings = MaestroSettings(configuration)
        self.keyPrefix = keyPrefix
    }

    public var names: RedisNames { settings.names.prefixed(keyPrefix) }

    public func redisURL() throws -> RedisURL {
        do {
            return try RedisURL(parsing: settings.redisURL)
        } catch {
            throw InvalidInput("invalid value for redis-url (from \(settings.redisURLOrigin)): \(error.message)")
        }
    }

    public var luaLimits: PluginCatalog.LuaLimits {
        PluginCatalog.LuaLimits(instructionBudget: settings.luaInstructionBudget, memoryLimitBytes: settings.luaMemoryMB << 20)
    }

    public var pluginsRoot: String { sharedFolder("plugins").path }
    public var templatesRoot: String { sharedFolder("templates").path }

    /// Where `plugins` or `templates` is: the folder the settings name, or else the first that exists of
    /// `$MAESTRO_HOME/<name>`, `<binary>/../share/maestro/<name>` (an installed layout, `make install`)
    /// and `./<name>`; `tried` lists the places looked at, for the error when none exists.
    public func sharedFolder(_ name: String) -> (path: String, tried: [String], exists: Bool) {
        let given = name == "plugins" ? settings.pluginsDirIsGiven : settings.templatesDirIsGiven
        if given {
            let path = absolute(name == "plugins" ? settings.pluginsDir : settings.templatesDir)
            return (path, [path], Self.isDirectory(path))
        }
        var candidates: [String] = []
        if let home = ProcessInfo.processInfo.environment["MAESTRO_HOME"], !home.isEmpty {
            candidates.append(absolute(home) + "/" + name)
        }
        if let binary = Self.executablePath {
            let installed = URL(fileURLWithPath: binary).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("share/maestro/" + name).standardizedFileURL.path
            candidates.append(installed)
        }
        candidates.append(absolute(name))
        let found = candidates.first(where: Self.isDirectory)
        return (found ?? candidates.last!, candidates, found != nil)
    }

    /// Fails with the places looked at and the flag to set when `plugins` (and, with `templates`, the
    /// templates folder) cannot be found, instead of a file error later.
    public func requireSharedFolders(templates: Bool = true) throws {
        for (name, flag) in [("plugins", "--plugins-dir"), ("templates", "--templates-dir")] where name == "plugins" || templates {
            let folder = sharedFolder(name)
            guard !folder.exists else { continue }
            let given = name == "plugins" ? settings.pluginsDirIsGiven : settings.templatesDirIsGiven
            if given { throw InvalidInput("the \(name) folder \(folder.path) (\(flag)) does not exist") }
            throw InvalidInput("no \(name) folder found; looked in " + folder.tried.joined(separator: ", ")
                               + ": set \(flag) (or MAESTRO_\(name.uppercased())_DIR), or MAESTRO_HOME to a folder holding \(name)/")
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// This program's file, symbolic links resolved (a linked `bin/maestro` finds its real share/).
    static var executablePath: String? {
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return URL(fileURLWithPath: resolved).resolvingSymlinksInPath().path
        }
        return Bundle.main.executablePath.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }
    }

    /// `root`: where to load from instead of `plugins-dir` (a snapshot of it, for `maestro run`).
    public func loadPlugins(logger: Logger, root: String? = nil) -> PluginCatalog {
        PluginCatalog.load(root: root ?? pluginsRoot, settings: configuration.plugins, limits: luaLimits, logger: logger)
    }

    public var createPolicy: CreatePolicy { settings.createPolicy }

    public var httpPolicy: HTTPHostPolicy { HTTPHostPolicy(allowedHosts: settings.httpAllowedHosts) }
    /// Where exporters may point (`--collector-deny-cidr`, checked when the settings were resolved).
    public var endpointPolicy: EndpointPolicy {
        (try? EndpointPolicy(denied: settings.collectorDeniedRanges, resolvesNames: settings.resolvesCollectorEndpoints)) ?? .standard
    }

    public func sinkerContext(catalog: PluginCatalog, collectors: (any CollectorService)?, cluster: (any PluginCluster)? = nil,
                              logger: Logger) -> SinkerContext {
        var context = SinkerContext(catalog: catalog, names: names, cipher: OrbSecretCipher(secret: settings.secretKey),
                                    kafkaURL: settings.kafkaURL,
                                    policy: createPolicy,
                                    collectors: collectors, streamMaxLength: settings.streamMaxLength, logger: logger)
        context.cluster = cluster
        context.httpPolicy = httpPolicy
        context.endpointPolicy = endpointPolicy
        collectorImageSource.replace(collectorImage)
        context.collectorImageSource = collectorImageSource
        return context
    }

    /// What `maestro.k8s` reaches, for the backend in use.
    public func pluginCluster(backend: any ClusterBackend) -> any PluginCluster {
        let namespace = collectorNamespace
        if let kubernetes = backend as? KubernetesBackend {
            return KubernetesPluginCluster(client: kubernetes.client, namespace: namespace)
        }
        return DirectoryPluginCluster(root: absolute(settings.manifestsDir), namespace: namespace)
    }

    public var workers: Int { settings.workers }

    /// The pod name in a cluster, else host name and process id.
    public var consumerName: String {
        if let name = settings.consumerName { return name }
        if let pod = ProcessInfo.processInfo.environment["POD_NAME"], !pod.isEmpty { return pod }
        return "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
    }

    public func consumerOptions() -> StreamConsumerOptions {
        StreamConsumerOptions(stream: names.sinksStream, group: names.sinkerGroup, groupStart: settings.groupStart,
                              consumerName: consumerName, workers: workers,
                              minIdleMilliseconds: Int(settings.minIdle * 1000),
                              maxDeliveries: settings.maxDeliveries, deadLetterStream: names.deadLetterStream,
                              streamMaxLength: settings.streamMaxLength, waitReplicas: settings.redisWaitReplicas)
    }

    public func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// A `--flag` value given inline or as `@FILE`.
    public static func inlineOrFile(_ text: String, flag: String) throws -> String {
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
    public var collectorNamespace: String {
        if settings.namespaceIsGiven { return settings.namespace }
        if let namespace = configuration.templates["otel-collector"]?["namespace"]?.stringValue { return namespace }
        return settings.namespace
    }

    /// The template's values: the config file's `templates: {otel-collector: …}`, with the collector namespace.
    public func templateSettings(_ name: String = "otel-collector") -> Value {
        var values = configuration.templates[name]?.mapValue ?? [:]
        values["namespace"] = .string(collectorNamespace)
        return .map(values)
    }

    /// The image the collector template runs, for the sinker's check of component types: the config
    /// file's `templates: {otel-collector: {image: …}}`, else the template's default when the templates
    /// folder is here (a sinker-only process may have none: then the maestro role checks the types).
    public var collectorImage: String? {
        guard sharedFolder("templates").exists else { return configuration.templates["otel-collector"]?["image"]?.stringValue }
        return collectorImage(templatesRoot: templatesRoot)
    }

    /// The image of the template in `root` (or the config file's).
    func collectorImage(templatesRoot root: String) -> String? {
        if let image = configuration.templates["otel-collector"]?["image"]?.stringValue { return image }
        guard let renderer = try? TemplateRenderer(root: root, settings: templateSettings(), limits: luaLimits) else { return nil }
        return renderer.values["image"]?.stringValue
    }

    public var backendName: String {
        if let chosen = settings.kubeBackend { return chosen }
        return KubeConfigLoader.clusterAvailable(flag: settings.kubeconfig, environment: ProcessInfo.processInfo.environment)
            ? "kubernetes" : "directory"
    }

    /// `--kube-qps` and `--kube-burst`; nil when the limit is off (qps 0).
    public var kubeRateLimiter: KubeRateLimiter? {
        settings.kubeQPS > 0 ? KubeRateLimiter(queriesPerSecond: Double(settings.kubeQPS), burst: settings.kubeBurst) : nil
    }

    /// `fence`: the maestro role leader's, checked before every write.
    public func kubernetesClient(logger: Logger, fence: LeaderFence? = nil) throws -> KubernetesClient {
        do {
            let credentials = try KubeConfigLoader.load(flag: settings.kubeconfig, environment: ProcessInfo.processInfo.environment)
            return KubernetesClient(credentials: credentials, rateLimiter: kubeRateLimiter, fence: fence, userAgent: "maestro/\(consumerName)",
                                    logger: logger)
        } catch {
            throw InvalidInput("cannot use the Kubernetes API: \(error)")
        }
    }

    public func clusterBackend(logger: Logger = Logger(label: "maestro")) throws -> any ClusterBackend {
        switch backendName {
        case "kubernetes":
            return KubernetesBackend(client: try kubernetesClient(logger: logger), namespace: collectorNamespace,
                                     createNamespace: settings.createNamespace)
        default:
            return DirectoryBackend(root: absolute(settings.manifestsDir))
        }
    }

    /// The maestro role's backend: on Kubernetes, with the watch caches of what it manages and the
    /// rate-bounded log reads (both to be started and stopped with the reconciler). The caches fill on
    /// every replica, the standbys' too: a takeover reconciles at once, without a re-list.
    public func watchingClusterBackend(logger: Logger, fence: LeaderFence? = nil) throws -> any ClusterBackend {
        switch backendName {
        case "kubernetes":
            let client = try kubernetesClient(logger: logger, fence: fence)
            let caches = KubeCaches(client: client, namespace: collectorNamespace,
                                    kinds: KubernetesBackend.collectorKindNames, logger: logger)
            let logs = ExporterLogWatch(client: client, readsPerSecond: Double(settings.kubeLogReadsPerSecond),
                                        podNames: { name, namespace throws(ClusterError) in
                                            try KubernetesBackend(client: client, namespace: namespace, caches: caches).podNames(name: name, namespace: namespace)
                                        })
            return KubernetesBackend(client: client, namespace: collectorNamespace, createNamespace: settings.createNamespace,
                                     caches: caches, logWatch: logs)
        default:
            return DirectoryBackend(root: absolute(settings.manifestsDir))
        }
    }

    public func reconcilerOptions() -> ReconcilerOptions {
        ReconcilerOptions(resyncInterval: settings.resyncInterval, orphanGrace: settings.orphanGrace,
                          orphanMaxShare: Double(settings.orphanMaxShare) / 100, statusStreamMaxLength: settings.streamMaxLength,
                          checksEagerInvariant: createPolicy == .eager, passesPerSecond: Double(settings.reconcileQPS),
                          passBurst: settings.reconcileBurst, configHistory: settings.configHistory, rolloutTimeout: settings.rolloutTimeout,
                          fleet: FleetRolloutOptions(canaryPercent: settings.rolloutCanary, gateTimeout: settings.rolloutGateTimeout,
                                                     maxUnavailable: settings.rolloutMaxUnavailable, maxFailuresPercent: settings.rolloutMaxFailures))
    }

    /// The maestro role: the collector manager, its reconciler, and the lease of the singleton loops.
    public func collectors(redisURL: RedisURL, logger: Logger, templatesRoot: String? = nil)
        throws -> (manager: CollectorManager, reconciler: Reconciler, lease: any LeaderLease) {
        let names = self.names
        let makeRenderer = templateFactory(root: templatesRoot ?? self.templatesRoot, logger: logger)
        // Fail at start, not at the first event, when the template is broken.
        _ = try makeRenderer()
        if let problem = settings.leaseTiming.problem { throw InvalidInput(problem) }
        // On Kubernetes every write of the role goes through the leader's fence, and passes run on the
        // leader only; the directory backend keeps its per-sink locks and runs passes on every replica.
        let fence = backendName == "kubernetes" ? LeaderFence(holder: consumerName, logger: logger) : nil
        let backend = try watchingClusterBackend(logger: logger, fence: fence)
        let lease: any LeaderLease
        var options = reconcilerOptions()
        if let kubernetes = backend as? KubernetesBackend {
            lease = KubeLease(name: "maestro-leader", namespace: kubernetes.namespace, holder: consumerName, timing: settings.leaseTiming,
                              client: kubernetes.client, fence: fence, createNamespace: settings.createNamespace, logger: logger)
            options.passesOnLeaderOnly = true
        } else {
            // No health to gate waves on: a change rolls to every collector at once (FleetRolloutOptions.enabled).
            options.fleet.enabled = false
            lease = RedisLease(key: keyPrefix + "maestro:leader:" + settings.names.deploymentHash, holder: consumerName,
                               ttlMilliseconds: Int(settings.leaseTiming.leaseDuration * 1000), redisURL: redisURL, logger: logger)
        }
        let reconciler = Reconciler(redisURL: redisURL, names: names, backend: backend, options: options, logger: logger,
                                    isLeader: { lease.isLeader })
        let manager = CollectorManager(reconciler: reconciler, logger: logger, deleteGuard: createPolicy == .eager ? .unlessLive : .always,
                                       makeRenderer: makeRenderer)
        // A watched change and a new log verdict are triggers like any other: they queue the sink.
        if let kubernetes = backend as? KubernetesBackend {
            kubernetes.caches?.onChange { [reconciler] sinkID in reconciler.enqueue(sinkID) }
            kubernetes.logWatch?.onVerdictChange { [reconciler] sinkID in reconciler.enqueue(sinkID) }
        }
        return (manager, reconciler, lease)
    }

    public func templateFactory(root: String, logger: Logger) -> @Sendable () throws -> TemplateRenderer {
        let settings = templateSettings()
        let limits = luaLimits
        return { try TemplateRenderer(root: root, settings: settings, limits: limits, logger: logger) }
    }

    /// What a hot reload loads: plugins always; templates where this process renders collectors.
    public func reloadSources(manager: CollectorManager?, logger: Logger) -> HotReloader.Sources {
        let wiring = self
        var sources = HotReloader.Sources(
            pluginsRoot: pluginsRoot,
            loadPlugins: { root in wiring.loadPlugins(logger: logger, root: root) },
            templatesRoot: manager == nil ? nil : templatesRoot,
            checkTemplates: { root in
                // A sample collector, so a template that loads but fails when rendering is refused too.
                let renderer = try wiring.templateFactory(root: root, logger: logger)()
                _ = try renderer.render(CollectorInputs(sinkID: "reload-check", ownerID: "reload-check",
                                                        configYAML: "receivers: {}\n", configHash: String(repeating: "0", count: 64)))
            },
            applyTemplates: { root in
                let queued = manager?.replaceTemplates(wiring.templateFactory(root: root, logger: logger)) ?? 0
                wiring.collectorImageSource.replace(wiring.collectorImage(templatesRoot: root))
                return queued
            })
        if let reconciler = manager?.reconciler {
            sources.pluginsReloaded = { catalog in reconciler.useComponentLists(catalog.components) }
        }
        return sources
    }
}

extension Wiring {
    public func apiServerConfiguration() -> APIServerConfiguration {
        APIServerConfiguration(listen: settings.grpcListen, socketPath: settings.grpcSocket, token: settings.grpcToken,
                               tlsCertificate: settings.grpcTLSCertificate, tlsKey: settings.grpcTLSKey, clientCA: settings.grpcClientCA,
                               insecure: settings.grpcInsecure)
    }

    /// The client side of the same settings (a sinker, `maestro collectors`).
    public func apiClientConfiguration(target: String) -> APIClientConfiguration {
        APIClientConfiguration(target: target, token: settings.grpcToken, caCertificate: settings.grpcClientCA,
                               clientCertificate: settings.grpcTLSCertificate, clientKey: settings.grpcTLSKey)
    }
}
