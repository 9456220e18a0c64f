import MaestroCore
import MaestroTestSupport
import Testing

@Suite("backoff", .testThreads, .timeLimit(.minutes(2)))
struct BackoffTests {
    @Test("doubles from the first pause up to the cap")
    func doubles() {
        let backoff = Backoff(first: 0.1, maximum: 5)
        #expect((1...8).map { backoff.delay(attempt: $0) } == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5])
        #expect(backoff.delay(attempt: 100_000) == 5)
    }

    @Test("a requested wait is honoured up to the cap")
    func requested() {
        let backoff = Backoff(first: 1, maximum: 60)
        #expect(backoff.delay(attempt: 1, atLeast: 30) == 30)
        #expect(backoff.delay(attempt: 3, atLeast: 2) == 4)
        #expect(backoff.delay(attempt: 1, atLeast: 600) == 60)
    }
}
