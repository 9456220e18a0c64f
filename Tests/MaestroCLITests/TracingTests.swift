import Foundation
import MaestroCore
import MaestroRedis
import MaestroTestSupport
import MaestroValue
import Testing

/// One exported span, read from the OTLP/HTTP JSON the local receiver kept.
struct ExportedSpan {
    var traceID: String
    var spanID: String
    var parentSpanID: String
    var name: String
    var attributes: [String: String]
    var links: Int
}

/// A trace or span id as hex: OTLP JSON writes them as hex, protobuf's JSON mapping as base64.
func hexID(_ text: String) -> String {
    if text.count == 32 || text.count == 16 || text.isEmpty { return text.lowercased() }
    guard let data = Data(base64Encoded: text) else { return text }
    return data.map { String(format: "%02x", $0) }.joined()
}

/// Every span the receiver got so far (POSTs to /v1/traces).
func exportedSpans(_ receiver: HTTPTestServer) -> [ExportedSpan] {
    guard let requests = try? receiver.received() else { return [] }
    var spans: [ExportedSpan] = []
    for request in requests where request["path"]?.stringValue == "/v1/traces" {
        guard let body = request["body"]?.stringValue, let export = try? JSON.decode(body) else { continue }
        for resource in export["resourceSpans"]?.listValue ?? [] {
            for scope in resource["scopeSpans"]?.listValue ?? [] {
                for span in scope["spans"]?.listValue ?? [] {
                    var attributes: [String: String] = [:]
                    for attribute in span["attributes"]?.listValue ?? [] {
                        guard let key = attribute["key"]?.stringValue, case .map(let value)? = attribute["value"], let first = value.values.first else { continue }
                        attributes[key] = first.stringValue ?? first.intValue.map(String.init) ?? "\(first)"
                    }
                    spans.append(ExportedSpan(traceID: hexID(span["traceId"]?.stringValue ?? ""), spanID: hexID(span["spanId"]?.stringValue ?? ""),
                                              parentSpanID: hexID(span["parentSpanId"]?.stringValue ?? ""), name: span["name"]?.stringValue ?? "",
                                              attributes: attributes, links: span["links"]?.listValue?.count ?? 0))
                }
            }
        }
    }
    return spans
}

/// The environment of a `maestro run` exporting JSON (the receiver decodes it without protobuf) every 100 ms.
func tracingEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MAESTRO_") && !$0.key.hasPrefix("ORB_") && !$0.key.hasPrefix("OTEL_") }
    environment["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/json"
    environment["OTEL_BSP_SCHEDULE_DELAY"] = "100"
    environment.merge(extra) { _, new in new }
    return environment
}

let tracedSinkConfig = #"{"exporter":{"remote_host":"https://p.example/w"},"authentication":{"type":"basicauth","username":"u","password":"p"}}"#

/// A sink create as Orb writes it, with the producer's trace context when given.
func addCreate(_ redis: RedisConnection, stream: String, sinkID: String, traceparent: String?) throws {
    var fields: [(String, String)] = [("sink_id", sinkID), ("owner", "o1"), ("backend", "prometheus"), ("config", tracedSinkConfig),
                                      ("timestamp", "-62135596800"), ("operation", "sinks.create")]
    if let traceparent { fields.append(("traceparent", traceparent)) }
    _ = try redis.xadd(stream, fields: fields)
}

@Suite("tracing: a trace of every stream entry, exported over OTLP/HTTP", .serialized, .testThreads, .timeLimit(.minutes(4)))
struct TracingTests {
    static let callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let callerSpan = "00f067aa0ba902b7"

    @Test("one trace per entry with decode, plugin, store, hand-off, reconcile, render, API requests and status; traceparent continued; log lines carry the ids")
    func traceOfEveryEntry() throws {
        let receiver = try HTTPTestServer()
        let double = try KubeAPIDouble()
        let directory = try TemporaryDirectory()
        let kubeconfig = try double.kubeconfig(in: directory)
        let prefix = RedisTestServer.uniquePrefix("trace")
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        let run = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                    "--kube-backend", "kubernetes", "--kubeconfig", kubeconfig, "--log-level", "debug", "--log-format", "json",
                                    "--otel-endpoint", receiver.baseURL + "/v1/traces"] + common,
                                   environment: tracingEnvironment(), logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        try addCreate(redis, stream: prefix + "sinks", sinkID: "tr-a", traceparent: "00-\(Self.callerTrace)-\(Self.callerSpan)-01")
        try addCreate(redis, stream: prefix + "sinks", sinkID: "tr-b", traceparent: nil)

        let steps = ["sinker.entry", "sinker.decode", "plugin", "sinker.store", "sinker.hand_off", "reconcile", "render", "kubernetes.request", "status"]
        func trace(_ id: String) -> [ExportedSpan] { exportedSpans(receiver).filter { $0.traceID == id } }
        #expect(eventually(timeout: 60) { Set(steps).isSubset(of: Set(trace(Self.callerTrace).map(\.name))) },
                "spans of the caller's trace: \(trace(Self.callerTrace).map(\.name))\n\((try? directory.read("run.log")) ?? "")")

        // The entry's root continues the producer's span; the steps hang under it; the reconcile under the hand-off.
        let spans = trace(Self.callerTrace)
        let byName = Dictionary(spans.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let root = try #require(byName["sinker.entry"])
        #expect(spans.filter { $0.name == "sinker.entry" }.count == 1)
        #expect(root.parentSpanID == Self.callerSpan)
        #expect(root.attributes["maestro.sink.id"] == "tr-a")
        for step in ["sinker.decode", "plugin", "sinker.store", "sinker.hand_off"] {
            #expect(byName[step]?.parentSpanID == root.spanID, "\(step)")
        }
        let handOff = try #require(byName["sinker.hand_off"])
        #expect(byName["reconcile"]?.parentSpanID == handOff.spanID)
        #expect(byName["plugin"]?.attributes["maestro.plugin.name"] == "prometheus")
        #expect((Int(byName["plugin"]?.attributes["maestro.plugin.instructions"] ?? "") ?? 0) > 0, "\(String(describing: byName["plugin"]))")
        let inTrace = Set(spans.map(\.spanID))
        for step in ["render", "kubernetes.request", "status"] {
            #expect(inTrace.contains(byName[step]?.parentSpanID ?? "-"), "\(step) hangs in the trace")
        }
        #expect(spans.contains { $0.name == "kubernetes.request" && $0.attributes["http.request.method"] == "PATCH" })

        // The entry without traceparent has a trace of its own, with the same steps.
        let other = exportedSpans(receiver).first { $0.name == "sinker.entry" && $0.attributes["maestro.sink.id"] == "tr-b" }
        let otherRoot = try #require(other)
        #expect(otherRoot.traceID != Self.callerTrace)
        #expect(otherRoot.parentSpanID.isEmpty)
        #expect(eventually(timeout: 60) { Set(steps).isSubset(of: Set(trace(otherRoot.traceID).map(\.name))) })
        #expect(trace(otherRoot.traceID).filter { $0.name == "sinker.entry" }.count == 1)

        // The hand-off's debug line names its trace and span.
        let lines = ((try? directory.read("run.log")) ?? "").split(separator: "\n").compactMap { try? JSON.decode(String($0)) }
        let handedOff = lines.first { $0["message"]?.stringValue == "handed off to the collectors" && $0["sink.id"]?.stringValue == "tr-a" }
        #expect(handedOff?["trace_id"]?.stringValue == Self.callerTrace, "\(String(describing: handedOff))")
        #expect(handedOff?["span_id"]?.stringValue == handOff.spanID)
    }

    @Test("roles apart: the gRPC hand-off carries traceparent in its metadata and the maestro role continues the entry's trace")
    func grpcMetadataContinuesTheTrace() throws {
        let receiver = try HTTPTestServer()
        let directory = try TemporaryDirectory()
        let prefix = RedisTestServer.uniquePrefix("trace-grpc")
        let socket = directory.path + "/maestro.sock"
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        let base = [maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                    "--otel-endpoint", receiver.baseURL + "/v1/traces"] + common
        let collectors = try ChildProcess(base + ["--role", "maestro", "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests",
                                                  "--grpc-socket", socket], environment: tracingEnvironment(), logPath: directory.path + "/maestro.log")
        defer {
            collectors.signal(SIGTERM)
            _ = collectors.wait(timeout: 30)
        }
        #expect(waitForFile(socket))
        let sinker = try ChildProcess(base + ["--role", "sinker", "--maestro-target", "unix:" + socket], environment: tracingEnvironment(),
                                      logPath: directory.path + "/sinker.log")
        defer {
            sinker.signal(SIGTERM)
            _ = sinker.wait(timeout: 30)
        }
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        try addCreate(redis, stream: prefix + "sinks", sinkID: "tr-grpc", traceparent: "00-\(Self.callerTrace)-\(Self.callerSpan)-01")
        let call = "maestro.v1.OtelCollectorService/CreateOtelCollector"
        func spans() -> [ExportedSpan] { exportedSpans(receiver).filter { $0.traceID == Self.callerTrace } }
        #expect(eventually(timeout: 60) { Set(["sinker.hand_off", call, "reconcile", "render", "status"]).isSubset(of: Set(spans().map(\.name))) },
                "\(spans().map(\.name))\n\((try? directory.read("sinker.log")) ?? "")\n\((try? directory.read("maestro.log")) ?? "")")
        let handOff = try #require(spans().first { $0.name == "sinker.hand_off" })
        let server = try #require(spans().first { $0.name == call })
        #expect(server.parentSpanID == handOff.spanID, "the server's span is the hand-off's child")
        #expect(spans().first { $0.name == "reconcile" }?.parentSpanID == server.spanID)
    }

    @Test("without --otel-endpoint nothing is exported, even with the OTEL_ variables of an exporter set")
    func nothingExportedWhenOff() throws {
        let receiver = try HTTPTestServer()
        let directory = try TemporaryDirectory()
        let prefix = RedisTestServer.uniquePrefix("trace-off")
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        let run = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                    "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests"] + common,
                                   environment: tracingEnvironment(["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.baseURL + "/v1/traces"]),
                                   logPath: directory.path + "/run.log")
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        try addCreate(redis, stream: prefix + "sinks", sinkID: "tr-off", traceparent: "00-\(Self.callerTrace)-\(Self.callerSpan)-01")
        #expect(waitForFile(directory.path + "/manifests/otelcollectors/otel-tr-off.yaml"), "\((try? directory.read("run.log")) ?? "")")
        // Stopped: an exporter would have flushed what it held by now.
        run.signal(SIGTERM)
        #expect(run.wait(timeout: 30))
        #expect(run.exitCode == 0)
        #expect(try receiver.requestsReceived() == 0)
    }

    @Test("an unreachable receiver neither stops nor fails the flow; the spans it loses are counted")
    func unreachableReceiver() throws {
        let directory = try TemporaryDirectory()
        let prefix = RedisTestServer.uniquePrefix("trace-down")
        let common = ["--redis-url", try RedisTestServer.url] + MaestroProcess.names(prefix)
        // Port 1 on loopback refuses; a small queue fills at once.
        let run = try ChildProcess([maestroBinary(), "run", "--plugins-dir", repositoryRoot + "/plugins", "--templates-dir", repositoryRoot + "/templates",
                                    "--kube-backend", "directory", "--manifests-dir", directory.path + "/manifests", "--http-listen", "127.0.0.1:0",
                                    "--otel-endpoint", "http://127.0.0.1:1/v1/traces"] + common,
                                   environment: tracingEnvironment(["OTEL_BSP_MAX_QUEUE_SIZE": "4", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4",
                                                                    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "500", "OTEL_BSP_EXPORT_TIMEOUT": "1000"]),
                                   logPath: directory.path + "/run.log")
        defer {
            run.signal(SIGTERM)
            _ = run.wait(timeout: 30)
        }
        let port = try loggedPort("http.port", in: directory.path + "/run.log", of: run)
        func metrics() -> String { (try? runProgram([try executable("curl"), "-s", "http://127.0.0.1:\(port)/metrics"]).output) ?? "" }
        let redis = try RedisConnection(url: try RedisURL(parsing: try RedisTestServer.url))
        let sinks = (1...5).map { "tr-down-\($0)" }
        for sink in sinks { try addCreate(redis, stream: prefix + "sinks", sinkID: sink, traceparent: nil) }
        for sink in sinks {
            #expect(waitForFile(directory.path + "/manifests/otelcollectors/otel-\(sink).yaml"), "\((try? directory.read("run.log")) ?? "")")
        }
        // Every batch fails to send; spans arriving meanwhile overflow the queue of 4 (how many depends on timing).
        #expect(eventually(timeout: 60) { samples(metrics(), "maestro_trace_spans_dropped_total", [#"reason="export_failed""#]).reduce(0, +) > 0 },
                "\(metrics().split(separator: "\n").filter { $0.contains("trace") })\n\((try? directory.read("run.log")) ?? "")")
    }
}
