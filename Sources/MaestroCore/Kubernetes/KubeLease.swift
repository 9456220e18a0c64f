internal import Foundation
public import Logging
internal import MaestroValue
internal import Synchronization

/// Leader election on Kubernetes: a `coordination.k8s.io/v1` Lease, created or renewed by its holder
/// with optimistic concurrency (resourceVersion), taken over when its holder stopped renewing.
public final class KubeLease: LeaderLease {
    public let name: String
    public let namespace: String
    public let holder: String
    public let durationSeconds: Int
    private let client: KubernetesClient
    private let logger: Logger
    private let state = Mutex((leader: false, renewedAt: Date.distantPast))
    private let renewer = BackgroundThreads()

    public init(name: String, namespace: String, holder: String, durationSeconds: Int = 15, client: KubernetesClient, logger: Logger) {
        self.name = name
        self.namespace = namespace
        self.holder = holder
        self.durationSeconds = durationSeconds
        self.client = client
        self.logger = logger
    }

    public var isLeader: Bool {
        state.withLock { $0.leader && Date().timeIntervalSince($0.renewedAt) < Double(durationSeconds) }
    }

    /// Kubernetes MicroTime: RFC 3339 with fractional seconds.
    static func microTime(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// One attempt to take or renew the lease.
    @discardableResult
    public func renew() throws(ClusterError) -> Bool {
        let path = KubeResourcePath.object(apiVersion: "coordination.k8s.io/v1", kind: "Lease", namespace: namespace, name: name)
        let now = Self.microTime(Date())
        let current = try client.request("GET", path)
        var held = false
        if current.status == 404 {
            let created = try client.request("POST", KubeResourcePath.collection(apiVersion: "coordination.k8s.io/v1", kind: "Lease", namespace: namespace), body: [
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": ["name": .string(name), "namespace": .string(namespace)],
                "spec": ["holderIdentity": .string(holder), "leaseDurationSeconds": .int(Int64(durationSeconds)),
                         "acquireTime": .string(now), "renewTime": .string(now)],
            ])
            held = created.status == 201 || created.status == 200
        } else if current.status == 200, case .map(var lease) = current.body {
            let spec = current.body["spec"]
            let owner = spec?["holderIdentity"]?.stringValue
            let renewed = spec?["renewTime"]?.stringValue.flatMap(Self.parseTime)
            let duration = Double(spec?["leaseDurationSeconds"]?.intValue ?? Int64(durationSeconds))
            let expired = renewed.map { Date().timeIntervalSince($0) > duration } ?? true
            guard owner == holder || owner == nil || owner == "" || expired else {
                setLeader(false)
                return false
            }
            var newSpec = spec?.mapValue ?? [:]
            if owner != holder {
                newSpec["acquireTime"] = .string(now)
                newSpec["leaseTransitions"] = .int((spec?["leaseTransitions"]?.intValue ?? 0) + 1)
            }
            newSpec["holderIdentity"] = .string(holder)
            newSpec["leaseDurationSeconds"] = .int(Int64(durationSeconds))
            newSpec["renewTime"] = .string(now)
            lease["spec"] = .map(newSpec)
            lease["status"] = nil
            let updated = try client.request("PUT", path, body: .map(lease))
            held = updated.status == 200
        } else {
            throw ClusterError(.failed, "cannot read the lease: HTTP \(current.status)")
        }
        setLeader(held)
        return held
    }

    static func parseTime(_ text: String) -> Date? {
        (try? Date(text, strategy: .iso8601)) ?? (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }

    private func setLeader(_ held: Bool) {
        let changed = state.withLock { current -> Bool in
            defer {
                current.leader = held
                if held { current.renewedAt = Date() }
            }
            return current.leader != held
        }
        if changed { logger.info(held ? "became the leader" : "lost the leadership", metadata: ["lease.name": "\(namespace)/\(name)", "lease.holder": "\(holder)"]) }
    }

    public func start() {
        renewer.spawn("maestro-kube-lease") { [self] in
            while !renewer.isStopping {
                do {
                    try renew()
                } catch {
                    setLeader(false)
                }
                renewer.pause(Double(durationSeconds) / 3)
            }
        }
    }

    public func stop() {
        renewer.stop(timeout: leaseReleaseTimeout)
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
