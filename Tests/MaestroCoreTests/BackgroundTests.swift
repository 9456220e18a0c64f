import Foundation
import MaestroTestSupport
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

@testable import MaestroCore

@Suite("background threads and services", .testThreads, .timeLimit(.minutes(2)))
struct BackgroundTests {
    @Test("a stop ends a long pause at once, and the pause says to stop")
    func stopEndsPause() {
        let threads = BackgroundThreads()
        let result = Mutex<Bool?>(nil)
        threads.spawn("test-pause") {
            let keepGoing = threads.pause(600)
            result.withLock { $0 = keepGoing }
        }
        #expect(threads.stop(timeout: 10))
        #expect(result.withLock { $0 } == false)
        #expect(threads.pause(600) == false)
    }

    @Test("a wake announced through the ready check is never missed")
    func wakeIsNotMissed() {
        let threads = BackgroundThreads()
        let work = Mutex(false)
        let woken = Mutex<Bool?>(nil)
        threads.spawn("test-wake") {
            let keepGoing = threads.pause(600, unless: { work.withLock { $0 } })
            woken.withLock { $0 = keepGoing }
        }
        // Whether the thread checks before or after this, it returns long before the 600 s pause.
        work.withLock { $0 = true }
        threads.wake()
        #expect(threads.waitUntilEnded(deadline: .now() + 10))
        #expect(woken.withLock { $0 } == true)
    }

    @Test("waiting for the threads reports one still running at the deadline")
    func waitReportsRunning() {
        let threads = BackgroundThreads()
        threads.spawn("test-running") { threads.pause(600) }
        #expect(!threads.waitUntilEnded(deadline: .now() + 0.05))
        #expect(threads.stop(timeout: 10))
    }

    @Test("a background service starts its part when it runs and drains it on graceful shutdown")
    func serviceStartsAndDrains() async throws {
        let events = Mutex<[String]>([])
        let service = BackgroundService("part", start: { events.withLock { $0.append("start") } },
                                        drain: { events.withLock { $0.append("drain") } })
        try await testGracefulShutdown { trigger in
            let running = Task { try await service.run() }
            // The async `eventually`: the sync one would block a thread of the cooperative pool.
            #expect(await eventually { () async -> Bool in events.withLock { $0 } == ["start"] })
            trigger.triggerGracefulShutdown()
            try await running.value
            #expect(events.withLock { $0 } == ["start", "drain"])
        }
    }
}
