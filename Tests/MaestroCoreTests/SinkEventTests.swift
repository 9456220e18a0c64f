import MaestroRedis
import MaestroValue
import MaestroTestSupport
import Testing

@testable import MaestroCore

func entry(_ fields: [(String, String)], id: String = "1-0") -> StreamEntry {
    StreamEntry(id: id, fields: fields.map { StreamEntry.Field($0.0, $0.1) })
}

let goodConfig = #"{"authentication":{"password":"s3cr3t","type":"basicauth","username":"prom-user"},"exporter":{"remote_host":"https://prometheus.example.com/api/v1/write"}}"#

@Suite("Orb sink events", .testThreads, .timeLimit(.minutes(2)))
struct SinkEventTests {
    @Test("Orb's create, exactly as the sinks service writes it")
    func create() throws {
        let event = try SinkEvent.decode(entry([("sink_id", "5f4b"), ("owner", "0c8b"), ("backend", "prometheus"), ("config", goodConfig),
                                                 ("timestamp", "-62135596800"), ("operation", "sinks.create")], id: "7-1"))
        #expect(event.operation == .create)
        #expect(event.sinkID == "5f4b")
        #expect(event.ownerID == "0c8b")
        #expect(event.backend == "prometheus")
        #expect(event.config?["exporter"]?["remote_host"] == .string("https://prometheus.example.com/api/v1/write"))
        #expect(event.orderingID == "7-1")
    }

    static let quirks: [(String, [(String, String)], @Sendable (SinkEvent) -> Bool)] = [
        ("update with an empty backend", [("sink_id", "s"), ("owner", "o"), ("backend", ""), ("config", goodConfig), ("operation", "sinks.update")],
         { $0.backend == nil && $0.operation == .update }),
        ("remove without config, backend or timestamp", [("sink_id", "s"), ("owner", "o"), ("operation", "sinks.remove")],
         { $0.operation == .remove && $0.config == nil }),
        ("legacy owner_id on remove", [("sink_id", "s"), ("owner_id", "legacy-owner"), ("operation", "sinks.remove")],
         { $0.ownerID == "legacy-owner" }),
        ("the zero timestamp is ignored", [("sink_id", "s"), ("backend", "otlphttp"), ("config", "{}"), ("timestamp", "-62135596800"), ("operation", "sinks.create")],
         { $0.backend == "otlphttp" }),
        ("legacy flat config is prometheus + basicauth", [("sink_id", "s"), ("backend", ""), ("config", #"{"remote_host":"https://p/w","username":"u","password":"p","opentelemetry":"enabled"}"#), ("operation", "sinks.update")],
         { $0.backend == "prometheus" && $0.config == ["exporter": ["remote_host": "https://p/w"], "authentication": ["type": "basicauth", "username": "u", "password": "p"]] }),
        ("non-UUID ids", [("sink_id", "my sink #1"), ("backend", "prometheus"), ("config", "{}"), ("operation", "sinks.create")],
         { $0.sinkID == "my sink #1" }),
        ("replay_of orders as the original", [("sink_id", "s"), ("backend", "prometheus"), ("config", "{}"), ("operation", "sinks.create"), ("replay_of", "5-3")],
         { $0.orderingID == "5-3" && $0.entryID == "1-0" }),
    ]

    @Test("Orb's quirks are survived", arguments: quirks.indices)
    func quirk(_ index: Int) throws {
        let (name, fields, check) = Self.quirks[index]
        let event = try SinkEvent.decode(entry(fields))
        #expect(check(event), "\(name)")
    }

    static let malformed: [([(String, String)], String)] = [
        ([("sink_id", "s")], "missing field operation"),
        ([("operation", ""), ("sink_id", "s")], "missing field operation"),
        ([("operation", "sinks.explode"), ("sink_id", "s")], "unknown operation"),
        ([("operation", "sinks.create"), ("backend", "prometheus"), ("config", "{}")], "missing field sink_id"),
        ([("operation", "sinks.remove"), ("sink_id", "")], "missing field sink_id"),
        ([("operation", "sinks.create"), ("sink_id", "s"), ("config", "{}")], "without backend"),
        ([("operation", "sinks.create"), ("sink_id", "s"), ("backend", ""), ("config", "{}")], "without backend"),
        ([("operation", "sinks.create"), ("sink_id", "s"), ("backend", "prometheus")], "without config"),
        ([("operation", "sinks.update"), ("sink_id", "s"), ("backend", "prometheus"), ("config", "{not json")], "not valid JSON"),
        ([("operation", "sinks.update"), ("sink_id", "s"), ("backend", "prometheus"), ("config", "[1,2]")], "not a JSON object"),
        ([("operation", "sinks.update"), ("sink_id", "s"), ("backend", "prometheus"), ("config", "\"text\"")], "not a JSON object"),
        ([("operation", "sinks.remove"), ("sink_id", String(repeating: "x", count: 254))], "longer than 253 bytes"),
        ([("operation", "sinks.remove"), ("sink_id", "a\nb")], "control characters"),
        ([("operation", "sinks.create"), ("sink_id", "s"), ("backend", "p"), ("config", "{\"a\":\"" + String(repeating: "x", count: 1 << 20) + "\"}")], "larger than"),
        ([("operation", "sinks.remove"), ("sink_id", "s"), ("replay_of", "yesterday")], "replay_of"),
    ]

    @Test("malformed entries are rejected with a reason", arguments: malformed.indices)
    func malformedEntry(_ index: Int) throws {
        let (fields, reason) = Self.malformed[index]
        let error = try #require(throws: MalformedEvent.self) { try SinkEvent.decode(entry(fields)) }
        #expect(error.reason.contains(reason), "\(error.reason)")
    }

    @Test("a reason never carries the config's text")
    func reasonWithoutSecrets() throws {
        let error = try #require(throws: MalformedEvent.self) {
            try SinkEvent.decode(entry([("operation", "sinks.create"), ("sink_id", "s"), ("backend", "p"), ("config", "{\"password\": \"hunter2\"")]))
        }
        #expect(!error.reason.contains("hunter2"))
    }

    @Test("too many fields")
    func tooManyFields() throws {
        let fields = (0..<100).map { ("f\($0)", "v") } + [("operation", "sinks.remove"), ("sink_id", "s")]
        #expect(throws: MalformedEvent.self) { try SinkEvent.decode(entry(fields)) }
    }
}

@Suite("Orb secret encryption", .testThreads, .timeLimit(.minutes(2)))
struct OrbSecretCipherTests {
    static let vectors = [
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "test", "bbf4b204e5daea6e7cb4cb8dec2011c91de502db08c1fc37f4e1ba8b8da60cf0"),
        ("testing", "test", "c8dd6f7f76d1b988574559959c68615ae72487b13bef2f7c4afbce204cc11864"),
        ("eb1bc7f4-2031-41c4-85fa-2ddce3abfc3b", "test", "1f1114dd9e7953585a768d280a3d0f8592647e0761d085bfa83b9b57c2110a5c"),
        ("test", "abcdefg", "dca8757dee5dfcc592c97355396dc2bdb95c6a3f58d4acb4453717c960827602acaf49"),
    ]

    @Test("Orb's test vectors decrypt", arguments: vectors)
    func vector(_ vector: (String, String, String)) {
        #expect(OrbSecretCipher(secret: vector.0).decrypt(vector.2) == vector.1)
    }

    @Test("wrong key, not hex, tampered or plain values are not decrypted")
    func rejects() {
        let cipher = OrbSecretCipher(secret: "orb")
        #expect(cipher.decrypt("bbf4b204e5daea6e7cb4cb8dec2011c91de502db08c1fc37f4e1ba8b8da60cf0") == nil)
        #expect(cipher.decrypt("plain-password") == nil)
        #expect(cipher.decrypt(String(repeating: "zz", count: 40)) == nil)
        let sealed = cipher.encrypt("hunter2")
        #expect(cipher.decrypt(sealed) == "hunter2")
        var tampered = Array(sealed)
        tampered[tampered.count - 1] = tampered.last == "0" ? "1" : "0"
        #expect(cipher.decrypt(String(tampered)) == nil)
    }

    @Test("only password and token are decrypted in a config")
    func credentials() {
        let cipher = OrbSecretCipher(secret: "test")
        let config: Value = ["authentication": ["type": "bearertokenauth", "scheme": "Bearer",
                                                "token": "dca8757dee5dfcc592c97355396dc2bdb95c6a3f58d4acb4453717c960827602acaf49"],
                             "exporter": ["endpoint": "dca8757dee5dfcc592c97355396dc2bdb95c6a3f58d4acb4453717c960827602acaf49"]]
        let decrypted = cipher.decryptCredentials(in: config)
        #expect(decrypted["authentication"]?["token"] == .string("abcdefg"))
        #expect(decrypted["exporter"] == config["exporter"])
    }
}
