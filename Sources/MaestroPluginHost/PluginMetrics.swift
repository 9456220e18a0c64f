internal import MaestroCore
internal import MaestroLua
internal import MaestroValue
internal import Foundation
internal import Synchronization
internal import CoreMetrics

/// A metric a plugin declares in `schema.lua`:
/// `metrics = { checked_total = { type = "counter", help = "…", labels = { "outcome" } } }`.
public struct PluginMetricDeclaration: Sendable, Equatable {
    public enum Kind: String, Sendable { case counter, gauge, histogram }
    public let name: String
    public let kind: Kind
    public let help: String
    public let labels: [String]
    /// Distinct label-value sets kept; past it an update is refused (`nil, err`) and counted.
    public let maxLabelValues: Int
    public let buckets: [Double]

    public static let defaultMaxLabelValues = 100
    /// The most any metric may declare: beyond, a plugin could fill maestro's memory and its scrapes.
    public static let maxLabelValuesLimit = 1_000
    public static let maxMetrics = 50
    public static let maxLabels = 5
    public static let maxLabelValueBytes = 128
    public static let defaultBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// maestro's own metrics about plugins: no plugin's metric may take one of these names (plugin
    /// `errors` with a metric `total` would).
    public static let reservedNames: Set<String> = ["maestro_plugin_duration_seconds", "maestro_plugin_errors_total",
                                                    "maestro_plugin_instructions_total", "maestro_plugin_metric_refused_total",
                                                    "maestro_plugin_peak_memory_bytes"]

    /// Every name those metrics are served under: a histogram's `_bucket`, `_sum` and `_count` series
    /// too (maestro_plugin_duration_seconds is one), so plugin `duration`'s gauge `seconds_count` cannot
    /// forge them.
    public static let reservedSeries: Set<String> = reservedNames.union(reservedNames.flatMap { name in histogramSuffixes.map { name + $0 } })

    static let histogramSuffixes = ["_bucket", "_sum", "_count"]

    /// The names this metric is served under on /metrics: its own, and a histogram's series besides.
    public func servedNames(plugin: String) -> [String] {
        let full = Self.fullName(plugin: plugin, metric: name)
        return kind == .histogram ? [full] + Self.histogramSuffixes.map { full + $0 } : [full]
    }

    /// A plugin's name is part of its metrics' names: ASCII letters, digits, `_` and `-` only (a dot,
    /// a space or a newline would corrupt /metrics, or forge lines on it).
    public static func isPluginName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
    }

    /// `maestro_plugin_<plugin>_<name>`, `-` in the plugin's name as `_`.
    public static func fullName(plugin: String, metric: String) -> String {
        "maestro_plugin_" + plugin.replacingOccurrences(of: "-", with: "_") + "_" + metric
    }

    static func isName(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, text.utf8.count <= 64, ("a"..."z").contains(first) || first == "_" else { return false }
        return text.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" } && !text.hasPrefix("__")
    }

    /// The `metrics` table of a schema, checked; errors name the key (`metrics.checked_total.labels`).
    static func parse(_ value: Value?, plugin: String) throws(ConfigSchemaError) -> [String: PluginMetricDeclaration] {
        guard let value else { return [:] }
        if case .list(let items) = value, items.isEmpty { return [:] }
        guard case .map(let entries) = value else {
            throw ConfigSchemaError(field: "metrics", message: "metrics must be a table of names to declarations: { checked_total = { type = \"counter\", help = \"…\" } }")
        }
        guard entries.count <= maxMetrics else { throw ConfigSchemaError(field: "metrics", message: "metrics declares \(entries.count) metrics; at most \(maxMetrics)") }
        var declarations: [String: PluginMetricDeclaration] = [:]
        // Served name → the metric served under it.
        var served: [String: String] = [:]
        let allowed: Set<String> = ["type", "help", "labels", "max_label_values", "buckets"]
        for name in entries.keys.sorted() {
            let path = "metrics." + name
            func fail(_ key: String, _ problem: String) -> ConfigSchemaError {
                ConfigSchemaError(field: path + (key.isEmpty ? "" : "." + key), message: "\(path)\(key.isEmpty ? "" : "." + key) \(problem)")
            }
            guard isName(name) else { throw fail("", "is not a metric name: lowercase letters, digits and _, starting with a letter") }
            guard case .map(let rule) = entries[name]! else { throw fail("", "must be a table: { type = \"counter\", help = \"…\" }") }
            for key in rule.keys.sorted() where !allowed.contains(key) {
                var message = "is not a metric option"
                if let guess = ConfigSchema.closest(key, in: allowed) { message += " (did you mean \(guess)?)" }
                throw fail(key, message + "; options: " + allowed.sorted().joined(separator: ", "))
            }
            guard let kindName = rule["type"]?.stringValue, let kind = Kind(rawValue: kindName) else { throw fail("type", "must be counter, gauge or histogram") }
            guard let help = rule["help"]?.stringValue, !help.allSatisfy(\.isWhitespace) else { throw fail("help", "must say what the metric counts (a non-blank string)") }
            var labels: [String] = []
            if let given = rule["labels"], given != .list([]) {
                guard case .list(let items) = given else { throw fail("labels", "must be a list of label names") }
                for item in items {
                    guard let label = item.stringValue, isName(label) else { throw fail("labels", "must hold label names: lowercase letters, digits and _") }
                    guard !labels.contains(label) else { throw fail("labels", "names \(label) twice") }
                    labels.append(label)
                }
                guard labels.count <= maxLabels else { throw fail("labels", "has \(labels.count) labels; at most \(maxLabels)") }
                if kind == .histogram && labels.contains("le") { throw fail("labels", "must not use le, a histogram's own label") }
            }
            var bound = defaultMaxLabelValues
            if let given = rule["max_label_values"] {
                guard case .int(let number) = given, number >= 1, number <= Int64(maxLabelValuesLimit) else {
                    throw fail("max_label_values", "must be a whole number from 1 to \(maxLabelValuesLimit)")
                }
                bound = Int(number)
            }
            var buckets = defaultBuckets
            if let given = rule["buckets"] {
                guard kind == .histogram else { throw fail("buckets", "applies to histograms only") }
                guard case .list(let items) = given, !items.isEmpty, items.count <= 30 else { throw fail("buckets", "must be a list of 1 to 30 numbers") }
                buckets = []
                for item in items {
                    switch item {
                    case .int(let whole): buckets.append(Double(whole))
                    case .double(let fraction) where fraction.isFinite: buckets.append(fraction)
                    default: throw fail("buckets", "must hold finite numbers")
                    }
                }
                guard zip(buckets, buckets.dropFirst()).allSatisfy({ $0 < $1 }) else { throw fail("buckets", "must be in increasing order") }
            }
            let declaration = PluginMetricDeclaration(name: name, kind: kind, help: help, labels: labels, maxLabelValues: bound, buckets: buckets)
            // A histogram's series add suffixes: its name and theirs must all be free, of maestro's own
            // series and of the plugin's other metrics (histogram `latency` and gauge `latency_count`).
            for taken in declaration.servedNames(plugin: plugin) {
                if reservedSeries.contains(taken) { throw fail("", "would be served as \(taken), one of maestro's own metrics: choose another name") }
                if let other = served[taken] { throw fail("", "would be served as \(taken), as metric \(other) is: choose another name") }
            }
            for taken in declaration.servedNames(plugin: plugin) { served[taken] = name }
            declarations[name] = declaration
        }
        return declarations
    }
}

/// The values of plugins' metrics: one store per process (workers and reloaded generations share it),
/// served on /metrics after maestro's own (`exposition()`), and one per spec file.
public final class PluginMetricsStore: Sendable {
    public static let shared = PluginMetricsStore()

    struct Series: Sendable {
        var value: Double = 0
        var bucketCounts: [Int] = []
        var sum: Double = 0
        var count: Int = 0
    }

    struct Metric: Sendable {
        var plugin: String
        var declaration: PluginMetricDeclaration
        /// Label values in the declared order → the series.
        var series: [[String]: Series] = [:]
    }

    enum Update {
        case inc(Double)
        case set(Double)
        case observe(Double)
    }

    private let metrics = Mutex<[String: Metric]>([:])

    public init() {}

    /// Makes the plugin's declarations known; a declaration that changed (a reloaded plugin) starts over,
    /// and the plugin's metrics it no longer declares are dropped (neither served nor kept).
    func register(plugin: String, declarations: [String: PluginMetricDeclaration]) {
        metrics.withLock { metrics in
            let declared = Set(declarations.values.map { PluginMetricDeclaration.fullName(plugin: plugin, metric: $0.name) })
            for (name, metric) in metrics where metric.plugin == plugin && !declared.contains(name) { metrics[name] = nil }
            for declaration in declarations.values {
                let name = PluginMetricDeclaration.fullName(plugin: plugin, metric: declaration.name)
                if metrics[name]?.declaration == declaration && metrics[name]?.plugin == plugin { continue }
                var metric = Metric(plugin: plugin, declaration: declaration)
                // A metric without labels exists from the start (a counter reads 0 before its first event).
                if declaration.labels.isEmpty && declaration.kind != .histogram { metric.series[[]] = Series() }
                metrics[name] = metric
            }
        }
    }

    /// Applies an update; a refusal (the label bound) returns its message.
    func apply(plugin: String, declaration: PluginMetricDeclaration, labels: [String], update: Update) -> String? {
        let name = PluginMetricDeclaration.fullName(plugin: plugin, metric: declaration.name)
        return metrics.withLock { metrics -> String? in
            var metric = metrics[name] ?? Metric(plugin: plugin, declaration: declaration)
            if metric.declaration != declaration { metric = Metric(plugin: plugin, declaration: declaration) }
            var series = metric.series[labels] ?? Series(bucketCounts: declaration.kind == .histogram ? Array(repeating: 0, count: declaration.buckets.count) : [])
            if metric.series[labels] == nil && metric.series.count >= declaration.maxLabelValues {
                return "metric \(declaration.name) has \(declaration.maxLabelValues) label-value sets already (its max_label_values): "
                    + "refused " + zip(declaration.labels, labels).map { "\($0)=\($1)" }.joined(separator: ",")
            }
            switch update {
            case .inc(let amount): series.value += amount
            case .set(let value): series.value = value
            case .observe(let value):
                series.sum += value
                series.count += 1
                for (index, bound) in declaration.buckets.enumerated() where value <= bound { series.bucketCounts[index] += 1 }
            }
            metric.series[labels] = series
            metrics[name] = metric
            return nil
        }
    }

    /// Prometheus text exposition of every plugin metric, sorted (HELP, TYPE, then the samples).
    public func exposition() -> String {
        let snapshot = metrics.withLock { $0 }
        var lines: [String] = []
        for name in snapshot.keys.sorted() {
            let metric = snapshot[name]!
            let declaration = metric.declaration
            guard !metric.series.isEmpty else { continue }
            lines.append("# HELP \(name) \(declaration.help.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n"))")
            lines.append("# TYPE \(name) \(declaration.kind.rawValue)")
            for labels in metric.series.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                let series = metric.series[labels]!
                let pairs = zip(declaration.labels, labels).map { "\($0)=\"\(Self.escape($1))\"" }
                func sample(_ suffix: String, _ extra: [String], _ value: String) -> String {
                    let all = pairs + extra
                    return name + suffix + (all.isEmpty ? "" : "{" + all.joined(separator: ",") + "}") + " " + value
                }
                if declaration.kind == .histogram {
                    for (index, bound) in declaration.buckets.enumerated() {
                        lines.append(sample("_bucket", ["le=\"\(Self.format(bound))\""], String(series.bucketCounts[index])))
                    }
                    lines.append(sample("_bucket", ["le=\"+Inf\""], String(series.count)))
                    lines.append(sample("_sum", [], Self.format(series.sum)))
                    lines.append(sample("_count", [], String(series.count)))
                } else {
                    lines.append(sample("", [], Self.format(series.value)))
                }
            }
        }
        return lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
    }

    /// A series' value for specs: a counter's or gauge's number, a histogram's `{count, sum}`; nil when
    /// the series does not exist.
    func value(plugin: String, metric: String, labels: [String]) -> Value? {
        metrics.withLock { metrics -> Value? in
            guard let found = metrics[PluginMetricDeclaration.fullName(plugin: plugin, metric: metric)], let series = found.series[labels] else { return nil }
            if found.declaration.kind == .histogram { return .map(["count": .int(Int64(series.count)), "sum": .double(series.sum)]) }
            return series.value == series.value.rounded() && abs(series.value) < 9e15 ? .int(Int64(series.value)) : .double(series.value)
        }
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ number: Double) -> String {
        if number == number.rounded() && abs(number) < 1e15 { return String(Int64(number)) }
        return String(number)
    }
}

/// `maestro.metrics.inc|set|observe(name, labels?, value?)` for one plugin.
enum PluginMetricsModule {
    /// `scrubbed` takes the sink's secrets out of label values (a plugin that labels by a password puts
    /// none on /metrics).
    static func module(plugin: String, declarations: [String: PluginMetricDeclaration], store: PluginMetricsStore,
                       scrubbed: @escaping @Sendable (String) -> String = { $0 }) -> LuaHostModule {
        store.register(plugin: plugin, declarations: declarations)
        func function(_ operation: String) -> LuaHostFunction {
            LuaHostFunction(operation) { arguments throws(LuaHostError) in
                guard case .string(let name)? = arguments.first ?? nil else { throw LuaHostError.badArgument(1, "the metric's name, a string, expected") }
                guard let declaration = declarations[name] else {
                    let known = declarations.keys.sorted()
                    throw LuaHostError("metric \(name) is not declared in schema.lua (metrics = { \(name) = { type = …, help = … } })"
                                       + (known.isEmpty ? "" : "; declared: " + known.joined(separator: ", ")))
                }
                let allowed: [PluginMetricDeclaration.Kind]
                switch operation {
                case "inc": allowed = [.counter, .gauge]
                case "set": allowed = [.gauge]
                default: allowed = [.histogram]
                }
                guard allowed.contains(declaration.kind) else {
                    let use = declaration.kind == .histogram ? "observe" : declaration.kind == .counter ? "inc" : "set or inc"
                    throw LuaHostError("metric \(name) is a \(declaration.kind.rawValue): use maestro.metrics.\(use)")
                }
                // labels? then the value: `inc("x")`, `inc("x", 2)`, `inc("x", {outcome = "ok"}, 2)`.
                var rest = Array(arguments.dropFirst())
                var given: [String: Value] = [:]
                if let first = rest.first {
                    switch first {
                    case .map(let entries)?: given = entries
                        rest.removeFirst()
                    case .list(let items)? where items.isEmpty: rest.removeFirst()
                    case nil: rest.removeFirst()
                    default: break
                    }
                }
                var labels: [String] = []
                for label in given.keys.sorted() where !declaration.labels.contains(label) {
                    throw LuaHostError("metric \(name) has no label \(label) (declared: " + (declaration.labels.isEmpty ? "none" : declaration.labels.joined(separator: ", ")) + ")")
                }
                for label in declaration.labels {
                    guard let value = given[label] else { throw LuaHostError("metric \(name) needs a value for its label \(label)") }
                    guard case .string(let text) = value else { throw LuaHostError("metric \(name): label \(label) must be a string, got \(value.kindName)") }
                    guard text.utf8.count <= PluginMetricDeclaration.maxLabelValueBytes else {
                        throw LuaHostError("metric \(name): label \(label) is longer than \(PluginMetricDeclaration.maxLabelValueBytes) bytes")
                    }
                    labels.append(scrubbed(text))
                }
                let amount: Double
                switch rest.first ?? nil {
                case nil where operation == "inc": amount = 1
                case .int(let whole)?: amount = Double(whole)
                case .double(let fraction)? where fraction.isFinite: amount = fraction
                default: throw LuaHostError("metric \(name): the value must be a finite number")
                }
                if operation == "inc" && declaration.kind == .counter && amount < 0 { throw LuaHostError("metric \(name) is a counter: it only goes up") }
                let update: PluginMetricsStore.Update = operation == "inc" ? .inc(amount) : operation == "set" ? .set(amount) : .observe(amount)
                if let refusal = store.apply(plugin: plugin, declaration: declaration, labels: labels, update: update) {
                    Counter(label: "maestro_plugin_metric_refused_total", dimensions: [("plugin", plugin), ("metric", name)]).increment()
                    return [nil, .string(refusal)]
                }
                return [.bool(true)]
            }
        }
        return LuaHostModule(name: "metrics", functions: [function("inc"), function("set"), function("observe")])
    }
}
