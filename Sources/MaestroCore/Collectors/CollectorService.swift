/// The maestro role's entry point for collectors: the sink pipeline hands off to it (in process, or
/// through the gRPC API when the roles run apart), and the gRPC API serves it. Calls are synchronous
/// and may block on Redis: they run on worker threads, never on the cooperative pool.
public protocol CollectorService: Sendable {
    /// Deploys the collector of a sink whose config is stored. Idempotent: twice is one collector.
    func create(sinkID: String, ownerID: String) throws(CollectorServiceError)
    /// Re-renders and re-applies after a config change (a rolling update).
    func update(sinkID: String, ownerID: String) throws(CollectorServiceError)
    /// Removes the collector's objects; removing an unknown sink succeeds.
    func remove(sinkID: String) throws(CollectorServiceError)
}

public struct CollectorServiceError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The sink has no stored config.
        case notFound
        /// The request is wrong (an empty or oversized sink id).
        case invalidArgument
        /// Kubernetes rejected the objects.
        case failedPrecondition
        /// Redis or the Kubernetes API cannot be reached: try again.
        case unavailable
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// When the sinker asks for collectors (DESIGN "The flow").
public enum CreatePolicy: String, Sendable, CaseIterable {
    /// Create or update as soon as the config is stored.
    case eager
    /// Only store configs; the maestro role creates on `orb.sink_activity`.
    case onActivity = "on-activity"
    /// Only store configs; another service calls create.
    case external
}
