public import Tracing
internal import MaestroRedis
internal import Synchronization

/// Tracing of the flow (docs/operations.md "Tracing"). Core and the libraries speak only the tracing API
/// (swift-distributed-tracing); the executable installs the exporter and then switches this on. Off — the
/// default — no span is started and no context is kept anywhere: the flow pays one atomic load per batch,
/// per reconcile pass and per API request.
public enum FlowTracing {
    private static let switchedOn = Atomic<Bool>(false)

    /// Called once by the executable after `InstrumentationSystem.bootstrap` installed a real tracer.
    public static func switchOn() { switchedOn.store(true, ordering: .releasing) }

    public static var isOn: Bool { switchedOn.load(ordering: .acquiring) }

    /// The W3C trace-context fields a stream entry may carry to continue its producer's trace.
    public static let traceParentField = "traceparent"

    /// `body` in a span (`name`) that is the child of the current context's, when tracing is on and a
    /// traced operation is current (a stream entry, a carried reconcile, an API call); else `body` alone —
    /// work nothing traced asked for (a resync, a watch) starts no trace of its own. The span is current
    /// while `body` runs (deeper spans and log lines belong to it), and records the error `body` throws.
    public static func span<T, Failure: Error>(_ name: String, kind: SpanKind = .internal,
                                               attributes: (inout SpanAttributes) -> Void = { _ in },
                                               _ body: (_ span: (any Span)?) throws(Failure) -> T) throws(Failure) -> T {
        guard let parent = currentContext else { return try body(nil) }
        return try span(startSpan(name, context: parent, ofKind: kind), attributes: attributes, body)
    }

    /// Runs `body` with `span` current and ends it afterwards.
    static func span<T, Failure: Error>(_ span: any Span, attributes: (inout SpanAttributes) -> Void = { _ in },
                                        _ body: (_ span: (any Span)?) throws(Failure) -> T) throws(Failure) -> T {
        defer { span.end() }
        span.updateAttributes(attributes)
        let result: Result<T, Failure> = ServiceContext.$current.withValue(span.context) {
            do throws(Failure) {
                return .success(try body(span))
            } catch {
                span.recordError(error)
                span.setStatus(SpanStatus(code: .error))
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Runs `body` with `context` current (a context carried across a thread or a queue).
    public static func within<T, Failure: Error>(_ context: ServiceContext?, _ body: () throws(Failure) -> T) throws(Failure) -> T {
        guard let context else { return try body() }
        let result: Result<T, Failure> = ServiceContext.$current.withValue(context) {
            do throws(Failure) { return .success(try body()) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// The current context worth carrying to another thread or process: nil when tracing is off or no span
    /// is current, so nothing is kept then.
    public static var currentContext: ServiceContext? {
        guard isOn, let context = ServiceContext.current, !context.isEmpty else { return nil }
        return context
    }

    /// The context a stream entry's `traceparent` (and `tracestate`) field continues; top level without one
    /// (or with a malformed one: the propagator ignores it and the entry starts a trace of its own).
    static func context(of entry: StreamEntry) -> ServiceContext {
        var context = ServiceContext.topLevel
        InstrumentationSystem.instrument.extract(entry, into: &context, using: StreamEntryExtractor())
        return context
    }
}

struct StreamEntryExtractor: Extractor {
    func extract(key: String, from entry: StreamEntry) -> String? {
        entry.fields.first { $0.name == key }?.value
    }
}

extension Span {
    /// Attributes are only built when the span records: a dropped (unsampled) span costs no dictionary.
    func updateAttributes(_ update: (inout SpanAttributes) -> Void) {
        guard isRecording else { return }
        var attributes = SpanAttributes()
        update(&attributes)
        guard !attributes.isEmpty else { return }
        self.attributes.merge(attributes)
    }
}
