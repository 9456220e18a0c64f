internal import Foundation
public import Testing

/// Runs a suite's tests on threads of their own instead of Swift's cooperative pool.
///
/// The pool has one thread per core — two on CI's machine — and many tests block a thread for seconds
/// (hiredis calls, child processes, `eventually` polling from synchronous tests). Two such tests at once
/// used to hold the whole pool, so every `await` of every other test waited behind them: a gRPC test that
/// takes 0.1 s alone took 100 s in the full run and met its time limit. On these threads a blocking test
/// holds one thread of its own; the pool stays free for the servers the tests start (gRPC, NIO).
public struct TestThreads: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        try await withTaskExecutorPreference(TestThreadsExecutor.shared) {
            try await function()
        }
    }
}

extension Trait where Self == TestThreads {
    /// See `TestThreads`: every suite carries it.
    public static var testThreads: Self { TestThreads() }
}

/// A fixed set of threads taking jobs from one queue, in order. Sized so that the tests that block at
/// the same time rarely fill it, while the machine's two cores are not flooded with runnable work.
final class TestThreadsExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = TestThreadsExecutor(threads: 12)

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var head = 0

    init(threads: Int) {
        for index in 0..<threads {
            let thread = Thread { [unowned self] in runJobs() }
            thread.name = "test-thread-\(index)"
            // Lua and YAML recursion run on test threads too; give them a main-thread-sized stack.
            thread.stackSize = 16 << 20
            thread.start()
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func runJobs() {
        while true {
            condition.lock()
            while head == jobs.count { condition.wait() }
            let job = jobs[head]
            head += 1
            if head > 1_024, head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
