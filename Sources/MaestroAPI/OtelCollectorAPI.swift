public import GRPCCore
public import Logging
public import MaestroCore
public import MaestroRedis
internal import MaestroValue
internal import MaestroYAML
internal import Foundation

/// The `maestro.v1.OtelCollectorService` implementation: a plain struct over the one
/// `CollectorManager` the sink pipeline uses too. Blocking work (Redis, templates, Kubernetes) runs on
/// a dispatch queue, never on the cooperative pool. Domain errors map to gRPC status codes here only.
public struct OtelCollectorAPI: Maestro_V1_OtelCollectorService.SimpleServiceProtocol {
    let manager: CollectorManager
    let redisURL: RedisURL
    let names: RedisNames
    let backend: any ClusterBackend
    /// True when every call is authenticated (a bearer token or client certificates are required):
    /// only then may Render reveal credentials.
    let callersAuthenticated: Bool
    let logger: Logger

    public init(manager: CollectorManager, redisURL: RedisURL, names: RedisNames, backend: any ClusterBackend,
                callersAuthenticated: Bool, logger: Logger) {
        self.manager = manager
        self.redisURL = redisURL
        self.names = names
        self.backend = backend
        self.callersAuthenticated = callersAuthenticated
        self.logger = logger
    }

    public func createOtelCollector(request: Maestro_V1_CreateOtelCollectorRequest, context: ServerContext) async throws -> Maestro_V1_OtelCollector {
        try await call { Self.message(try manager.createAndGet(sinkID: request.sinkID, ownerID: request.ownerID)) }
    }

    public func updateOtelCollector(request: Maestro_V1_UpdateOtelCollectorRequest, context: ServerContext) async throws -> Maestro_V1_OtelCollector {
        try await call { Self.message(try manager.updateAndGet(sinkID: request.sinkID, ownerID: request.ownerID)) }
    }

    public func deleteOtelCollector(request: Maestro_V1_DeleteOtelCollectorRequest, context: ServerContext) async throws -> Maestro_V1_DeleteOtelCollectorResponse {
        try await call {
            let existed = (try? manager.get(sinkID: request.sinkID)) != nil
            try manager.delete(sinkID: request.sinkID)
            return .with { $0.existed = existed }
        }
    }

    public func getOtelCollector(request: Maestro_V1_GetOtelCollectorRequest, context: ServerContext) async throws -> Maestro_V1_OtelCollector {
        try await call { Self.message(try manager.get(sinkID: request.sinkID)) }
    }

    public func listOtelCollectors(request: Maestro_V1_ListOtelCollectorsRequest, context: ServerContext) async throws -> Maestro_V1_ListOtelCollectorsResponse {
        guard request.pageSize >= 0 else { throw RPCError(code: .invalidArgument, message: "page_size must not be negative") }
        let size = request.pageSize == 0 ? 100 : min(Int(request.pageSize), 1_000)
        return try await call {
            let matching = try manager.list().filter { info in
                (request.ownerID.isEmpty || info.ownerID == request.ownerID) && (request.status.isEmpty || info.status == request.status)
                    && (request.pageToken.isEmpty || info.sinkID > request.pageToken)
            }
            let page = matching.prefix(size)
            return .with {
                $0.collectors = page.map(Self.message)
                $0.nextPageToken = matching.count > size ? (page.last?.sinkID ?? "") : ""
            }
        }
    }

    public func renderOtelCollector(request: Maestro_V1_RenderOtelCollectorRequest, context: ServerContext) async throws -> Maestro_V1_RenderOtelCollectorResponse {
        let reveal = request.revealSecrets && callersAuthenticated
        return try await call {
            let rendered = try manager.render(sinkID: request.sinkID, ownerID: request.ownerID)
            let redis: RedisConnection
            do {
                redis = try RedisConnection(url: redisURL)
            } catch {
                throw CollectorServiceError(.unavailable, "Redis is unavailable: \(error)")
            }
            defer { redis.close() }
            let configYAML: String = ((try? redis.hget(names.configHash, field: request.sinkID)) ?? nil) ?? ""
            let stored = ((try? redis.hget(names.deploymentHash, field: request.sinkID)) ?? nil).flatMap { try? YAML.parseAll($0) } ?? []
            let collector = DesiredCollector(sinkID: request.sinkID, name: rendered.name, namespace: rendered.namespace, objects: rendered.objects)
            let live = (try? backend.live(collector)) ?? []
            return .with {
                $0.configYaml = configYAML.isEmpty || reveal ? configYAML : Redaction.config(configYAML)
                $0.objectsYaml = reveal ? rendered.yaml : ((try? YAML.emitAll(Redaction.objects(rendered.objects))) ?? "")
                $0.diffStored = ObjectDiff.lines(desired: ObjectDiff.redacted(rendered.objects), live: ObjectDiff.redacted(stored)).joined(separator: "\n")
                $0.diffLive = ObjectDiff.lines(desired: ObjectDiff.redacted(rendered.objects), live: ObjectDiff.redacted(live)).joined(separator: "\n")
                $0.secretsRevealed = reveal
            }
        }
    }

    /// The response's initial metadata (`maestro-watch: subscribed`) is sent only once the watch's
    /// position in the status stream is pinned: a client that waits for it misses no later change.
    public func watchOtelCollectors(request: ServerRequest<Maestro_V1_WatchOtelCollectorsRequest>,
                                    context: ServerContext) async throws -> StreamingServerResponse<Maestro_V1_OtelCollectorEvent> {
        let (watcher, events) = try await subscribe(to: request.message)
        return StreamingServerResponse(metadata: ["maestro-watch": "subscribed"]) { writer in
            try await follow(watcher, events, into: writer)
            return [:]
        }
    }

    public func watchOtelCollectors(request: Maestro_V1_WatchOtelCollectorsRequest, response: RPCWriter<Maestro_V1_OtelCollectorEvent>,
                                    context: ServerContext) async throws {
        let (watcher, events) = try await subscribe(to: request)
        try await follow(watcher, events, into: response)
    }

    private func subscribe(to request: Maestro_V1_WatchOtelCollectorsRequest) async throws -> (StatusWatcher, AsyncStream<String>) {
        let watcher = StatusWatcher(redisURL: redisURL, names: names, sinkID: request.sinkID.isEmpty ? nil : request.sinkID)
        return (watcher, try await call { try watcher.subscribe() })
    }

    private func follow(_ watcher: StatusWatcher, _ events: AsyncStream<String>, into response: RPCWriter<Maestro_V1_OtelCollectorEvent>) async throws {
        defer { watcher.stop() }
        // gRPC signals a cancelled RPC (client gone, deadline, server shutting down) through this
        // handler, not by cancelling the task: ending the stream ends the loop.
        try await withRPCCancellationHandler {
            for await change in events {
                let info = try? await Offload.run { try manager.get(sinkID: change) }
                guard let info else { continue }
                try await response.write(.with { $0.collector = Self.message(info) })
            }
        } onCancelRPC: {
            watcher.stop()
        }
    }

    // MARK: helpers

    static func message(_ info: CollectorInfo) -> Maestro_V1_OtelCollector {
        .with {
            $0.sinkID = info.sinkID
            $0.ownerID = info.ownerID
            $0.status = info.status
            $0.errorMessage = info.errorMessage
            $0.collectorName = info.collectorName
            $0.namespace = info.namespace
            $0.configHash = info.configHash
            $0.deployedAt = info.deployedAt
            $0.statusChangedAt = info.statusChangedAt
        }
    }

    public func getOtelCollectorHistory(request: Maestro_V1_GetOtelCollectorHistoryRequest,
                                        context: ServerContext) async throws -> Maestro_V1_OtelCollectorHistory {
        try await call {
            let history = try manager.history(sinkID: request.sinkID)
            return .with {
                $0.sinkID = request.sinkID
                $0.versions = history.versions.map(Self.message)
                $0.heldBackVersion = Int64(history.failed?.version ?? 0)
            }
        }
    }

    public func rollbackOtelCollector(request: Maestro_V1_RollbackOtelCollectorRequest,
                                      context: ServerContext) async throws -> Maestro_V1_OtelCollectorVersion {
        guard request.toVersion >= 0 else { throw RPCError(code: .invalidArgument, message: "to_version must not be negative") }
        return try await call {
            Self.message(try manager.rollBack(sinkID: request.sinkID, to: request.toVersion == 0 ? nil : Int(request.toVersion)))
        }
    }

    static func message(_ version: RolloutVersion) -> Maestro_V1_OtelCollectorVersion {
        .with {
            $0.version = Int64(version.version)
            $0.digest = version.digest
            $0.configHash = version.configHash
            $0.storedAt = StatusPublisher.rfc3339(Date(timeIntervalSince1970: version.storedAt))
            $0.outcome = version.outcome.rawValue
            $0.source = version.source.rawValue
            $0.reason = version.reason
            $0.rolledBackTo = Int64(version.rolledBackTo ?? 0)
            $0.kept = version.yaml != nil
        }
    }

    /// Runs blocking work off the cooperative pool and maps domain errors to status codes.
    func call<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            // The call's trace continues on the queue's thread (the span the tracing interceptor started).
            let trace = FlowTracing.currentContext
            return try await Offload.run { try FlowTracing.within(trace, body) }
        } catch let error as CollectorServiceError {
            throw RPCError(code: Self.code(error.kind), message: error.message)
        } catch let error as RPCError {
            throw error
        } catch let error as RedisError {
            throw RPCError(code: .unavailable, message: "Redis is unavailable: \(error.message)")
        } catch {
            logger.error("unexpected error in the API", metadata: ["error": "\(error)"])
            throw RPCError(code: .internalError, message: "internal error")
        }
    }

    static func code(_ kind: CollectorServiceError.Kind) -> RPCError.Code {
        switch kind {
        case .notFound: return .notFound
        case .invalidArgument: return .invalidArgument
        case .failedPrecondition: return .failedPrecondition
        case .unavailable: return .unavailable
        }
    }
}

/// Blocking calls on a dispatch queue of their own, awaited from async code.
enum Offload {
    static let queue = DispatchQueue(label: "maestro.api.blocking", attributes: .concurrent)

    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body() })
            }
        }
    }
}

/// Credentials are shown only to authenticated callers who ask; otherwise `SecretMasker`, the one
/// masker every output uses.
enum Redaction {
    static func config(_ yaml: String) -> String {
        guard let value = try? YAML.parse(yaml) else { return "<redacted: the stored config is not valid YAML>" }
        return (try? YAML.emit(SecretMasker().mask(value))) ?? "<redacted>"
    }

    static func objects(_ objects: [Value]) -> [Value] {
        SecretMasker().maskObjects(objects)
    }
}
