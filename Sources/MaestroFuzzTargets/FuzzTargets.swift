internal import MaestroCore
internal import MaestroHTTP
internal import MaestroLua
internal import MaestroRedis
internal import MaestroValue
internal import MaestroYAML

/// The fuzz targets: each takes arbitrary bytes, must never crash, and checks a property where the
/// code under test has one. libFuzzer runs them from fuzz/ (`make fuzz`); the test suite replays the
/// committed corpora in fuzz/corpus/<target>/ through the same functions.
public enum FuzzTargets {
    public static let all: [(name: String, run: @Sendable ([UInt8]) -> Void)] = [
        ("sink-event", sinkEvent), ("sink-config", sinkConfig), ("yaml", yaml), ("lua-value", luaValue),
        ("kubeconfig", kubeconfig), ("redis-url", redisURL), ("http-url", httpURL), ("lua-graph", luaGraph),
    ]

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// Orb's event decoder. Input: lines `field=value`, the stream entry's fields.
    public static func sinkEvent(_ bytes: [UInt8]) {
        var fields: [StreamEntry.Field] = []
        for line in text(bytes).split(separator: "\n", omittingEmptySubsequences: false) {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            fields.append(StreamEntry.Field(String(parts[0]), parts.count > 1 ? String(parts[1]) : ""))
        }
        guard let event = try? SinkEvent.decode(StreamEntry(id: "1-1", fields: fields)) else { return }
        precondition(!event.sinkID.isEmpty, "a decoded event has a sink id")
    }

    /// The prometheus plugin's schema (Orb's rules) on an arbitrary JSON config: validation either
    /// refuses with a message or returns a config that validates again to itself.
    public static func sinkConfig(_ bytes: [UInt8]) {
        guard let config = try? JSON.decode(text(bytes)) else { return }
        let exporter: Value = ["type": "map", "required": true, "fields": [
            "remote_host": ["type": "url", "required": true],
            "headers": ["type": "string_map", "forbidden_keys": ["Authorization", "Content-Type"]],
        ]]
        let authentication: Value = ["type": "map", "required": true, "variants": ["by": "type", "cases": [
            "basicauth": ["username": ["type": "nonblank", "required": true], "password": ["type": "nonblank", "required": true, "secret": true]],
            "bearertokenauth": ["scheme": ["type": "word", "required": true], "token": ["type": "word", "required": true, "secret": true]],
        ]]]
        guard let schema = try? ConfigSchema(fields: ["exporter": exporter, "authentication": authentication]) else {
            preconditionFailure("the fuzz schema is valid")
        }
        guard let valid = try? schema.validate(config) else { return }
        precondition((try? schema.validate(valid)) == valid, "validation is idempotent")
    }

    /// The YAML parser, and the emitter's round trip: what parses, emitted, parses back equal.
    public static func yaml(_ bytes: [UInt8]) {
        guard let documents = try? YAML.parseAll(text(bytes)) else { return }
        guard let emitted = try? YAML.emitAll(documents) else { return }
        guard let again = try? YAML.parseAll(emitted) else {
            preconditionFailure("the emitter wrote YAML its parser refuses:\n\(emitted)")
        }
        // Compared as emitted bytes: equal values emit equal bytes, and NaN is not equal to itself.
        precondition((try? YAML.emitAll(again)) == emitted, "emit then parse gives the same value")
    }

    /// Lua ⇄ Swift values: a JSON value handed to Lua and returned comes back equal.
    public static func luaValue(_ bytes: [UInt8]) {
        guard let value = try? JSON.decode(text(bytes)) else { return }
        guard let vm = try? LuaVM(configuration: LuaConfiguration(name: "fuzz", instructionBudget: 1_000_000, memoryLimitBytes: 16 << 20)) else {
            preconditionFailure("a VM starts")
        }
        guard (try? vm.evaluate("return 1")) != nil else { preconditionFailure("the VM evaluates") }
        let results: [Value?]
        do {
            try vm.loadModule(source: "return function(value) return value end", chunkName: "=identity", as: "identity")
            results = try vm.call("identity", nil, [value])
        } catch {
            return  // too deep, or over the memory cap: refused with an error, which is the property
        }
        precondition(results.count == 1 && (results[0] ?? .null) == value, "the value survives the round trip")
    }

    /// Lua tables that share sub-tables or form cycles, converted to values: the conversion gives the
    /// tree a model of the graph expands to, or a conversion error when the model says the tree is
    /// infinite (a cycle) or over the VM's limits — never a crash, never more than the limits allow.
    /// Input: byte 0 the number of tables (1 to 12), bytes 1–2 which of them are maps, then pairs
    /// (parent, child): a child below 0x80 is a table (modulo the count), else the integer child & 0x7F.
    public static func luaGraph(_ bytes: [UInt8]) {
        guard bytes.count >= 3 else { return }
        let graph = LuaGraph(bytes)
        let memory = 4 << 20
        guard let vm = try? LuaVM(configuration: LuaConfiguration(name: "fuzz", instructionBudget: 10_000_000, memoryLimitBytes: memory)) else {
            preconditionFailure("a VM starts")
        }
        let limits = ValueLimits.memoryCap(memory)
        let expected = graph.expected(limits: limits)
        do {
            try vm.loadModule(source: graph.luaSource, chunkName: "=graph", as: "graph")
        } catch {
            preconditionFailure("the graph's source runs: \(error)\n\(graph.luaSource)")
        }
        let result: [Value?]
        do {
            result = try vm.call("graph", "root")
        } catch {
            precondition(expected == nil && error.kind == .conversion, "refused only when the model says so: \(error)")
            let encoded = try? vm.call("graph", "encode")
            precondition(encoded == nil, "the host refuses what the call refused")
            return
        }
        guard let expected else { preconditionFailure("a graph over the limits was converted") }
        precondition(result.count == 1 && result[0] == expected, "the conversion gives the expanded tree")
        // The same value through a host function, and back into Lua.
        guard let encoded = try? vm.call("graph", "encode"), encoded.count == 1, let json = try? JSON.encode(expected) else {
            preconditionFailure("the host takes what a call returns")
        }
        precondition(encoded[0] == .string(json), "the host sees the same value")
        try? vm.loadModule(source: "return function(value) return value end", chunkName: "=identity", as: "identity")
        precondition((try? vm.call("identity", nil, [expected])) == [expected], "the tree survives the round trip")
    }

    /// The kubeconfig loader (exec plugins are only described, never run, when loading).
    public static func kubeconfig(_ bytes: [UInt8]) {
        _ = try? KubeConfigLoader.parse(text(bytes), path: "fuzz.kubeconfig")
    }

    /// `maestro.http`'s URL check: parse, check, and what curl would use must agree. Input: the URL's
    /// raw bytes (NUL and other control bytes included). A URL that passes holds printable ASCII only;
    /// its canonical text, the one curl is given, parses back to itself; curl's own parser reads the
    /// same scheme, host and port; and an address host is the same address, refused or allowed alike,
    /// however curl spells it.
    public static func httpURL(_ bytes: [UInt8]) {
        let input = text(bytes)
        guard let url = try? CheckedURL.parse(input) else { return }
        precondition(bytes.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }, "only printable ASCII passes the check")
        precondition(url.text.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }, "the text curl gets is printable ASCII")
        precondition((try? CheckedURL.parse(url.text)) == url, "the canonical text parses to the same URL")
        guard let curl = CheckedURL.curlView(of: url.text) else { preconditionFailure("curl refuses \(url.text)") }
        precondition(curl.scheme == url.scheme && curl.host == url.hostForURL && curl.port == url.port,
                     "curl reads \(url.text) as \(curl), the check read \(url.scheme) \(url.hostForURL) \(url.port)")
        let curlHost = curl.host.hasPrefix("[") ? String(curl.host.dropFirst().dropLast()) : curl.host
        let checked = IPAddress(parsing: url.host)
        precondition(checked == IPAddress(parsing: curlHost), "an address host is the same address for curl")
        if let checked {
            precondition(checked.text == url.host, "an address host is written canonically")
            precondition((MetadataEndpoints.refusal(forAddress: checked) == nil) == (MetadataEndpoints.refusal(forAddress: IPAddress(parsing: curlHost)!) == nil),
                         "the metadata decision is the same for curl's reading")
        }
    }

    /// The redis:// URL parser: what parses prints as a URL that parses to the same.
    public static func redisURL(_ bytes: [UInt8]) {
        guard let url = try? RedisURL(parsing: text(bytes)) else { return }
        precondition(url.port > 0 && url.port < 65_536 && url.database >= 0, "a parsed URL is usable")
    }
}

/// The model of `FuzzTargets.luaGraph`: tables, their children, and what converting the first one
/// must give — computed here, independently of the conversion.
struct LuaGraph {
    enum Child { case table(Int), integer(Int) }

    var isMap: [Bool]
    var children: [[Child]]

    init(_ bytes: [UInt8]) {
        let count = 1 + Int(bytes[0]) % 12
        let mapBits = Int(bytes[1]) | Int(bytes[2]) << 8
        isMap = (0..<count).map { mapBits & (1 << $0) != 0 }
        children = Array(repeating: [], count: count)
        var index = 3
        while index + 1 < bytes.count {
            let parent = Int(bytes[index]) % count
            let child = bytes[index + 1]
            children[parent].append(child < 0x80 ? .table(Int(child) % count) : .integer(Int(child & 0x7F)))
            index += 2
        }
    }

    func key(_ position: Int) -> String { "k\(position + 1)" }

    /// Lua code returning `root` (the first table, converted by the host) and `encode` (the same table
    /// through maestro.json.encode, an argument of a host function).
    var luaSource: String {
        var lines = ["local t = {}", "for i = 1, \(children.count) do t[i] = {} end"]
        for (parent, items) in children.enumerated() {
            for (position, child) in items.enumerated() {
                let target = isMap[parent] ? "t[\(parent + 1)].\(key(position))" : "t[\(parent + 1)][\(position + 1)]"
                switch child {
                case .table(let table): lines.append("\(target) = t[\(table + 1)]")
                case .integer(let number): lines.append("\(target) = \(number)")
                }
            }
        }
        lines.append("return { root = function() return t[1] end, encode = function() return assert(maestro.json.encode(t[1])) end }")
        return lines.joined(separator: "\n")
    }

    /// The tree the first table expands to, or nil when the expansion is infinite (a cycle) or over the
    /// limits (nodes, and bytes as `ValueBudget` counts them: 64 a node plus the keys' bytes).
    func expected(limits: ValueLimits) -> Value? {
        // A cycle reachable from the root makes the tree infinite.
        var state = Array(repeating: 0, count: children.count)  // 0 new, 1 on the path, 2 done
        func hasCycle(_ table: Int) -> Bool {
            if state[table] == 1 { return true }
            if state[table] == 2 { return false }
            state[table] = 1
            for case .table(let child) in children[table] where hasCycle(child) { return true }
            state[table] = 2
            return false
        }
        if hasCycle(0) { return nil }
        // Nodes and bytes of each table's tree, saturating (a shared graph can double at each level).
        let ceiling = 1 << 40
        var size: [Int: (nodes: Int, bytes: Int)] = [:]
        func measure(_ table: Int) -> (nodes: Int, bytes: Int) {
            if let known = size[table] { return known }
            var nodes = 1
            var bytes = ValueLimits.bytesPerNode
            for (position, child) in children[table].enumerated() {
                if isMap[table] { bytes = min(ceiling, bytes + key(position).utf8.count) }
                switch child {
                case .table(let inner):
                    let sub = measure(inner)
                    nodes = min(ceiling, nodes + sub.nodes)
                    bytes = min(ceiling, bytes + sub.bytes)
                case .integer:
                    nodes = min(ceiling, nodes + 1)
                    bytes = min(ceiling, bytes + ValueLimits.bytesPerNode)
                }
            }
            size[table] = (nodes, bytes)
            return (nodes, bytes)
        }
        let root = measure(0)
        guard root.nodes <= limits.maximumNodes, root.bytes <= limits.maximumBytes else { return nil }
        func expand(_ table: Int) -> Value {
            let values = children[table].map { child -> Value in
                switch child {
                case .table(let inner): return expand(inner)
                case .integer(let number): return .int(Int64(number))
                }
            }
            if !isMap[table] || values.isEmpty { return .list(values) }
            var entries: [String: Value] = [:]
            for (position, value) in values.enumerated() { entries[key(position)] = value }
            return .map(entries)
        }
        return expand(0)
    }
}
