public import Foundation

/// Capped exponential backoff: the pause after the first failed attempt is `first`, it doubles with
/// each further attempt and never exceeds `maximum`. One value for every retry loop (Redis reconnects,
/// handler retries, Kubernetes requests, reconciles), so they all back off the same way.
public struct Backoff: Sendable, Equatable {
    public var first: TimeInterval
    public var maximum: TimeInterval

    public init(first: TimeInterval, maximum: TimeInterval) {
        self.first = first
        self.maximum = maximum
    }

    /// The pause after failed attempt number `attempt` (1 for the first). `atLeast` is a wait the other
    /// side asked for (an HTTP Retry-After): honoured, but still capped at `maximum`.
    public func delay(attempt: Int, atLeast requested: TimeInterval? = nil) -> TimeInterval {
        // pow overflows to infinity for very large attempts; the cap then applies as for any other.
        let exponential = first * pow(2, Double(max(0, attempt - 1)))
        return min(maximum, max(exponential, requested ?? 0))
    }
}
