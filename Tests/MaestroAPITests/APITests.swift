import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import MaestroYAML
import Synchronization
import Testing

@testable import MaestroAPI
@testable import MaestroPluginHost

/// A maestro role (manager, reconciler, directory backend) behind a real API server on loopback.
final class APIFixture: @unchecked Sendable {
    let names: RedisNames
    let redisURL: RedisURL
    let manifests: TemporaryDirectory
    let reconciler: Reconciler
    let manager: CollectorManager
    let server: APIServer
    let configuration: APIServerConfiguration
    var port: Int = 0
    var ready = true

    init(configuration: APIServerConfiguration = APIServerConfiguration(listen: "127.0.0.1:0"), redisURL url: String? = nil,
         templates: String = repositoryRoot + "/templates", beforeRenderer: @escaping @Sendable () -> Void = {}) throws {
        names = RedisNames().prefixed(RedisTestServer.uniquePrefix("api"))
        redisURL = try RedisURL(parsing: url ?? RedisTestServer.url)
        manifests = try TemporaryDirectory()
        let backend = DirectoryBackend(root: manifests.path)
        reconciler = Reconciler(redisURL: redisURL, names: names, backend: backend, options: ReconcilerOptions(resyncInterval: 3_600),
                                logger: Logger(label: "test"))
        manager = CollectorManager(reconciler: reconciler, logger: Logger(label: "test")) {
            beforeRenderer()
            return try TemplateRenderer(root: templates)
        }
        self.configuration = configuration
        let api = OtelCollectorAPI(manager: manager, redisURL: redisURL, names: names, backend: backend,
                                   callersAuthenticated: configuration.callersAuthenticated, logger: Logger(label: "test"))
        nonisolated(unsafe) var readiness: APIFixture?
        let health = HealthService { readiness?.ready ?? false }
        server = APIServer(configuration: configuration, collectors: api, health: health, logger: Logger(label: "test"))
        readiness = self
        reconciler.start()
    }

    func start() async throws {
        port = try await server.start() ?? 0
    }

    func stop() async {
        await server.stop()
        reconciler.stop()
    }

    func storeConfig(_ sinkID: String, _ yaml: String = "exporters:\n  otlphttp:\n    endpoint: https://a.example\nextensions:\n  basicauth/exporter:\n    client_auth:\n      password: hunter2\n      username: u\n") throws {
        let redis = try RedisConnection(url: redisURL)
        try redis.hset(names.configHash, field: sinkID, value: yaml)
    }

    func client(target: String? = nil, token: String? = nil, ca: String? = nil, certificate: String? = nil, key: String? = nil) throws -> APIClient {
        try APIClient(configuration: APIClientConfiguration(target: target ?? "127.0.0.1:\(port)", token: token, caCertificate: ca,
                                                            clientCertificate: certificate, clientKey: key, timeout: .seconds(10)))
    }
}

func code(of body: () async throws -> Void) async -> RPCError.Code? {
    do {
        try await body()
        return nil
    } catch let error as RPCError {
        return error.code
    } catch {
        return .unknown
    }
}

@Suite("gRPC API", .serialized, .testThreads, .timeLimit(.minutes(3)))
struct APITests {
    @Test("create, get, list (paged, filtered), render, delete; idempotent create; errors map to status codes")
    func rpcs() async throws {
        let fixture = try APIFixture()
        try await fixture.start()
        let client = try fixture.client()
        for sink in ["a1", "a2", "a3"] { try fixture.storeConfig(sink) }
        let created = try await client.collectors.createOtelCollector(.with { $0.sinkID = "a1"; $0.ownerID = "o1" })
        #expect(created.sinkID == "a1")
        #expect(created.collectorName == "otel-a1")
        #expect(created.namespace == "otelcollectors")
        #expect(created.configHash.count == 64)
        _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "a1"; $0.ownerID = "o1" })
        _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "a2"; $0.ownerID = "o2" })
        _ = try await client.collectors.updateOtelCollector(.with { $0.sinkID = "a3"; $0.ownerID = "o1" })
        let got = try await client.collectors.getOtelCollector(.with { $0.sinkID = "a1" })
        #expect(got.ownerID == "o1")
        #expect(["unknown", "provisioning"].contains(got.status))

        let firstPage = try await client.collectors.listOtelCollectors(.with { $0.pageSize = 2 })
        #expect(firstPage.collectors.map(\.sinkID) == ["a1", "a2"])
        let secondPage = try await client.collectors.listOtelCollectors(.with { $0.pageSize = 2; $0.pageToken = firstPage.nextPageToken })
        #expect(secondPage.collectors.map(\.sinkID) == ["a3"])
        #expect(secondPage.nextPageToken.isEmpty)
        #expect(try await client.collectors.listOtelCollectors(.with { $0.ownerID = "o1" }).collectors.map(\.sinkID) == ["a1", "a3"])

        let rendered = try await client.collectors.renderOtelCollector(.with { $0.sinkID = "a1"; $0.revealSecrets = true })
        #expect(!rendered.secretsRevealed, "without a token or client certificates nobody is authenticated")
        #expect(!rendered.configYaml.contains("hunter2"))
        #expect(rendered.configYaml.contains("<redacted>"))
        #expect(rendered.objectsYaml.contains("kind: Deployment"))
        #expect(!rendered.objectsYaml.contains("hunter2"))

        let deleted = try await client.collectors.deleteOtelCollector(.with { $0.sinkID = "a2" })
        #expect(deleted.existed)
        let unknown = try await client.collectors.deleteOtelCollector(.with { $0.sinkID = "never" })
        #expect(!unknown.existed, "deleting an unknown sink is OK")
        let redis = try RedisConnection(url: fixture.redisURL)
        #expect(try redis.hget(fixture.names.configHash, field: "a2") != nil, "delete keeps the sink's config")

        #expect(await code { _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "no-config" }) } == .notFound)
        #expect(await code { _ = try await client.collectors.getOtelCollector(.with { $0.sinkID = "missing" }) } == .notFound)
        #expect(await code { _ = try await client.collectors.renderOtelCollector(.with { $0.sinkID = "missing" }) } == .notFound)
        for bad in ["", String(repeating: "x", count: 254), "a\nb"] {
            #expect(await code { _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = bad }) } == .invalidArgument)
        }
        #expect(await code { _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "Any id/at all ✓" }) } == .notFound,
                "any other id is valid (mapped to names); it just has no config")
        await client.close()
        await fixture.stop()
    }

    @Test("watch streams status changes, optionally for one sink")
    func watch() async throws {
        let fixture = try APIFixture()
        try await fixture.start()
        let client = try fixture.client()
        try fixture.storeConfig("w1")
        try fixture.storeConfig("w2")
        let (subscriptions, subscribed) = AsyncStream<[String]>.makeStream()
        let seen = try await withThrowingTaskGroup(of: [String].self) { group in
            group.addTask {
                try await client.collectors.watchOtelCollectors(.with { $0.sinkID = "w1" }) { response in
                    subscribed.yield(Array(response.metadata[stringValues: "maestro-watch"]))
                    var statuses: [String] = []
                    for try await event in response.messages {
                        statuses.append("\(event.collector.sinkID):\(event.collector.status)")
                        if statuses.count == 1 { break }
                    }
                    return statuses
                }
            }
            // The server answers the call's head only once the watch's position is pinned: every
            // change after it arrives is seen.
            var headers = subscriptions.makeAsyncIterator()
            #expect(await headers.next() == ["subscribed"])
            _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "w2" })
            _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "w1" })
            let first = try await group.next() ?? []
            group.cancelAll()
            return first
        }
        #expect(seen == ["w1:provisioning"])
        await client.close()
        await fixture.stop()
    }

    @Test("a bearer token is required when configured; health stays open; render reveals secrets to an authenticated caller")
    func token() async throws {
        let fixture = try APIFixture(configuration: APIServerConfiguration(listen: "127.0.0.1:0", token: "t0ken-123"))
        try await fixture.start()
        try fixture.storeConfig("t1")
        let anonymous = try fixture.client()
        #expect(await code { _ = try await anonymous.collectors.listOtelCollectors(.init()) } == .unauthenticated)
        #expect(try await anonymous.health.check(.init()).status == .serving)
        let wrong = try fixture.client(token: "nope")
        #expect(await code { _ = try await wrong.collectors.listOtelCollectors(.init(), metadata: wrong.metadata) } == .unauthenticated)
        let authorized = try fixture.client(token: "t0ken-123")
        _ = try await authorized.collectors.createOtelCollector(.with { $0.sinkID = "t1" }, metadata: authorized.metadata)
        let revealed = try await authorized.collectors.renderOtelCollector(.with { $0.sinkID = "t1"; $0.revealSecrets = true }, metadata: authorized.metadata)
        #expect(revealed.secretsRevealed)
        #expect(revealed.configYaml.contains("hunter2"))
        let hidden = try await authorized.collectors.renderOtelCollector(.with { $0.sinkID = "t1" }, metadata: authorized.metadata)
        #expect(!hidden.configYaml.contains("hunter2"), "revealing needs the request's consent too")
        fixture.ready = false
        #expect(try await anonymous.health.check(.init()).status == .notServing)
        for client in [anonymous, wrong, authorized] { await client.close() }
        await fixture.stop()
    }

    @Test("TLS and mutual TLS")
    func tls() async throws {
        let certificates = try TestCertificates()
        let plain = try APIFixture(configuration: APIServerConfiguration(listen: "127.0.0.1:0", tlsCertificate: certificates.serverCertificate,
                                                                         tlsKey: certificates.serverKey))
        try await plain.start()
        let trusting = try plain.client(ca: certificates.caCertificate)
        #expect(try await trusting.collectors.listOtelCollectors(.init()).collectors.isEmpty)
        let cleartext = try plain.client()
        #expect(await code { _ = try await cleartext.collectors.listOtelCollectors(.init()) } == .unavailable)
        await trusting.close()
        await cleartext.close()
        await plain.stop()

        let mutual = try APIFixture(configuration: APIServerConfiguration(listen: "127.0.0.1:0", tlsCertificate: certificates.serverCertificate,
                                                                          tlsKey: certificates.serverKey, clientCA: certificates.caCertificate))
        try await mutual.start()
        let withCertificate = try mutual.client(ca: certificates.caCertificate, certificate: certificates.clientCertificate, key: certificates.clientKey)
        try mutual.storeConfig("m1")
        _ = try await withCertificate.collectors.createOtelCollector(.with { $0.sinkID = "m1" })
        #expect(try await withCertificate.collectors.renderOtelCollector(.with { $0.sinkID = "m1"; $0.revealSecrets = true }).secretsRevealed,
                "a client certificate authenticates the caller")
        let withoutCertificate = try mutual.client(ca: certificates.caCertificate)
        #expect(await code { _ = try await withoutCertificate.collectors.listOtelCollectors(.init()) } == .unavailable)
        await withCertificate.close()
        await withoutCertificate.close()
        await mutual.stop()
    }

    @Test("the Unix socket serves the same API with mode 0600")
    func unixSocket() async throws {
        let directory = try TemporaryDirectory()
        let socket = directory.path + "/maestro.sock"
        let fixture = try APIFixture(configuration: APIServerConfiguration(socketPath: socket))
        try await fixture.start()
        let mode = try FileManager.default.attributesOfItem(atPath: socket)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        try fixture.storeConfig("u1")
        let client = try fixture.client(target: "unix:" + socket)
        _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "u1" })
        #expect(try await client.collectors.getOtelCollector(.with { $0.sinkID = "u1" }).collectorName == "otel-u1")
        await client.close()
        await fixture.stop()
        #expect(!FileManager.default.fileExists(atPath: socket))
    }

    @Test("200 concurrent clients creating different sinks: all succeed, each collector exactly once")
    func concurrentClients() async throws {
        let fixture = try APIFixture()
        try await fixture.start()
        for index in 0..<200 { try fixture.storeConfig("c\(index)") }
        let port = fixture.port
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<200 {
                group.addTask {
                    let client = try APIClient(configuration: APIClientConfiguration(target: "127.0.0.1:\(port)"))
                    _ = try await client.collectors.createOtelCollector(.with { $0.sinkID = "c\(index)" })
                    await client.close()
                }
            }
            try await group.waitForAll()
        }
        #expect(await eventually(timeout: 30) { () async -> Bool in fixture.reconciler.backlog == 0 }, "every create reconciled")
        let files = try FileManager.default.contentsOfDirectory(atPath: fixture.manifests.path + "/otelcollectors").filter { $0.hasSuffix(".yaml") }
        #expect(files.count == 200)
        #expect(Set(files).count == 200)
        #expect(try fixture.manager.list().count == 200)
        await fixture.stop()
    }

    @Test("500 concurrent calls multiplexed on one connection (grpc-swift, then Python grpcio), without and with a token: all succeed",
          arguments: [nil, "mux-token-ab12"])
    func multiplexedCalls(token: String?) async throws {
        let fixture = try APIFixture(configuration: APIServerConfiguration(listen: "127.0.0.1:0", token: token))
        try await fixture.start()
        let count = 500
        for index in 0..<count {
            try fixture.storeConfig("swift\(index)")
            try fixture.storeConfig("py\(index)")
        }
        let client = try fixture.client(token: token)
        let succeeded = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<count {
                group.addTask {
                    let reply = try await client.collectors.createOtelCollector(.with { $0.sinkID = "swift\(index)" }, metadata: client.metadata)
                    return reply.sinkID == "swift\(index)"
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(succeeded == count)
        await client.close()

        var arguments = [try executable("python3"), repositoryRoot + "/Tests/Support/grpc_multiplex.py", "127.0.0.1:\(fixture.port)", "py",
                         String(count), repositoryRoot]
        if let token { arguments.append(token) }
        let python = try runProgram(arguments)
        #expect(python.code == 0, "\(python.output)")
        #expect(python.output.contains("succeeded \(count) of \(count)"), "\(python.output)")

        let redis = try RedisConnection(url: fixture.redisURL)
        #expect(try redis.hlen(fixture.names.deploymentHash) == 2 * count, "exactly one desired state per sink")
        #expect(try fixture.manager.list().count == 2 * count)
        await fixture.stop()
    }

    @Test("a call in flight when the server stops is finished and answered; calls after the stop are refused")
    func inFlightCallFinishedOnStop() async throws {
        let reached = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        // The first renderer is made inside the first create: holding its making holds that call in flight.
        let firstRenderer = Mutex(true)
        let fixture = try APIFixture(beforeRenderer: {
            guard firstRenderer.withLock({ first in defer { first = false }; return first }) else { return }
            reached.signal()
            release.wait()
        })
        try await fixture.start()
        try fixture.storeConfig("in-flight")
        let client = try fixture.client()
        let call = Task { try await client.collectors.createOtelCollector(.with { $0.sinkID = "in-flight" }) }
        #expect(await Task.detached { reached.wait(timeout: .now() + 30) }.value == .success, "the call reached the server")
        let stopped = Task { await fixture.server.stop() }
        // The stop waits for the call: it is still unanswered while the renderer is held.
        let late = try APIClient(configuration: APIClientConfiguration(target: "127.0.0.1:\(fixture.port)", timeout: .seconds(5)))
        #expect(await code { _ = try await late.collectors.getOtelCollector(.with { $0.sinkID = "in-flight" }) } != nil,
                "a new connection after the stop began is refused")
        release.signal()
        let created = try await call.value
        #expect(created.sinkID == "in-flight", "the in-flight create was finished and answered")
        await stopped.value
        await late.close()
        await client.close()
        fixture.reconciler.stop()
    }

    @Test("a non-loopback listener needs a token or TLS unless insecure")
    func listenerGuard() throws {
        #expect(throws: APIServerConfiguration.Invalid.self) { try APIServerConfiguration(listen: "0.0.0.0:9090").tcpAddress() }
        #expect(try APIServerConfiguration(listen: "0.0.0.0:9090", token: "t").tcpAddress()?.port == 9090)
        #expect(try APIServerConfiguration(listen: "0.0.0.0:9090", insecure: true).tcpAddress()?.host == "0.0.0.0")
        #expect(try APIServerConfiguration(listen: "127.0.0.1:9090").tcpAddress()?.host == "127.0.0.1")
        #expect(throws: APIServerConfiguration.Invalid.self) { try APIServerConfiguration(listen: "nonsense").tcpAddress() }
    }

    @Test("health Watch streams changes; oversized requests are refused")
    func healthWatchAndLimits() async throws {
        let fixture = try APIFixture()
        try await fixture.start()
        let client = try fixture.client()
        let statuses = try await withThrowingTaskGroup(of: [Grpc_Health_V1_HealthCheckResponse.ServingStatus].self) { group in
            group.addTask {
                try await client.health.watch(.init()) { response in
                    var seen: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
                    for try await message in response.messages {
                        seen.append(message.status)
                        if seen.count == 1 { fixture.ready = false }
                        if seen.count == 2 { break }
                    }
                    return seen
                }
            }
            return try await group.next() ?? []
        }
        #expect(statuses == [.serving, .notServing])
        // No sink id to fail a check, only a 2 MiB owner filter: the request size alone refuses it.
        let huge = String(repeating: "x", count: 2 << 20)
        let rejected = await code { _ = try await client.collectors.listOtelCollectors(.with { $0.ownerID = huge }) }
        // The server refuses it as RESOURCE_EXHAUSTED once it has read the message's length; the
        // transport then resets the stream the client is still sending on, so the client may see
        // UNAVAILABLE instead. Either way it is refused, and only for its size.
        #expect(rejected == .resourceExhausted || rejected == .unavailable, "a request over the 1 MiB limit is refused: \(String(describing: rejected))")
        let small = await code { _ = try await client.collectors.listOtelCollectors(.with { $0.ownerID = String(repeating: "x", count: 1_000) }) }
        #expect(small == nil, "the same request under the limit succeeds")
        await client.close()
        await fixture.stop()
    }

    @Test("the committed generated code matches the protos")
    func generatedCodeIsCurrent() throws {
        let recorded = try String(contentsOfFile: repositoryRoot + "/Sources/MaestroAPI/Generated/PROTO_CHECKSUMS", encoding: .utf8)
        for line in recorded.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            let result = try runProgram(["/usr/bin/sha256sum", String(parts[1])], in: repositoryRoot + "/proto")
            #expect(result.output.hasPrefix(String(parts[0])), "\(parts[1]) changed: run scripts/generate-grpc and commit the result")
        }
    }
}
