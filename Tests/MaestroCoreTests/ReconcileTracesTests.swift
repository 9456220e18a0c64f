import InMemoryTracing
@testable import MaestroCore
import Testing
import Tracing

/// How a reconcile pass joins the traces of the hand-offs it serves (ReconcileTraces), with a tracer of
/// the test's own: the process's tracer and switch stay as they are (off) for every other test.
@Suite("reconcile traces: the latest hand-off is the parent, earlier ones are links, bounded", .timeLimit(.minutes(1)))
struct ReconcileTracesTests {
    let tracer = InMemoryTracer()

    func traces(maximumSinks: Int = ReconcileTraces.maximumSinks, on: Bool = true) -> ReconcileTraces {
        let tracer = self.tracer
        return ReconcileTraces(maximumSinks: maximumSinks, isOn: { on }, tracer: { tracer })
    }

    /// A hand-off of `sinkID` within a span of its own (as the sinker's `sinker.hand_off`); returns the span's id.
    @discardableResult
    func handOff(_ sinkID: String, to traces: ReconcileTraces) -> String {
        let span = tracer.startSpan("sinker.hand_off", context: .topLevel)
        ServiceContext.$current.withValue(span.context) { traces.carry(sinkID) }
        span.end()
        return span.spanID
    }

    func reconcileSpans() -> [FinishedInMemorySpan] { tracer.finishedSpans.filter { $0.operationName == "reconcile" } }

    @Test("three hand-offs, one pass: the pass is the child of the latest, the earlier two are its links, nothing is kept after")
    func coalescedHandOffs() throws {
        let traces = traces()
        let first = handOff("s1", to: traces)
        let second = handOff("s1", to: traces)
        let latest = handOff("s1", to: traces)
        #expect(traces.count == 1)
        let ran = try traces.reconcile("s1") { true }
        #expect(ran)
        let pass = try #require(reconcileSpans().first)
        #expect(reconcileSpans().count == 1)
        #expect(pass.parentSpanID == latest)
        #expect(pass.links.compactMap { $0.context.inMemorySpanContext?.spanID } == [first, second])
        #expect(traces.count == 0)
        // The next pass (a resync) has nothing carried: no span.
        _ = try traces.reconcile("s1") { true }
        #expect(reconcileSpans().count == 1)
    }

    @Test("a pass that found the sink busy gives its hand-offs back to the pass that runs instead")
    func busyPassKeepsTheContext() throws {
        let traces = traces()
        let latest = handOff("s1", to: traces)
        #expect(throws: SinkBusy.self) { try traces.reconcile("s1") { throw SinkBusy() } }
        #expect(traces.count == 1)
        _ = try traces.reconcile("s1") { true }
        #expect(reconcileSpans().last?.parentSpanID == latest)
        #expect(traces.count == 0)
    }

    @Test("links are capped, and contexts are kept for at most maximumSinks sinks: a hostile flood of sinks holds no more")
    func bounded() throws {
        let traces = traces(maximumSinks: 3)
        for index in 0..<20 { handOff("flood-\(index)", to: traces) }
        #expect(traces.count == 3)
        var handOffs: [String] = []
        for _ in 0..<(ReconcileTraces.maximumLinks + 5) { handOffs.append(handOff("flood-0", to: traces)) }
        #expect(traces.count == 3)
        _ = try traces.reconcile("flood-0") { true }
        let pass = try #require(reconcileSpans().last)
        #expect(pass.parentSpanID == handOffs.last)
        #expect(pass.links.count == ReconcileTraces.maximumLinks)
        // A sink over the bound: its pass is not traced, and it runs all the same.
        let ran = try traces.reconcile("flood-19") { true }
        #expect(ran)
        #expect(reconcileSpans().count == 1)
    }

    @Test("tracing off: nothing is carried and no span is started")
    func off() throws {
        let traces = traces(on: false)
        handOff("s1", to: traces)
        #expect(traces.count == 0)
        _ = try traces.reconcile("s1") { true }
        #expect(reconcileSpans().isEmpty)
    }

    @Test("a hand-off with no traced operation current carries nothing")
    func untracedHandOff() {
        let traces = traces()
        traces.carry("s1")
        #expect(traces.count == 0)
    }
}
