import Foundation
import MaestroValue
import Testing

@testable import MaestroCore

/// Attacks on the Kubernetes Events of safe rollouts (issue 20): an API server refuses an Event whose
/// note is over 1 kB (1,024 bytes of UTF-8, `len(note)` in Go), so the Event of a long status message
/// would be lost.
@Suite("Attack: rollout Events (issue 20)", .timeLimit(.minutes(1)))
struct Attack20EventTests {
    static let deployment: Value = ["metadata": ["name": "otel-s1", "uid": "u-1", "resourceVersion": "42"]]

    @Test("attack: a long note whose 1 kB cut falls inside a multi-byte character still fits in 1,024 bytes", arguments: [
        String(repeating: "x", count: 1_019) + String(repeating: "😀", count: 10),
        String(repeating: "x", count: 1_020) + String(repeating: "é€", count: 10),
        String(repeating: "ü", count: 800),
    ])
    func multiByteNote(note: String) throws {
        let event = KubernetesBackend.eventObject(CollectorEvent(reason: "RolledBack", action: "Rollback", note: note, severity: .warning),
                                                  regarding: Self.deployment, namespace: "otel", now: Date(timeIntervalSince1970: 1_700_000_000))
        let sent = try #require(event["note"]?.stringValue)
        #expect(sent.utf8.count <= 1_024, "\(sent.utf8.count) bytes")
        #expect(!sent.contains("\u{FFFD}"), "no character is cut into a replacement character")
    }
}
