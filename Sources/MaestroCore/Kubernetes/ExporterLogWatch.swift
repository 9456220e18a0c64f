internal import Foundation
internal import Synchronization

/// Orb's exporter-log rule (reference §6) at a bounded cost to the kubelets. Logs are read only for
/// collectors that are otherwise healthy, at most `readsPerSecond` times a second across the whole
/// fleet, each read the last `tailLines` lines of the last `sinceSeconds` of one pod. Collectors that
/// just became healthy, changed or restarted are read first; the rest take turns, the one read longest
/// ago next. So at N healthy collectors with one pod each, an exporter failure is noticed within
/// about N / readsPerSecond seconds (docs/operations.md), and sooner right after a change.
public final class ExporterLogWatch: Sendable {
    public let readsPerSecond: Double
    public let tailLines: Int
    public let sinceSeconds: Int
    private let client: KubernetesClient
    /// The names of a collector's pods (from the pod cache, or a LIST).
    private let podNames: @Sendable (_ name: String, _ namespace: String) throws(ClusterError) -> [String]
    /// Told when a collector's verdict changed, so its status is published.
    private let verdictChanged = SinkCallback()
    private let state = Mutex(State())
    private let threads = BackgroundThreads()

    struct Watched {
        var name: String
        var namespace: String
        var fingerprint: String
        var lastRead: Date?
        var verdict: (status: SinkStatus, message: String)?
    }

    struct State {
        var watched: [String: Watched] = [:]
        /// Sink ids to read before the round-robin: newly healthy, changed, restarted — in order, each once.
        var urgent = UrgentQueue()
        var reads = 0
    }

    /// A first-in first-out queue of sink ids, each at most once, at constant cost per operation: at a
    /// fleet's first sync thousands of collectors become healthy within seconds.
    struct UrgentQueue {
        private var order: [String] = []
        private var head = 0
        private var members: Set<String> = []

        var isEmpty: Bool { members.isEmpty }

        mutating func append(_ sinkID: String) {
            guard members.insert(sinkID).inserted else { return }
            order.append(sinkID)
        }

        mutating func remove(_ sinkID: String) { members.remove(sinkID) }

        mutating func popFirst() -> String? {
            while head < order.count {
                let sinkID = order[head]
                head += 1
                if head > 1_024 && head * 2 > order.count {
                    order.removeFirst(head)
                    head = 0
                }
                if members.remove(sinkID) != nil { return sinkID }
            }
            order.removeAll(keepingCapacity: true)
            head = 0
            return nil
        }
    }

    public init(client: KubernetesClient, readsPerSecond: Double, tailLines: Int = 200, sinceSeconds: Int = 600,
                podNames: @escaping @Sendable (_ name: String, _ namespace: String) throws(ClusterError) -> [String],
                verdictChanged: @escaping @Sendable (_ sinkID: String) -> Void = { _ in }) {
        self.client = client
        self.readsPerSecond = readsPerSecond
        self.tailLines = tailLines
        self.sinceSeconds = sinceSeconds
        self.podNames = podNames
        self.verdictChanged.set(verdictChanged)
    }

    /// Who hears that a collector's verdict changed (the reconciler's queue).
    public func onVerdictChange(_ notify: @escaping @Sendable (_ sinkID: String) -> Void) {
        verdictChanged.set(notify)
    }

    /// Log reads done so far (one per pod log).
    public var reads: Int { state.withLock { $0.reads } }

    /// A healthy collector whose logs are to be read. It is read before the others when it is new here
    /// or its `fingerprint` (what identifies its rollout and pods: a generation, restart counts, pod
    /// names) changed: it just became healthy, changed or restarted.
    public func watch(sinkID: String, name: String, namespace: String, fingerprint: String) {
        // Reads turned off: nothing would ever be read, so nothing is kept.
        guard readsPerSecond > 0 else { return }
        let urgent = state.withLock { state -> Bool in
            let current = state.watched[sinkID]
            let changed = current == nil || current!.fingerprint != fingerprint || current!.name != name || current!.namespace != namespace
            if changed {
                // The verdict stays until the next read: a restart does not clear an exporter's error.
                state.watched[sinkID] = Watched(name: name, namespace: namespace, fingerprint: fingerprint, lastRead: current?.lastRead,
                                                verdict: current?.verdict)
                state.urgent.append(sinkID)
            }
            return changed
        }
        if urgent { threads.wake() }
    }

    /// A collector that is gone or no longer healthy: no more reads, no verdict.
    public func forget(sinkID: String) {
        state.withLock { state in
            state.watched[sinkID] = nil
            state.urgent.remove(sinkID)
        }
    }

    /// What the last read found: an exporter error or warning, or nil when it found none (or there was none yet).
    public func verdict(sinkID: String) -> (status: SinkStatus, message: String)? {
        state.withLock { $0.watched[sinkID]?.verdict }
    }

    public func start() {
        threads.spawn("maestro-exporter-logs") { [self] in
            let interval = readsPerSecond > 0 ? 1 / readsPerSecond : 1
            var nextRead = Date()
            while !threads.isStopping {
                let wait = nextRead.timeIntervalSinceNow
                if wait > 0 {
                    guard threads.pause(wait) else { return }
                    continue
                }
                guard readsPerSecond > 0, let (sinkID, watched) = nextCollector() else {
                    guard threads.pause(1, unless: { hasUrgent() }) else { return }
                    continue
                }
                let pods = readOnce(sinkID: sinkID, watched: watched)
                // Each pod's log is one read of the budget.
                nextRead = Date().addingTimeInterval(interval * Double(max(1, pods)))
            }
        }
    }

    public func stop() {
        threads.stop(timeout: 10)
    }

    private func hasUrgent() -> Bool { state.withLock { !$0.urgent.isEmpty } }

    func nextCollector() -> (String, Watched)? {
        state.withLock { state in
            while let sinkID = state.urgent.popFirst() {
                if let watched = state.watched[sinkID] { return (sinkID, watched) }
            }
            return state.watched.min { ($0.value.lastRead ?? .distantPast) < ($1.value.lastRead ?? .distantPast) }
                .map { ($0.key, $0.value) }
        }
    }

    /// Records a read without making one (for tests of the order).
    func markRead(_ sinkID: String) {
        state.withLock { $0.watched[sinkID]?.lastRead = Date() }
    }

    /// Reads the logs of the collector's pods; answers how many logs were read.
    private func readOnce(sinkID: String, watched: Watched) -> Int {
        var found: (status: SinkStatus, message: String)?
        var count = 0
        do {
            for pod in try podNames(watched.name, watched.namespace) {
                let response = try client.request("GET", KubeResourcePath.object(apiVersion: "v1", kind: "Pod", namespace: watched.namespace,
                                                                                 name: pod) + "/log",
                                                  query: [("tailLines", String(tailLines)), ("sinceSeconds", String(sinceSeconds))])
                count += 1
                guard response.status == 200, let verdict = ExporterLogScan.scan(response.text) else { continue }
                // An error outweighs a warning from another pod.
                if found == nil || (found!.status == .warning && verdict.status == .error) { found = verdict }
            }
        } catch {
            // The next turn reads again; a failed read changes no verdict.
            state.withLock { state in
                state.reads += count
                state.watched[sinkID]?.lastRead = Date()
            }
            return count
        }
        let changed = state.withLock { state -> Bool in
            state.reads += count
            guard state.watched[sinkID] != nil else { return false }
            let before = state.watched[sinkID]!.verdict
            state.watched[sinkID]!.lastRead = Date()
            state.watched[sinkID]!.verdict = found
            return before?.status != found?.status || before?.message != found?.message
        }
        if changed { verdictChanged(sinkID) }
        return count
    }
}
