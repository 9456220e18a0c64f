public import MaestroValue

/// Drift, defined precisely: a field maestro renders differs from the live value. The rendered object,
/// normalised, must be contained in the live one — what the API server defaults (a Deployment's
/// strategy, a Service's clusterIP, a container's terminationMessagePath), what other managers add (an
/// HPA's replicas when the template sets none, an injected sidecar container, a controller's status)
/// and `managedFields` are no drift; a `kubectl edit` of the image is. Lists Kubernetes merges by a key
/// (containers and env by name, ports by port, volume mounts by path…) pair their items by that key, so
/// an item another writer added is not a difference of maestro's; other lists are atomic and must match
/// item for item. Secret values are not compared (maestro does not hold them once applied): a Secret
/// drifts when its resourceVersion is not the one maestro's last write produced.
public enum LiveObjectDrift {
    /// The paths of the rendered fields the live object does not have as rendered; empty when none.
    public static func differences(rendered: Value, live: Value) -> [String] {
        var found: [String] = []
        var rendered = rendered
        if rendered["kind"] == .string("Secret"), case .map(var entries) = rendered {
            entries["data"] = nil
            entries["stringData"] = nil
            rendered = .map(entries)
        }
        compare(rendered, live, path: "", field: "", into: &found)
        return found
    }

    /// The key a list field's items are merged by (the API's `x-kubernetes-list-map-keys` for the
    /// fields collector objects use), or nil for an atomic list.
    static func mergeKey(field: String, item: Value) -> String? {
        switch field {
        case "containers", "initContainers", "ephemeralContainers", "env", "volumes", "imagePullSecrets":
            return "name"
        case "volumeMounts":
            return "mountPath"
        case "volumeDevices":
            return "devicePath"
        case "ports":
            return item["containerPort"] != nil ? "containerPort" : "port"
        case "conditions":
            return "type"
        case "hostAliases":
            return "ip"
        default:
            return nil
        }
    }

    private static func compare(_ rendered: Value, _ live: Value?, path: String, field: String, into found: inout [String]) {
        switch rendered {
        case .null:
            return
        case .map(let entries):
            guard case .map(let liveEntries)? = live else {
                if !entries.isEmpty || !(live == nil || live == .null) { found.append(path.isEmpty ? "." : path) }
                return
            }
            for key in entries.keys.sorted() {
                compare(entries[key]!, liveEntries[key], path: path.isEmpty ? key : "\(path).\(key)", field: key, into: &found)
            }
        case .list(let items):
            guard case .list(let liveItems)? = live else {
                if !items.isEmpty || !(live == nil || live == .null) { found.append(path) }
                return
            }
            if let first = items.first, case .map = first, let key = mergeKey(field: field, item: first) {
                for item in items {
                    let identity = item[key] ?? .null
                    let label = "\(path)[\(key)=\(identity.scalarText)]"
                    guard let match = liveItems.first(where: { sameScalar($0[key] ?? .null, identity) }) else {
                        found.append(label)
                        continue
                    }
                    compare(item, match, path: label, field: "", into: &found)
                }
            } else {
                guard items.count == liveItems.count else {
                    found.append(path)
                    return
                }
                for (index, item) in items.enumerated() {
                    compare(item, liveItems[index], path: "\(path)[\(index)]", field: "", into: &found)
                }
            }
        default:
            if !sameScalar(rendered, live ?? .null) { found.append(path) }
        }
    }

    /// Equal, with a number the same number whether written as an integer or a float.
    static func sameScalar(_ left: Value, _ right: Value) -> Bool {
        switch (left, right) {
        case (.int(let a), .double(let b)), (.double(let b), .int(let a)):
            return Double(a) == b
        default:
            return left == right
        }
    }
}

extension Value {
    /// A scalar as it reads in a path (`name=otel`).
    var scalarText: String {
        switch self {
        case .string(let text): return text
        case .int(let number): return String(number)
        case .double(let number): return String(number)
        case .bool(let flag): return String(flag)
        default: return kindName
        }
    }
}
