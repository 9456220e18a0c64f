import ArgumentParser
import Foundation
import Logging
import MaestroCommandLine
import MaestroCore
import MaestroLua
import MaestroPluginHost
import MaestroRedis
import MaestroRoles
import MaestroValue
import MaestroYAML

/// The sink pipeline end to end against a real Redis, narrated: Orb-format events go through the
/// consumer group, the Lua backend plugins build collector configs, bad input is dead-lettered or
/// reported as a status, and the sandbox stops hostile code. Every key it writes starts with
/// `maestro-demo:`, so it never touches a real installation's data.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the sink pipeline end to end against a private redis-server and narrate each step."
    )

    @OptionGroup var settings: SettingsOptions

    func run() throws {
        try exitingOnInvalidInput {
            let given = try settings.resolve(environment: ProcessInfo.processInfo.environment)
            let typed = MaestroSettings(given)
            // Quiet unless asked: the narration is the output.
            MaestroLogHandler.bootstrap(format: typed.logFormat, level: typed.logLevelIsGiven ? typed.logLevel : "error")
            try DemoRun(settings: settings, given: typed).run()
        }
    }
}

struct DemoRun {
    let settings: SettingsOptions
    /// The settings as given, before the demo's own.
    let given: MaestroSettings

    func say(_ step: Int, _ text: String) {
        print("\n[\(step)] \(text)")
    }

    func run() throws {
        print("maestro \(MaestroVersion.current) demo")
        var privateServer: LocalRedisServer?
        if !given.redisURLIsGiven {
            privateServer = try LocalRedisServer.start()
        }
        defer {
            privateServer?.stop()
            if let directory = privateServer?.directory { try? FileManager.default.removeItem(atPath: directory) }
        }
        // The roles `maestro run` starts, with the demo's settings: every key under `maestro-demo:`, the
        // collectors written by the directory backend into a temporary folder.
        let manifests = NSTemporaryDirectory() + "maestro-demo-manifests-" + UUID().uuidString.prefix(8)
        defer { try? FileManager.default.removeItem(atPath: manifests) }
        var demoSettings: [String: [String]] = ["kube-backend": ["directory"], "manifests-dir": [manifests], "role": ["all"],
                                                "create-policy": ["eager"], "workers": ["2"], "max-deliveries": ["2"],
                                                "consumer-name": ["demo"]]
        if let privateServer { demoSettings["redis-url"] = [privateServer.url] }
        let wiring = Wiring(configuration: try settings.resolve(environment: ProcessInfo.processInfo.environment, overriding: demoSettings),
                            keyPrefix: "maestro-demo:")
        let redisURL = try wiring.redisURL()
        let redis = try RedisConnection(url: redisURL)
        let version = try redis.command(["INFO", "server"]).string?
            .split(separator: "\r\n").first { $0.hasPrefix("redis_version:") }?.dropFirst("redis_version:".count) ?? "?"
        say(1, "Redis \(version) at \(redisURL)\(privateServer == nil ? "" : " (a private server started for this demo)")")

        let names = wiring.names
        let demoKeys = names.keys + [names.configHashKey]
        try redis.del(demoKeys)

        let logger = Logger(label: "maestro")
        let roles = try Roles(wiring: wiring, logger: logger)
        let group = roles.serviceGroup()
        let running = Task { try await group.run() }
        var stopped = false
        func stop() throws {
            guard !stopped else { return }
            stopped = true
            try awaitBlocking {
                await group.triggerGracefulShutdown()
                try await running.value
            }
            roles.removeSnapshots()
        }
        defer { try? stop() }
        let catalog = roles.generations.catalog
        guard !catalog.plugins.isEmpty else {
            throw InvalidInput("no plugins found in \(wiring.pluginsRoot); run the demo from the repository's root or give --plugins-dir")
        }
        guard let manager = roles.collectors?.manager, let reconciler = roles.collectors?.reconciler, let consumer = roles.consumers.first,
              let backend = reconciler.backend as? DirectoryBackend else {
            preconditionFailure("the demo's settings run every role, with the directory backend")
        }
        say(2, "Plugins loaded from \(wiring.pluginsRoot): " + catalog.plugins.map { "\($0.name) \($0.version) (backend \($0.sinkBackend ?? "-"))" }.joined(separator: ", ")
            + (catalog.failures.isEmpty ? "" : "; \(catalog.failures.count) failed to load"))
        say(3, "The sinker consumes \(names.sinksStream) in group \(names.sinkerGroup) with \(consumer.options.workers) workers.")

        let promID = "5f4b9c2e-1d3a-4e6b-9a7c-2b8d0e1f3a45"
        let otlpID = "7c1d0e2f-3a4b-4c5d-8e6f-9a0b1c2d3e4f"
        let owner = "0c8b5a40-6c4e-4f8e-9d3b-1a2b3c4d5e6f"
        let promConfig: Value = ["exporter": ["remote_host": "https://prometheus.example.com/api/v1/write", "headers": ["X-Scope-OrgID": "tenant-1"]],
                                 "authentication": ["type": "basicauth", "username": "1234123", "password": "a\"b: c"]]
        try emit(redis, names, [("sink_id", promID), ("owner", owner), ("backend", "prometheus"), ("config", try JSON.encode(promConfig)),
                                ("timestamp", "-62135596800"), ("operation", "sinks.create")])
        let cipher = OrbSecretCipher(secret: wiring.settings.secretKey)
        let otlpConfig: Value = ["exporter": ["endpoint": "https://otlp.example.com"],
                                 "authentication": ["type": "bearertokenauth", "scheme": "Bearer", "token": .string(cipher.encrypt("t0k3n-from-orb"))]]
        try emit(redis, names, [("sink_id", otlpID), ("owner", owner), ("backend", "otlphttp"), ("config", try JSON.encode(otlpConfig)),
                                ("timestamp", "-62135596800"), ("operation", "sinks.create")])
        try waitUntilDrained(redis, names)
        say(4, "Two Orb-format sinks.create events (prometheus with the user name \"1234123\" and a password holding a quote and a colon; otlphttp with an Orb-encrypted token) became collector configs in \(names.configHash):")
        let stored = try YAML.parse(try redis.hget(names.configHash, field: promID) ?? "")
        print(indent(try YAML.emit(masked(stored))), terminator: "")
        let auth = stored["extensions"]?["basicauth/exporter"]?["client_auth"]
        print("    (read back: the user name is the string \(auth?["username"] == .string("1234123") ? "\"1234123\"" : "CHANGED"), the password \(auth?["password"] == .string("a\"b: c") ? "kept its quote and colon" : "CHANGED"))")
        let otlp = try YAML.parse(try redis.hget(names.configHash, field: otlpID) ?? "")
        let token = otlp["extensions"]?["bearertokenauth/withscheme"]?["token"]
        print("    otlphttp: the token was decrypted with the Orb secret key: \(token == .string("t0k3n-from-orb") ? "yes" : "NO")")

        waitForCollectors(reconciler)
        let promName = CollectorNaming.name(forSinkID: promID)
        let promFile = backend.path(name: promName, namespace: wiring.collectorNamespace)
        let objects = try YAML.parseAll(TextFile.read(promFile) ?? "")
        let mode = ((try? FileManager.default.attributesOfItem(atPath: promFile)[.posixPermissions]) as? NSNumber)?.intValue ?? 0
        say(5, "The Lua template rendered each collector (\(objects.map { $0["kind"]?.stringValue ?? "?" }.joined(separator: ", "))), stored it in \(names.deploymentHash), and the reconciler wrote it:")
        print("    \(promFile) (mode \(String(mode, radix: 8)))")
        let deployment = objects.first { $0["kind"] == .string("Deployment") }
        let firstHash = deployment?["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"]?.stringValue ?? "?"
        print("    Deployment \(promName): image \(deployment?["spec"]?["template"]?["spec"]?["containers"]?.listValue?.first?["image"]?.stringValue ?? "?"), probes on :13133, config hash \(firstHash.prefix(16))…")
        print("    status: \((try? manager.get(sinkID: promID).status) ?? "?") (the directory backend cannot see pods, so it never claims more)")

        let updatedConfig: Value = ["exporter": ["remote_host": "https://prometheus-eu.example.com/api/v1/write"],
                                    "authentication": ["type": "basicauth", "username": "1234123", "password": "a\"b: c"]]
        try emit(redis, names, [("sink_id", promID), ("owner", owner), ("backend", ""), ("config", try JSON.encode(updatedConfig)),
                                ("timestamp", "-62135596800"), ("operation", "sinks.update")])
        try waitUntilDrained(redis, names)
        let updated = try YAML.parse(try redis.hget(names.configHash, field: promID) ?? "")
        waitForCollectors(reconciler)
        let rolled = try YAML.parseAll(TextFile.read(promFile) ?? "").first { $0["kind"] == .string("Deployment") }?["spec"]?["template"]?["metadata"]?["annotations"]?["maestro.orb.community/config-hash"]?.stringValue ?? "?"
        say(6, "A sinks.update with backend \"\" (as Orb's API sends it) used the stored backend: endpoint now \(updated["exporters"]?["prometheusremotewrite"]?["endpoint"]?.stringValue ?? "?")")
        print("    the config hash changed \(firstHash.prefix(16))… → \(rolled.prefix(16))…, which rolls the pods (same objects, updated in place)")

        try emit(redis, names, [("sink_id", promID), ("owner", owner), ("backend", ""), ("operation", "sinks.update"),
                                ("config", #"{"exporter":{"remote_host":"prometheus.example.com/write"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#)])
        try emit(redis, names, [("owner", owner), ("backend", "prometheus"), ("operation", "sinks.create"), ("config", "{}")])
        try waitUntilDrained(redis, names)
        let status = try redis.xrange(names.statusStream).last
        say(7, "An update whose URL has no scheme is the user's error: status \(status?["status"] ?? "?") — \"\(status?["error_message"] ?? "")\"; the last good config stays.")
        let letter = try redis.xrange(names.deadLetterStream).last
        print("    An event without sink_id is malformed: dead-lettered in \(names.deadLetterStream) with reason \"\(letter?["reason"] ?? "?")\".")

        try emit(redis, names, [("sink_id", otlpID), ("owner", owner), ("operation", "sinks.remove")])
        try waitUntilDrained(redis, names)
        waitForCollectors(reconciler)
        let otlpFile = backend.path(name: CollectorNaming.name(forSinkID: otlpID), namespace: wiring.collectorNamespace)
        say(8, "A sinks.remove deleted the otlphttp config, left a tombstone (a late create cannot bring it back), and its collector file is \(FileManager.default.fileExists(atPath: otlpFile) ? "STILL THERE" : "gone").")

        // A config can reach Redis by another path than the sinker (a hand edit, an older maestro, a restore):
        // the maestro role checks it by the collector's own rules before anything is applied.
        let goodConfig = try redis.hget(names.configHash, field: promID) ?? ""
        let appliedBefore = TextFile.read(promFile)
        try redis.hset(names.configHash, field: promID, value: """
            receivers: {otlp: {protocols: {grpc: {}}}}
            exporters: {debug: {}}
            service: {pipelines: {metrics: {receivers: [otlp], exporters: [otlphttp/missing]}}}

            """)
        try? manager.update(sinkID: promID, ownerID: owner)
        waitForCollectors(reconciler)
        let refused = try? manager.get(sinkID: promID)
        say(9, "A collector config naming an exporter it does not define, written straight into \(names.configHash), is refused before anything is applied: status \(refused?.status ?? "?") — \"\(refused?.errorMessage ?? "")\"; the collector file is \(TextFile.read(promFile) == appliedBefore ? "unchanged" : "CHANGED").")
        try redis.hset(names.configHash, field: promID, value: goodConfig)
        try? manager.update(sinkID: promID, ownerID: owner)
        waitForCollectors(reconciler)

        let history = try RolloutHistoryStore.history(redis, names: names, sinkID: promID)
        say(10, "Safe rollouts: the history of the prometheus sink's desired states (`maestro history --sink-id \(promID)`):")
        print(indent(formatTable(["VERSION", "STORED AT", "HASH", "CONFIG HASH", "SOURCE", "OUTCOME", "KEPT", "REASON"], HistoryCommand.rows(history))), terminator: "")
        print("""
                On Kubernetes, a version whose pods crash-loop, whose rollout exceeds its progress deadline or that is not
                active within --rollout-timeout is rolled back to the last version that reached active: status error
                "rolled back to version N …", an Event on the Deployment, and the failed render held back until the sink's
                config changes. The directory backend used here never sees pods, so no version becomes active and nothing is
                rolled back: the GitOps tool reading the folder keeps that history. The crash-looping rollout and its rollback
                run against the Kubernetes API double in the test suite: swift test --filter RolloutTests.
            """)

        say(11, "State:")
        var rows: [[String]] = []
        let statuses = try redis.hgetall(names.collectorsHash)
        for (sinkID, json) in try redis.hgetall(names.sinksHash).sorted(by: { $0.key < $1.key }) {
            let record = SinkRecord(json: json)
            let statusText = statuses[sinkID].flatMap { try? JSON.decode($0) }?["status"]?.stringValue ?? "-"
            let collectorName = statuses[sinkID].flatMap { try? JSON.decode($0) }?["collector_name"]?.stringValue ?? "-"
            rows.append([sinkID, record?.backend ?? "?", record?.removed == true ? "removed" : "stored", collectorName, statusText])
        }
        print(indent(formatTable(["SINK", "BACKEND", "CONFIG", "COLLECTOR", "STATUS"], rows)))
        let counters = consumer.counters
        print("    events: \(counters.acknowledged) handled, \(counters.deadLettered) dead-lettered")

        say(12, "The Lua sandbox contains hostile plugin code:")
        let vm = try LuaVM(configuration: LuaConfiguration(name: "demo", instructionBudget: wiring.luaLimits.instructionBudget,
                                                           memoryLimitBytes: wiring.luaLimits.memoryLimitBytes))
        for (label, code) in [("while true do end", "while true do end"), ("io.open('/etc/passwd')", "return io.open('/etc/passwd')"),
                              ("string.rep('x', 1 << 30)", "return string.rep('x', 1 << 30)")] {
            let started = Date()
            do {
                _ = try vm.evaluate(code)
                print("    \(label): NOT STOPPED")
            } catch {
                print("    \(label): stopped after \(Int(Date().timeIntervalSince(started) * 1000)) ms — \(error.message.split(separator: "\n").first ?? "")")
            }
        }
        print("    the host keeps serving: 6 * 7 = \((try? JSON.encode(try vm.evaluate("return 6 * 7").first.flatMap { $0 } ?? .null)) ?? "?")")

        try stop()
        try redis.del(demoKeys)
        print("\nDone: demo keys and manifests removed\(privateServer == nil ? "" : ", private redis-server stopped").")
    }

    func waitForCollectors(_ reconciler: Reconciler) {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, reconciler.backlog > 0 { usleep(20_000) }
    }

    func emit(_ redis: RedisConnection, _ names: RedisNames, _ fields: [(String, String)]) throws {
        try redis.xadd(names.sinksStream, fields: fields)
    }

    func waitUntilDrained(_ redis: RedisConnection, _ names: RedisNames) throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let group = try redis.xinfoGroups(names.sinksStream).first(where: { $0["name"]?.string == names.sinkerGroup }),
               group["pending"]?.integer == 0, group["lag"]?.integer == 0 {
                return
            }
            usleep(20_000)
        }
        throw InvalidInput("the demo's events were not handled within 30 s")
    }

    func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.isEmpty ? "" : "    " + $0 }.joined(separator: "\n") + "\n"
    }

    /// Credentials are never shown on screen.
    func masked(_ value: Value) -> Value {
        SecretMasker().mask(value)
    }
}
