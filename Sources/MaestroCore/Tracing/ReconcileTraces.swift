internal import Tracing
internal import Synchronization

/// How a reconcile pass joins the traces of what asked for it (docs/operations.md "Tracing"). The hand-off
/// only queues the sink; its pass runs later and may serve several hand-offs at once. The context of the
/// latest hand-off waits with the queued sink, and the pass's span is its child — so the entry (or API
/// call) that last asked sees its reconcile, render, API requests and status in its own trace; the earlier
/// hand-offs the pass coalesced are span links (the newest `maximumLinks`). A pass nothing traced asked for
/// (a resync, a status observation, a retry) is not traced. Bounded: a context waits only until the sink's
/// next pass, for at most `maximumSinks` sinks at once (past that, a hand-off's pass is not traced).
final class ReconcileTraces: Sendable {
    static let maximumSinks = 10_000
    static let maximumLinks = 8

    struct Carried {
        var latest: ServiceContext
        var earlier: [ServiceContext] = []
    }

    private let carried = Mutex<[String: Carried]>([:])
    private let maximumSinks: Int
    /// The process's tracer and switch, unless a test gives its own.
    private let isOn: @Sendable () -> Bool
    private let tracer: @Sendable () -> any Tracer

    init(maximumSinks: Int = ReconcileTraces.maximumSinks, isOn: @escaping @Sendable () -> Bool = { FlowTracing.isOn },
         tracer: @escaping @Sendable () -> any Tracer = { InstrumentationSystem.tracer }) {
        self.maximumSinks = maximumSinks
        self.isOn = isOn
        self.tracer = tracer
    }

    var count: Int { carried.withLock { $0.count } }

    /// Keeps the current context (if a traced operation is current) for the sink's next pass.
    func carry(_ sinkID: String) {
        guard isOn(), let context = ServiceContext.current, !context.isEmpty else { return }
        carried.withLock { carried in
            if var existing = carried[sinkID] {
                existing.earlier.append(existing.latest)
                if existing.earlier.count > Self.maximumLinks { existing.earlier.removeFirst(existing.earlier.count - Self.maximumLinks) }
                existing.latest = context
                carried[sinkID] = existing
            } else if carried.count < maximumSinks {
                carried[sinkID] = Carried(latest: context)
            }
        }
    }

    /// Runs the pass over `sinkID` in a `reconcile` span continuing the carried hand-offs, if any.
    func reconcile<T>(_ sinkID: String, _ body: () throws -> T) throws -> T {
        guard isOn(), let taken = carried.withLock({ $0.removeValue(forKey: sinkID) }) else { return try body() }
        let span = tracer().startSpan("reconcile", context: taken.latest)
        for earlier in taken.earlier { span.addLink(SpanLink(context: earlier, attributes: [:])) }
        do {
            return try FlowTracing.span(span, attributes: { $0["maestro.sink.id"] = sinkID; $0["maestro.reconcile.coalesced"] = taken.earlier.count + 1 }) { _ in
                try body()
            }
        } catch is SinkBusy {
            // Another pass holds the sink: the hand-offs wait for the pass that runs instead.
            carried.withLock { carried in
                if let newer = carried[sinkID] {
                    carried[sinkID] = Carried(latest: newer.latest, earlier: Array((taken.earlier + [taken.latest] + newer.earlier).suffix(Self.maximumLinks)))
                } else {
                    carried[sinkID] = taken
                }
            }
            throw SinkBusy()
        }
    }
}
