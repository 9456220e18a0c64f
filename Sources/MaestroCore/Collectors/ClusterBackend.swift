public import MaestroValue

/// One collector as the desired state holds it: the rendered objects of a sink.
public struct DesiredCollector: Sendable, Equatable {
    public var sinkID: String
    public var name: String
    public var namespace: String
    public var objects: [Value]

    public init(sinkID: String, name: String, namespace: String, objects: [Value]) {
        self.sinkID = sinkID
        self.name = name
        self.namespace = namespace
        self.objects = objects
    }
}

/// A collector found in the cluster (or folder), for the orphan sweep.
public struct ManagedCollector: Sendable, Equatable {
    public var sinkID: String
    public var name: String
    public var namespace: String
    /// Seconds since the epoch when the objects were created (or last written), if known.
    public var createdAt: Double?

    public init(sinkID: String, name: String, namespace: String, createdAt: Double?) {
        self.sinkID = sinkID
        self.name = name
        self.namespace = namespace
        self.createdAt = createdAt
    }
}

public struct ClusterError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The objects are invalid (HTTP 422, a missing namespace…): the user's or the template's error.
        case rejected
        /// The cluster cannot be reached or is overloaded: retry with backoff.
        case unavailable
        /// Anything else worth a retry.
        case failed
    }

    public let kind: Kind
    public let message: String
    /// Seconds the server asked us to wait (Retry-After).
    public let retryAfter: Double?

    public init(_ kind: Kind, _ message: String, retryAfter: Double? = nil) {
        self.kind = kind
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { message }
}

/// What an apply did to the cluster.
public enum ApplyOutcome: Sendable, Equatable {
    /// An object was created or changed.
    case changed
    /// Every object was already as desired.
    case unchanged
    /// The backend cannot tell (an object this process has not applied before).
    case unknown
}

/// Where collectors are deployed: the Kubernetes API, or a folder of manifests for GitOps tools.
/// Calls block; they run on the reconciler's threads.
public protocol ClusterBackend: Sendable {
    var name: String { get }
    /// Creates or updates every object of the collector in place (never delete-then-create); says
    /// whether the cluster had to change.
    @discardableResult
    func apply(_ collector: DesiredCollector) throws(ClusterError) -> ApplyOutcome
    /// Deletes every object of the collector; deleting what is not there succeeds.
    func delete(sinkID: String, name: String, namespace: String) throws(ClusterError)
    /// The status the cluster shows for an applied collector, with a message for error states.
    func observe(_ collector: DesiredCollector) throws(ClusterError) -> (status: SinkStatus, message: String)
    /// Every collector with an object (of any kind it may have) labelled `app.kubernetes.io/managed-by: maestro`.
    func managedCollectors() throws(ClusterError) -> [ManagedCollector]
    /// The live objects of a collector, as the cluster has them (empty when absent).
    func live(_ collector: DesiredCollector) throws(ClusterError) -> [Value]
}
