import MaestroValue
import MaestroTestSupport
import Testing

@Suite("JSON", .testThreads, .timeLimit(.minutes(2)))
struct JSONTests {
    @Test("integers and floats stay distinct; keys come out sorted")
    func types() throws {
        let value = try JSON.decode(#"{"b": 1, "a": 1.0, "c": [true, false, null, "x", -0.5, 1e2, 9223372036854775807]}"#)
        #expect(value == ["a": .double(1), "b": .int(1), "c": [true, false, .null, "x", -0.5, .double(100), .int(.max)]])
        #expect(try JSON.encode(value) == #"{"a":1.0,"b":1,"c":[true,false,null,"x",-0.5,100.0,9223372036854775807]}"#)
    }

    @Test("strings with escapes and unicode round-trip")
    func strings() throws {
        let text = "quote \" backslash \\ newline \n tab \t nul \u{0} emoji 🚀 ü \u{2028}"
        let encoded = try JSON.encode(.string(text))
        #expect(try JSON.decode(encoded) == .string(text))
        #expect(try JSON.decode(#""\ud83d\ude80 \u00fc""#) == .string("🚀 ü"))
    }

    static let malformed = [
        "", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "01", "1.", ".5", "-", "tru", "nul", "\"\\x\"", "\"a\nb\"",
        "\"\\ud800\"", "[1] 2", "{1: 2}", "NaN", "'single'",
    ]

    @Test("malformed JSON is rejected with an offset", arguments: malformed)
    func rejects(_ text: String) throws {
        let error = try #require(throws: JSON.Error.self) { try JSON.decode(text) }
        #expect(error.offset != nil)
    }

    @Test("nesting is bounded")
    func depth() throws {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSON.Error.self) { try JSON.decode(deep) }
    }

    @Test("nodes and bytes are bounded across the whole value")
    func limits() throws {
        let limits = ValueLimits(maximumNodes: 1_000, maximumBytes: 1 << 20)
        // 999 empty lists in one: 1,000 nodes, the limit.
        let fits = "[" + Array(repeating: "[]", count: 999).joined(separator: ",") + "]"
        #expect(try JSON.decode(fits, limits: limits).listValue?.count == 999)
        let over = "[" + Array(repeating: "[]", count: 1_000).joined(separator: ",") + "]"
        let nodes = try #require(throws: JSON.Error.self) { try JSON.decode(over, limits: limits) }
        #expect(nodes.message == "the value has more than 1000 nodes")
        // Bytes: 64 per node and the strings' (keys included); 200 strings of 6,000 bytes are 1.2 MB.
        let strings = "[" + Array(repeating: "\"" + String(repeating: "x", count: 6_000) + "\"", count: 200).joined(separator: ",") + "]"
        let bytes = try #require(throws: JSON.Error.self) { try JSON.decode(strings, limits: limits) }
        #expect(bytes.message == "the value has more than 1048576 bytes")
        #expect(ValueLimits.memoryCap(64 << 20) == ValueLimits(maximumNodes: 1_000_000, maximumBytes: 64 << 20))
        #expect(ValueLimits.memoryCap(16 << 20) == ValueLimits(maximumNodes: 262_144, maximumBytes: 16 << 20))
    }

    @Test("non-finite floats cannot be encoded")
    func nonFinite() {
        #expect(throws: JSON.Error.self) { try JSON.encode(.double(.infinity)) }
    }
}
