import MaestroCore
import MaestroValue
import MaestroTestSupport
import Testing

@Suite("where exporters may point", .testThreads, .timeLimit(.minutes(2)))
struct EndpointPolicyTests {
    static let schema = try! ConfigSchema(fields: ["exporter": ["type": "map", "fields": ["remote_host": ["type": "url", "required": true]]]])
    static let zone: [String: [String]] = [
        "metadata-alias.test": ["169.254.169.254"], "alibaba.test": ["100.100.100.200"], "internal.test": ["10.1.2.3"],
        "public.test": ["203.0.113.7"], "mapped.test": ["::ffff:10.0.0.1"],
    ]

    func validate(_ url: String, denied: [String] = EndpointPolicy.defaultDeniedRanges) throws -> Value {
        let policy = try EndpointPolicy(denied: denied, resolver: { Self.zone[$0] ?? [] })
        return try Self.schema.validate(["exporter": ["remote_host": .string(url)]], endpoints: policy)
    }

    @Test("metadata, link-local and denied internal addresses are refused naming the field, by literal and by name")
    func refused() {
        let urls = [
            "http://169.254.169.254/latest/meta-data", "https://[fd00:ec2::254]/", "http://100.100.100.200/", "http://192.0.0.192/",
            "https://metadata.google.internal/computeMetadata", "https://METADATA.google.internal./x", "https://user:pw@169.254.169.254:443/",
            "https://metadata-alias.test/write", "https://alibaba.test/write", "https://internal.test/write", "https://mapped.test/",
            "http://10.0.0.5:9090/api/v1/write", "http://127.0.0.1:4318/", "http://[::1]:4318/", "http://[fd12::1]/", "http://2852039166/",
            "http://[::ffff:169.254.169.254]/",
        ]
        for url in urls {
            #expect {
                try validate(url)
            } throws: { error in
                guard let error = error as? ConfigSchemaError else { return false }
                return error.field == "exporter.remote_host" && error.message.contains("collectors must not call it") && !error.message.contains("pw")
            }
        }
    }

    @Test("public addresses, names that do not resolve here and operator-chosen ranges")
    func allowed() throws {
        for url in ["https://public.test/write", "https://203.0.113.9/write", "https://unknown.example/write", "https://[2001:db8::1]/"] {
            _ = try validate(url)
        }
        // `none`: only metadata and link-local stay denied.
        _ = try validate("http://10.0.0.5:9090/", denied: ["none"])
        #expect(throws: ConfigSchemaError.self) { try validate("http://169.254.169.254/", denied: ["none"]) }
        // An operator's own range.
        #expect(throws: ConfigSchemaError.self) { try validate("https://public.test/write", denied: ["203.0.113.0/24"]) }
        #expect(throws: ConfigSchemaError.self) { try EndpointPolicy(denied: ["10.0.0.0/33"]) }
        // Resolution off: names are not looked up (a name into a denied range passes), literals and metadata names are still refused.
        let literalOnly = try EndpointPolicy(resolvesNames: false, resolver: { name in
            Issue.record("\(name) was looked up with resolution off")
            return Self.zone[name] ?? []
        })
        _ = try Self.schema.validate(["exporter": ["remote_host": "https://internal.test/write"]], endpoints: literalOnly)
        for url in ["http://10.0.0.5:9090/", "https://metadata.google.internal/x", "http://169.254.169.254/"] {
            #expect(throws: ConfigSchemaError.self) { try Self.schema.validate(["exporter": ["remote_host": .string(url)]], endpoints: literalOnly) }
        }
        // Without a policy (operator settings, the fuzz target) nothing is resolved or refused.
        _ = try Self.schema.validate(["exporter": ["remote_host": "http://169.254.169.254/"]])
    }

    @Test("--collector-deny-cidr is checked when settings are resolved")
    func setting() throws {
        let configuration = try Configuration.resolve(ConfigurationInput(flags: ["collector-deny-cidr": ["10.0.0.0/8", "fd00::/8"]], environment: [:]))
        #expect(configuration.values("collector-deny-cidr") == ["10.0.0.0/8", "fd00::/8"])
        #expect(throws: ConfigurationError.self) {
            try Configuration.resolve(ConfigurationInput(flags: ["collector-deny-cidr": ["10.0.0.0/8", "not-a-range"]], environment: [:]))
        }
    }
}
