public import GRPCCore
internal import Foundation

/// `grpc.health.v1.Health`: SERVING only while maestro is ready (Redis reachable, plugins loaded).
public struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
    let isReady: @Sendable () -> Bool

    public init(isReady: @escaping @Sendable () -> Bool) {
        self.isReady = isReady
    }

    static let knownServices: Set<String> = ["", "maestro.v1.OtelCollectorService", "grpc.health.v1.Health"]

    func status(_ service: String) async -> Grpc_Health_V1_HealthCheckResponse.ServingStatus {
        guard Self.knownServices.contains(service) else { return .serviceUnknown }
        let ready = (try? await Offload.run { isReady() }) ?? false
        return ready ? .serving : .notServing
    }

    public func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws -> Grpc_Health_V1_HealthCheckResponse {
        let status = await status(request.service)
        if status == .serviceUnknown { throw RPCError(code: .notFound, message: "unknown service \(request.service)") }
        return .with { $0.status = status }
    }

    public func watch(request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
                      context: ServerContext) async throws {
        var last: Grpc_Health_V1_HealthCheckResponse.ServingStatus?
        // The RPC's cancellation (client gone, server shutting down) ends the loop.
        while !Task.isCancelled && !context.cancellation.isCancelled {
            let status = await status(request.service)
            if status != last {
                try await response.write(.with { $0.status = status })
                last = status
            }
            try await Task.sleep(for: .seconds(1))
        }
    }
}
