internal import GRPCCore
internal import MaestroCore
internal import Tracing

/// Continues the caller's trace (a W3C `traceparent` in the call's metadata) in a span per API call, when
/// tracing is on; the call's work (a hand-off's reconcile, its render, API requests and status) belongs to
/// that trace (docs/operations.md "Tracing").
struct TracingServerInterceptor: ServerInterceptor {
    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard FlowTracing.isOn else { return try await next(request, context) }
        var parent = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(request.metadata, into: &parent, using: MetadataExtractor())
        return try await withSpan(context.descriptor.fullyQualifiedMethod, context: parent, ofKind: .server) { span in
            span.attributes["rpc.system"] = "grpc"
            span.attributes["rpc.service"] = context.descriptor.service.fullyQualifiedService
            span.attributes["rpc.method"] = context.descriptor.method
            do {
                return try await next(request, context)
            } catch let error as RPCError {
                span.attributes["rpc.grpc.status_code"] = error.code.rawValue
                throw error
            }
        }
    }
}

struct MetadataExtractor: Extractor {
    func extract(key: String, from metadata: Metadata) -> String? {
        metadata[stringValues: key].first { _ in true }
    }
}

struct MetadataInjector: Injector {
    func inject(_ value: String, forKey key: String, into metadata: inout Metadata) {
        metadata.replaceOrAddString(value, forKey: key)
    }
}

extension Metadata {
    /// With the current trace's context added (`traceparent`), when tracing is on and a span is current.
    func withCurrentTrace() -> Metadata {
        guard let context = FlowTracing.currentContext else { return self }
        var metadata = self
        InstrumentationSystem.instrument.inject(context, into: &metadata, using: MetadataInjector())
        return metadata
    }
}
