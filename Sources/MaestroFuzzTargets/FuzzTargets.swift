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
        ("kubeconfig", kubeconfig), ("redis-url", redisURL), ("http-url", httpURL),
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
