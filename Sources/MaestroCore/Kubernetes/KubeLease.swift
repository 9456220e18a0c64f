internal import Foundation
public import Logging
internal import MaestroValue
internal import Synchronization

/// Leader election on Kubernetes: a `coordination.k8s.io/v1` Lease, created or renewed by its holder
/// with optimistic concurrency (resourceVersion), taken over when its holder stopped renewing — as
/// client-go's leader election: a candidate tries every `retryPeriod`; the holder is the leader while
/// its last renew is younger than `renewDeadline` (its `LeaderFence`), shorter than the
/// `leaseDuration` after which another replica may take the lease. Another holder's lease counts as
/// expired when its record did not change for a lease duration on this replica's own clock (never on
/// the other replica's wall clock: skew does not matter).
public final class KubeLease: LeaderLease {
    public let name: String
    public let namespace: String
    public let holder: String
    public let timing: LeaseTiming
    public let fence: LeaderFence
    /// `--create-namespace`: a missing collector namespace is created to hold the Lease (the first
    /// leader's passes would create it, but there is no leader without the Lease).
    public let createNamespace: Bool
    private let client: KubernetesClient
    private let logger: Logger
    /// The last lease record seen (holder and renew time) and when it was first seen so.
    private let observed = Mutex<(record: String, since: ContinuousClock.Instant)?>(nil)
    private let wasLeader = Mutex(false)
    private let renewer = BackgroundThreads()

    /// `fence`: the one the client's writes check; the lease extends it on every renew.
    public init(name: String, namespace: String, holder: String, timing: LeaseTiming = LeaseTiming(), client: KubernetesClient,
                fence: LeaderFence? = nil, createNamespace: Bool = false, logger: Logger) {
        self.createNamespace = createNamespace
        self.name = name
        self.namespace = namespace
        self.holder = holder
        self.timing = timing
        self.client = client
        self.fence = fence ?? client.fence ?? LeaderFence(holder: holder, logger: logger)
        self.logger = logger
    }

    public var isLeader: Bool { fence.isValid }

    /// Kubernetes MicroTime: RFC 3339 with fractional seconds.
    static func microTime(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// One attempt to take or renew the lease.
    @discardableResult
    public func renew() throws(ClusterError) -> Bool {
        // Timed before the request leaves: the validity never counts the time the renew took.
        let started = ContinuousClock.now
        let path = KubeResourcePath.object(apiVersion: "coordination.k8s.io/v1", kind: "Lease", namespace: namespace, name: name)
        let now = Self.microTime(Date())
        let durationSeconds = Int64(timing.leaseDuration.rounded(.up))
        let current = try client.request("GET", path, fenced: false)
        var held = false
        if current.status == 404 {
            let lease: Value = [
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": ["name": .string(name), "namespace": .string(namespace)],
                "spec": ["holderIdentity": .string(holder), "leaseDurationSeconds": .int(durationSeconds),
                         "acquireTime": .string(now), "renewTime": .string(now)],
            ]
            let leases = KubeResourcePath.collection(apiVersion: "coordination.k8s.io/v1", kind: "Lease", namespace: namespace)
            var created = try client.request("POST", leases, body: lease, fenced: false)
            if created.status == 404 && createNamespace {
                _ = try client.request("POST", "/api/v1/namespaces", body: ["apiVersion": "v1", "kind": "Namespace",
                                                                           "metadata": ["name": .string(namespace), "labels": ["app.kubernetes.io/managed-by": "maestro"]]],
                                       fenced: false)
                created = try client.request("POST", leases, body: lease, fenced: false)
            }
            held = created.status == 201 || created.status == 200
        } else if current.status == 200, case .map(var lease) = current.body {
            let spec = current.body["spec"]
            let owner = spec?["holderIdentity"]?.stringValue
            let duration = Double(spec?["leaseDurationSeconds"]?.intValue ?? durationSeconds)
            let record = "\(owner ?? "")|\(spec?["renewTime"]?.stringValue ?? "")"
            let unchangedFor = observed.withLock { seen -> Duration in
                if seen?.record != record { seen = (record, started) }
                return started - seen!.since
            }
            let expired = unchangedFor >= .milliseconds(Int64(duration * 1000))
            guard owner == holder || owner == nil || owner == "" || expired else {
                setLeader(false, renewStarted: started)
                return false
            }
            var newSpec = spec?.mapValue ?? [:]
            if owner != holder {
                newSpec["acquireTime"] = .string(now)
                newSpec["leaseTransitions"] = .int((spec?["leaseTransitions"]?.intValue ?? 0) + 1)
            }
            newSpec["holderIdentity"] = .string(holder)
            newSpec["leaseDurationSeconds"] = .int(durationSeconds)
            newSpec["renewTime"] = .string(now)
            lease["spec"] = .map(newSpec)
            lease["status"] = nil
            let updated = try client.request("PUT", path, body: .map(lease), fenced: false)
            held = updated.status == 200
        } else {
            throw ClusterError(.failed, "cannot read the lease: HTTP \(current.status)")
        }
        setLeader(held, renewStarted: started)
        return held
    }

    static func parseTime(_ text: String) -> Date? {
        (try? Date(text, strategy: .iso8601)) ?? (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }

    private func setLeader(_ held: Bool, renewStarted: ContinuousClock.Instant) {
        if held {
            fence.extend(renewStarted: renewStarted, renewDeadline: timing.renewDeadline)
        } else {
            fence.revoke()
        }
        logChange()
    }

    private func logChange() {
        let leader = isLeader
        let changed = wasLeader.withLock { was -> Bool in
            defer { was = leader }
            return was != leader
        }
        if changed { logger.info(leader ? "became the leader" : "lost the leadership", metadata: ["lease.name": "\(namespace)/\(name)", "lease.holder": "\(holder)"]) }
    }

    public func start() {
        renewer.spawn("maestro-kube-lease") { [self] in
            while !renewer.isStopping {
                do {
                    try renew()
                } catch {
                    // A failed renew does not end the leadership at once: the fence runs out at the
                    // renew deadline unless a retry succeeds before.
                    logger.warning("cannot renew the leader lease", metadata: ["lease.holder": "\(holder)", "error": "\(error)"])
                    logChange()
                }
                renewer.pause(timing.retryPeriod)
            }
            fence.revoke()
            logChange()
        }
    }

    public func stop() {
        renewer.stop(timeout: leaseReleaseTimeout)
    }
}

/// The timing of the leader lease (`--lease-duration`, `--lease-renew-deadline`,
/// `--lease-retry-period`); the defaults are client-go's leader election's.
public struct LeaseTiming: Sendable, Equatable {
    /// How long another replica waits, after the lease last changed, before it takes it over.
    public var leaseDuration: Double
    /// How long the leader writes after its last successful renew (started); shorter than the lease
    /// duration: the difference is the margin that covers clock rates and a slow last request.
    public var renewDeadline: Double
    /// How often the holder renews and a candidate tries to take the lease.
    public var retryPeriod: Double

    public init(leaseDuration: Double = 15, renewDeadline: Double = 10, retryPeriod: Double = 2) {
        self.leaseDuration = leaseDuration
        self.renewDeadline = renewDeadline
        self.retryPeriod = retryPeriod
    }

    /// Why these values cannot work, or nil.
    public var problem: String? {
        if !(renewDeadline < leaseDuration) {
            return "--lease-renew-deadline (\(renewDeadline) s) must be shorter than --lease-duration (\(leaseDuration) s): the difference is the margin in which no other replica can have taken the lease"
        }
        if !(retryPeriod > 0) { return "--lease-retry-period must be longer than 0 s" }
        if !(retryPeriod < renewDeadline) {
            return "--lease-retry-period (\(retryPeriod) s) must be shorter than --lease-renew-deadline (\(renewDeadline) s), or the leader loses its lease between two renews"
        }
        return nil
    }
}

/// How long a lease's stop waits for its release (a Redis DEL, a Lease update) before giving up: the
/// lease then expires by itself. The forced-exit deadline of a shutdown counts it in.
public let leaseReleaseTimeout: Double = 5

/// Who runs the loops that must run once across replicas.
public protocol LeaderLease: Sendable {
    var isLeader: Bool { get }
    func start()
    func stop()
}

extension RedisLease: LeaderLease {}
