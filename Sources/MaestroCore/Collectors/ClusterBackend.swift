public import MaestroValue
internal import MaestroRedis

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
        /// This replica's leader lease ran out (`LeaderFence`): the write was not sent; the pass stops
        /// and hands the sink to the leader instead of retrying.
        case notLeader
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
    /// The desired state changed since the last apply and was written.
    case changed
    /// Every object was already as desired: nothing was written (or a write changed nothing).
    case unchanged
    /// The desired state had not changed, yet the cluster differed from it (someone edited or deleted
    /// an object): written again. The paths say what differed, where the backend knows.
    case drifted(paths: [String])
    /// The backend cannot tell (an object this process has no record of applying).
    case unknown
}

/// What maestro's last apply of a collector left, kept in the collector's record so that a restart (or
/// another replica) knows it: the digest of the desired state applied, and each object's version after
/// maestro's write (the generation where the object has one — a controller's status write is no change
/// to what maestro applied — else the resourceVersion).
public struct AppliedState: Sendable, Equatable {
    public var desiredDigest: String
    /// `Kind/name` → version.
    public var versions: [String: String]
    /// `Kind/name` → the selector a Deployment made before maestro applied it keeps (Orb's, with its
    /// own labels: a Deployment's selector is immutable).
    public var adoptedSelectors: [String: Value]

    public init(desiredDigest: String, versions: [String: String] = [:], adoptedSelectors: [String: Value] = [:]) {
        self.desiredDigest = desiredDigest
        self.versions = versions
        self.adoptedSelectors = adoptedSelectors
    }

    /// From a collector record's `applied` field.
    public init?(record: Value?) {
        guard let applied = record?["applied"], let digest = applied["digest"]?.stringValue else { return nil }
        desiredDigest = digest
        versions = (applied["versions"]?.mapValue ?? [:]).compactMapValues(\.stringValue)
        adoptedSelectors = applied["adopted_selectors"]?.mapValue ?? [:]
    }

    /// The record's `applied` field.
    public var recordValue: Value {
        var value: [String: Value] = ["digest": .string(desiredDigest), "versions": .map(versions.mapValues(Value.string))]
        if !adoptedSelectors.isEmpty { value["adopted_selectors"] = .map(adoptedSelectors) }
        return .map(value)
    }
}

/// An apply's outcome and what it left.
public struct ApplyResult: Sendable, Equatable {
    public var outcome: ApplyOutcome
    public var applied: AppliedState

    public init(outcome: ApplyOutcome, applied: AppliedState) {
        self.outcome = outcome
        self.applied = applied
    }
}

/// Where collectors are deployed: the Kubernetes API, or a folder of manifests for GitOps tools.
/// Calls block; they run on the reconciler's threads.
public protocol ClusterBackend: Sendable {
    var name: String { get }
    /// Creates or updates every object of the collector in place (never delete-then-create); says
    /// whether the cluster had to change, measured against what the last apply left (`previous`, from
    /// the collector's record; nil when unknown).
    func apply(_ collector: DesiredCollector, previous: AppliedState?) throws(ClusterError) -> ApplyResult
    /// Deletes every object of the collector; deleting what is not there succeeds.
    func delete(sinkID: String, name: String, namespace: String) throws(ClusterError)
    /// The status the cluster shows for an applied collector, with a message for error states.
    func observe(_ collector: DesiredCollector) throws(ClusterError) -> (status: SinkStatus, message: String)
    /// Every collector with an object (of any kind it may have) labelled `app.kubernetes.io/managed-by: maestro`.
    func managedCollectors() throws(ClusterError) -> [ManagedCollector]
    /// The live objects of a collector, as the cluster has them (empty when absent).
    func live(_ collector: DesiredCollector) throws(ClusterError) -> [Value]
    /// Whether the backend hears of cluster changes itself (watches) and names the sinks to reconcile:
    /// then nothing is polled.
    var watchesChanges: Bool { get }
    /// Waits until the backend's view of the cluster is complete (its caches hold their first lists),
    /// so that the first passes compare instead of writing; false when `timeout` passed first.
    func waitUntilReady(timeout: Double) -> Bool
}

extension ClusterBackend {
    /// A backend without watches is polled.
    public var watchesChanges: Bool { false }

    /// A backend without caches is always ready.
    public func waitUntilReady(timeout: Double) -> Bool { true }

    /// An apply with no record of an earlier one.
    @discardableResult
    public func apply(_ collector: DesiredCollector) throws(ClusterError) -> ApplyOutcome {
        try apply(collector, previous: nil).outcome
    }
}

extension DesiredCollector {
    /// The digest `AppliedState` keeps of the desired state the objects were rendered as.
    public var digest: String {
        RedisScript.sha1Hex((try? JSON.encode(.list(objects))) ?? "")
    }
}

/// Something maestro did to a collector, told to the cluster's users where they look (a Kubernetes
/// Event on the collector's Deployment, so that `kubectl describe` shows it).
public struct CollectorEvent: Sendable, Equatable {
    public enum Severity: String, Sendable {
        case normal = "Normal"
        case warning = "Warning"
    }

    /// Machine-readable, UpperCamelCase (`RolledBack`, `CollectorError`).
    public var reason: String
    /// What maestro did or tried (`Rollback`, `Observe`).
    public var action: String
    /// For people, at most 1 kB.
    public var note: String
    public var severity: Severity

    public init(reason: String, action: String, note: String, severity: Severity) {
        self.reason = reason
        self.action = action
        self.note = note
        self.severity = severity
    }
}

/// A backend that can record events about a collector where the cluster's users see them.
public protocol CollectorEventRecorder: Sendable {
    func record(_ event: CollectorEvent, about collector: DesiredCollector) throws(ClusterError)
}
