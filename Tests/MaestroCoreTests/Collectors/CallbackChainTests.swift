import Foundation
import MaestroValue
import Synchronization
import Testing

@testable import MaestroCore

/// Runs `body` on a thread with a small stack and waits for it: a callback whose call grows with every
/// use overflows such a stack within a few thousand calls (and crashes the test run).
private func onSmallStack(_ body: @escaping @Sendable () -> Void) {
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        body()
        done.signal()
    }
    thread.stackSize = 256 << 10
    thread.start()
    done.wait()
}

private final class CountingRenderer: CollectorRenderer {
    let nested: @Sendable (CollectorInputs) throws -> Void

    init(nested: @escaping @Sendable (CollectorInputs) throws -> Void) { self.nested = nested }

    func render(_ inputs: CollectorInputs) throws -> RenderedCollector {
        try nested(inputs)
        return RenderedCollector(name: "otel-\(inputs.sinkID)", namespace: "otel", objects: [], yaml: "")
    }
}

@Suite("Callbacks kept for the process's life cost the same at the millionth call", .timeLimit(.minutes(1)))
struct CallbackChainTests {
    @Test("a sink callback (the caches' change handler, the log watch's verdict handler) called 200,000 times on a 256 KiB stack")
    func sinkCallback() {
        let callback = SinkCallback()
        let calls = Mutex(0)
        callback.set { _ in calls.withLock { $0 += 1 } }
        onSmallStack {
            for _ in 0..<200_000 { callback("s1") }
        }
        #expect(calls.withLock { $0 } == 200_000)
    }

    @Test("the template's renderer factory still called on a 256 KiB stack after 50,000 renders")
    func templateFactory() throws {
        let templates = CollectorTemplates()
        let made = Mutex(0)
        templates.replace {
            made.withLock { $0 += 1 }
            return CountingRenderer { inputs in
                // A render inside a render takes a second renderer: the factory is called again.
                if inputs.sinkID == "outer" { _ = try templates.render(CollectorInputs(sinkID: "inner", ownerID: "", configYAML: "", configHash: "")) }
            }
        }
        let rendered = Mutex<[String]>([])
        onSmallStack {
            for index in 0..<50_000 { _ = try? templates.render(CollectorInputs(sinkID: "s\(index)", ownerID: "", configYAML: "", configHash: "")) }
            if let outer = try? templates.render(CollectorInputs(sinkID: "outer", ownerID: "", configYAML: "", configHash: "")) {
                rendered.withLock { $0.append(outer.name) }
            }
        }
        #expect(rendered.withLock { $0 } == ["otel-outer"])
        #expect(made.withLock { $0 } == 2)
    }
}
