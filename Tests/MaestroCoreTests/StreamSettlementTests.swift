import Foundation
import MaestroRedis
import MaestroValue
import MaestroTestSupport
import Testing

@testable import MaestroCore

/// The consumer's settle rules as a pure function: an entry and its outcome in, an action out.
@Suite("stream settlement", .testThreads, .timeLimit(.minutes(2)))
struct StreamSettlementTests {
    let now = Date(timeIntervalSince1970: 1_700_000_000)
    /// max-deliveries 5, min-idle 60 s: retries capped at 5 s, waiting counts deliveries after 120 s.
    let policy = StreamRetryPolicy(maxDeliveries: 5, minIdleMilliseconds: 60_000)

    func delivered(_ id: String = "7-0", deliveries: Int = 1, deferredSince: Date? = nil, deleted: Bool = false) -> DeliveredEntry {
        var delivered = DeliveredEntry(entry: StreamEntry(id: id, fields: deleted ? [] : [StreamEntry.Field("sink_id", "s1")], isDeleted: deleted),
                                       deliveries: deliveries, redelivered: false)
        delivered.deferredSince = deferredSince
        return delivered
    }

    @Test("handled and stale entries are acknowledged")
    func acknowledged() {
        #expect(StreamSettlement.action(for: delivered(), outcome: .acknowledged, policy: policy, now: now)
            == .acknowledge(delivered(), stale: false))
        #expect(StreamSettlement.action(for: delivered(), outcome: .skippedStale, policy: policy, now: now)
            == .acknowledge(delivered(), stale: true))
    }

    @Test("a dead-letter outcome keeps its reason and plugin")
    func deadLetterOutcome() {
        #expect(StreamSettlement.action(for: delivered(deliveries: 2), outcome: .deadLetter(reason: "malformed", plugin: "prometheus"),
                                        policy: policy, now: now)
            == .deadLetter(delivered(deliveries: 2), reason: "malformed", plugin: "prometheus"))
    }

    @Test("a failure is retried after 100 ms doubling per delivery, one delivery counted",
          arguments: [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8)])
    func retryBacksOff(deliveries: Int, seconds: Double) {
        let action = StreamSettlement.action(for: delivered(deliveries: deliveries), outcome: .retry(reason: "boom"), policy: policy, now: now)
        #expect(action == .retry(delivered(deliveries: deliveries + 1), due: now.addingTimeInterval(seconds), reason: "boom"))
    }

    @Test("the retry pause is capped at a quarter of min-idle, and never below 100 ms")
    func retryCap() {
        let quick = StreamRetryPolicy(maxDeliveries: 10, minIdleMilliseconds: 1_000)
        #expect(StreamSettlement.action(for: delivered(deliveries: 4), outcome: .retry(reason: "boom"), policy: quick, now: now)
            == .retry(delivered(deliveries: 5), due: now.addingTimeInterval(0.25), reason: "boom"))
        let quicker = StreamRetryPolicy(maxDeliveries: 10, minIdleMilliseconds: 200)
        #expect(StreamSettlement.action(for: delivered(deliveries: 4), outcome: .retry(reason: "boom"), policy: quicker, now: now)
            == .retry(delivered(deliveries: 5), due: now.addingTimeInterval(0.1), reason: "boom"))
        let slow = StreamRetryPolicy(maxDeliveries: 100, minIdleMilliseconds: 600_000)
        #expect(StreamSettlement.action(for: delivered(deliveries: 20), outcome: .retry(reason: "boom"), policy: slow, now: now)
            == .retry(delivered(deliveries: 21), due: now.addingTimeInterval(5), reason: "boom"))
    }

    @Test("the last failed delivery is dead-lettered with the count and the reason")
    func retryExhausted() {
        #expect(StreamSettlement.action(for: delivered(deliveries: 5), outcome: .retry(reason: "boom"), policy: policy, now: now)
            == .deadLetter(delivered(deliveries: 5), reason: "failed 5 times: boom", plugin: nil))
    }

    @Test("a retry after waiting forgets when the waiting began")
    func retryAfterWaiting() {
        let waited = delivered(deliveries: 2, deferredSince: now.addingTimeInterval(-30))
        #expect(StreamSettlement.action(for: waited, outcome: .retry(reason: "boom"), policy: policy, now: now)
            == .retry(delivered(deliveries: 3), due: now.addingTimeInterval(0.2), reason: "boom"))
    }

    @Test("a deferred entry waits the retry cap without counting a delivery, and remembers when it began")
    func deferredWaits() {
        #expect(StreamSettlement.action(for: delivered(deliveries: 5), outcome: .deferred(reason: "older pending"), policy: policy, now: now)
            == .wait(delivered(deliveries: 5, deferredSince: now), due: now.addingTimeInterval(5)))
        let waiting = delivered(deliveries: 5, deferredSince: now.addingTimeInterval(-119))
        #expect(StreamSettlement.action(for: waiting, outcome: .deferred(reason: "older pending"), policy: policy, now: now)
            == .wait(waiting, due: now.addingTimeInterval(5)))
    }

    @Test("waiting past twice min-idle counts deliveries, and dead-letters after the last")
    func deferredTooLong() {
        let long = delivered(deliveries: 4, deferredSince: now.addingTimeInterval(-121))
        #expect(StreamSettlement.action(for: long, outcome: .deferred(reason: "older pending"), policy: policy, now: now)
            == .wait(delivered(deliveries: 5, deferredSince: now.addingTimeInterval(-121)), due: now.addingTimeInterval(5)))
        let last = delivered(deliveries: 5, deferredSince: now.addingTimeInterval(-121))
        #expect(StreamSettlement.action(for: last, outcome: .deferred(reason: "older pending"), policy: policy, now: now)
            == .deadLetter(last, reason: "older pending", plugin: nil))
    }

    @Test("deleted entries are acknowledged and crash loops dead-lettered without running")
    func withoutProcessing() {
        #expect(StreamSettlement.outcomeWithoutProcessing(delivered(deleted: true), policy: policy) == .acknowledged)
        #expect(StreamSettlement.outcomeWithoutProcessing(delivered(deliveries: 6), policy: policy)
            == .deadLetter(reason: "delivered 6 times without being handled", plugin: nil))
        #expect(StreamSettlement.outcomeWithoutProcessing(delivered(deliveries: 5), policy: policy) == nil)
    }

    @Test("the counters count each kind of action")
    func tally() {
        let actions: [StreamSettlement.Action] = [
            .acknowledge(delivered(), stale: false), .acknowledge(delivered(), stale: false), .acknowledge(delivered(), stale: true),
            .deadLetter(delivered(), reason: "x", plugin: nil), .retry(delivered(), due: now, reason: "x"),
            .wait(delivered(), due: now), .wait(delivered(), due: now),
        ]
        var expected = StreamConsumerCounters()
        expected.acknowledged = 2
        expected.skippedStale = 1
        expected.deadLettered = 1
        expected.retried = 1
        expected.deferred = 2
        #expect(StreamSettlement.tally(actions) == expected)
    }

    @Test("a dead letter holds where the entry came from, why, and its fields; the reader reads it back")
    func deadLetterFormat() throws {
        let entry = StreamEntry(id: "12-3", fields: [StreamEntry.Field("sink_id", "s1"), StreamEntry.Field("operation", "create"),
                                                      StreamEntry.Field("sink_id", "repeated")])
        let fields = DeadLetter.fields(of: DeliveredEntry(entry: entry, deliveries: 3, redelivered: true), stream: "orb.sinks",
                                       reason: "failed 3 times: boom", plugin: "prometheus", failedAt: now)
        #expect(fields.map(\.0) == ["stream", "id", "reason", "plugin", "deliveries", "failed_at", "fields", "schema_version"])
        #expect(fields.last?.1 == "2", "dead letters are records of the current schema version, 2")
        let letter = DeadLetter(StreamEntry(id: "99-0", fields: fields.map { StreamEntry.Field($0.0, $0.1) }))
        #expect(letter.id == "99-0")
        #expect(letter.stream == "orb.sinks")
        #expect(letter.originalID == "12-3")
        #expect(letter.reason == "failed 3 times: boom")
        #expect(letter.plugin == "prometheus")
        #expect(letter.deliveries == "3")
        #expect(letter.failedAt == "2023-11-14T22:13:20Z")
        #expect(try JSON.decode(letter.fieldsJSON) == .map(["sink_id": .string("s1"), "operation": .string("create")]))
        let withoutPlugin = DeadLetter.fields(of: DeliveredEntry(entry: entry, deliveries: 1, redelivered: false), stream: "orb.sinks",
                                              reason: "malformed", plugin: nil, failedAt: now)
        #expect(withoutPlugin.first { $0.0 == "plugin" }?.1 == "")
    }
}
