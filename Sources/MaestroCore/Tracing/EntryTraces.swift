internal import Tracing

/// One trace per stream entry of a batch (docs/operations.md "Tracing"): a root span per entry — the
/// child of its producer's span when the entry carries `traceparent` — under which the sinker's steps
/// (decode, plugin, store, hand-off) are spans. Empty, and free, when tracing is off.
struct EntryTraces {
    private var roots: [(any Span)?] = []

    init(_ batch: [DeliveredEntry]) {
        guard FlowTracing.isOn else { return }
        roots = batch.map { delivered in
            let span = startSpan("sinker.entry", context: FlowTracing.context(of: delivered.entry), ofKind: .consumer)
            span.updateAttributes { attributes in
                attributes["messaging.system"] = "redis"
                attributes["messaging.message.id"] = delivered.entry.id
                attributes["maestro.deliveries"] = delivered.deliveries
            }
            return span
        }
    }

    /// `body` in the step's span of entry `index` (its root's child), the step's span current meanwhile.
    func step<T, Failure: Error>(_ name: String, entry index: Int, attributes: (inout SpanAttributes) -> Void = { _ in },
                                 _ body: () throws(Failure) -> T) throws(Failure) -> T {
        guard index < roots.count, let root = roots[index] else { return try body() }
        return try FlowTracing.span(startSpan(name, context: root.context), attributes: attributes) { _ throws(Failure) in try body() }
    }

    /// One step shared by several entries (the batch's one store round trip): a span in each entry's trace.
    func startSteps(_ name: String, entries indices: [Int]) -> StepSpans {
        StepSpans(spans: indices.compactMap { index in
            guard index < roots.count, let root = roots[index] else { return nil }
            return startSpan(name, context: root.context)
        })
    }

    struct StepSpans {
        let spans: [any Span]

        func end() {
            for span in spans { span.end() }
        }

        func end(failing error: any Error) {
            for span in spans {
                span.recordError(error)
                span.setStatus(SpanStatus(code: .error))
                span.end()
            }
        }
    }

    /// `body` with entry `index`'s root current (spans started deeper, such as the plugin's, are its children).
    func within<T, Failure: Error>(entry index: Int, _ body: () throws(Failure) -> T) throws(Failure) -> T {
        guard index < roots.count, let root = roots[index] else { return try body() }
        return try FlowTracing.within(root.context, body)
    }

    func annotate(entry index: Int, _ update: (inout SpanAttributes) -> Void) {
        guard index < roots.count, let root = roots[index] else { return }
        root.updateAttributes(update)
    }

    /// Ends every root with the entry's outcome.
    func end(_ outcomes: [EntryOutcome]) {
        for (index, root) in roots.enumerated() {
            guard let root else { continue }
            if index < outcomes.count {
                // The outcome's kind only: a reason may quote the entry.
                root.updateAttributes { $0["maestro.outcome"] = Self.kind(of: outcomes[index]) }
                if case .deadLetter = outcomes[index] { root.setStatus(SpanStatus(code: .error)) }
            }
            root.end()
        }
    }

    static func kind(of outcome: EntryOutcome) -> String {
        switch outcome {
        case .acknowledged: return "acknowledged"
        case .skippedStale: return "skipped_stale"
        case .retry: return "retry"
        case .deferred: return "deferred"
        case .deadLetter: return "dead_letter"
        }
    }

    /// Ends every root of a batch that failed as a whole (Redis is unreachable: it is retried).
    func end(failing error: any Error) {
        for root in roots {
            root?.recordError(error)
            root?.setStatus(SpanStatus(code: .error))
            root?.end()
        }
    }
}
