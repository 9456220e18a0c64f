import MaestroCore
import MaestroTestSupport
import Testing

@Suite("text log lines", .testThreads, .timeLimit(.minutes(2)))
struct LogLineTests {
    func line(_ message: String, _ metadata: [(key: String, value: String)] = []) -> String {
        LogLine.text(timestamp: "2026-01-01T00:00:00Z", level: "info", label: "maestro", message: message, metadata: metadata)
    }

    @Test("a plugin's message with a line break cannot forge a second log line")
    func forgedLine() {
        let forged = line("hello\n2026-01-01T00:00:01Z error maestro: collector deleted sink.id=victim", [("plugin.name", "evil")])
        #expect(!forged.contains("\n"))
        #expect(forged == #"2026-01-01T00:00:00Z info maestro: "hello\n2026-01-01T00:00:01Z error maestro: collector deleted sink.id=victim" plugin.name=evil"#)
    }

    @Test("control characters anywhere are escaped; keys and values cannot forge fields")
    func fields() {
        #expect(line("a\rb\u{0}c\u{1B}[31m\u{2028}d") == #"2026-01-01T00:00:00Z info maestro: "a\rb\u{0}c\u{1b}[31m\u{2028}d""#)
        #expect(line("plain message with spaces") == "2026-01-01T00:00:00Z info maestro: plain message with spaces")
        #expect(line("m", [("plugin.name", "x sink.id=victim")]) == #"2026-01-01T00:00:00Z info maestro: m plugin.name="x sink.id=victim""#)
        #expect(line("m", [("a b=c\nd", "v\"w\\")]) == #"2026-01-01T00:00:00Z info maestro: m a_b_c_d="v\"w\\""#)
        #expect(line("m", [("empty", "")]) == #"2026-01-01T00:00:00Z info maestro: m empty="""#)
        #expect(line("tab\tseparated") == #"2026-01-01T00:00:00Z info maestro: "tab\tseparated""#)
    }
}
