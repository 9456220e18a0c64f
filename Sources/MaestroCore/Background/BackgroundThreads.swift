public import Foundation
internal import Synchronization

/// The threads of one long-running part (a lease's renewer, the reload watcher, a reconciler's workers,
/// a stream consumer's reader), with one way to start them, pause in them, ask them to stop and wait
/// for them. Each loop keeps a thread of its own: hiredis and libcurl calls block, and must never run
/// on the cooperative pool. `BackgroundService` runs such a part in the service group.
public final class BackgroundThreads: Sendable {
    private let stopping = Mutex(false)
    /// Pauses wait on it; `wake` and `requestStop` broadcast on it.
    private let condition = NSCondition()
    private let ended = DispatchGroup()

    public init() {}

    /// Runs `body` on a new thread named `name`. Lua and YAML recursion run on these threads: they get
    /// a main-thread-sized stack.
    public func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        ended.enter()
        let thread = Thread { [self] in
            defer { ended.leave() }
            body()
        }
        thread.name = name
        thread.stackSize = 16 << 20
        thread.start()
    }

    /// Whether `requestStop()` was called: each loop checks it between turns.
    public var isStopping: Bool { stopping.withLock { $0 } }

    /// Asks every loop to end after its current turn; a pause ends at once.
    public func requestStop() {
        stopping.withLock { $0 = true }
        broadcast()
    }

    /// Ends the current pauses early (new work arrived).
    public func wake() { broadcast() }

    /// Waits up to `seconds`: less when woken, asked to stop, or when `ready` (checked first) already
    /// holds. Whatever makes `ready` true must be set before the `wake()` that announces it, so that no
    /// wake is missed between the check and the wait. Returns false when the loop is to stop.
    @discardableResult
    public func pause(_ seconds: TimeInterval, unless ready: () -> Bool = { false }) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !isStopping else { return false }
        if ready() { return true }
        _ = condition.wait(until: Date().addingTimeInterval(max(0, seconds)))
        return !isStopping
    }

    /// True once every thread spawned here has ended; false when one still runs at the deadline.
    public func waitUntilEnded(deadline: DispatchTime) -> Bool {
        ended.wait(timeout: deadline) == .success
    }

    /// `requestStop()`, then waits up to `timeout` seconds (nil: as long as it takes) for the threads
    /// to end.
    @discardableResult
    public func stop(timeout: TimeInterval?) -> Bool {
        requestStop()
        return waitUntilEnded(deadline: timeout.map { .now() + $0 } ?? .distantFuture)
    }

    private func broadcast() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }
}
