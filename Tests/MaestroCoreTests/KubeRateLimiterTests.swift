import Foundation
import MaestroCore
import MaestroTestSupport
import Synchronization
import Testing

/// Time that moves only when the limiter sleeps, or when the test says so: no test waits for real.
final class ManualClock: KubeRateLimiterClock {
    private let time = Mutex(1_000.0)
    /// Off: sleeping leaves the time as it is (many threads asking at one instant).
    let sleepingAdvances: Bool
    init(sleepingAdvances: Bool = true) { self.sleepingAdvances = sleepingAdvances }
    /// How often the time was read (a limiter reads it once per token taken).
    let reads = Mutex(0)
    func now() -> Double {
        reads.withLock { $0 += 1 }
        return time.withLock { $0 }
    }
    func sleep(_ seconds: Double) { if sleepingAdvances { advance(seconds) } }
    func advance(_ seconds: Double) { time.withLock { $0 += seconds } }
}

@Suite("the client-side token bucket in front of the Kubernetes API", .testThreads, .timeLimit(.minutes(1)))
struct KubeRateLimiterTests {
    /// When each of `count` requests made back to back was let through.
    func passTimes(_ limiter: KubeRateLimiter, _ clock: ManualClock, count: Int) -> [Double] {
        (0..<count).map { _ in
            limiter.acquire()
            return clock.now()
        }
    }

    @Test("over any span of T seconds at most burst + qps·T requests pass", arguments: [(5.0, 10), (20.0, 40), (0.5, 1), (3.0, 7)])
    func bound(_ qps: Double, _ burst: Int) {
        let clock = ManualClock()
        let limiter = KubeRateLimiter(queriesPerSecond: qps, burst: burst, clock: clock)
        let times = passTimes(limiter, clock, count: 200)
        for first in times.indices {
            for last in times.indices where last >= first {
                let passed = Double(last - first + 1)
                let span = times[last] - times[first]
                #expect(passed <= Double(burst) + qps * span + 1e-6, "\(Int(passed)) requests within \(span) s")
                if passed > Double(burst) + qps * span + 1e-6 { return }
            }
        }
        // Not stricter than it has to be: the burst goes at once, the rest at the rate.
        #expect(times[burst - 1] == times[0])
        #expect(abs(times[199] - times[0] - Double(200 - burst) / qps) < 1e-6)
    }

    @Test("an idle spell refills the bucket up to the burst, never beyond")
    func refill() {
        let clock = ManualClock()
        let limiter = KubeRateLimiter(queriesPerSecond: 2, burst: 4, clock: clock)
        _ = passTimes(limiter, clock, count: 4)
        clock.advance(3_600)
        let start = clock.now()
        let times = passTimes(limiter, clock, count: 8)
        #expect(times.prefix(4).allSatisfy { $0 == start }, "a full bucket after an hour: 4 at once")
        #expect(abs(times[7] - start - 2) < 1e-6, "then 2 a second: the 8th at 2 s, the hour's idle time was not banked")
    }

    @Test("qps 0 turns the limiter off")
    func off() {
        let clock = ManualClock()
        let limiter = KubeRateLimiter(queriesPerSecond: 0, burst: 1, clock: clock)
        let times = passTimes(limiter, clock, count: 1_000)
        #expect(!limiter.isEnabled)
        #expect(times.allSatisfy { $0 == times[0] })
    }

    @Test("callers on several threads at one instant share one bucket, each waiting its own turn")
    func threads() {
        let clock = ManualClock(sleepingAdvances: false)
        let limiter = KubeRateLimiter(queriesPerSecond: 10, burst: 5, clock: clock)
        let waited = Mutex(0.0)
        DispatchQueue.concurrentPerform(iterations: 50) { _ in
            let seconds = limiter.acquire()
            waited.withLock { $0 += seconds }
        }
        // Reservations are spaced 0.1 s apart after the 5 free ones: 0.1 + 0.2 + … + 4.5 s of waiting in all.
        let expected = (1...45).reduce(0.0) { $0 + Double($1) * 0.1 }
        #expect(abs(waited.withLock { $0 } - expected) < 1e-6)
    }
}
