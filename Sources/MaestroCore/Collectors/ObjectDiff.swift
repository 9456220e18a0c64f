public import MaestroValue
internal import MaestroYAML

/// Differences between rendered and live objects, for `maestro diff` and Render's dry run. Fields the
/// server sets (uid, resourceVersion, managedFields, status, …) are ignored; Secret data is redacted.
public enum ObjectDiff {
    static let serverFields: Set<String> = ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                                            "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences"]

    /// Drops server-set fields, replaces Secret values with a digest-free marker, and masks every
    /// other credential (`SecretMasker`: header values, credential-looking keys, env pairs).
    public static func redacted(_ objects: [Value]) -> [Value] {
        objects.map { original in
            let object = original["kind"] == .string("Secret") ? original : SecretMasker().mask(original)
            guard case .map(var entries) = object else { return object }
            entries["status"] = nil
            if case .map(var metadata)? = entries["metadata"] {
                for field in serverFields { metadata[field] = nil }
                entries["metadata"] = .map(metadata)
            }
            if entries["kind"] == .string("Secret") {
                // stringData is how maestro writes a Secret, data how the server keeps it: compare keys only.
                var keys: [String: Value] = [:]
                for field in ["data", "stringData"] {
                    if case .map(let data)? = entries[field] {
                        for key in data.keys { keys[key] = .string("<redacted>") }
                    }
                    entries[field] = nil
                }
                if !keys.isEmpty { entries["data"] = .map(keys) }
            }
            return .map(entries)
        }
    }

    /// A line diff of the two as YAML: `-` lines only live, `+` lines only desired. A live object is
    /// compared only in the fields its desired object sets: what the API server defaults (a
    /// Deployment's strategy, a Service's clusterIP) is no difference.
    public static func lines(desired: [Value], live: [Value]) -> [String] {
        let live = live.map { object in
            desired.first { $0["kind"] == object["kind"] && $0["metadata"]?["name"] == object["metadata"]?["name"] }
                .map { restricted(object, to: $0) } ?? object
        }
        let before = ((try? YAML.emitAll(live)) ?? "").split(separator: "\n").map(String.init)
        let after = ((try? YAML.emitAll(desired)) ?? "").split(separator: "\n").map(String.init)
        if live.isEmpty { return after.map { "+" + $0 } }
        return lineDiff(before: before, after: after)
    }

    /// The lines only in `before` (`-`) and only in `after` (`+`), in order: a line diff without context.
    public static func lineDiff(before: [String], after: [String]) -> [String] {
        if before == after { return [] }
        // Longest common subsequence; objects are small (a few hundred lines).
        let rows = before.count, columns = after.count
        var table = [[Int]](repeating: [Int](repeating: 0, count: columns + 1), count: rows + 1)
        for row in stride(from: rows - 1, through: 0, by: -1) {
            for column in stride(from: columns - 1, through: 0, by: -1) {
                table[row][column] = before[row] == after[column] ? table[row + 1][column + 1] + 1
                    : max(table[row + 1][column], table[row][column + 1])
            }
        }
        var result: [String] = []
        var row = 0, column = 0
        while row < rows || column < columns {
            if row < rows && column < columns && before[row] == after[column] {
                row += 1
                column += 1
            } else if column < columns && (row == rows || table[row][column + 1] >= table[row + 1][column]) {
                result.append("+" + after[column])
                column += 1
            } else {
                result.append("-" + before[row])
                row += 1
            }
        }
        return result
    }

    /// The live value with only the map keys the desired value has; list items pair by their merge key
    /// where Kubernetes merges the list by one (containers by name…), else by position, and items the
    /// desired list lacks stay (another writer's container is a real difference).
    static func restricted(_ live: Value, to desired: Value, field: String = "") -> Value {
        switch (live, desired) {
        case (.map(let liveEntries), .map(let desiredEntries)):
            var kept: [String: Value] = [:]
            for (key, value) in liveEntries {
                if let wanted = desiredEntries[key] { kept[key] = restricted(value, to: wanted, field: key) }
            }
            return .map(kept)
        case (.list(let liveItems), .list(let desiredItems)):
            if let first = desiredItems.first, case .map = first, let key = LiveObjectDrift.mergeKey(field: field, item: first) {
                return .list(liveItems.map { item in
                    desiredItems.first { LiveObjectDrift.sameScalar($0[key] ?? .null, item[key] ?? .null) }.map { restricted(item, to: $0) } ?? item
                })
            }
            return .list(liveItems.enumerated().map { index, item in index < desiredItems.count ? restricted(item, to: desiredItems[index]) : item })
        default:
            return live
        }
    }
}
