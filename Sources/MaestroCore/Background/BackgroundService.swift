public import ServiceLifecycle
internal import Foundation

/// A part that runs on threads of its own (see `BackgroundThreads`), as a swift-service-lifecycle
/// `Service`: `run()` starts it, waits for the group's graceful shutdown (or cancellation, when the
/// shutdown deadline passed), then drains it. Draining blocks until in-flight work is done, so it runs
/// on a thread of its own, never on the cooperative pool.
public struct BackgroundService: Service, CustomStringConvertible {
    public let description: String
    private let start: @Sendable () -> Void
    private let drain: @Sendable () -> Void

    /// `start` may be left out for a part that had to start before the group (a server whose bound port
    /// is logged at start-up).
    public init(_ name: String, start: @escaping @Sendable () -> Void = {}, drain: @escaping @Sendable () -> Void) {
        description = name
        self.start = start
        self.drain = drain
    }

    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await withCheckedContinuation { (drained: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread { [drain] in
                drain()
                drained.resume()
            }
        }
    }
}
