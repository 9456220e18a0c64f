internal import MaestroValue

/// Every setting maestro knows today, each default written here once (the Redis names' are `RedisNames`'s,
/// which are Orb's). Later features add theirs here; the flags, their help, the environment variables,
/// config-file keys, the typed `MaestroSettings` and docs/configuration.md all follow from this list.
public enum Settings {
    public static let all: [SettingDefinition] = [
        SettingDefinition(
            key: "redis-url", defaultValue: "redis://127.0.0.1:6379/0",
            help: "Redis to use: redis://[user:password@]host:port[/db], or through Sentinel: redis+sentinel://[user:password@]host:26379[,host:26379…]/MASTER[/db][?sentinel-password=…].", isSecret: true,
            orbSource: { environment in
                // Orb splits it: ORB_MAESTRO_STREAM_ES_URL (host:port), _PASS and _DB.
                guard let address = environment["ORB_MAESTRO_STREAM_ES_URL"] else { return nil }
                var url = "redis://"
                var used = "ORB_MAESTRO_STREAM_ES_URL"
                if let password = environment["ORB_MAESTRO_STREAM_ES_PASS"], !password.isEmpty {
                    url += ":" + PercentEncoding.encode(password) + "@"
                    used += ", ORB_MAESTRO_STREAM_ES_PASS"
                }
                url += address
                if let database = environment["ORB_MAESTRO_STREAM_ES_DB"], !database.isEmpty {
                    url += "/" + database
                    used += ", ORB_MAESTRO_STREAM_ES_DB"
                }
                return (url, used)
            }),
        SettingDefinition(key: "redis-wait-replicas", kind: .integer(0...16), defaultValue: "0",
                          help: "Replicas that must have an event's stored outcome (Redis WAIT) before the event is acknowledged; 0: do not wait."),
        SettingDefinition(key: "plugins-dir", defaultValue: "./plugins",
                          help: "Folder of Lua plugins (one folder per plugin). Unset: $MAESTRO_HOME/plugins, then <binary>/../share/maestro/plugins, then ./plugins."),
        SettingDefinition(key: "templates-dir", defaultValue: "./templates",
                          help: "Folder of Lua templates. Unset: $MAESTRO_HOME/templates, then <binary>/../share/maestro/templates, then ./templates."),
        SettingDefinition(key: "lua-instruction-budget", kind: .integer(1_000...10_000_000_000), defaultValue: "50000000",
                          help: "Lua instructions one plugin or template call may run before it is stopped."),
        SettingDefinition(key: "lua-memory-mb", kind: .integer(1...4096), defaultValue: "64",
                          help: "Memory cap of each Lua VM, in MiB."),
        SettingDefinition(key: "kafka-url", defaultValue: "kafka1:19092",
                          help: "Kafka brokers the collectors consume from (host:port).",
                          orbSource: SettingDefinition.orbVariable("ORB_MAESTRO_OTEL_KAFKA_URL")),
        SettingDefinition(key: "secret-key", defaultValue: "orb",
                          help: "Orb's key for encrypted sink credentials (ORB_SINKS_SECRET_KEY).", isSecret: true,
                          allowsFlagValue: false, orbSource: SettingDefinition.orbVariable("ORB_SINKS_SECRET_KEY")),
        SettingDefinition(key: "role", kind: .choice(["all", "sinker", "maestro"]), defaultValue: "all",
                          help: "all: the sinker and the collectors in one process; sinker: the sink pipeline, handing off to --maestro-target; maestro: the collectors and the API."),
        SettingDefinition(key: "maestro-target", defaultValue: nil,
                          help: "The maestro role's API (HOST:PORT or unix:PATH) that a --role sinker process hands collectors to."),
        SettingDefinition(key: "grpc-listen", defaultValue: nil, help: "Serve the gRPC API on HOST:PORT (loopback unless a token or TLS is configured)."),
        SettingDefinition(key: "grpc-socket", defaultValue: nil, help: "Serve the gRPC API on this Unix domain socket (mode 0600)."),
        SettingDefinition(key: "grpc-token", defaultValue: nil, help: "Bearer token the API requires (and a sinker sends); flag: --grpc-token-file.",
                          isSecret: true, allowsFlagValue: false),
        SettingDefinition(key: "grpc-tls-cert", defaultValue: nil, help: "The API's TLS certificate (PEM); for a sinker, its client certificate."),
        SettingDefinition(key: "grpc-tls-key", defaultValue: nil, help: "The key of --grpc-tls-cert (PEM)."),
        SettingDefinition(key: "grpc-client-ca", defaultValue: nil,
                          help: "CA that client certificates must chain to (mutual TLS); for a sinker, the CA it trusts for the API's certificate."),
        SettingDefinition(key: "http-listen", defaultValue: nil,
                          help: "Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT (off unless given)."),
        SettingDefinition(key: "http-allow-host", kind: .list, defaultValue: nil,
                          help: "A host maestro.http may call (repeatable; comma-separated in the environment)."),
        SettingDefinition(key: "collector-deny-cidr", kind: .list, defaultValue: nil,
                          help: "An address range a sink's exporter URL may not point at (repeatable; replaces the defaults "
                            + EndpointPolicy.defaultDeniedRanges.joined(separator: ", ")
                            + "; `none` denies only link-local and cloud-metadata addresses, which are always denied)."),
        SettingDefinition(key: "collector-endpoint-resolution", kind: .choice(["on", "off"]), defaultValue: "on",
                          help: "on: exporter host names are also resolved here and refused when they resolve into a denied or metadata range (a DNS lookup per new host, cached for a minute); off: only literal addresses and metadata names are checked (where DNS is slow or absent; the NetworkPolicy still guards)."),
        SettingDefinition(key: "grpc-insecure", kind: .boolean, defaultValue: "false",
                          help: "Allow the API on a non-loopback address without a token or TLS."),
        SettingDefinition(key: "kube-backend", kind: .choice(["directory", "kubernetes"]), defaultValue: nil,
                          help: "Where collectors are deployed: kubernetes (the API), or directory (manifest files for GitOps tools). Default: kubernetes when a kubeconfig or in-cluster service account is found, else directory."),
        SettingDefinition(key: "kubeconfig", defaultValue: nil, help: "The kubeconfig to use (else KUBECONFIG, ~/.kube/config, or the in-cluster service account)."),
        SettingDefinition(key: "kube-qps", kind: .integer(0...100_000), defaultValue: "20",
                          help: "Requests a second maestro sends the Kubernetes API after a burst (a client-side token bucket; 0: no limit, for clusters relying on API Priority and Fairness)."),
        SettingDefinition(key: "kube-burst", kind: .integer(1...100_000), defaultValue: "40",
                          help: "Requests maestro may send the Kubernetes API at once before --kube-qps paces them."),
        SettingDefinition(key: "kube-log-reads-per-second", kind: .integer(0...1_000), defaultValue: "2",
                          help: "Collector logs read a second across the fleet for exporter errors (healthy collectors only, changed ones first); 0 reads none."),
        SettingDefinition(key: "create-namespace", kind: .boolean, defaultValue: "false",
                          help: "Create the collector namespace when it is missing (otherwise its absence is a clear error and a status)."),
        SettingDefinition(key: "manifests-dir", defaultValue: "./manifests",
                          help: "Folder of the directory backend: <dir>/<namespace>/<collector>.yaml, mode 0600."),
        SettingDefinition(key: "namespace", defaultValue: "otelcollectors", help: "Namespace of the collectors."),
        SettingDefinition(key: "reconcile-qps", kind: .integer(0...100_000), defaultValue: "100",
                          help: "Reconcile passes a second the maestro role starts after a burst (a token bucket over every trigger: events, watch changes, the resync; 0: no limit)."),
        SettingDefinition(key: "reconcile-burst", kind: .integer(1...100_000), defaultValue: "200",
                          help: "Reconcile passes the maestro role may start at once before --reconcile-qps paces them."),
        SettingDefinition(key: "resync-interval", kind: .duration, defaultValue: "5m",
                          help: "Every collector is checked again this often (drift, template upgrades, lost applies)."),
        SettingDefinition(key: "config-history", kind: .integer(1...100), defaultValue: "3",
                          help: "Desired states that reached active kept per sink, to roll back to (maestro history, maestro rollback)."),
        SettingDefinition(key: "rollout-timeout", kind: .duration, defaultValue: "5m",
                          help: "A rollout not active within this long is rolled back to the last good version."),
        SettingDefinition(key: "lease-duration", kind: .duration, defaultValue: "15s",
                          help: "The maestro role's leader lease: how long a standby waits after the lease last changed before it takes it over (client-go's default)."),
        SettingDefinition(key: "lease-renew-deadline", kind: .duration, defaultValue: "10s",
                          help: "The leader writes only this long after its last successful renew; shorter than --lease-duration (the margin)."),
        SettingDefinition(key: "lease-retry-period", kind: .duration, defaultValue: "2s",
                          help: "How often the leader renews its lease and a standby tries to take it."),
        SettingDefinition(key: "rollout-canary", kind: .integer(1...100), defaultValue: "5",
                          help: "Percentage of the collectors a fleet change (a template reload, a maestro that renders differently) reaches first, at least one; the next waves wait for its gate."),
        SettingDefinition(key: "rollout-gate-timeout", kind: .duration, defaultValue: "5m",
                          help: "How long a collector of a fleet rollout's wave has to reach active on its new desired state before it counts as failed."),
        SettingDefinition(key: "rollout-max-unavailable", kind: .integer(1...100_000), defaultValue: "25",
                          help: "At most this many collectors roll at once in a fleet rollout (the waves grow up to it)."),
        SettingDefinition(key: "rollout-max-failures", kind: .integer(0...100), defaultValue: "10",
                          help: "A fleet rollout halts by itself when more than this percentage of the collectors it rolled failed."),
        SettingDefinition(key: "orphan-grace", kind: .duration, defaultValue: "10m",
                          help: "Collectors whose sink has no desired state are deleted only when older than this."),
        SettingDefinition(key: "orphan-max-share", kind: .integer(0...100), defaultValue: "10",
                          help: "At most this percentage of the managed collectors is deleted by one orphan sweep."),
        SettingDefinition(key: "create-policy", kind: .choice(CreatePolicy.allCases.map(\.rawValue)), defaultValue: "eager",
                          help: "When collectors are created: eager (when the config is stored), on-activity, or external."),
        SettingDefinition(key: "workers", kind: .integer(1...256), defaultValue: nil,
                          help: "Worker threads, each with its own Lua VMs and Redis connection (default: one per core)."),
        SettingDefinition(key: "stream-maxlen", kind: .integer(100...100_000_000), defaultValue: "100000",
                          help: "MAXLEN ~ of the streams maestro writes (status, dead letters, events it emits)."),
        SettingDefinition(key: "group", defaultValue: RedisNames().sinkerGroup, help: "Consumer group on the sinks stream."),
        SettingDefinition(key: "group-start", kind: .choice(["0", "$"]), defaultValue: "0",
                          help: "Where a new consumer group starts: 0 (every entry in the stream) or $ (new entries only)."),
        SettingDefinition(key: "consumer-name", defaultValue: nil,
                          help: "This process's consumer name (default: the pod name, or host name and process id)."),
        SettingDefinition(key: "shutdown-timeout", kind: .duration, defaultValue: "30s",
                          help: "On SIGTERM, in-flight events and calls get this long to finish before maestro exits (a second signal exits at once)."),
        SettingDefinition(key: "reload-interval", kind: .duration, defaultValue: "2s",
                          help: "How often plugins/ and templates/ are checked for changes (0s: only SIGHUP reloads)."),
        SettingDefinition(key: "rebuild-rate", kind: .integer(0...10_000), defaultValue: "5",
                          help: "Sinks a second the sinker rebuilds after a backend plugin changed (each rolls its collector; 0: no pacing)."),
        SettingDefinition(key: "min-idle", kind: .duration, defaultValue: "60s",
                          help: "Entries pending this long with a dead consumer are reclaimed."),
        SettingDefinition(key: "max-deliveries", kind: .integer(1...1000), defaultValue: "5",
                          help: "Deliveries of a failing entry before it is dead-lettered."),
        SettingDefinition(key: "sinks-stream", defaultValue: RedisNames().sinksStream, help: "Stream of Orb's sink events."),
        SettingDefinition(key: "config-hash", defaultValue: RedisNames().configHash, help: "Hash: sink id to collector config YAML."),
        SettingDefinition(key: "sinks-hash", defaultValue: RedisNames().sinksHash, help: "Hash: sink id to owner, backend, last applied entry."),
        SettingDefinition(key: "deployment-hash", defaultValue: RedisNames().deploymentHash, help: "Hash: sink id to rendered Kubernetes YAML."),
        SettingDefinition(key: "collectors-hash", defaultValue: RedisNames().collectorsHash, help: "Hash: sink id to collector status JSON."),
        SettingDefinition(key: "rollouts-hash", defaultValue: RedisNames().rolloutsHash,
                          help: "Hash: sink id to its rollout history (versions, last good objects, the failed mark) as JSON."),
        SettingDefinition(key: "rollback-requests", defaultValue: RedisNames().rollbackRequests,
                          help: "List: sinks `maestro rollback` changed, for the maestro role to reconcile at once."),
        SettingDefinition(key: "fleet-rollout-key", defaultValue: RedisNames().fleetRollout,
                          help: "String: the fleet rollout under way or last run (JSON), written by the leader (maestro rollout status)."),
        SettingDefinition(key: "fleet-rollout-requests", defaultValue: RedisNames().fleetRolloutRequests,
                          help: "List: maestro rollout pause/resume/abort requests and the other replicas' reports, for the leader."),
        SettingDefinition(key: "status-stream", defaultValue: RedisNames().statusStream, help: "Stream of status changes, Orb's format."),
        SettingDefinition(key: "deadletter-stream", defaultValue: RedisNames().deadLetterStream, help: "Stream of entries that could not be handled."),
        SettingDefinition(key: "activity-stream", defaultValue: RedisNames().activityStream, help: "Orb's sink activity stream (on-activity policy)."),
        SettingDefinition(key: "idle-stream", defaultValue: RedisNames().idleStream, help: "Orb's sink idle stream (on-activity policy)."),
        SettingDefinition(key: "maestro-group", defaultValue: RedisNames().maestroGroup, help: "Consumer group on the activity and idle streams."),
        SettingDefinition(key: "otel-endpoint", defaultValue: nil,
                          help: "Export a trace of every stream entry and API call over OTLP/HTTP to this URL (the traces path itself, "
                            + "e.g. http://otel-collector:4318/v1/traces); off unless given."),
        SettingDefinition(key: "otel-sample-percent", kind: .integer(0...100), defaultValue: "100",
                          help: "Share of new traces recorded, in percent; a trace continued from a caller follows the caller's choice."),
        SettingDefinition(key: "log-format", kind: .choice(["text", "json"]), defaultValue: "text", help: "Log line format: text or json."),
        SettingDefinition(key: "log-level", kind: .choice(["trace", "debug", "info", "warning", "error"]), defaultValue: "info",
                          help: "Lowest level logged: trace, debug, info, warning or error.", orbSource: { environment in
                              // Orb's levels are lower case too, but say "warn".
                              guard let level = environment["ORB_MAESTRO_LOG_LEVEL"] else { return nil }
                              return (level == "warn" ? "warning" : level.lowercased(), "ORB_MAESTRO_LOG_LEVEL")
                          }),
    ]

    public static func definition(_ key: String) -> SettingDefinition? {
        all.first { $0.key == key }
    }

    /// A flag's help: the table's text and the table's default, so `--help` cannot show another.
    public static func flagHelp(_ key: String) -> String {
        guard let definition = definition(key) else { preconditionFailure("no setting \(key) in Settings.all") }
        guard let value = definition.defaultValue, definition.kind != .boolean else { return definition.help }
        return definition.help + " (default: \(value))"
    }

    /// The help of a secret's `--KEY-file` flag.
    public static func fileFlagHelp(_ key: String) -> String {
        "A file holding \(key) (keeps it out of ps). " + flagHelp(key)
    }
}
