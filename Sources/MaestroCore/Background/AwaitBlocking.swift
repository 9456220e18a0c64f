internal import Dispatch
internal import Synchronization

/// Runs async work from synchronous code and blocks the calling thread until it is done: command code
/// on the main thread, or a worker thread of a `BackgroundThreads` part (a sinker's hand-off over
/// gRPC). Never call it from the cooperative pool: the blocked thread may be the one the work needs.
public func awaitBlocking<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let result = Mutex<Result<T, any Error>?>(nil)
    Task {
        do {
            let value = try await operation()
            result.withLock { $0 = .success(value) }
        } catch {
            result.withLock { $0 = .failure(error) }
        }
        done.signal()
    }
    done.wait()
    // The task signals only after storing its result.
    return try result.withLock { $0! }.get()
}
