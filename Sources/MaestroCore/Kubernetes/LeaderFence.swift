internal import Foundation
public import Logging
internal import Synchronization

/// How long a leader may go on writing: until its last successful renew (timed from before the renew
/// was sent) plus the renew deadline, on a clock that keeps counting while the process is stopped
/// (`ContinuousClock`: CLOCK_BOOTTIME on Linux). A replica frozen with SIGSTOP past its lease finds on
/// its first write after SIGCONT that its time is up; the renew deadline being shorter than the lease
/// duration leaves the margin in which no other replica can have taken the lease yet.
public final class LeaderFence: Sendable {
    private let validUntil = Mutex<ContinuousClock.Instant?>(nil)
    private let logger: Logger
    private let holder: String

    public init(holder: String, logger: Logger) {
        self.holder = holder
        self.logger = logger
    }

    /// Whether this replica may write now.
    public var isValid: Bool {
        validUntil.withLock { until in until.map { ContinuousClock.now < $0 } ?? false }
    }

    /// A renew that started at `renewStarted` succeeded: valid until then plus the renew deadline.
    /// Never shortens what a later renew already granted.
    func extend(renewStarted: ContinuousClock.Instant, renewDeadline: Double) {
        let until = renewStarted.advanced(by: .milliseconds(Int64(renewDeadline * 1000)))
        validUntil.withLock { current in
            if current.map({ $0 < until }) ?? true { current = until }
        }
    }

    /// Leadership is lost (another holder, a failed renew past the deadline, a stop).
    func revoke() {
        validUntil.withLock { $0 = nil }
    }

    /// Called before every write to the cluster: refuses it, and steps this replica down, once the
    /// validity has run out.
    public func check(_ method: String, _ path: String) throws(ClusterError) {
        let expired = validUntil.withLock { until -> Bool in
            guard let current = until else { return true }
            guard ContinuousClock.now >= current else { return false }
            until = nil
            logger.warning("the leader lease ran out before a write; this replica steps down and writes nothing more",
                           metadata: ["lease.holder": "\(holder)", "http.request.method": "\(method)", "url.path": "\(path)"])
            return true
        }
        if expired { throw ClusterError(.notLeader, "not the leader: \(method) \(path) refused, the lease is no longer held") }
    }
}
