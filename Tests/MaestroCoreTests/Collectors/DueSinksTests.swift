import Foundation
import MaestroTestSupport
import Testing

@testable import MaestroCore

@Suite("The reconciler's queue of due sinks", .timeLimit(.minutes(1)))
struct DueSinksTests {
    let now = Date(timeIntervalSince1970: 1_000_000)

    @Test("earliest first, first asked first among equal times; each sink once, at its earliest time")
    func order() {
        var due = DueSinks()
        due.schedule("late", at: now.addingTimeInterval(-1))
        due.schedule("a", at: now.addingTimeInterval(-5))
        due.schedule("b", at: now.addingTimeInterval(-5))
        due.schedule("late", at: now.addingTimeInterval(-9))
        due.schedule("a", at: now.addingTimeInterval(-2))
        #expect(due.count == 3)
        var taken: [String] = []
        while let sinkID = due.takeNext(now: now, skipping: []).sinkID { taken.append(sinkID) }
        #expect(taken == ["late", "a", "b"])
        #expect(due.count == 0)
        #expect(due.takeNext(now: now, skipping: []).wait == nil, "nothing waits")
    }

    @Test("a sink not due yet says how long until it is; a busy sink waits and keeps its turn")
    func waitAndBusy() {
        var due = DueSinks()
        due.schedule("later", at: now.addingTimeInterval(3))
        let next = due.takeNext(now: now, skipping: [])
        #expect(next.sinkID == nil && next.wait == 3)
        due.schedule("busy", at: now.addingTimeInterval(-2))
        due.schedule("free", at: now.addingTimeInterval(-1))
        #expect(due.takeNext(now: now, skipping: ["busy"]).sinkID == "free")
        #expect(due.takeNext(now: now, skipping: ["busy"]).sinkID == nil)
        #expect(due.contains("busy"))
        #expect(due.takeNext(now: now, skipping: []).sinkID == "busy")
        #expect(due.takeNext(now: now.addingTimeInterval(5), skipping: []).sinkID == "later")
    }

    @Test("10,000 sinks asked for again and again stay one entry each, taken in time order")
    func manyReschedules() {
        var due = DueSinks()
        for round in 0..<5 {
            for index in 0..<10_000 {
                due.schedule("s\(index)", at: now.addingTimeInterval(Double(index) - Double(round)))
            }
        }
        #expect(due.count == 10_000)
        var previous = -1
        var taken = 0
        while let sinkID = due.takeNext(now: now.addingTimeInterval(20_000), skipping: []).sinkID {
            let index = Int(sinkID.dropFirst())!
            #expect(index > previous)
            previous = index
            taken += 1
        }
        #expect(taken == 10_000)
    }
}
