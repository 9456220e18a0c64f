public import MaestroCore
internal import Synchronization

/// A CollectorService that records the calls it gets, for the sinker's hand-off tests.
public final class RecordingCollectorService: CollectorService {
    public enum Call: Sendable, Equatable {
        case create(String, owner: String)
        case update(String, owner: String)
        case remove(String)
    }

    private let recorded = Mutex<[Call]>([])
    private let failures = Mutex<Int>(0)

    public init() {}

    public var calls: [Call] { recorded.withLock { $0 } }

    /// The next `count` calls fail as if the maestro role were unreachable.
    public func failNext(_ count: Int) { failures.withLock { $0 = count } }

    private func record(_ call: Call) throws(CollectorServiceError) {
        let fail = failures.withLock { remaining -> Bool in
            guard remaining > 0 else { return false }
            remaining -= 1
            return true
        }
        if fail { throw CollectorServiceError(.unavailable, "collectors unavailable (test)") }
        recorded.withLock { $0.append(call) }
    }

    public func create(sinkID: String, ownerID: String) throws(CollectorServiceError) { try record(.create(sinkID, owner: ownerID)) }
    public func update(sinkID: String, ownerID: String) throws(CollectorServiceError) { try record(.update(sinkID, owner: ownerID)) }
    public func remove(sinkID: String) throws(CollectorServiceError) { try record(.remove(sinkID)) }
}
