internal import Foundation

/// The sinks due for a reconcile pass, earliest first (first asked, first served among equal times): each
/// sink at most once, at the earliest time it was asked for. Taking the next costs O(log n) — at a
/// fleet's first sync or a resync every collector is due at once, and a scan per pass would cost
/// O(n²) over the queue.
struct DueSinks {
    private var times: [String: Date] = [:]
    /// A binary min-heap by (time, sequence). An entry whose time is no longer the sink's (asked for
    /// again, sooner; or taken) is stale and skipped.
    private var heap: [Entry] = []
    private var sequence: UInt64 = 0

    private struct Entry {
        let when: Date
        let sequence: UInt64
        let sinkID: String

        func precedes(_ other: Entry) -> Bool { when != other.when ? when < other.when : sequence < other.sequence }
    }

    var count: Int { times.count }

    func contains(_ sinkID: String) -> Bool { times[sinkID] != nil }

    /// Asks for a pass over the sink at `when`; a sink already due no later keeps its turn.
    mutating func schedule(_ sinkID: String, at when: Date) {
        if let existing = times[sinkID], existing <= when { return }
        times[sinkID] = when
        sequence += 1
        push(Entry(when: when, sequence: sequence, sinkID: sinkID))
        if heap.count > 2 * times.count + 1_024 { rebuild() }
    }

    /// The earliest sink due by `now` that is not `busy` (its pass is running: it waits until it ends),
    /// removed from the queue; or nil and how long until the next one is due (nil: none is waiting).
    mutating func takeNext(now: Date, skipping busy: Set<String>) -> (sinkID: String?, wait: Double?) {
        var setAside: [Entry] = []
        defer { for entry in setAside { push(entry) } }
        while let top = heap.first {
            guard times[top.sinkID] == top.when else {
                _ = pop()
                continue
            }
            if top.when > now { return (nil, top.when.timeIntervalSince(now)) }
            let entry = pop()
            if busy.contains(entry.sinkID) {
                setAside.append(entry)
                continue
            }
            times[entry.sinkID] = nil
            return (entry.sinkID, 0)
        }
        return (nil, nil)
    }

    private mutating func rebuild() {
        heap = []
        for (sinkID, when) in times.sorted(by: { $0.value < $1.value }) {
            sequence += 1
            push(Entry(when: when, sequence: sequence, sinkID: sinkID))
        }
    }

    private mutating func push(_ entry: Entry) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func pop() -> Entry {
        let top = heap[0]
        let last = heap.removeLast()
        guard !heap.isEmpty else { return top }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var first = parent
            if left < heap.count && heap[left].precedes(heap[first]) { first = left }
            if right < heap.count && heap[right].precedes(heap[first]) { first = right }
            if first == parent { break }
            heap.swapAt(parent, first)
            parent = first
        }
        return top
    }
}
