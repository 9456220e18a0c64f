internal import Foundation
internal import MaestroValue

/// Events (events.k8s.io/v1) on a collector's Deployment: `regarding` the Deployment, `reportingController`
/// `maestro.orb.community/maestro`, a `reason` in UpperCamelCase, an `action`, a `note` for people (at
/// most 1 kB), type `Normal` or `Warning`, and the required `eventTime` in microseconds. Named as
/// client-go names them (`<object>.<time in hex>`), so two never collide.
extension KubernetesBackend: CollectorEventRecorder {
    public static let reportingController = "maestro.orb.community/maestro"

    public func record(_ event: CollectorEvent, about collector: DesiredCollector) throws(ClusterError) {
        guard !dryRun else { return }
        let deployment: Value
        switch caches?.lookup(kind: "Deployment", name: collector.name) ?? .unknown {
        case .present(let cached):
            deployment = cached
        case .absent:
            return
        case .unknown:
            let response = try client.request("GET", KubeResourcePath.object(apiVersion: "apps/v1", kind: "Deployment",
                                                                             namespace: collector.namespace, name: collector.name))
            guard response.status == 200 else { return }
            deployment = response.body
        }
        let body = Self.eventObject(event, regarding: deployment, namespace: collector.namespace, now: Date())
        let response = try client.request("POST", KubeResourcePath.collection(apiVersion: "events.k8s.io/v1", kind: "Event",
                                                                              namespace: collector.namespace), body: body)
        guard [200, 201].contains(response.status) else {
            throw ClusterError(.failed, "cannot record event \(event.reason) on \(collector.name): HTTP \(response.status)")
        }
    }

    static func eventObject(_ event: CollectorEvent, regarding deployment: Value, namespace: String, now: Date) -> Value {
        let name = deployment["metadata"]?["name"]?.stringValue ?? ""
        let nanoseconds = UInt64(now.timeIntervalSince1970 * 1_000_000_000)
        var note = event.note
        if note.utf8.count > 1024 {
            // Cut between characters: a character cut in half would decode to U+FFFD, one byte longer.
            var bytes = 0
            note = String(note.prefix { character in
                bytes += character.utf8.count
                return bytes <= 1024 - "…".utf8.count
            }) + "…"
        }
        let host = ProcessInfo.processInfo.hostName
        return ["apiVersion": "events.k8s.io/v1", "kind": "Event",
                "metadata": ["name": .string("\(name).\(String(nanoseconds, radix: 16))"), "namespace": .string(namespace)],
                "eventTime": .string(microTime(now)),
                "reportingController": .string(reportingController),
                "reportingInstance": .string(String("maestro-\(host)".prefix(128))),
                "action": .string(event.action), "reason": .string(event.reason), "note": .string(note), "type": .string(event.severity.rawValue),
                "regarding": ["apiVersion": "apps/v1", "kind": "Deployment", "namespace": .string(namespace), "name": .string(name),
                              "uid": deployment["metadata"]?["uid"] ?? "",
                              "resourceVersion": deployment["metadata"]?["resourceVersion"] ?? ""]]
    }

    /// RFC 3339 with microseconds (a MicroTime).
    static func microTime(_ date: Date) -> String {
        let seconds = floor(date.timeIntervalSince1970)
        let micros = min(999_999, Int((date.timeIntervalSince1970 - seconds) * 1_000_000))
        let whole = Date(timeIntervalSince1970: seconds).formatted(.iso8601)
        return String(whole.dropLast()) + "." + String(repeating: "0", count: 6 - String(micros).count) + String(micros) + "Z"
    }
}
