internal import Synchronization

/// A callback that is set after construction (the reconciler's queue is made after the caches that
/// feed it) and called from other threads, with a sink id.
///
/// The closure lives in a class, never directly in a `Mutex`: a closure stored in a generic container is
/// kept at its most general abstraction, and every `withLock` hands it out re-abstracted and writes it
/// back wrapped in two more thunks, even when the body only reads it. Called once per watch event, the
/// chain grew by a few hundred bytes of heap and of stack per call until it overflowed a thread's stack.
public final class SinkCallback: Sendable {
    private final class Box: Sendable {
        let call: @Sendable (_ sinkID: String) -> Void

        init(_ call: @escaping @Sendable (_ sinkID: String) -> Void) { self.call = call }
    }

    private let box = Mutex<Box?>(nil)

    public init() {}

    public func set(_ call: @escaping @Sendable (_ sinkID: String) -> Void) {
        box.withLock { $0 = Box(call) }
    }

    /// Calls the callback, if one is set.
    public func callAsFunction(_ sinkID: String) {
        box.withLock { $0 }?.call(sinkID)
    }
}
