internal import Foundation
internal import Synchronization

/// The time a `KubeRateLimiter` reads and waits on: the system's monotonic clock, or a test's.
public protocol KubeRateLimiterClock: Sendable {
    /// Seconds since some fixed point; never goes back.
    func now() -> Double
    func sleep(_ seconds: Double)
}

/// The process's monotonic clock (not the wall clock: a time change must not release or hold requests).
public struct MonotonicClock: KubeRateLimiterClock {
    public init() {}
    public func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    public func sleep(_ seconds: Double) { Thread.sleep(forTimeInterval: seconds) }
}

/// A client-side token bucket in front of the Kubernetes API (client-go's `--kube-api-qps` and
/// `--kube-api-burst`): `burst` requests may go at once, then `queriesPerSecond` a second. Over any
/// span of T seconds at most `burst + queriesPerSecond * T` requests pass. Callers wait their turn in
/// the order they asked (a token is reserved before the wait, so waiting callers never overtake each
/// other or starve). `queriesPerSecond` 0 turns it off, for clusters that rely on the server's API
/// Priority and Fairness instead.
public final class KubeRateLimiter: Sendable {
    public let queriesPerSecond: Double
    public let burst: Int
    private let clock: any KubeRateLimiterClock
    /// Tokens in the bucket at `updated`; negative when waiting callers hold reservations.
    private let bucket: Mutex<(tokens: Double, updated: Double)>

    public init(queriesPerSecond: Double, burst: Int, clock: any KubeRateLimiterClock = MonotonicClock()) {
        self.queriesPerSecond = max(0, queriesPerSecond)
        self.burst = max(1, burst)
        self.clock = clock
        bucket = Mutex((Double(max(1, burst)), clock.now()))
    }

    public var isEnabled: Bool { queriesPerSecond > 0 }

    /// Takes a token, waiting until the bucket has one. Returns the seconds waited.
    @discardableResult
    public func acquire() -> Double {
        guard isEnabled else { return 0 }
        let wait = bucket.withLock { bucket -> Double in
            let now = clock.now()
            let refilled = bucket.tokens + max(0, now - bucket.updated) * queriesPerSecond
            bucket.tokens = min(Double(burst), refilled) - 1
            bucket.updated = now
            return bucket.tokens >= 0 ? 0 : -bucket.tokens / queriesPerSecond
        }
        if wait > 0 { clock.sleep(wait) }
        return wait
    }
}
